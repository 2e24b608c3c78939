"""Dataset-level summary of certification records: accuracy, abstention, certified-accuracy curve, ACR.

Certified accuracy at radius r counts the examples whose certificate is correct with radius >= r (abstentions
count as failures; the denominator is every certified example). Its lower confidence bound is
:func:`certification.dataset_bounds.certified_rate_bound` (method ``clopper-pearson-minus-alpha``): it covers
both test-set sampling and the per-example failure probability alpha of CERTIFY, and is valid because every
example is certified with its own independent noise stream. Clean accuracy of the smoothed classifier is the
same claim at r = 0 (so it carries the same bound); the abstention rate is a plain rate
(:func:`~certification.dataset_bounds.proportion_bound`).

The average certified radius (ACR) and the median radius count the radius as 0 for wrong or abstained examples
(Cohen et al.'s convention). ACR depends on n and alpha (radii are capped at sigma * Phi^-1(alpha^(1/n))); read
it together with the curve.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from certification.dataset_bounds import CERTIFIED_BOUND_METHOD, certified_rate_bound, proportion_bound
from certification.errors import InputError

CURVE_COLUMNS = ("radius", "certified_accuracy", "lower_bound")


def _arrays(records: Sequence[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    correct = np.array([bool(r["correct"]) for r in records], dtype=bool)
    radius = np.array([float(r["radius"]) for r in records], dtype=np.float64)
    abstained = np.array([int(r["prediction"]) == -1 for r in records], dtype=bool)
    labels = np.array([int(r["label"]) for r in records], dtype=np.int64)
    return correct, radius, abstained, labels


def certified_curve(correct: np.ndarray, radius: np.ndarray, radii: Sequence[float], alpha: float, confidence: float) -> list[dict[str, Any]]:
    """For each r: certified accuracy (correct and radius >= r), its lower bound and the count."""
    rows = []
    for r in radii:
        count = int(np.count_nonzero(correct & (radius >= float(r))))
        bound = certified_rate_bound(count, int(correct.size), alpha, confidence)
        rows.append({"radius": float(r), "certified_accuracy": bound.estimate, "lower_bound": bound.lower, "count": count})
    return rows


def _group_summary(correct: np.ndarray, radius: np.ndarray, abstained: np.ndarray, radii: Sequence[float], alpha: float, confidence: float) -> dict[str, Any]:
    trials = int(correct.size)
    if trials == 0:
        return {"n_examples": 0, "clean_accuracy": None, "abstention_rate": None, "average_certified_radius": None, "median_radius": None, "curve": []}
    credited = np.where(correct, radius, 0.0)
    return {
        "n_examples": trials,
        "clean_accuracy": certified_rate_bound(int(correct.sum()), trials, alpha, confidence).to_dict(),
        "abstention_rate": proportion_bound(int(abstained.sum()), trials, confidence).to_dict(),
        "average_certified_radius": float(credited.mean()),
        "median_radius": float(np.median(credited)),
        "curve": certified_curve(correct, radius, radii, alpha, confidence),
    }


def summarize(
    records: Sequence[dict[str, Any]],
    radii: Sequence[float],
    alpha: float,
    confidence: float,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The statistics part of ``metrics/certify.json`` (callers add model, data, params and throughput)."""
    if not records:
        raise InputError("no certification records to summarise")
    if not radii or any(float(r) < 0 for r in radii):
        raise InputError(f"radii must be a non-empty list of non-negative numbers, got {list(radii)}")
    if not 0.0 < confidence < 1.0:
        raise InputError(f"confidence must lie in (0, 1), got {confidence}")
    radii = sorted(float(r) for r in radii)
    correct, radius, abstained, labels = _arrays(records)
    overall = _group_summary(correct, radius, abstained, radii, alpha, confidence)
    num_classes = len(class_names) if class_names else int(labels.max()) + 1
    names = list(class_names) if class_names else [str(k) for k in range(num_classes)]
    if labels.max() >= len(names):
        raise InputError(f"a record has label {int(labels.max())} but only {len(names)} class names are known")
    per_class = {}
    for k, name in enumerate(names):
        mask = labels == k
        per_class[name] = _group_summary(correct[mask], radius[mask], abstained[mask], radii, alpha, confidence)
    return {
        "confidence": float(confidence),
        "bound_method": CERTIFIED_BOUND_METHOD,
        "n_examples": overall["n_examples"],
        "clean_accuracy": overall["clean_accuracy"],
        "abstention_rate": overall["abstention_rate"],
        "average_certified_radius": overall["average_certified_radius"],
        "median_radius": overall["median_radius"],
        "curve": overall["curve"],
        "per_class": per_class,
    }


def curve_csv(curve: Sequence[dict[str, Any]]) -> str:
    """plots/certify_curve.csv: radius, certified_accuracy, lower_bound."""
    lines = [",".join(CURVE_COLUMNS)]
    for row in curve:
        lines.append(",".join(repr(float(row[c])) for c in CURVE_COLUMNS))
    return "\n".join(lines) + "\n"


def certify_metrics(
    records: Sequence[dict[str, Any]],
    *,
    model: dict[str, str],
    data: dict[str, Any],
    params: dict[str, Any],
    radii: Sequence[float],
    confidence: float,
    class_names: Sequence[str] | None,
    throughput: dict[str, float] | None,
) -> dict[str, Any]:
    """The whole ``metrics/certify.json`` document: ``model`` {path, sha256}, ``data`` {path, sha256,
    n_examples_total}, ``params`` {sigma, n0, n, alpha, seed, batch_size, max_examples}, then :func:`summarize`."""
    document: dict[str, Any] = {"model": dict(model), "data": dict(data), "params": dict(params)}
    document.update(summarize(records, radii, float(params["alpha"]), confidence, class_names))
    document["throughput"] = dict(throughput) if throughput is not None else None
    return document
