"""Stage ``export``: ONNX export of models/model.pt, parity check, optional int8, model card, metrics.

Writes models/model_fp32.onnx (float export), models/model.onnx (THE shipped artifact: the fp32 bytes when
export.quantize is none, else the int8 QDQ model made by ptq or qat; the older false/true read as none/ptq),
models/model.json and metrics/export.json, through
:func:`certification.export_run.export_files` (a failed export leaves no model files). Its checks run on the
validation split at the training sigma recorded in the checkpoint; the test split stays sealed until certify.
"""
from __future__ import annotations

import sys
from typing import Any

from certification.dataset_io import load_split
from certification.errors import ParameterError
from certification.export_run import ExportSettings, export_files, quantize_method
from certification.fileio import read_json, require_key, write_json_atomic
from certification.model_card import write_model_card
from certification.qat import QatSettings
from certification.onnx_export import ParityError, check_opset
from pipeline import layout
from pipeline.stage import load_document, load_section, run_stage
from pipeline.tracking import log_stage

KEYS = {"opset": int, "quantize": (str, bool), "calibration_samples": int, "parity_samples": int, "seed": int}
QAT_KEYS = {"epochs": int, "lr": float, "batch_size": int, "seed": int}


def qat_settings(values: Any, required: bool) -> QatSettings:
    """``export.qat`` (every key of :data:`QAT_KEYS`, nothing else) as checked settings; it may be missing (the
    defaults) unless ``required`` (export.quantize qat)."""
    if values is None and not required:
        return QatSettings()
    if not isinstance(values, dict):
        raise ParameterError(f"export.qat must be a mapping of {', '.join(QAT_KEYS)} (needed by export.quantize qat), got {values!r}")
    unknown = sorted(set(values) - set(QAT_KEYS))
    if unknown:
        raise ParameterError(f"unknown key 'export.qat.{unknown[0]}'; allowed keys: {', '.join(QAT_KEYS)}")
    missing = [key for key in QAT_KEYS if key not in values]
    if missing:
        raise ParameterError(f"missing key 'export.qat.{missing[0]}'")
    settings = QatSettings(**{key: float(values[key]) if kind is float and isinstance(values[key], int)
                              and not isinstance(values[key], bool) else values[key] for key, kind in QAT_KEYS.items()})
    settings.validate()
    return settings


def main() -> int:
    section = load_document().get("export")
    has_qat = isinstance(section, dict) and "qat" in section
    params = load_section("export", {**KEYS, "qat": dict} if has_qat else KEYS)
    qat_values = params.pop("qat", None)
    check_opset(params["opset"])
    method = quantize_method(params["quantize"])
    params["qat"] = qat_settings(qat_values, required=method == "qat")
    for key in ("parity_samples", "calibration_samples"):
        if params[key] < 1:
            raise ParameterError(f"export.{key} must be >= 1, got {params[key]}")
    datasheet = read_json(layout.DATASHEET)
    classes = list(datasheet["classes"])
    val = load_split(layout.VAL_SPLIT, len(classes))
    train = load_split(layout.TRAIN_SPLIT, len(classes)) if method == "qat" else None
    train_metrics = read_json(layout.TRAIN_METRICS)
    training_platform = require_key(train_metrics, "platform", str(layout.TRAIN_METRICS), "rerun the train stage")
    training = {key: require_key(train_metrics, key, str(layout.TRAIN_METRICS), "rerun the train stage")
                for key in ("method", "hyperparameters", "class_weights")}
    try:
        outcome = export_files(layout.CHECKPOINT, val, classes, list(datasheet.get("malignant_classes", [])),
                               ExportSettings(**params), layout.MODEL, layout.MODEL_FP32, training_platform,
                               training, train)
    except ParityError as exc:
        print(f"export: error: {exc}", file=sys.stderr)
        return 1
    card, metrics = outcome.card, outcome.metrics
    params = {**params, "qat": dict(params["qat"].__dict__)}
    write_model_card(layout.MODEL_CARD, card)
    write_json_atomic(layout.EXPORT_METRICS, metrics)
    accuracy, parity = metrics["onnxruntime"], metrics["parity"]
    print(f"export: {layout.MODEL} ({card['quantization']}, {method}) sha256 {card['sha256'][:12]}, onnxruntime validation accuracy clean "
          f"{accuracy['accuracy_clean']:.3f}, noisy {accuracy['accuracy_noisy']:.3f} (sigma {outcome.sigma}), "
          f"parity agreement {parity['agreement']:.4f} max diff {parity['max_abs_diff']:.2e}")
    log_stage("export", params, metrics, artifacts=[layout.MODEL_CARD], tags={"smoothcert.model_sha256": card["sha256"]},
              onnx_path=layout.MODEL)
    return 0


if __name__ == "__main__":
    run_stage("export", main)
