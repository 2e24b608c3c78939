"""The files that go to the device: the smoothed predictor graph and the detached signatures of both ONNX files.

:func:`device_files` builds ``smoothed.onnx`` from the shipped model (:mod:`certification.smoothed_graph`, k noisy
copies at the certified sigma, the deployed PREDICT's alpha, and the certified lighting covariance when certification
used one), signs the shipped model and the smoothed graph
(:mod:`certification.model_signing`, ``FILE.p7s``) and returns the device card (``smoothed.json``, written and
read by :mod:`certification.device_card`): what each file is, by SHA-256, and who signed it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from certification.device_card import SCHEMA
from certification.fileio import sha256_file
from certification.lighting import LightingCovariance
from certification.model_signing import sign_model
from certification.signing.choice import ChosenSigner
from certification.smoothed_graph import build_smoothed_graph


def device_files(model: str | os.PathLike[str], smoothed: str | os.PathLike[str], k: int, sigma: float, alpha: float,
                 chosen: ChosenSigner, lighting: LightingCovariance | None = None) -> dict[str, Any]:
    """Build ``smoothed`` from ``model``, sign both (``.p7s`` beside each) and return the device card.

    ``lighting``: the smoothing covariance certification used (:func:`certification.lighting.smoothing_covariance`);
    the graph then draws that noise and the card records it (``smoothed.lighting``; absent: isotropic noise).

    Bad input (a model that is not ONNX or has two inputs, k < 1, sigma or alpha out of range) is an InputError
    raised before anything is written."""
    model, smoothed = Path(model), Path(smoothed)
    graph = build_smoothed_graph(model, smoothed, k, sigma, alpha, lighting=lighting)
    recorded = {} if lighting is None or lighting.isotropic else {"lighting": lighting.to_record()}
    signatures = {"model": sign_model(model, chosen), "smoothed": sign_model(smoothed, chosen)}
    return {
        "schema": SCHEMA,
        "smoothed": {"path": smoothed.as_posix(), "sha256": graph.sha256, "base_model_sha256": sha256_file(model),
                     "k": int(k), "sigma": float(sigma), "alpha": float(alpha), **recorded,
                     "metadata": dict(graph.metadata)},
        "signatures": {name: sig.to_dict() for name, sig in signatures.items()},
        "signing_key": "development" if chosen.development else "production",
    }
