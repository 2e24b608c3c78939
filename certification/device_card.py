"""The device card (models/smoothed.json): what ships to the device, by SHA-256, and who signed it; one writer and
one reader. :func:`certification.device_run.device_files` makes its content; ``smoothed.lighting`` is the lighting
covariance the graph draws (:meth:`certification.lighting.LightingCovariance.to_record`), absent for isotropic noise."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from certification.errors import InputError, StaleArtifactError
from certification.fileio import read_json, sha256_file, write_json_atomic
from certification.lighting import covariance_from_record

SCHEMA = "smoothcert-device-card/1"


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
    if smoothed.get("lighting") is not None:  # the graph's lighting covariance (absent: isotropic noise)
        covariance_from_record(smoothed["lighting"], sigma, where=f"{path}: smoothed.lighting")
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
