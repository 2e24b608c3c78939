"""Export the edge CNN to ONNX, check parity with torch, optionally quantize to static int8.

* :func:`export_onnx`: ``torch.onnx.export`` (dynamo exporter), input ``"input"`` float32 [batch, C, H, W] in
  [0, 1] with a dynamic batch axis, output ``"logits"`` [batch, K]; one self-contained file (no external
  data) without the exporter's source provenance, simplified for inference (:mod:`certification.onnx_rewrites`);
  written atomically.
* :func:`check_parity`: runs the file in ONNX Runtime and the module in torch on the same clean and noisy
  inputs; fails with :class:`ParityError` when argmax agreement is below 99.9% or any logit differs by more
  than 1e-4.
* :func:`quantize_int8`: static QDQ int8, per-channel weights, calibrated on noisy inputs x + N(0, sigma^2)
  because randomized smoothing only ever evaluates the model on noisy inputs (:func:`noisy_copy`, the same
  draw :mod:`certification.qat` calibrates its fake quantization on).
* :func:`model_card`: the ``models/model.json`` record of the shipped artifact.
"""
from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import onnx
import torch

from certification.errors import InputError
from certification.fileio import atomic_output, sha256_file
from certification.onnx_model import open_session, session_logits
from certification.onnx_rewrites import compact_qdq, simplify

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
MIN_AGREEMENT = 0.999
MAX_LOGIT_DIFF = 1e-4


class ParityError(RuntimeError):
    """The exported ONNX model does not reproduce the torch model within tolerance."""


@dataclass(frozen=True)
class ParityReport:
    """Agreement of ONNX Runtime with torch on clean and noisy inputs (noise std ``sigma``, [0,1] units)."""

    samples: int
    sigma: float
    agreement_clean: float
    agreement_noisy: float
    max_abs_diff_clean: float
    max_abs_diff_noisy: float

    @property
    def agreement(self) -> float:
        return min(self.agreement_clean, self.agreement_noisy)

    @property
    def max_abs_diff(self) -> float:
        return max(self.max_abs_diff_clean, self.max_abs_diff_noisy)

    @property
    def passed(self) -> bool:
        return self.agreement >= MIN_AGREEMENT and self.max_abs_diff <= MAX_LOGIT_DIFF

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "agreement": self.agreement, "max_abs_diff": self.max_abs_diff, "passed": self.passed}


def check_opset(opset: int) -> int:
    """``opset`` if the dynamo exporter supports it (17..23), else :class:`InputError`."""
    if isinstance(opset, bool) or not isinstance(opset, int) or not 17 <= opset <= 23:
        raise InputError(f"ONNX opset must be an integer in 17..23, got {opset!r}")
    return opset


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's notes that do not concern this model (torchvision ops, torch deprecations)."""
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        registration.setLevel(level)


def export_onnx(model: torch.nn.Module, path: str | os.PathLike[str], input_shape: Sequence[int], opset: int) -> None:
    """Export ``model`` (eval mode) to ``path`` with a dynamic batch axis; atomic, single file."""
    check_opset(opset)
    model = model.eval()
    example = torch.rand((2, *input_shape), generator=torch.Generator().manual_seed(0))
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    with atomic_output(path, suffix=".onnx") as tmp, _quiet_exporter():
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: batch},),
            opset_version=opset,
            external_data=False,
            verbose=False,
        )
        program.save(str(tmp), external_data=False)
        model_proto = onnx.load(str(tmp))
        _strip_source_metadata(model_proto)
        simplify(model_proto)
        onnx.save(model_proto, str(tmp))


def _strip_source_metadata(model: onnx.ModelProto) -> None:
    """Drop the exporter's per-node provenance (stack traces with absolute file paths, FX node text).

    It does not change the computation, but it would make the artifact's bytes, and so its SHA-256, depend on
    the folder the code was checked out in. Without it the same weights give the same file everywhere.
    """
    for node in model.graph.node:
        del node.metadata_props[:]
    for values in (model.graph.input, model.graph.output, model.graph.value_info, model.graph.initializer):
        for value in values:
            del value.metadata_props[:]
    del model.graph.metadata_props[:]


def check_parity(model: torch.nn.Module, onnx_path: str | os.PathLike[str], x: np.ndarray, sigma: float, seed: int,
                 threads: int = 2) -> ParityReport:
    """Compare torch and ONNX Runtime logits on ``x`` (float32 NCHW [0,1]) and on ``x`` + N(0, sigma^2).

    Raises :class:`ParityError` naming the failing check; returns the report when it passes.
    """
    if x.shape[0] == 0:
        raise InputError("parity check needs at least one input")
    session = open_session(onnx_path, threads, "cpu")
    noise = np.random.default_rng(seed).standard_normal(x.shape).astype(np.float32)
    noisy = (x + np.float32(sigma) * noise).astype(np.float32)
    stats: dict[str, tuple[float, float]] = {}
    model = model.eval()
    for name, inputs in (("clean", x), ("noisy", noisy)):
        with torch.no_grad():
            reference = model(torch.from_numpy(inputs)).numpy()
        got = session_logits(session, inputs)
        stats[name] = (float(np.mean(reference.argmax(1) == got.argmax(1))), float(np.max(np.abs(reference - got))))
    report = ParityReport(
        samples=int(x.shape[0]), sigma=float(sigma),
        agreement_clean=stats["clean"][0], agreement_noisy=stats["noisy"][0],
        max_abs_diff_clean=stats["clean"][1], max_abs_diff_noisy=stats["noisy"][1],
    )
    if not report.passed:
        raise ParityError(
            f"ONNX parity check failed for {onnx_path}: argmax agreement {report.agreement:.4%} "
            f"(need >= {MIN_AGREEMENT:.1%}), max |logit diff| {report.max_abs_diff:.3g} (need <= {MAX_LOGIT_DIFF:g}); "
            "the export does not reproduce the torch model"
        )
    return report


def noisy_copy(x: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """``x`` + N(0, sigma^2) in float32, one draw of ``default_rng(seed)`` (the calibration inputs)."""
    return (x + np.float32(sigma) * np.random.default_rng(seed).standard_normal(x.shape).astype(np.float32)).astype(np.float32)


class _NoisyCalibrationReader:
    """Feeds calibration batches x + N(0, sigma^2) to onnxruntime's static quantizer."""

    def __init__(self, x: np.ndarray, sigma: float, seed: int, batch_size: int = 64) -> None:
        noisy = noisy_copy(x, sigma, seed)
        self._batches = iter([{INPUT_NAME: noisy[i:i + batch_size].astype(np.float32)} for i in range(0, len(noisy), batch_size)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)

    def rewind(self) -> None:  # pragma: no cover - not used by MinMax calibration
        raise NotImplementedError


def quantize_int8(fp32_path: str | os.PathLike[str], int8_path: str | os.PathLike[str], calibration: np.ndarray,
                  sigma: float, seed: int) -> None:
    """Static int8 QDQ quantization (per-channel int8 weights, uint8 activations, MinMax calibration).

    Calibrated on ``calibration`` + N(0, sigma^2) noise: the ranges then match what certification feeds. The file
    is :func:`~certification.onnx_rewrites.compact_qdq`'d (short names; same kernels, identical outputs).
    """
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if calibration.shape[0] == 0:
        raise InputError("int8 quantization needs at least one calibration image; raise export.calibration_samples")
    reader_type = type("NoisyCalibrationReader", (_NoisyCalibrationReader, CalibrationDataReader), {})
    with tempfile.TemporaryDirectory() as work:
        prepared = Path(work) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        with atomic_output(int8_path, suffix=".onnx") as tmp:
            quantize_static(
                str(prepared), str(tmp), reader_type(calibration, sigma, seed),
                quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
            )
            onnx.save(compact_qdq(onnx.load(str(tmp))), str(tmp))


def prediction_agreement(path_a: str | os.PathLike[str], path_b: str | os.PathLike[str], x: np.ndarray, threads: int = 2) -> float:
    """Fraction of inputs on which two ONNX models predict the same class."""
    a = session_logits(open_session(path_a, threads, "cpu"), x).argmax(1)
    b = session_logits(open_session(path_b, threads, "cpu"), x).argmax(1)
    return float(np.mean(a == b))


def model_card(onnx_path: str | os.PathLike[str], fp32_path: str | os.PathLike[str], relative_path: str, config: dict[str, Any],
               opset: int, quantization: str, parameters: int, flops: int, class_names: list[str],
               malignant_classes: list[str], platform: dict[str, Any], method: str = "none") -> dict[str, Any]:
    """The ``model.json`` record: identity (SHA-256), I/O contract, normalisation and provenance (``platform``:
    where the weights were trained and where they were exported, see :mod:`certification.platform_info`);
    ``quantization`` is the artifact's number format (none | int8), ``quantization_method`` how it was made
    (none | ptq: post-training static QDQ | qat: quantization-aware fine-tuning, then QDQ)."""
    import onnxruntime as ort

    size, channels = int(config["image_size"]), int(config.get("in_channels", 3))
    return {
        "path": relative_path,
        "sha256": sha256_file(onnx_path),
        "fp32_sha256": sha256_file(fp32_path),
        "opset": int(opset),
        "onnxruntime_version": ort.__version__,
        "torch_version": torch.__version__,
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "input_shape": [None, channels, size, size],
        "input_range": [0, 1],
        "class_names": list(class_names),
        "malignant_classes": list(malignant_classes),
        "normalization": {"mean": list(config["mean"]), "std": list(config["std"])},
        "parameters": int(parameters),
        "flops": int(flops),
        "quantization": quantization,
        "quantization_method": method,
        "architecture": str(config.get("architecture")),
        "train_sigma": float(config.get("train_sigma", 0.0)),
        "platform": dict(platform),
    }
