"""Certified L2 robustness of ONNX image classifiers by randomized smoothing, and the evidence around it.

The library knows nothing of DVC or params.yaml. Inputs are float32 NCHW images in [0, 1]; sigma and every
radius are in the same [0, 1]-pixel L2 units.
"""
from __future__ import annotations

from typing import Any

__all__ = ["SmoothedClassifier", "__version__"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:  # lazy: importing the package must not load onnxruntime
    if name == "SmoothedClassifier":
        from certification.smoothing import SmoothedClassifier

        return SmoothedClassifier
    raise AttributeError(name)
