"""Dataset-level summary of certification records, and the one producer and reader of ``metrics/certify.json``.

Certified accuracy at radius r counts the examples whose certificate is correct with radius >= r (abstentions
count as failures; the denominator is every certified example). Its lower confidence bound is
:func:`certification.dataset_bounds.certified_rate_bound` (method ``clopper-pearson-minus-alpha``): it covers
both test-set sampling and the per-example failure probability alpha of CERTIFY, and is valid because every
example is certified with its own independent noise stream. Clean accuracy of the smoothed classifier is the
same claim at r = 0 (so it carries the same bound); the abstention rate is a plain rate
(:func:`~certification.dataset_bounds.proportion_bound`).

:func:`group_summary` is the one per-group summary: the metrics' overall and per-class figures, the evaluate
stage's subgroups and the dossier's group tables all come from it (the dossier reads them from the files).

The average certified radius (ACR) and the median radius count the radius as 0 for wrong or abstained examples
(Cohen et al.'s convention). ACR depends on n and alpha (radii are capped at sigma * Phi^-1(alpha^(1/n))); read
it together with the curve; ``radius_limit`` ({p_lower_max, radius}, :func:`certification.radius_units.radius_limit`)
records that cap, so every reader says where a curve ends by construction. ACR and the median are descriptive
(no confidence bound).
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np

from certification.dataset_bounds import CERTIFIED_BOUND_METHOD, certified_rate_bound, proportion_bound
from certification.errors import InputError, ParameterError, StaleArtifactError
from certification.fileio import read_json, require_key, write_json_atomic
from certification.radius_units import radius_limit
from certification.certificate_arrays import CertificateArrays, as_arrays
from certification.records import CertifyRecord

CURVE_COLUMNS = ("radius", "certified_accuracy", "lower_bound")
_FIX = "not a certification summary, rerun the certify stage"
#: Keys every metrics/certify.json must hold (dotted paths), checked by :func:`read_certify_metrics`.
REQUIRED_KEYS = (
    "model.sha256", "data.sha256", "params.sigma", "params.n0", "params.n", "params.alpha", "params.seed",
    "params.max_examples", "n_examples", "confidence", "bound_method", "clean_accuracy", "abstention_rate", "curve",
    "average_certified_radius", "median_radius", "per_class", "class_names", "radii", "runtime", "noise.spec", "noise.kernels.numpy",
    "noise.kernels.log", "noise.kernels.cos", "noise.kernels.sin", "noise.tail_bound_per_certificate", "throughput",
    "radius_limit.radius", "radius_limit.p_lower_max",
)


def check_summary_options(radii: Sequence[float], confidence: float) -> list[float]:
    """Sorted radii; ParameterError unless they are non-negative numbers and confidence lies in (0, 1)."""
    if not radii or any(isinstance(r, bool) or not isinstance(r, (int, float)) or not r >= 0 for r in radii):
        raise ParameterError(f"radii must be a non-empty list of non-negative numbers, got {list(radii)}")
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0.0 < confidence < 1.0:
        raise ParameterError(f"confidence must lie in (0, 1), got {confidence}")
    return sorted(float(r) for r in radii)


def radius_point(rows: CertificateArrays, radius: float, confidence: float) -> dict[str, Any]:
    """Certified accuracy of ``rows`` at ``radius``: estimate, lower bound and count (None when empty)."""
    count = int(np.count_nonzero(rows.certified_correct_at(radius)))
    if len(rows) == 0:
        return {"radius": float(radius), "certified_accuracy": None, "lower_bound": None, "count": 0}
    bound = certified_rate_bound(count, len(rows), rows.alpha, confidence)
    return {"radius": float(radius), "certified_accuracy": bound.estimate, "lower_bound": bound.lower, "count": count}


def group_summary(rows: CertificateArrays, radii: Sequence[float], confidence: float) -> dict[str, Any]:
    """Size, clean accuracy (certified at r = 0, with its bound), abstention rate (with bounds), ACR, median
    radius and the certified-accuracy curve of one group of examples; rates None when the group is empty."""
    trials = len(rows)
    if trials == 0:
        return {"n_examples": 0, "clean_accuracy": None, "abstention_rate": None, "average_certified_radius": None,
                "median_radius": None, "curve": []}
    credited = np.where(rows.correct, rows.radius, 0.0)
    return {
        "n_examples": trials,
        "clean_accuracy": certified_rate_bound(int(rows.correct.sum()), trials, rows.alpha, confidence).to_dict(),
        "abstention_rate": proportion_bound(int(rows.abstained.sum()), trials, confidence).to_dict(),
        "average_certified_radius": float(credited.mean()),
        "median_radius": float(np.median(credited)),
        "curve": [radius_point(rows, r, confidence) for r in radii],
    }


def summarize(
    records: Sequence[CertifyRecord],
    radii: Sequence[float],
    confidence: float,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The statistics part of ``metrics/certify.json``: the overall :func:`group_summary` and one per class
    (``class_names`` lists the classes in index order; ``per_class`` is keyed by name)."""
    if not records:
        raise InputError("no certification records to summarise")
    radii = check_summary_options(radii, confidence)
    rows = as_arrays(records)
    names = list(class_names) if class_names else [str(k) for k in range(int(rows.label.max()) + 1)]
    if rows.label.max() >= len(names):
        raise InputError(f"a record has label {int(rows.label.max())} but only {len(names)} class names are known")
    overall = group_summary(rows, radii, confidence)
    return {
        "confidence": float(confidence),
        "bound_method": CERTIFIED_BOUND_METHOD,
        "radii": radii,
        "class_names": names,
        **{key: overall[key] for key in ("n_examples", "clean_accuracy", "abstention_rate", "average_certified_radius",
                                         "median_radius", "curve")},
        "per_class": {name: group_summary(rows.subset(np.flatnonzero(rows.label == k)), radii, confidence)
                      for k, name in enumerate(names)},
    }


def throughput(records: Sequence[CertifyRecord]) -> dict[str, float]:
    """Examples and samples (n0 + n) per second of certification, from the records' own timings."""
    seconds = float(sum(r.seconds for r in records))
    samples = sum(r.n0 + r.n for r in records)
    return {
        "examples_per_second": len(records) / seconds if seconds > 0 else 0.0,
        "samples_per_second": samples / seconds if seconds > 0 else 0.0,
    }


def certify_metrics(
    records: Sequence[CertifyRecord],
    *,
    model: Mapping[str, Any],
    data: Mapping[str, Any],
    max_examples: int,
    radii: Sequence[float],
    confidence: float,
    class_names: Sequence[str] | None,
    runtime: Mapping[str, Any],
    noise: Mapping[str, Any],
    batch_size: int | None = None,
) -> dict[str, Any]:
    """The whole ``metrics/certify.json`` document, for the pipeline, ``smoothcert certify --summary`` and
    ``smoothcert merge --summary`` alike: ``model`` {path, sha256}, ``data`` {path, sha256, n_examples_total},
    ``params`` {sigma, n0, n, alpha, seed, max_examples, batch_size} (read from the records), ``runtime`` (the
    onnxruntime session and noise threads), ``noise`` (spec, kernels, tail bound), ``throughput``,
    ``radius_limit`` (the largest radius n and alpha can certify), then :func:`summarize`."""
    if not records:
        raise InputError("no certification records to summarise")
    for key, named in (("model_sha256", model.get("sha256")), ("data_sha256", data.get("sha256"))):
        other = next((r for r in records if getattr(r, key) != named), None)
        if other is not None:
            raise StaleArtifactError(f"example {other.index} names {key} {getattr(other, key)[:12]}..., not the "
                                     f"{key.split('_')[0]} {str(named)[:12]}... being summarised; merge only rows of one run")
    first = records[0]
    params = {"sigma": first.sigma, "n0": first.n0, "n": first.n, "alpha": first.alpha, "seed": first.seed,
              "max_examples": int(max_examples), "batch_size": batch_size}
    document: dict[str, Any] = {"model": dict(model), "data": dict(data), "params": params,
                                "runtime": dict(runtime), "noise": dict(noise), "throughput": throughput(records),
                                "radius_limit": radius_limit(first.sigma, first.n, first.alpha)}
    document.update(summarize(records, radii, confidence, class_names))
    return document


def write_certify_metrics(path: str | os.PathLike[str], document: Mapping[str, Any]) -> None:
    """Write a document made by :func:`certify_metrics` (atomically, key-sorted)."""
    for key in REQUIRED_KEYS:
        require_key(dict(document), key, str(path), _FIX)
    write_json_atomic(path, document)


def read_certify_metrics(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read ``metrics/certify.json`` (or a shard's summary), checking every key consumers rely on."""
    document = read_json(path)
    for key in REQUIRED_KEYS:
        require_key(document, key, str(path), _FIX)
    return document


def curve_csv(curve: Sequence[Mapping[str, Any]]) -> str:
    """plots/certify_curve.csv: radius, certified_accuracy, lower_bound."""
    lines = [",".join(CURVE_COLUMNS)]
    for row in curve:
        lines.append(",".join(repr(float(row[c])) for c in CURVE_COLUMNS))
    return "\n".join(lines) + "\n"
