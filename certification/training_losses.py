"""Training objectives for the base classifier of randomized smoothing, and their strictly checked hyper-parameters.

Methods (``train.method``):

* ``gaussian`` (Cohen et al. 2019): cross-entropy on one noisy copy per image.
* ``consistency`` (Jeong and Shin 2020): ``m`` noisy copies per image; per image the loss is the cross-entropy
  averaged over the copies, plus ``lambda`` times the mean over copies of KL(mean softmax || copy softmax), plus
  ``eta`` times the entropy of the mean softmax.
* ``macer`` (Zhai et al. 2020): ``k`` noisy copies per image; the cross-entropy of the smoothed soft classifier
  (log of the mean softmax) plus ``lambda * sigma / 2`` times a hinge ``max(0, gamma - margin)`` on the soft
  smoothed margin ``margin = Phi^-1(p1) - Phi^-1(p2)`` (``p`` the mean of ``softmax(beta * logits)``, ``p1`` the
  true class, ``p2`` the runner-up), applied only to images the soft smoothed classifier gets right.

Class weights ``w[c]`` (``train.class_weights``, by class name, default 1) weight each image's whole loss (its
cross-entropy and its radius-enlarging term) by the weight of its label; a batch's loss is the weighted mean
``sum_i w[y_i] l_i / sum_i w[y_i]`` (torch's ``CrossEntropyLoss(weight=...)`` convention).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F

from certification.errors import InputError

METHODS = ("gaussian", "consistency", "macer")
#: Clamp for probabilities inside logs and Phi^-1, so the losses stay finite.
EPS = 1e-6


def _number(section: str, key: str, value: Any, minimum: float, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < minimum or (strict and value == minimum):
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise InputError(f"train {section}.{key} must be a finite number {bound}, got {value!r}")
    return float(value)


def _integer(section: str, key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"train {section}.{key} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _keys(section: str, values: Any, allowed: Sequence[str]) -> Mapping[str, Any]:
    if not isinstance(values, Mapping):
        raise InputError(f"train {section} must be a mapping of {', '.join(allowed)}, got {values!r}")
    unknown = sorted(set(values) - set(allowed))
    missing = [key for key in allowed if key not in values]
    if unknown:
        raise InputError(f"unknown key 'train.{section}.{unknown[0]}'; allowed keys: {', '.join(allowed)}")
    if missing:
        raise InputError(f"missing key 'train.{section}.{missing[0]}'")
    return values


@dataclass(frozen=True)
class ConsistencyParams:
    """Consistency regularisation: ``m`` noisy copies, KL weight ``lam`` (params key ``lambda``), entropy weight ``eta``."""

    m: int = 2
    lam: float = 5.0
    eta: float = 0.5

    @classmethod
    def from_mapping(cls, values: Any) -> "ConsistencyParams":
        values = _keys("consistency", values, ("m", "lambda", "eta"))
        return cls(m=_integer("consistency", "m", values["m"], 1),
                   lam=_number("consistency", "lambda", values["lambda"], 0.0),
                   eta=_number("consistency", "eta", values["eta"], 0.0))

    def validate(self) -> None:
        ConsistencyParams.from_mapping(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        return {"m": self.m, "lambda": self.lam, "eta": self.eta}

    @property
    def copies(self) -> int:
        return self.m


@dataclass(frozen=True)
class MacerParams:
    """MACER: ``k`` noisy copies, hinge weight ``lam`` (key ``lambda``), hinge threshold ``gamma``, inverse
    temperature ``beta`` of the soft smoothed classifier."""

    k: int = 2
    lam: float = 12.0
    gamma: float = 8.0
    beta: float = 16.0

    @classmethod
    def from_mapping(cls, values: Any) -> "MacerParams":
        values = _keys("macer", values, ("k", "lambda", "gamma", "beta"))
        return cls(k=_integer("macer", "k", values["k"], 1),
                   lam=_number("macer", "lambda", values["lambda"], 0.0),
                   gamma=_number("macer", "gamma", values["gamma"], 0.0, strict=True),
                   beta=_number("macer", "beta", values["beta"], 0.0, strict=True))

    def validate(self) -> None:
        MacerParams.from_mapping(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        return {"k": self.k, "lambda": self.lam, "gamma": self.gamma, "beta": self.beta}

    @property
    def copies(self) -> int:
        return self.k


def check_method(method: Any) -> str:
    if method not in METHODS:
        raise InputError(f"unknown train.method {method!r}; choose one of {', '.join(METHODS)}")
    return str(method)


def check_class_weights(weights: Any) -> dict[str, float]:
    """Class weights by name: a mapping of names to finite numbers >= 0 (names are checked against the data by
    :func:`class_weight_vector`)."""
    if not isinstance(weights, Mapping):
        raise InputError(f"train class_weights must be a mapping of class name to weight, got {weights!r}")
    checked = {}
    for name, value in weights.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise InputError(f"train class_weights.{name} must be a finite number >= 0, got {value!r}")
        checked[str(name)] = float(value)
    return checked


def class_weight_vector(weights: Mapping[str, float], class_names: Sequence[str] | None, num_classes: int) -> torch.Tensor | None:
    """Per-class weights in index order (missing classes weigh 1), or None when every weight is 1 (the unweighted
    loss). InputError for a name that is not a class of the data, or when every class weighs 0."""
    weights = check_class_weights(weights)
    if not weights:
        return None
    names = list(class_names or [])
    if len(names) != num_classes:
        raise InputError("train class_weights need the class names of the data; re-run the data stage")
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise InputError(f"train class_weights names unknown class {unknown[0]!r}; classes of the data: {', '.join(names)}")
    vector = torch.tensor([weights.get(name, 1.0) for name in names], dtype=torch.float32)
    if float(vector.sum()) == 0.0:
        raise InputError("train class_weights are all 0; give at least one class a positive weight")
    return None if bool((vector == 1.0).all()) else vector


def weighted_mean(values: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor | None) -> torch.Tensor:
    """``sum_i w[y_i] v_i / sum_i w[y_i]`` (the plain mean without weights; 0 when a batch weighs 0)."""
    if class_weights is None:
        return values.mean()
    w = class_weights[labels]
    return (w * values).sum() / w.sum().clamp_min(torch.finfo(values.dtype).tiny)


def gaussian_loss(logits: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of one noisy copy per image; ``logits`` is (B, C)."""
    if class_weights is None:
        return F.cross_entropy(logits, labels)
    return weighted_mean(F.cross_entropy(logits, labels, reduction="none"), labels, class_weights)


def consistency_loss(logits: torch.Tensor, labels: torch.Tensor, lam: float, eta: float,
                     class_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Jeong and Shin's consistency objective; ``logits`` is (m, B, C), copy-major."""
    log_p = F.log_softmax(logits, dim=-1)                          # (m, B, C)
    m = logits.shape[0]
    ce = F.nll_loss(log_p.reshape(-1, log_p.shape[-1]), labels.repeat(m), reduction="none").view(m, -1).mean(0)
    mean_p = log_p.exp().mean(0)                                  # (B, C)
    log_mean = mean_p.clamp_min(EPS).log()
    kl = (mean_p.unsqueeze(0) * (log_mean.unsqueeze(0) - log_p)).sum(-1).mean(0)  # mean over copies of KL(mean || copy)
    entropy = -(mean_p * log_mean).sum(-1)
    return weighted_mean(ce + lam * kl + eta * entropy, labels, class_weights)


def soft_margin(logits: torch.Tensor, labels: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """MACER's soft smoothed margin ``Phi^-1(p1) - Phi^-1(p2)`` per image and whether the soft smoothed classifier
    (mean of ``softmax(beta * logits)`` over the copies) ranks the true class first; ``logits`` is (k, B, C)."""
    p = F.softmax(beta * logits, dim=-1).mean(0)
    top = p.topk(2, dim=-1)
    correct = top.indices[:, 0] == labels
    p1 = top.values[:, 0].clamp(EPS, 1 - EPS)
    p2 = top.values[:, 1].clamp(EPS, 1 - EPS)
    icdf = lambda q: math.sqrt(2.0) * torch.erfinv(2 * q - 1)  # noqa: E731 - Phi^-1
    return icdf(p1) - icdf(p2), correct


def macer_loss(logits: torch.Tensor, labels: torch.Tensor, sigma: float, lam: float, gamma: float, beta: float,
               class_weights: torch.Tensor | None = None) -> torch.Tensor:
    """MACER objective; ``logits`` is (k, B, C), copy-major. The hinge ``max(0, gamma - margin)`` counts only for
    images the soft smoothed classifier classifies correctly (the radius is 0 otherwise)."""
    mean_p = F.softmax(logits, dim=-1).mean(0)
    ce = F.nll_loss(mean_p.clamp_min(EPS).log(), labels, reduction="none")
    margin, correct = soft_margin(logits, labels, beta)
    hinge = torch.where(correct, (gamma - margin).clamp_min(0.0), torch.zeros_like(margin))
    return weighted_mean(ce + lam * (sigma / 2.0) * hinge, labels, class_weights)


def hyperparameters(method: str, consistency: ConsistencyParams, macer: MacerParams) -> dict[str, Any]:
    """The chosen method's hyper-parameters as params.yaml names them ({} for gaussian)."""
    return {"consistency": consistency.to_dict(), "macer": macer.to_dict()}.get(method, {})


__all__ = ["METHODS", "ConsistencyParams", "MacerParams", "check_method", "check_class_weights", "class_weight_vector",
           "weighted_mean", "gaussian_loss", "consistency_loss", "soft_margin", "macer_loss", "hyperparameters"]
