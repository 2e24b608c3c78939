"""The one reader and the one writer of ``models/model.json``, the model card: the shipped artifact's path and SHA-256,
its classes, malignant classes, training sigma, I/O contract and provenance. Two producers fill it: the export stage
(:func:`certification.onnx_export.model_card`, a model trained by the pipeline) and the supplied-model import
(:func:`certification.model_import.import_model_files`, whose docstring lists the fields; it adds ``supplied``)."""
from __future__ import annotations

import os
from typing import Any

from certification.errors import InputError
from certification.fileio import read_json, write_json_atomic

#: Keys every card carries (the dossier prints them; a supplied model's unknown values are null).
CARD_KEYS = ("path", "sha256", "opset", "onnxruntime_version", "input_shape", "input_range", "class_names",
             "malignant_classes", "normalization", "parameters", "flops", "quantization", "architecture", "train_sigma",
             "platform")
SUPPLIED_KEYS = ("source", "sha256", "trained_by_pipeline", "input_adaptation")


def write_model_card(path: str | os.PathLike[str], card: dict[str, Any]) -> None:
    """Write ``card`` atomically after checking it carries :data:`CARD_KEYS` (and, for a supplied model,
    ``supplied`` with :data:`SUPPLIED_KEYS` naming the same SHA-256): a producer's bug, never a half card."""
    missing = [key for key in CARD_KEYS if key not in card]
    supplied = card.get("supplied")
    if supplied is not None:
        missing += [f"supplied.{key}" for key in SUPPLIED_KEYS if key not in supplied]
        if not missing and supplied["sha256"] != card["sha256"]:
            raise ValueError("model card: supplied.sha256 differs from sha256")
    if missing:
        raise ValueError(f"model card lacks {', '.join(missing)}")
    write_json_atomic(path, card)


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
