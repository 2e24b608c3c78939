"""Certified L2 robustness of ONNX image classifiers by randomized smoothing, and the evidence around it.

The library knows nothing of DVC or params.yaml. Inputs are float32 NCHW images in [0, 1]; sigma and every
radius are in the same [0, 1]-pixel L2 units. Importing the package loads nothing: import the module you need
(e.g. ``from certification.smoothing import SmoothedClassifier``).
"""
from __future__ import annotations

__all__ = ["__version__"]
__version__ = "0.1.0"
