"""Stage ``model`` of the supplied-model pipeline (supplied_model/dvc.yaml): import the user's ONNX file named by
params ``model.path`` in place of the train and export stages.

Reads params ``model`` (path: relative to params.yaml's folder; class_names: the classes in the model's output order,
[] = the datasheet's; malignant_classes: [] = the datasheet's; sigma: the noise level the model was trained for, or
null), data/datasheet.json and data/val.npz (the test split stays sealed until certify). Writes models/model.onnx (the
supplied bytes), models/model.json (the card documented in :mod:`certification.model_import`) and metrics/export.json
(the import checks) through :func:`certification.model_import.import_model_files`; nothing on bad input (exit 2).
"""
from __future__ import annotations

from pathlib import Path

from certification.dataset_io import load_split
from certification.errors import InputError, ParameterError
from certification.fileio import read_json, write_json_atomic
from certification.model_card import write_model_card
from certification.model_import import SuppliedModel, import_model_files
from pipeline import layout
from pipeline.stage import PARAMS_FILE, load_section, run_stage
from pipeline.tracking import log_stage

KEYS = {"path": str, "class_names": list, "malignant_classes": list, "sigma": (float, type(None))}
SEED = 2  # the seeded noise draw of the import's noisy validation accuracy


def supplied_model(params: dict, datasheet: dict) -> SuppliedModel:
    """params ``model`` checked against the data: the classes must be the datasheet's, in its index order."""
    if not params["path"]:
        raise ParameterError(f"{PARAMS_FILE}: model.path is empty; set it to your .onnx file (this pipeline certifies a "
                             "supplied model), or run the training pipeline: dvc repro (dvc.yaml at the repository root)")
    classes = list(datasheet["classes"])
    names = [str(c) for c in params["class_names"]] or classes
    if names != classes:
        raise InputError(f"model.class_names {names} differ from the data's classes {classes} (index order); list the "
                         "model's output classes in the data's order, or relabel the data")
    malignant = [str(c) for c in params["malignant_classes"]] or list(datasheet.get("malignant_classes", []))
    path = Path(params["path"])
    return SuppliedModel(path if path.is_absolute() else PARAMS_FILE.parent / path, names, malignant, params["sigma"],
                         source=params["path"])


def main() -> int:
    params = load_section("model", KEYS)
    datasheet = read_json(layout.DATASHEET)
    supplied = supplied_model(params, datasheet)
    val = load_split(layout.VAL_SPLIT, len(supplied.class_names))
    outcome = import_model_files(supplied, val, layout.MODEL, layout.MODEL.as_posix(), SEED)
    write_model_card(layout.MODEL_CARD, outcome.card)
    write_json_atomic(layout.EXPORT_METRICS, outcome.metrics)
    accuracy = outcome.metrics["onnxruntime"]
    adapted = "; ".join(outcome.card["supplied"]["input_adaptation"]) or "none"
    print(f"model: imported {supplied.path} as {layout.MODEL} (sha256 {outcome.card['sha256'][:12]}, supplied, not trained "
          f"by this pipeline); input adaptation: {adapted}; onnxruntime validation accuracy clean {accuracy['accuracy_clean']:.3f}, "
          f"noisy {accuracy['accuracy_noisy']:.3f} (sigma {accuracy['sigma']})")
    log_stage("model", {"model.path": str(supplied.path)}, {"import_accuracy_clean": accuracy["accuracy_clean"]},
              artifacts=[layout.MODEL_CARD], tags={"smoothcert.model_sha256": outcome.card["sha256"],
                                                   "smoothcert.model_supplied": "true"}, onnx_path=layout.MODEL)
    return 0


if __name__ == "__main__":
    run_stage("model", main)
