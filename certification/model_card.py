"""The one reader of ``models/model.json``, the model card the export stage writes
(:func:`certification.onnx_export.model_card` builds it): the shipped artifact's path and SHA-256, its classes,
malignant classes, training sigma, I/O contract and provenance."""
from __future__ import annotations

import os
from typing import Any

from certification.errors import InputError
from certification.fileio import read_json


def load_model_description(path: str | os.PathLike[str]) -> dict[str, Any]:
    """models/model.json, checked for the fields the gate needs (sha256, class_names, malignant_classes)."""
    model = read_json(path)
    if not isinstance(model, dict):
        raise InputError(f"{path}: expected a JSON object describing the model")
    for key in ("sha256", "class_names", "malignant_classes"):
        if key not in model:
            raise InputError(f"{path}: missing key '{key}'; rerun the export stage")
    if not isinstance(model["class_names"], list) or len(model["class_names"]) < 2:
        raise InputError(f"{path}: 'class_names' must list at least two classes")
    if not isinstance(model["malignant_classes"], list):
        raise InputError(f"{path}: 'malignant_classes' must be a list of class names")
    return model
