"""Export a trained checkpoint to the shipped ONNX artifact, with its parity check, model card and metrics.

:func:`export_files` builds everything in a temporary folder beside the outputs and moves the model files into
place only after the parity check passed, so a failed export leaves no model files. The noise of the parity and
accuracy checks is at the training sigma recorded in the checkpoint (the artifact's own), or
:data:`PARITY_SIGMA_IF_CLEAN` when it was trained without noise. Every check runs on the validation split (the test
split stays sealed until certify): accuracy by onnxruntime, clean and under one seeded Gaussian draw per image.

``quantize`` (:data:`QUANTIZE_METHODS`): ``none`` ships the fp32 bytes; ``ptq`` ships ONNX Runtime's static int8
QDQ model of the fp32 export, calibrated on noisy validation images; ``qat`` first fine-tunes the model with fake
quantization under the same noise on the train split (:mod:`certification.qat`), then ships the same QDQ
quantization of the fine-tuned float graph, and records how closely the int8 file follows the fake-quant model.
Either way ``models/model.onnx`` is the int8 file: certify, gate and the dossier read that path.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from certification.dataset_io import Split
from certification.edge_cnn import count_flops, count_parameters, load_checkpoint
from certification.errors import InputError, StaleArtifactError
from certification.onnx_export import (check_opset, check_parity, export_onnx, model_card, noisy_copy, prediction_agreement,
                                       quantize_int8)
from certification.onnx_model import open_session, session_logits
from certification.platform_info import platform_record
from certification.qat import QatSettings, describe, fake_quant_logits, finetune

PARITY_SIGMA_IF_CLEAN = 0.25  # noise for the noisy parity check when the model was trained without noise
ORT_THREADS = 2
#: ``export.quantize``: none (fp32 ships), ptq (post-training static int8 QDQ), qat (quantization-aware fine-tuning).
QUANTIZE_METHODS = ("none", "ptq", "qat")


def quantize_method(value: Any) -> str:
    """``export.quantize`` as one of :data:`QUANTIZE_METHODS`; the older booleans read as false = none, true = ptq."""
    if isinstance(value, bool):
        return "ptq" if value else "none"
    if value not in QUANTIZE_METHODS:
        raise InputError(f"export.quantize must be one of {', '.join(QUANTIZE_METHODS)} (or true/false), got {value!r}")
    return str(value)


@dataclass(frozen=True)
class ExportSettings:
    opset: int
    quantize: str | bool
    calibration_samples: int
    parity_samples: int
    seed: int
    qat: QatSettings = QatSettings()

    @property
    def method(self) -> str:
        return quantize_method(self.quantize)


@dataclass(frozen=True)
class ExportOutcome:
    card: dict[str, Any]
    metrics: dict[str, Any]
    sigma: float


def ort_accuracy(path: Path, x: np.ndarray, y: np.ndarray, sigma: float, seed: int) -> dict[str, float]:
    """onnxruntime top-1 accuracy on clean ``x`` and on ``x`` + N(0, sigma^2) (one seeded draw per image)."""
    session = open_session(path, ORT_THREADS, "cpu")
    clean = float(np.mean(session_logits(session, x).argmax(1) == y))
    noisy_x = x + np.float32(sigma) * np.random.default_rng(seed).standard_normal(x.shape).astype(np.float32)
    noisy = float(np.mean(session_logits(session, noisy_x).argmax(1) == y)) if sigma > 0 else clean
    return {"accuracy_clean": clean, "accuracy_noisy": noisy, "sigma": float(sigma), "n": int(len(y))}


def throughput(path: Path, shape: tuple[int, ...], batch: int = 1000, repeats: int = 3) -> float:
    """Best-of-``repeats`` ORT samples per second at batch ``batch`` on ``ORT_THREADS`` threads."""
    session = open_session(path, ORT_THREADS, "cpu")
    x = np.random.default_rng(0).random((batch, *shape), dtype=np.float32)
    session_logits(session, x, batch)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        session_logits(session, x, batch)
        best = min(best, time.perf_counter() - start)
    return batch / best


def subset(n_total: int, n: int, seed: int) -> np.ndarray:
    """A seeded, sorted subset of ``min(n, n_total)`` indices."""
    return np.sort(np.random.default_rng(seed).permutation(n_total)[: min(n, n_total)])


def _qat_float_graph(model: Any, train: Split, calibration_noisy: np.ndarray, sigma: float, settings: QatSettings,
                     path: Path, shape: tuple[int, ...], opset: int) -> tuple[Any, dict[str, Any]]:
    """Fine-tune ``model`` with fake quantization and export the float graph of its weights to ``path``."""
    import torch

    from certification.training import to_tensor

    result = finetune(model, to_tensor(train.images), torch.from_numpy(train.labels.astype(np.int64)),
                      torch.from_numpy(calibration_noisy), sigma, settings, threads=ORT_THREADS)
    export_onnx(result.model.float_graph(), path, shape, opset)
    return result.model, describe(settings, result)


def export_files(checkpoint: Path, val: Split, classes: Sequence[str], malignant: Sequence[str],
                 settings: ExportSettings, shipped: Path, fp32: Path, training_platform: dict[str, Any],
                 training: dict[str, Any] | None = None, train: Split | None = None) -> ExportOutcome:
    """Export ``checkpoint`` to ``fp32`` and ``shipped`` (the fp32 bytes, or the int8 QDQ model of ``settings.method``
    ptq or qat; qat fine-tunes on ``train``); ``training`` (the train stage's method, hyper-parameters and class
    weights, from metrics/train.json) is carried into the model card as ``training``. Raises
    :class:`~certification.onnx_export.ParityError` (and writes nothing) when ONNX Runtime disagrees with torch."""
    check_opset(settings.opset)
    method = settings.method
    if method == "qat":
        settings.qat.validate()
        if train is None or len(train) == 0:
            raise InputError("export.quantize qat fine-tunes on the train split; none was given (data/train.npz)")
    model, config = load_checkpoint(checkpoint)
    sigma = float(config.get("train_sigma", 0.0))
    shape = (int(config.get("in_channels", 3)), int(config["image_size"]), int(config["image_size"]))
    if val.image_shape_chw != shape:
        raise StaleArtifactError(f"validation images are {val.image_shape_chw} but the model expects {shape}; re-run train")
    if method == "qat" and train is not None and train.image_shape_chw != shape:
        raise StaleArtifactError(f"training images are {train.image_shape_chw} but the model expects {shape}; re-run train")
    parity_sigma = sigma if sigma > 0 else PARITY_SIGMA_IF_CLEAN
    shipped.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=shipped.parent, prefix=".export-") as work:
        fp32_tmp, shipped_tmp = Path(work) / fp32.name, Path(work) / shipped.name
        export_onnx(model, fp32_tmp, shape, settings.opset)
        parity_x = val.model_input(subset(len(val), settings.parity_samples, settings.seed))
        parity = check_parity(model, fp32_tmp, parity_x, parity_sigma, settings.seed + 1, ORT_THREADS)
        x_val = val.model_input()
        quantized, qat_record = None, None
        if method != "none":
            calibration = val.model_input(subset(len(val), settings.calibration_samples, settings.seed + 2))
            source = fp32_tmp
            noisy = noisy_copy(x_val, parity_sigma, settings.seed + 4)
            if method == "qat":
                source = Path(work) / "qat_fp32.onnx"
                assert train is not None
                fake_quant, qat_record = _qat_float_graph(model, train, noisy_copy(calibration, parity_sigma, settings.seed + 3),
                                                          parity_sigma, settings.qat, source, shape, settings.opset)
                # the fine-tuned float graph handed to the quantizer is the torch model's (same checks as the fp32 export)
                qat_record["float_parity"] = check_parity(fake_quant.float_graph(), source, parity_x, parity_sigma,
                                                          settings.seed + 1, ORT_THREADS).to_dict()
            quantize_int8(source, shipped_tmp, calibration, parity_sigma, settings.seed + 3)
            quantized = {"method": method,
                         "agreement_clean": prediction_agreement(fp32_tmp, shipped_tmp, x_val, ORT_THREADS),
                         "agreement_noisy": prediction_agreement(fp32_tmp, shipped_tmp, noisy, ORT_THREADS),
                         "sigma": parity_sigma, "n": len(val),
                         "fp32_bytes": fp32_tmp.stat().st_size, "int8_bytes": shipped_tmp.stat().st_size}
            quantized["size_ratio"] = round(quantized["fp32_bytes"] / quantized["int8_bytes"], 3)
            if qat_record is not None:
                int8_labels = session_logits(open_session(shipped_tmp, ORT_THREADS, "cpu"), noisy).argmax(1)
                qat_record["int8_vs_fake_quant_agreement_noisy"] = float(np.mean(int8_labels == fake_quant_logits(fake_quant, noisy).argmax(1)))
                quantized["qat"] = qat_record
        else:
            shutil.copyfile(fp32_tmp, shipped_tmp)
        shipped_accuracy = ort_accuracy(shipped_tmp, x_val, val.labels, sigma, settings.seed + 5)
        fp32_accuracy = ort_accuracy(fp32_tmp, x_val, val.labels, sigma, settings.seed + 5) if quantized else shipped_accuracy
        card = model_card(
            shipped_tmp, fp32_tmp, shipped.as_posix(), config, settings.opset, "int8" if quantized else "none",
            count_parameters(model), count_flops(model, shape), list(classes), list(malignant),
            {"training": dict(training_platform), "export": platform_record()}, method=method,
        )
        if training is not None:
            card["training"] = dict(training)
        if qat_record is not None:
            card["qat"] = {key: qat_record[key] for key in ("epochs", "lr", "batch_size", "seed")}
        metrics = {
            "onnxruntime": shipped_accuracy,
            "fp32_onnxruntime": fp32_accuracy,
            "parity": parity.to_dict(),
            "quantization": card["quantization"],
            "quantization_method": method,
            "quantized_agreement": quantized,
            "model_sha256": card["sha256"],
            "model_bytes": shipped_tmp.stat().st_size,
            "opset": settings.opset,
            "throughput_samples_per_second": round(throughput(shipped_tmp, shape), 1),
            "ort_threads": ORT_THREADS,
        }
        os.replace(fp32_tmp, fp32)
        os.replace(shipped_tmp, shipped)
    return ExportOutcome(card, metrics, sigma)
