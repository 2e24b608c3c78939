"""Stage ``train``: noise-augmented training of the edge CNN from params ``train`` (``method``: gaussian,
consistency or macer; see :mod:`certification.training_losses`).

Reads data/{train,val}.npz and data/datasheet.json (never the test split: it stays sealed until certify); writes
models/model.pt, metrics/train.json and plots/train_history.csv (columns epoch, train_loss, val_accuracy_clean,
val_accuracy_noisy). Torch runs on
``SMOOTHCERT_TORCH_THREADS`` threads (default 2): results are deterministic for a fixed thread count.
"""
from __future__ import annotations

import csv
import io
import os
import sys
from typing import Any

from certification.errors import InputError
from certification.fileio import read_json, write_json_atomic, write_text_atomic
from certification.platform_info import PORTABLE_TORCH_ENVIRONMENT, cpu_vendor, platform_record, torch_capability
from pipeline import layout
from pipeline.stage import load_document, load_section, run_stage

KEYS = {"sigma": float, "epochs": int, "batch_size": int, "lr": float, "weight_decay": float, "width": int, "seed": int,
        "portable_kernels": bool, "method": str, "class_weights": dict, "consistency": dict, "macer": dict}
#: ``train.lighting``: null = certify's lighting (``certify.lighting``), so training and certification use the same noise.
OPTIONAL_KEYS = {"lighting": (dict, type(None))}
MODEL_PATH, METRICS_PATH, HISTORY_PATH = layout.CHECKPOINT, layout.TRAIN_METRICS, layout.TRAIN_HISTORY
HISTORY_COLUMNS = ("epoch", "train_loss", "val_accuracy_clean", "val_accuracy_noisy")


def torch_threads() -> int:
    value = os.environ.get("SMOOTHCERT_TORCH_THREADS", "2")
    if not value.isdigit() or int(value) < 1:
        raise InputError(f"SMOOTHCERT_TORCH_THREADS must be a positive integer, got {value!r}")
    return int(value)


def history_csv(history: list) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(HISTORY_COLUMNS)
    for record in history:
        writer.writerow([record.epoch, f"{record.train_loss:.6f}", f"{record.val_accuracy_clean:.6f}", f"{record.val_accuracy_noisy:.6f}"])
    return buffer.getvalue()


def portable_environment(enabled: bool) -> None:
    """Before torch is imported: set :data:`PORTABLE_TORCH_ENVIRONMENT` (a value the user set is kept, and recorded)."""
    if enabled:
        if "torch" in sys.modules:
            print("train: warning: torch was imported before the portable kernels could be chosen; "
                  "the platform record says which ones ran", file=sys.stderr)
        for key, value in PORTABLE_TORCH_ENVIRONMENT.items():
            os.environ.setdefault(key, value)


def training_platform(portable: bool) -> dict[str, Any]:
    """Where and how the weights were computed: :func:`platform_record`, the CPU vendor (MKL's code path depends on
    it), torch's CPU capability, portable kernels."""
    return {**platform_record(), "cpu_vendor": cpu_vendor(), "torch_capability": torch_capability(),
            "portable_kernels": bool(portable)}


def refuse_supplied_model() -> None:
    """With params ``model.path`` set the user supplies the model: this pipeline must not train one."""
    supplied = (load_document().get("model") or {}).get("path")
    if supplied:
        raise InputError(f"model.path is set ({supplied}): a supplied model is certified by its own pipeline, without "
                         "training; run: python -m pipeline.supplied && dvc repro supplied_model/dvc.yaml "
                         "(or set model.path: \"\" to train)")


def training_lighting(own: Any, document: dict[str, Any]) -> dict[str, Any] | None:
    """``train.lighting``, or certify's when it is null or absent (None when neither is set)."""
    if own is not None:
        return own
    certify = document.get("certify")
    return certify.get("lighting") if isinstance(certify, dict) else None


def main() -> int:
    refuse_supplied_model()
    params = load_section("train", KEYS, optional=OPTIONAL_KEYS)
    lighting = training_lighting(params.pop("lighting", None), load_document())
    if lighting is not None:
        params["lighting"] = lighting
    portable_environment(params["portable_kernels"])
    # torch starts with these imports, after the portable environment is set
    from certification.dataset_io import load_split
    from certification.edge_cnn import save_checkpoint
    from certification.training import TrainConfig, train_model
    from certification.training_losses import class_weight_vector

    config = TrainConfig.from_params(params)
    threads = torch_threads()
    datasheet = read_json(layout.DATASHEET)
    classes = list(datasheet["classes"])
    class_weight_vector(config.class_weights, classes, len(classes))  # unknown class names fail before training
    train, val = (load_split(p, len(classes)) for p in (layout.TRAIN_SPLIT, layout.VAL_SPLIT))
    if not (train.channels_last and val.channels_last):
        raise InputError("data splits must store images as uint8 N,H,W,C; re-run the data stage")
    if train.image_shape_chw != val.image_shape_chw:
        raise InputError(f"splits have different image shapes: {train.image_shape_chw}, {val.image_shape_chw}")
    result = train_model(
        train.images, train.labels, val.images, val.labels, len(classes), config, threads=threads,
        extra_config={"class_names": classes, "malignant_classes": list(datasheet.get("malignant_classes", []))},
    )
    final, best = result.history[-1], result.best
    metrics = {
        "final": {"epoch": final.epoch, "train_loss": final.train_loss,
                  "val_accuracy_clean": final.val_accuracy_clean, "val_accuracy_noisy": final.val_accuracy_noisy},
        "best": {"epoch": best.epoch, "train_loss": best.train_loss,
                 "val_accuracy_clean": best.val_accuracy_clean, "val_accuracy_noisy": best.val_accuracy_noisy},
        "n_val": len(val),
        "selected_by": "val_accuracy_noisy" if config.sigma > 0 else "val_accuracy_clean",
        "sigma": config.sigma,
        "method": config.method,
        "hyperparameters": config.hyperparameters(),
        "noisy_copies_per_image": config.copies,
        "class_weights": {name: float(config.class_weights.get(name, 1.0)) for name in classes},
        "parameters": result.parameters,
        "flops": result.flops,
        "epochs": config.epochs,
        "seconds": round(result.seconds, 3),
        "torch_threads": threads,
        "platform": training_platform(config.portable_kernels),
        **({} if config.lighting_directions == "none" else
           {"lighting": {"directions": config.lighting_directions, "tau": config.lighting_tau}}),
    }
    save_checkpoint(MODEL_PATH, result.model, result.config)
    write_json_atomic(METRICS_PATH, metrics)
    write_text_atomic(HISTORY_PATH, history_csv(result.history))
    print(f"train: best epoch {best.epoch}/{config.epochs}, val clean {best.val_accuracy_clean:.3f} noisy "
          f"{best.val_accuracy_noisy:.3f} (sigma {config.sigma}, method {config.method}), "
          f"{result.parameters} params, {result.flops} MACs, {result.seconds:.1f} s")
    from pipeline.tracking import log_stage

    log_stage("train", params, metrics, artifacts=[HISTORY_PATH])
    return 0


if __name__ == "__main__":
    run_stage("train", main)
