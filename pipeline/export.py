"""Stage ``export``: ONNX export of models/model.pt, parity check, optional int8, model card, metrics.

Writes models/model_fp32.onnx (float export), models/model.onnx (THE shipped artifact: the fp32 bytes, or the
static int8 QDQ model when export.quantize is true), models/model.json and metrics/export.json. Everything
is built in a temporary folder and moved into place only after the parity check passed, so a failed export
leaves no model files. Accuracy is measured by onnxruntime on data/test.npz, clean and under one seeded
Gaussian draw at train.sigma per image.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from certification.dataset_io import load_split
from certification.edge_cnn import count_flops, count_parameters, load_checkpoint
from certification.errors import InputError
from certification.fileio import read_json, write_json_atomic
from certification.onnx_export import (
    ParityError,
    check_opset,
    check_parity,
    export_onnx,
    model_card,
    ort_logits,
    ort_session,
    prediction_agreement,
    quantize_int8,
)
from pipeline.stage import load_section, run_stage
from pipeline.train import KEYS as TRAIN_KEYS

KEYS = {"opset": int, "quantize": bool, "calibration_samples": int, "parity_samples": int, "seed": int}
MODEL_DIR = Path("models")
CHECKPOINT = MODEL_DIR / "model.pt"
SHIPPED, FP32, CARD = MODEL_DIR / "model.onnx", MODEL_DIR / "model_fp32.onnx", MODEL_DIR / "model.json"
METRICS_PATH = Path("metrics/export.json")
PARITY_SIGMA_IF_CLEAN = 0.25  # noise for the noisy parity check when the model was trained without noise
ORT_THREADS = 2


def ort_accuracy(path: Path, x: np.ndarray, y: np.ndarray, sigma: float, seed: int) -> dict[str, float]:
    """onnxruntime top-1 accuracy on clean ``x`` and on ``x`` + N(0, sigma^2) (one seeded draw per image)."""
    session = ort_session(path, ORT_THREADS)
    clean = float(np.mean(ort_logits(session, x).argmax(1) == y))
    noisy_x = x + np.float32(sigma) * np.random.default_rng(seed).standard_normal(x.shape).astype(np.float32)
    noisy = float(np.mean(ort_logits(session, noisy_x).argmax(1) == y)) if sigma > 0 else clean
    return {"accuracy_clean": clean, "accuracy_noisy": noisy, "sigma": float(sigma), "n": int(len(y))}


def throughput(path: Path, shape: tuple[int, ...], batch: int = 1000, repeats: int = 3) -> float:
    """Best-of-``repeats`` ORT samples per second at batch ``batch`` on ``ORT_THREADS`` threads."""
    session = ort_session(path, ORT_THREADS)
    x = np.random.default_rng(0).random((batch, *shape), dtype=np.float32)
    ort_logits(session, x, batch)
    best = min(_timed(session, x, batch) for _ in range(repeats))
    return batch / best


def _timed(session: object, x: np.ndarray, batch: int) -> float:
    start = time.perf_counter()
    ort_logits(session, x, batch)
    return time.perf_counter() - start


def subset(n_total: int, n: int, seed: int) -> np.ndarray:
    """A seeded, sorted subset of ``min(n, n_total)`` indices."""
    return np.sort(np.random.default_rng(seed).permutation(n_total)[: min(n, n_total)])


def main() -> int:
    params = load_section("export", KEYS)
    sigma = load_section("train", TRAIN_KEYS)["sigma"]
    if sigma < 0:
        raise InputError(f"train.sigma must be >= 0 ([0,1]-pixel units), got {sigma}")
    check_opset(params["opset"])
    for key in ("parity_samples", "calibration_samples"):
        if params[key] < 1:
            raise InputError(f"export.{key} must be >= 1, got {params[key]}")
    model, config = load_checkpoint(CHECKPOINT)
    datasheet = read_json("data/datasheet.json")
    classes = list(datasheet["classes"])
    val, test = load_split("data/val.npz", len(classes)), load_split("data/test.npz", len(classes))
    shape = (int(config.get("in_channels", 3)), int(config["image_size"]), int(config["image_size"]))
    if test.image_shape_chw != shape:
        raise InputError(f"data/test.npz images are {test.image_shape_chw} but the model expects {shape}; re-run train")
    parity_sigma = sigma if sigma > 0 else PARITY_SIGMA_IF_CLEAN
    MODEL_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=MODEL_DIR, prefix=".export-") as work:
        fp32_tmp, shipped_tmp = Path(work) / "model_fp32.onnx", Path(work) / "model.onnx"
        export_onnx(model, fp32_tmp, shape, params["opset"])
        parity_x = val.model_input(subset(len(val), params["parity_samples"], params["seed"]))
        try:
            parity = check_parity(model, fp32_tmp, parity_x, parity_sigma, params["seed"] + 1, ORT_THREADS)
        except ParityError as exc:
            print(f"export: error: {exc}", file=sys.stderr)
            return 1
        x_test = test.model_input()
        quantized = None
        if params["quantize"]:
            calibration = val.model_input(subset(len(val), params["calibration_samples"], params["seed"] + 2))
            quantize_int8(fp32_tmp, shipped_tmp, calibration, parity_sigma, params["seed"] + 3)
            noisy = x_test + np.float32(parity_sigma) * np.random.default_rng(params["seed"] + 4).standard_normal(x_test.shape).astype(np.float32)
            quantized = {"agreement_clean": prediction_agreement(fp32_tmp, shipped_tmp, x_test, ORT_THREADS),
                         "agreement_noisy": prediction_agreement(fp32_tmp, shipped_tmp, noisy, ORT_THREADS),
                         "sigma": parity_sigma, "n": len(test)}
        else:
            shutil.copyfile(fp32_tmp, shipped_tmp)
        shipped_accuracy = ort_accuracy(shipped_tmp, x_test, test.labels, sigma, params["seed"] + 5)
        fp32_accuracy = ort_accuracy(fp32_tmp, x_test, test.labels, sigma, params["seed"] + 5) if quantized else shipped_accuracy
        card = model_card(
            shipped_tmp, fp32_tmp, SHIPPED.as_posix(), config, params["opset"], "int8" if quantized else "none",
            count_parameters(model), count_flops(model, shape), classes, list(datasheet.get("malignant_classes", [])),
        )
        metrics = {
            "onnxruntime": shipped_accuracy,
            "fp32_onnxruntime": fp32_accuracy,
            "parity": parity.to_dict(),
            "quantization": card["quantization"],
            "quantized_agreement": quantized,
            "model_sha256": card["sha256"],
            "opset": params["opset"],
            "throughput_samples_per_second": round(throughput(shipped_tmp, shape), 1),
            "ort_threads": ORT_THREADS,
        }
        os.replace(fp32_tmp, FP32)
        os.replace(shipped_tmp, SHIPPED)
    write_json_atomic(CARD, card)
    write_json_atomic(METRICS_PATH, metrics)
    print(f"export: {SHIPPED} ({card['quantization']}) sha256 {card['sha256'][:12]}, onnxruntime test accuracy clean "
          f"{shipped_accuracy['accuracy_clean']:.3f}, noisy {shipped_accuracy['accuracy_noisy']:.3f} (sigma {sigma}), "
          f"parity agreement {parity.agreement:.4f} max diff {parity.max_abs_diff:.2e}")
    from pipeline.tracking import log_stage

    log_stage("export", params, metrics, artifacts=[CARD], tags={"smoothcert.model_sha256": card["sha256"]}, onnx_path=SHIPPED)
    return 0


if __name__ == "__main__":
    run_stage("export", main)
