"""Noise-augmented training of the edge CNN (the base classifier of randomized smoothing).

``method`` picks the objective (:mod:`certification.training_losses`): ``gaussian`` (one noisy copy per image,
cross-entropy), ``consistency`` (m copies, consistency regularisation) or ``macer`` (k copies, hinge on the soft
smoothed margin). The noisy copies of one image see the same flip/rotation and independent noise.

Noise ``N(0, sigma^2 I)`` is added to the [0, 1] input images, before the model's internal normalisation and
without clipping, exactly as certification samples it; a fresh draw is made for every batch. Training is
deterministic on CPU for a fixed seed and thread count: shuffling, flips/rotations and noise come from one
seeded :class:`torch.Generator`, and ``torch.use_deterministic_algorithms`` is on while training runs.

The best epoch is kept: by noisy validation accuracy when ``sigma > 0`` (the smoothed classifier sees only
noisy inputs), by clean validation accuracy otherwise.
"""
from __future__ import annotations

import contextlib
import copy
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

import numpy as np
import torch
from torch import nn

from certification.edge_cnn import ARCHITECTURE, EdgeCNN, build_model, count_flops, count_parameters
from certification.errors import InputError
from certification.lighting import LightingCovariance, check_lighting
from certification.progress import progress
from certification.training_losses import (ConsistencyParams, MacerParams, check_class_weights, check_method,
                                           class_weight_vector, consistency_loss, gaussian_loss, hyperparameters,
                                           macer_loss)


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run. ``sigma`` is in [0, 1]-pixel units."""

    sigma: float = 0.25
    epochs: int = 12
    batch_size: int = 128
    lr: float = 0.01
    weight_decay: float = 5e-4
    width: int = 16
    seed: int = 1
    #: Portable CPU kernels: oneDNN off here, and the train stage starts torch with ATEN_CPU_CAPABILITY=default and
    #: MKL_CBWR=COMPATIBLE (:data:`certification.platform_info.PORTABLE_TORCH_ENVIRONMENT`), so the weights do not
    #: depend on the ISA level this CPU's code paths use (they still differ between CPU vendors: see
    #: :func:`train_model`).
    portable_kernels: bool = True
    #: Training objective: gaussian | consistency | macer (:mod:`certification.training_losses`).
    method: str = "gaussian"
    #: Weight of each class's loss (and radius term) by class name; classes not named weigh 1.
    class_weights: Mapping[str, float] = field(default_factory=dict)
    consistency: ConsistencyParams = field(default_factory=ConsistencyParams)
    macer: MacerParams = field(default_factory=MacerParams)
    #: Lighting noise (:mod:`certification.lighting`): every noisy copy also gets sum_k tau' z_k v_k, the same
    #: covariance certification smooths with; ``none`` draws exactly the isotropic noise (same generator calls).
    lighting_directions: str = "none"
    lighting_tau: float = 0.0

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "TrainConfig":
        """A config from params.yaml's ``train`` section (``consistency`` and ``macer`` as mappings, keys checked)."""
        values = dict(params)
        lighting = values.pop("lighting", None)
        if lighting is not None:
            if not isinstance(lighting, Mapping) or set(lighting) != {"directions", "tau"}:
                raise InputError(f"train.lighting must be null or a mapping {{directions: none | dc | dc+ramps, tau: T}}, got {lighting!r}")
            values["lighting_directions"], values["lighting_tau"] = lighting["directions"], lighting["tau"]
        if "consistency" in values:
            values["consistency"] = ConsistencyParams.from_mapping(values["consistency"])
        if "macer" in values:
            values["macer"] = MacerParams.from_mapping(values["macer"])
        if "class_weights" in values:
            values["class_weights"] = check_class_weights(values["class_weights"])
        config = cls(**values)
        config.validate()
        return config

    @property
    def copies(self) -> int:
        """Noisy copies per image in one step: 1 (gaussian), m (consistency) or k (macer)."""
        return {"consistency": self.consistency.m, "macer": self.macer.k}.get(self.method, 1)

    def hyperparameters(self) -> dict[str, Any]:
        """The chosen method's own hyper-parameters, named as in params.yaml ({} for gaussian)."""
        return hyperparameters(self.method, self.consistency, self.macer)

    def validate(self) -> None:
        check_lighting(self.lighting_directions, self.lighting_tau, self.sigma, where="train.lighting")
        check_method(self.method)
        check_class_weights(self.class_weights)
        self.consistency.validate()
        self.macer.validate()
        if self.method != "gaussian" and not (isinstance(self.sigma, (int, float)) and self.sigma > 0):
            raise InputError(f"train method {self.method} needs noise: set train.sigma > 0 (got {self.sigma!r})")
        if not (isinstance(self.sigma, (int, float)) and math.isfinite(self.sigma)) or self.sigma < 0:
            raise InputError(f"train sigma must be a finite number >= 0 ([0,1]-pixel units), got {self.sigma!r}")
        if self.sigma > 10:
            raise InputError(f"train sigma {self.sigma} is far beyond the [0, 1] pixel range (at most 10); give it in "
                             "[0,1]-pixel units")
        for name in ("epochs", "batch_size", "width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"train {name} must be a positive integer, got {value!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise InputError(f"train lr must be a finite number > 0, got {self.lr!r}")
        if not (isinstance(self.weight_decay, (int, float)) and math.isfinite(self.weight_decay)) or self.weight_decay < 0:
            raise InputError(f"train weight_decay must be >= 0, got {self.weight_decay!r}")
        if not isinstance(self.portable_kernels, bool):
            raise InputError(f"train portable_kernels must be true or false, got {self.portable_kernels!r}")


@dataclass(frozen=True)
class EpochRecord:
    """Metrics of one epoch: mean training loss and validation accuracy on clean and noisy inputs."""

    epoch: int
    train_loss: float
    val_accuracy_clean: float
    val_accuracy_noisy: float


@dataclass
class TrainResult:
    """A trained model (the best epoch's weights, eval mode), its config and the per-epoch history."""

    model: EdgeCNN
    config: dict[str, Any]
    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    parameters: int = 0
    flops: int = 0
    seconds: float = 0.0

    @property
    def best(self) -> EpochRecord:
        return self.history[self.best_epoch - 1]


def channel_statistics(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of uint8 NHWC images, in [0, 1] units."""
    pixels = images.reshape(-1, images.shape[-1]).astype(np.float64) / 255.0
    std = np.maximum(pixels.std(axis=0), 1e-3)
    return [round(float(v), 6) for v in pixels.mean(axis=0)], [round(float(v), 6) for v in std]


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> float32 NCHW in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).float().div_(255.0)


def _augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random flips and 90-degree rotations (lesions have no canonical orientation), one per batch."""
    k = int(torch.randint(0, 4, (1,), generator=generator))
    flip = bool(torch.randint(0, 2, (1,), generator=generator))
    batch = torch.rot90(batch, k, dims=(2, 3))
    return torch.flip(batch, dims=(3,)) if flip else batch


def lighting_basis(config: TrainConfig, chw: tuple[int, ...]) -> torch.Tensor | None:
    """tau' V (K, D) as float32 for the config's lighting noise on images of shape ``chw``; None when off."""
    if config.lighting_directions == "none":
        return None
    covariance = LightingCovariance.build(config.lighting_directions, config.lighting_tau, config.sigma, chw)
    return torch.tensor(covariance.basis * covariance.tau_norm, dtype=torch.float32)


def add_noise(batch: torch.Tensor, sigma: float, generator: torch.Generator, basis: torch.Tensor | None = None) -> torch.Tensor:
    """batch + N(0, sigma^2 I) and, with a lighting ``basis`` tau' V, + z tau' V, z ~ N(0, I_K) (drawn after the
    isotropic noise from the same generator, so the isotropic draws are those of a run without lighting)."""
    batch = batch + sigma * torch.randn(batch.shape, generator=generator)
    if basis is not None:
        z = torch.randn((batch.shape[0], basis.shape[0]), generator=generator)
        batch = batch + (z @ basis).view(batch.shape)
    return batch


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, sigma: float = 0.0, seed: int = 0, batch_size: int = 1000,
             basis: torch.Tensor | None = None) -> float:
    """Top-1 accuracy of ``model`` on ``x`` (+ seeded Gaussian noise of std ``sigma`` when > 0, with the lighting
    part of ``basis`` when given)."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    correct = 0
    for start in range(0, x.shape[0], batch_size):
        batch = x[start:start + batch_size]
        if sigma > 0:
            batch = add_noise(batch, sigma, generator, basis)
        correct += int((model(batch).argmax(1) == y[start:start + batch_size]).sum())
    return correct / max(1, x.shape[0])


@contextlib.contextmanager
def _onednn(enabled: bool) -> Iterator[None]:
    """``torch.backends.mkldnn.flags(enabled=...)`` without torch's Intel-GPU TF32 notice, which it prints whenever
    the flags are set."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")
        with torch.backends.mkldnn.flags(enabled=enabled):
            yield


def train_model(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    val_images: np.ndarray,
    val_labels: np.ndarray,
    num_classes: int,
    config: TrainConfig,
    threads: int | None = None,
    extra_config: dict[str, Any] | None = None,
) -> TrainResult:
    """Train the edge CNN with ``config.method``; return the best epoch's model and the history.

    Images are uint8 NHWC; labels int64 in [0, num_classes). ``extra_config`` is stored in the model config
    (e.g. class names; ``config.class_weights`` are resolved against its ``class_names``). Deterministic for a fixed ``config.seed`` and ``threads``; with ``portable_kernels`` and
    :data:`certification.platform_info.PORTABLE_TORCH_ENVIRONMENT` set before torch starts, also across the ISA levels
    of one CPU (measured: identical weights under oneDNN/MKL instruction limits and numpy without AVX-512). Not across
    CPU vendors: an AMD EPYC and an Intel Xeon gave different weights from the first epoch (MKL's matrix products
    take another path on AMD CPUs whatever MKL_CBWR says), nor across architectures or torch versions.
    """
    config.validate()
    if len(train_labels) == 0 or len(val_labels) == 0:
        raise InputError("training needs non-empty train and val splits")
    start_time = time.perf_counter()
    previous_threads = torch.get_num_threads()
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    if threads:
        torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        with _onednn(enabled=not config.portable_kernels):
            result = _train(train_images, train_labels, val_images, val_labels, num_classes, config, extra_config or {})
    finally:
        torch.use_deterministic_algorithms(previous_deterministic)
        torch.set_num_threads(previous_threads)
    result.seconds = time.perf_counter() - start_time
    return result


def _multi_copy_loss(model: nn.Module, batch: torch.Tensor, labels: torch.Tensor, config: TrainConfig,
                     weights: torch.Tensor | None, generator: torch.Generator, basis: torch.Tensor | None = None) -> torch.Tensor:
    """The consistency or MACER loss of one batch: ``config.copies`` noisy copies of each image in one forward pass."""
    copies = config.copies
    repeated = batch.unsqueeze(0).expand(copies, *batch.shape).reshape(copies * batch.shape[0], *batch.shape[1:])
    noisy = add_noise(repeated, config.sigma, generator, basis)
    logits = model(noisy).view(copies, batch.shape[0], -1)
    if config.method == "consistency":
        return consistency_loss(logits, labels, config.consistency.lam, config.consistency.eta, weights)
    return macer_loss(logits, labels, config.sigma, config.macer.lam, config.macer.gamma, config.macer.beta, weights)


def _train(train_images: np.ndarray, train_labels: np.ndarray, val_images: np.ndarray, val_labels: np.ndarray,
           num_classes: int, config: TrainConfig, extra: dict[str, Any]) -> TrainResult:
    generator = torch.Generator().manual_seed(config.seed)
    mean, std = channel_statistics(train_images)
    model_config = {
        "architecture": ARCHITECTURE,
        "num_classes": int(num_classes),
        "width": config.width,
        "in_channels": int(train_images.shape[-1]),
        "image_size": int(train_images.shape[1]),
        "mean": mean,
        "std": std,
        "train_sigma": float(config.sigma),
        **({} if config.lighting_directions == "none" else
           {"train_lighting": {"directions": config.lighting_directions, "tau": float(config.lighting_tau)}}),
        **extra,
    }
    with torch.random.fork_rng(devices=[]):  # seeded initialisation; the caller's global RNG is left untouched
        torch.manual_seed(config.seed)
        model = build_model(model_config)
    x_train, y_train = to_tensor(train_images), torch.from_numpy(train_labels.astype(np.int64))
    x_val, y_val = to_tensor(val_images), torch.from_numpy(val_labels.astype(np.int64))
    basis = lighting_basis(config, tuple(x_train.shape[1:])) if config.sigma > 0 else None

    steps_per_epoch = math.ceil(len(y_train) / config.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch, pct_start=0.2
    )
    loss_fn = nn.CrossEntropyLoss()
    weights = class_weight_vector(config.class_weights, extra.get("class_names"), num_classes)
    history: list[EpochRecord] = []
    best_score, best_state, best_epoch = -1.0, None, 0
    noisy_seed = config.seed + 7919  # the same validation noise every epoch, so epochs are comparable
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = torch.randperm(len(y_train), generator=generator)
        total_loss, seen = 0.0, 0
        bar = progress(range(steps_per_epoch), desc=f"train epoch {epoch}/{config.epochs}", unit="batch", leave=False)
        for step in bar:
            index = order[step * config.batch_size:(step + 1) * config.batch_size]
            batch = _augment(x_train[index], generator)
            if config.method == "gaussian":
                if config.sigma > 0:
                    batch = add_noise(batch, config.sigma, generator, basis)
                logits = model(batch)
                # the unweighted loss is torch's own CrossEntropyLoss, so the baseline's bits do not change
                loss = loss_fn(logits, y_train[index]) if weights is None else gaussian_loss(logits, y_train[index], weights)
            else:
                loss = _multi_copy_loss(model, batch, y_train[index], config, weights, generator, basis)
            if not torch.isfinite(loss):
                raise InputError(f"training diverged at epoch {epoch}, batch {step + 1}: the loss is {float(loss.detach())}; "
                                 f"lower train.lr (now {config.lr}) or train.sigma (now {config.sigma})")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total_loss += float(loss.detach()) * len(index)
            seen += len(index)
            bar.set_postfix(loss=f"{total_loss / seen:.3f}")
        record = EpochRecord(
            epoch=epoch,
            train_loss=total_loss / seen,
            val_accuracy_clean=accuracy(model, x_val, y_val),
            val_accuracy_noisy=accuracy(model, x_val, y_val, config.sigma, noisy_seed, basis=basis) if config.sigma > 0 else accuracy(model, x_val, y_val),
        )
        history.append(record)
        score = record.val_accuracy_noisy if config.sigma > 0 else record.val_accuracy_clean
        if score > best_score:
            best_score, best_state, best_epoch = score, copy.deepcopy(model.state_dict()), epoch
    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()
    input_shape = (model_config["in_channels"], model_config["image_size"], model_config["image_size"])
    return TrainResult(
        model=model,
        config=model_config,
        history=history,
        best_epoch=best_epoch,
        parameters=count_parameters(model),
        flops=count_flops(model, input_shape),
    )
