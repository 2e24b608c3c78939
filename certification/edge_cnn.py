"""A small edge CNN for lesion images: normalisation inside, depthwise-separable blocks.

The module takes float32 NCHW images in [0, 1] and returns logits. Its first layer subtracts the per-channel
mean and divides by the standard deviation (registered buffers, so they are saved with the weights and
exported into the ONNX graph); noise for training and certification is therefore added in [0, 1]-pixel
units, before normalisation.

Architecture ``edge-dscnn-v1`` (``width`` = w):
stem conv3x3/2 (3->w) -> DS(w->2w, /2) -> DS(2w->4w, /1) -> DS(4w->8w, /2) -> DS(8w->8w, /1) -> global
average pool -> linear(8w->K). Resolution drops to 1/4 after two layers, which keeps ONNX Runtime
inference fast (certification runs ~10^6 forward passes). A DS block is depthwise conv3x3 (stride s) + BN + ReLU, then pointwise
conv1x1 + BN + ReLU. With w=16 and 32x32 inputs the network has about 31k parameters and 0.72 M
multiply-accumulates per image.
"""
from __future__ import annotations

import io
import os
from typing import Any, Sequence

import torch
from torch import nn

from certification.errors import InputError
from certification.fileio import write_bytes_atomic

ARCHITECTURE = "edge-dscnn-v1"


class Normalize(nn.Module):
    """(x - mean) / std per channel; mean and std are buffers in [0, 1]-pixel units."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _conv_bn_relu(cin: int, cout: int, kernel: int, stride: int, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class DepthwiseSeparable(nn.Sequential):
    """Depthwise conv3x3 (stride) + BN + ReLU, then pointwise conv1x1 + BN + ReLU."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__(_conv_bn_relu(cin, cin, 3, stride, groups=cin), _conv_bn_relu(cin, cout, 1, 1))


class EdgeCNN(nn.Module):
    """The ``edge-dscnn-v1`` classifier: [0, 1] NCHW images in, logits out."""

    def __init__(self, num_classes: int, width: int, mean: Sequence[float], std: Sequence[float], in_channels: int = 3) -> None:
        super().__init__()
        w = width
        self.normalize = Normalize(mean, std)
        self.features = nn.Sequential(
            _conv_bn_relu(in_channels, w, 3, 2),
            DepthwiseSeparable(w, 2 * w, 2),
            DepthwiseSeparable(2 * w, 4 * w, 1),
            DepthwiseSeparable(4 * w, 8 * w, 2),
            DepthwiseSeparable(8 * w, 8 * w, 1),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(8 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(self.normalize(x))
        return self.classifier(torch.flatten(self.pool(x), 1))


def build_model(config: dict[str, Any]) -> EdgeCNN:
    """Build an untrained model from a config dict (keys: num_classes, width, mean, std, in_channels)."""
    if config.get("architecture", ARCHITECTURE) != ARCHITECTURE:
        raise InputError(f"unknown architecture {config.get('architecture')!r}; this library builds {ARCHITECTURE}")
    width = config["width"]
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise InputError(f"model width must be a positive integer, got {width!r}")
    return EdgeCNN(
        num_classes=int(config["num_classes"]),
        width=width,
        mean=config["mean"],
        std=config["std"],
        in_channels=int(config.get("in_channels", 3)),
    )


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (buffers such as BN statistics and mean/std excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_flops(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one forward pass for one example of ``input_shape`` (C, H, W).

    Counts conv layers (``out_elements * in_channels / groups * kh * kw``) and linear layers
    (``in_features * out_features``); BN, ReLU, pooling and normalisation are not counted. The convention is
    MACs (one multiply plus one add = 1), as usual for edge-model "FLOPs" figures.
    """
    total = 0

    def conv_hook(module: nn.Conv2d, _inputs: Any, output: torch.Tensor) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        total += output[0].numel() * (module.in_channels // module.groups) * kh * kw

    def linear_hook(module: nn.Linear, _inputs: Any, _output: torch.Tensor) -> None:
        nonlocal total
        total += module.in_features * module.out_features

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *input_shape), dtype=torch.float32))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return int(total)


def save_checkpoint(path: str | os.PathLike[str], model: nn.Module, config: dict[str, Any]) -> None:
    """Save ``{"state_dict", "config"}`` atomically; the bytes depend only on the weights and config."""
    buffer = io.BytesIO()
    torch.save({"state_dict": model.state_dict(), "config": dict(config)}, buffer)
    write_bytes_atomic(path, buffer.getvalue())


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[EdgeCNN, dict[str, Any]]:
    """Load a checkpoint written by :func:`save_checkpoint`; returns (model in eval mode, config)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(f"{path}: model checkpoint not found; run the train stage first") from None
    except Exception as exc:  # torch raises several types for corrupt archives
        raise InputError(f"{path}: not a readable model checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict) or "state_dict" not in payload or "config" not in payload:
        raise InputError(f"{path}: checkpoint must hold 'state_dict' and 'config'; re-run the train stage")
    config = dict(payload["config"])
    model = build_model(config)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise InputError(f"{path}: weights do not match the config ({str(exc).splitlines()[0]})") from None
    return model.eval(), config
