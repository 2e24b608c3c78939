"""Quantization-aware fine-tuning (QAT) of the edge CNN for the int8 artifact that ships.

Why not ``torch.ao.quantization``: its eager and FX QAT flows are deprecated in torch 2.x in favour of torchao
(not a dependency here), and their observers and fused modules place quantization points where torch's own
int8 backends put them, not where ONNX Runtime's QDQ quantizer does. What ships is ONNX Runtime's QDQ model
(:func:`certification.onnx_export.quantize_int8`), so the fake-quant model here mirrors *that* graph instead,
with torch's own ``fake_quantize_per_tensor_affine`` / ``fake_quantize_per_channel_affine`` (straight-through
gradients):

* BatchNorm is folded into each convolution (frozen statistics, as the exported graph has it) and the input
  normalisation's 1/std into the first convolution's weights; the graph is then Sub(mean), Conv+ReLU x 9,
  GlobalAveragePool, Gemm: the same nodes the exported fp32 graph has after :mod:`certification.onnx_rewrites`.
* Activations: uint8, asymmetric, per tensor, at the Sub output, after every Conv+ReLU (ORT drops the ReLU and
  lets the quantizer clamp), after the pooling and on the logits; range [min(0, m), max(0, M)] of MinMax
  calibration on noisy inputs, scale (M - m) / 255, zero point round(-m / scale): ORT's formulas.
* Weights: int8, symmetric, per output channel, scale max|w| / 127 (ORT's symmetric int8 range [-127, 127]);
  biases int32 at scale (input scale x weight scale), zero point 0.

Training is Gaussian-noise cross-entropy (the train stage's ``gaussian`` objective, same augmentation) with the
fake-quant forward; activation ranges are fixed during an epoch and re-calibrated before each epoch and at the
end, on the same noisy calibration inputs the exporter later gives ONNX Runtime, with the float forward (as
ORT's calibrator runs the float graph). The export is then the float graph of the fine-tuned weights,
quantized by ONNX Runtime with those inputs: its ranges are the ones this model was trained with (up to the
torch/ORT float parity of 1e-4), so the int8 file behaves like :meth:`FoldedEdgeCNN.forward` with
``fake_quant`` on (:func:`certification.export_run.export_files` measures that agreement under noise).
Deterministic for a fixed seed and thread count (one seeded generator; bytes across ISA levels not claimed).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from certification.edge_cnn import EdgeCNN
from certification.errors import InputError

ACT_QMIN, ACT_QMAX = 0, 255  # uint8 activations (ORT QuantType.QUInt8)
W_QMAX = 127  # symmetric int8 weights (ORT's range [-127, 127])


@dataclass(frozen=True)
class QatSettings:
    """Hyper-parameters of the fine-tuning: epochs over the train split, SGD learning rate, batch, seed."""

    epochs: int = 2
    lr: float = 0.001
    batch_size: int = 128
    seed: int = 5

    def validate(self) -> None:
        for key in ("epochs", "batch_size"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"export.qat.{key} must be an integer >= 1, got {value!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise InputError(f"export.qat.lr must be a finite number > 0, got {self.lr!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise InputError(f"export.qat.seed must be a non-negative integer, got {self.seed!r}")


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    weight = conv.weight.detach() * scale.view(-1, 1, 1, 1)
    bias = bn.bias.detach() - bn.running_mean * scale
    return weight, bias


def activation_qparams(low: torch.Tensor, high: torch.Tensor) -> tuple[float, int]:
    """ORT's uint8 asymmetric scale and zero point of the range [min(0, low), max(0, high)]."""
    lo, hi = min(float(low), 0.0), max(float(high), 0.0)
    scale = (hi - lo) / (ACT_QMAX - ACT_QMIN) if hi > lo else 1.0
    zero_point = int(round(ACT_QMIN - lo / scale))
    return float(np.float32(scale)), max(ACT_QMIN, min(ACT_QMAX, zero_point))


def _fake_weight(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-output-channel symmetric int8 fake quantization of ``weight``; returns (fake-quant weight, scales)."""
    absmax = weight.detach().abs().flatten(1).amax(1)
    scale = torch.where(absmax > 0, absmax / W_QMAX, torch.ones_like(absmax)).float()
    zero = torch.zeros(scale.shape, dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(weight, scale, zero, 0, -W_QMAX, W_QMAX), scale


def _fake_bias(bias: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """int32 rounding of ``bias`` at ``scale`` (zero point 0), straight-through gradient."""
    return bias + (torch.round(bias.detach() / scale) * scale - bias.detach())


class FoldedEdgeCNN(nn.Module):
    """The edge CNN as ONNX Runtime's QDQ graph sees it: BN and 1/std folded into the convolutions, with
    quantization points where ORT puts them (module docstring). ``fake_quant`` False: the float graph (what is
    exported); True: the int8 model it becomes. Input float32 NCHW in [0, 1], output logits."""

    def __init__(self, model: EdgeCNN) -> None:
        super().__init__()
        model = model.eval()
        self.register_buffer("mean", model.normalize.mean.detach().clone())
        std = model.normalize.std.detach().view(1, -1, 1, 1)
        blocks: list[nn.Sequential] = []
        for layer in model.features:
            blocks.extend(layer if isinstance(layer[0], nn.Sequential) else [layer])
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        self.geometry: list[tuple[int, int, int]] = []
        for position, block in enumerate(blocks):
            conv, bn = block[0], block[1]
            weight, bias = _fold(conv, bn)
            if position == 0:
                weight = weight / std
            self.weights.append(nn.Parameter(weight.clone()))
            self.biases.append(nn.Parameter(bias.clone()))
            self.geometry.append((int(conv.stride[0]), int(conv.padding[0]), int(conv.groups)))
        self.classifier_weight = nn.Parameter(model.classifier.weight.detach().clone())
        self.classifier_bias = nn.Parameter(model.classifier.bias.detach().clone())
        points = len(blocks) + 3  # Sub output, each Conv+ReLU, pooling, logits
        self.register_buffer("low", torch.zeros(points))
        self.register_buffer("high", torch.ones(points))
        self.fake_quant = False
        self._observing = False

    def _point(self, x: torch.Tensor, k: int) -> tuple[torch.Tensor, float]:
        if self._observing:
            self.low[k] = torch.minimum(self.low[k], x.detach().min())
            self.high[k] = torch.maximum(self.high[k], x.detach().max())
        if not self.fake_quant:
            return x, 1.0
        scale, zero_point = activation_qparams(self.low[k], self.high[k])
        return torch.fake_quantize_per_tensor_affine(x, scale, zero_point, ACT_QMIN, ACT_QMAX), scale

    def _affine(self, weight: torch.Tensor, bias: torch.Tensor, input_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.fake_quant:
            return weight, bias
        weight, scale = _fake_weight(weight)
        return weight, _fake_bias(bias, scale * input_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, scale = self._point(x - self.mean, 0)
        for k, (weight, bias, (stride, padding, groups)) in enumerate(zip(self.weights, self.biases, self.geometry), start=1):
            weight, bias = self._affine(weight, bias, scale)
            h, scale = self._point(F.relu(F.conv2d(h, weight, bias, stride, padding, 1, groups)), k)
        h, scale = self._point(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1), len(self.weights) + 1)
        weight, bias = self._affine(self.classifier_weight, self.classifier_bias, scale)
        return self._point(F.linear(h, weight, bias), len(self.weights) + 2)[0]

    @torch.no_grad()
    def calibrate(self, noisy: torch.Tensor, batch_size: int = 64) -> None:
        """MinMax ranges of every quantization point on ``noisy`` with the float forward, as ORT calibrates."""
        fake, self.fake_quant, self._observing = self.fake_quant, False, True
        self.low.fill_(float("inf"))
        self.high.fill_(float("-inf"))
        try:
            for start in range(0, len(noisy), batch_size):
                self(noisy[start:start + batch_size])
        finally:
            self.fake_quant, self._observing = fake, False

    def float_graph(self) -> "FoldedEdgeCNN":
        """A copy with fake quantization off: the float graph to export and hand to ORT's quantizer."""
        twin = copy.deepcopy(self).eval()
        twin.fake_quant = False
        return twin


@dataclass
class QatResult:
    """The fine-tuned folded model (fake quantization on) and its per-epoch mean training loss."""

    model: FoldedEdgeCNN
    losses: list[float]


def finetune(model: EdgeCNN, train_x: torch.Tensor, train_y: torch.Tensor, calibration_noisy: torch.Tensor,
             sigma: float, settings: QatSettings, threads: int | None = None) -> QatResult:
    """QAT from the trained ``model``: ``settings.epochs`` epochs of Gaussian-noise (std ``sigma``, [0,1] units)
    cross-entropy on ``train_x`` (float32 NCHW in [0, 1]) through the fake-quant forward, SGD with momentum and
    a cosine schedule; ranges calibrated on ``calibration_noisy`` before each epoch and at the end."""
    from certification.training import _augment

    settings.validate()
    if len(train_y) == 0:
        raise InputError("QAT needs a non-empty train split")
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        folded = FoldedEdgeCNN(model)
        generator = torch.Generator().manual_seed(settings.seed)
        steps = math.ceil(len(train_y) / settings.batch_size)
        optimizer = torch.optim.SGD(folded.parameters(), lr=settings.lr, momentum=0.9)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings.epochs * steps)
        losses = []
        for epoch in range(settings.epochs):
            folded.calibrate(calibration_noisy)
            folded.fake_quant = True
            folded.train()
            order = torch.randperm(len(train_y), generator=generator)
            total = 0.0
            for step in range(steps):
                index = order[step * settings.batch_size:(step + 1) * settings.batch_size]
                batch = _augment(train_x[index], generator)
                batch = batch + sigma * torch.randn(batch.shape, generator=generator)
                loss = F.cross_entropy(folded(batch), train_y[index])
                if not torch.isfinite(loss):
                    raise InputError(f"QAT diverged at epoch {epoch + 1}, batch {step + 1}; lower export.qat.lr (now {settings.lr})")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                total += float(loss.detach()) * len(index)
            losses.append(total / len(train_y))
        folded.calibrate(calibration_noisy)
        folded.fake_quant = True
        return QatResult(folded.eval(), losses)
    finally:
        torch.set_num_threads(previous_threads)


@torch.no_grad()
def fake_quant_logits(model: FoldedEdgeCNN, x: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """Logits of the fake-quant model (float32 NCHW [0, 1] input) as a numpy array."""
    model.eval()
    parts = [model(torch.from_numpy(np.ascontiguousarray(x[i:i + batch_size]))).numpy() for i in range(0, len(x), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def describe(settings: QatSettings, result: QatResult) -> dict[str, Any]:
    """The QAT record for the model card and metrics: settings and per-epoch loss."""
    return {"epochs": settings.epochs, "lr": settings.lr, "batch_size": settings.batch_size, "seed": settings.seed,
            "train_loss": [round(v, 6) for v in result.losses]}
