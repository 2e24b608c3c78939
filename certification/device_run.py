"""The files that go to the device: the smoothed predictor graph and the detached signatures of both ONNX files.

:func:`device_files` builds ``smoothed.onnx`` from the shipped model (:mod:`certification.smoothed_graph`, k noisy
copies at the certified sigma, the deployed PREDICT's alpha), signs the shipped model and the smoothed graph
(:mod:`certification.model_signing`, ``FILE.p7s``) and returns the device card (``smoothed.json``): what each file
is, by SHA-256, and who signed it. :func:`write_device_card` and :func:`read_device_card` are the card's one writer
and reader.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from certification.errors import InputError, StaleArtifactError
from certification.fileio import read_json, sha256_file, write_json_atomic
from certification.model_signing import sign_model
from certification.signing.keys import ChosenSigner
from certification.smoothed_graph import build_smoothed_graph

SCHEMA = "smoothcert-device-card/1"


def device_files(model: str | os.PathLike[str], smoothed: str | os.PathLike[str], k: int, sigma: float, alpha: float,
                 chosen: ChosenSigner) -> dict[str, Any]:
    """Build ``smoothed`` from ``model``, sign both (``.p7s`` beside each) and return the device card.

    Bad input (a model that is not ONNX or has two inputs, k < 1, sigma or alpha out of range) is an InputError
    raised before anything is written."""
    model, smoothed = Path(model), Path(smoothed)
    graph = build_smoothed_graph(model, smoothed, k, sigma, alpha)
    signatures = {"model": sign_model(model, chosen), "smoothed": sign_model(smoothed, chosen)}
    return {
        "schema": SCHEMA,
        "smoothed": {"path": smoothed.as_posix(), "sha256": graph.sha256, "base_model_sha256": sha256_file(model),
                     "k": int(k), "sigma": float(sigma), "alpha": float(alpha), "metadata": dict(graph.metadata)},
        "signatures": {name: sig.to_dict() for name, sig in signatures.items()},
        "signing_key": "development" if chosen.development else "production",
    }


def write_device_card(path: str | os.PathLike[str], card: Mapping[str, Any]) -> None:
    write_json_atomic(path, dict(card))


def read_device_card(path: str | os.PathLike[str], model_sha256: str | None = None,
                     root: str | os.PathLike[str] = ".") -> dict[str, Any]:
    """The device card at ``path``, checked: its schema, that the files it names (relative to ``root``) still hash as
    recorded, and (with ``model_sha256``) that the smoothed graph and the model signature are of that model."""
    card = read_json(path)
    if not isinstance(card, dict) or card.get("schema") != SCHEMA:
        raise InputError(f"{path}: not a device card ({SCHEMA}); rerun the device stage")
    try:
        smoothed, signature = card["smoothed"], card["signatures"]["model"]
        k, sigma, alpha = int(smoothed["k"]), float(smoothed["sigma"]), float(smoothed["alpha"])
    except (KeyError, TypeError, ValueError):
        raise InputError(f"{path}: device card lacks smoothed k/sigma/alpha or the model signature; rerun the device stage") from None
    if k < 1 or sigma <= 0 or not 0 < alpha < 0.5:
        raise InputError(f"{path}: k={k}, sigma={sigma}, alpha={alpha} out of range; rerun the device stage")
    if model_sha256 is not None:
        for what, recorded in (("smoothed graph's base model", smoothed["base_model_sha256"]),
                               ("model signature's signed file", signature["signed_sha256"])):
            if recorded != model_sha256:
                raise StaleArtifactError(f"{path}: the {what} is {str(recorded)[:12]}..., not the shipped model "
                                         f"{model_sha256[:12]}...; rerun the device stage (dvc repro)")
    for entry in (smoothed, *card["signatures"].values()):
        file = Path(root) / entry["path"]
        if file.is_file() and sha256_file(file) != entry["sha256"]:
            raise StaleArtifactError(f"{path}: {file} no longer hashes to {entry['sha256'][:12]}...; rerun the device stage")
    return card
