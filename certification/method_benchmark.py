"""The training-method benchmark record (benchmarks/training_methods.py writes it, the dossier reads it) and the
issue's pre-specified rule that picks the default training method from it: one writer, one reader, one rule.

A record holds, per (sigma, method), one model trained from params.yaml's ``train`` section with that method and
sigma, exported to ONNX (named by its SHA-256) and certified by CERTIFY on the same seeded test subset: certified
accuracy at the gate radius r* and at 0.5 with their lower bounds (Clopper-Pearson minus alpha, at the record's
confidence), the average certified radius (ACR, [0,1]-pixel L2 units, descriptive), the smoothed classifier's clean
accuracy with its lower bound, melanoma and BCC certified recall at r* with lower bounds, and training seconds.

The rule (:func:`apply_target`), stated once here: at the shipped sigma the best candidate (highest ACR among the
methods other than gaussian) replaces gaussian only if, against the gaussian row of the same record and sigma, its
ACR is at least :data:`MIN_ACR_RATIO` times gaussian's, its clean accuracy at most :data:`MAX_CLEAN_DROP_POINTS`
percentage points lower, its melanoma and BCC certified recall at r* not lower, and its training time at most
:data:`MAX_TRAIN_TIME_RATIO` times gaussian's; otherwise the rule picks gaussian. The comparisons use the point
estimates, as the target states them (ACR has no confidence bound).
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

from certification.errors import InputError
from certification.fileio import read_json, write_json_atomic

SCHEMA = "smoothcert-training-methods/1"
#: The training objectives (certification.training_losses.METHODS; repeated so that readers need no torch).
METHODS = ("gaussian", "consistency", "macer")
BASELINE = "gaussian"
#: Classes whose certified recall at r* the target protects.
RECALL_CLASSES = ("melanoma", "basal_cell_carcinoma")
#: The target of the issue: ACR ratio, clean-accuracy drop (percentage points), recall change, training-time ratio.
MIN_ACR_RATIO = 1.2
MAX_CLEAN_DROP_POINTS = 2.0
MIN_RECALL_CHANGE = 0.0
MAX_TRAIN_TIME_RATIO = 3.0
#: Tolerance of the comparisons (floating-point noise of ratios of counts, e.g. 0.90 - 0.92 in points).
TOLERANCE = 1e-9
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
FIX = "rerun benchmarks/training_methods.py"


@dataclass(frozen=True)
class RadiusPoint:
    """Certified accuracy (or recall) at ``radius``: estimate, lower bound, count; None where the group is empty."""

    radius: float
    certified_accuracy: float | None
    lower_bound: float | None
    count: int


@dataclass(frozen=True)
class CleanAccuracy:
    """The smoothed classifier's clean accuracy: estimate, one-sided lower bound, successes of trials."""

    estimate: float
    lower: float
    successes: int
    trials: int


@dataclass(frozen=True)
class MethodRow:
    """One trained, exported and certified model. Seconds are wall-clock; ``model_sha256`` names its ONNX file."""

    sigma: float
    method: str
    hyperparameters: dict[str, Any]
    epochs: int
    best_epoch: int
    train_seconds: float
    certify_seconds: float
    n_examples: int
    model_sha256: str
    certified_at_r_star: RadiusPoint
    certified_at_0_5: RadiusPoint
    acr: float
    clean_accuracy: CleanAccuracy
    recall_at_r_star: dict[str, RadiusPoint]


@dataclass(frozen=True)
class Settings:
    """How every row was made: epochs, CERTIFY's n0, n, alpha and seed, the bounds' confidence, the seeded test
    subset size, the training seed, torch/onnxruntime threads, and the gate radius r* (pixel L2)."""

    epochs: int
    n0: int
    n: int
    alpha: float
    confidence: float
    examples: int
    train_seed: int
    certify_seed: int
    threads: int
    gate_radius: float


@dataclass(frozen=True)
class MethodRecord:
    """The benchmark record: command, settings, data split SHA-256s (data/datasheet.json), params.yaml's
    hyper-parameters of every method, and the rows; ``partial`` while the benchmark is still running."""

    command: str
    date_utc: str
    settings: Settings
    data_sha256: dict[str, str]
    params_hyperparameters: dict[str, dict[str, Any]]
    rows: tuple[MethodRow, ...]
    partial: bool = False
    schema: str = SCHEMA

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["rows"] = [asdict(row) for row in self.rows]
        return out

    def row(self, sigma: float, method: str) -> MethodRow | None:
        return next((r for r in self.rows if r.method == method and math.isclose(r.sigma, sigma, abs_tol=1e-12)), None)

    def sigmas(self) -> list[float]:
        return list(dict.fromkeys(r.sigma for r in self.rows))


def write_method_record(path: str | os.PathLike[str], record: MethodRecord) -> dict[str, Any]:
    """Check ``record`` as the reader would, write it atomically and return its dict."""
    document = record.to_dict()
    parse_method_record(document, str(path))
    write_json_atomic(path, document)
    return document


def read_method_record(path: str | os.PathLike[str], allow_partial: bool = False) -> MethodRecord:
    """The record at ``path``, checked; a malformed (or, unless ``allow_partial``, unfinished) one is an InputError."""
    record = parse_method_record(read_json(path), str(path))
    if record.partial and not allow_partial:
        raise InputError(f"{path}: a partial record (the benchmark did not finish); {FIX}")
    return record


def _get(obj: Any, key: str, kind: type | tuple[type, ...], where: str, optional: bool = False) -> Any:
    if not isinstance(obj, Mapping) or key not in obj:
        raise InputError(f"{where}: missing key '{key}'; {FIX}")
    value = obj[key]
    if value is None and optional:
        return None
    number = kind in (float, (int, float))
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) if number else \
        isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok:
        name = "a number" if number else {int: "an integer", str: "text", dict: "a mapping", list: "a list",
                                          bool: "true or false"}[kind]
        raise InputError(f"{where}: '{key}' must be {name}, got {value!r:.40}; {FIX}")
    return float(value) if number else value


def _unit(value: float | None, key: str, where: str) -> float | None:
    if value is not None and not 0.0 <= value <= 1.0:
        raise InputError(f"{where}: '{key}' must lie in [0, 1], got {value}; {FIX}")
    return value


def _point(obj: Any, where: str) -> RadiusPoint:
    return RadiusPoint(radius=_get(obj, "radius", float, where),
                       certified_accuracy=_unit(_get(obj, "certified_accuracy", float, where, True), "certified_accuracy", where),
                       lower_bound=_unit(_get(obj, "lower_bound", float, where, True), "lower_bound", where),
                       count=_get(obj, "count", int, where))


def _row(obj: Any, where: str) -> MethodRow:
    method = _get(obj, "method", str, where)
    if method not in METHODS:
        raise InputError(f"{where}: unknown method {method!r} (known: {', '.join(METHODS)}); {FIX}")
    sha = _get(obj, "model_sha256", str, where)
    if not _SHA256.match(sha):
        raise InputError(f"{where}: 'model_sha256' is not a SHA-256 hex digest; {FIX}")
    clean = _get(obj, "clean_accuracy", dict, where)
    recall = _get(obj, "recall_at_r_star", dict, where)
    row = MethodRow(
        sigma=_get(obj, "sigma", float, where), method=method, hyperparameters=dict(_get(obj, "hyperparameters", dict, where)),
        epochs=_get(obj, "epochs", int, where), best_epoch=_get(obj, "best_epoch", int, where),
        train_seconds=_get(obj, "train_seconds", float, where), certify_seconds=_get(obj, "certify_seconds", float, where),
        n_examples=_get(obj, "n_examples", int, where), model_sha256=sha,
        certified_at_r_star=_point(_get(obj, "certified_at_r_star", dict, where), f"{where}.certified_at_r_star"),
        certified_at_0_5=_point(_get(obj, "certified_at_0_5", dict, where), f"{where}.certified_at_0_5"),
        acr=_get(obj, "acr", float, where),
        clean_accuracy=CleanAccuracy(
            estimate=_unit(_get(clean, "estimate", float, f"{where}.clean_accuracy"), "estimate", where),
            lower=_unit(_get(clean, "lower", float, f"{where}.clean_accuracy"), "lower", where),
            successes=_get(clean, "successes", int, f"{where}.clean_accuracy"),
            trials=_get(clean, "trials", int, f"{where}.clean_accuracy")),
        recall_at_r_star={str(k): _point(v, f"{where}.recall_at_r_star.{k}") for k, v in recall.items()})
    if row.sigma <= 0 or row.n_examples < 1 or row.epochs < 1 or min(row.acr, row.train_seconds, row.certify_seconds) < 0:
        raise InputError(f"{where}: sigma, n_examples and epochs must be positive, acr and seconds >= 0; {FIX}")
    return row


def parse_method_record(document: Any, source: str) -> MethodRecord:
    """A :class:`MethodRecord` from its JSON dict; InputError (one line, naming ``source`` and the key) when malformed."""
    if not isinstance(document, Mapping) or document.get("schema") != SCHEMA:
        raise InputError(f"{source}: not a training-method benchmark record ({SCHEMA}); {FIX}")
    s = _get(document, "settings", dict, source)
    where = f"{source}: settings"
    settings = Settings(epochs=_get(s, "epochs", int, where), n0=_get(s, "n0", int, where), n=_get(s, "n", int, where),
                        alpha=_get(s, "alpha", float, where), confidence=_get(s, "confidence", float, where),
                        examples=_get(s, "examples", int, where), train_seed=_get(s, "train_seed", int, where),
                        certify_seed=_get(s, "certify_seed", int, where), threads=_get(s, "threads", int, where),
                        gate_radius=_get(s, "gate_radius", float, where))
    data = _get(document, "data_sha256", dict, source)
    if not data or not all(isinstance(v, str) and _SHA256.match(v) for v in data.values()):
        raise InputError(f"{source}: 'data_sha256' must map split names to SHA-256 hex digests; {FIX}")
    hyper = _get(document, "params_hyperparameters", dict, source)
    unknown = sorted(set(hyper) - set(METHODS))
    if unknown or not all(isinstance(v, dict) for v in hyper.values()):
        raise InputError(f"{source}: 'params_hyperparameters' must map methods ({', '.join(METHODS)}) to mappings; {FIX}")
    raw_rows = _get(document, "rows", list, source)
    rows = tuple(_row(r, f"{source}: rows[{i}]") for i, r in enumerate(raw_rows))
    keys = [(round(r.sigma, 12), r.method) for r in rows]
    if len(set(keys)) != len(keys):
        raise InputError(f"{source}: a (sigma, method) row is repeated; {FIX}")
    partial = _get(document, "partial", bool, source)
    if not rows and not partial:
        raise InputError(f"{source}: no rows; {FIX}")
    return MethodRecord(command=_get(document, "command", str, source), date_utc=_get(document, "date_utc", str, source),
                        settings=settings, data_sha256=dict(data), params_hyperparameters={k: dict(v) for k, v in hyper.items()},
                        rows=rows, partial=partial)


@dataclass(frozen=True)
class Criterion:
    """One criterion of the target: the measured value (None: not measured), its threshold and whether it holds."""

    name: str
    measured: float | None
    threshold: float
    comparison: str  # ">=" or "<="
    passed: bool


@dataclass(frozen=True)
class Candidate:
    """A method against the gaussian row of the same record and sigma, criterion by criterion."""

    sigma: float
    method: str
    criteria: tuple[Criterion, ...]

    @property
    def meets_target(self) -> bool:
        return all(c.passed for c in self.criteria)

    def to_dict(self) -> dict[str, Any]:
        return {"sigma": self.sigma, "method": self.method, "meets_target": self.meets_target,
                "criteria": [asdict(c) for c in self.criteria]}


@dataclass(frozen=True)
class Selection:
    """The rule applied at ``sigma``: every candidate at that sigma, those at the record's other sigmas (for
    context; they do not decide), the best candidate by ACR (None when the record has no other method) and the
    method the rule picks."""

    sigma: float
    candidates: tuple[Candidate, ...]
    other_sigmas: tuple[Candidate, ...]
    best: str | None
    pick: str
    thresholds: dict[str, float] = field(default_factory=lambda: thresholds())

    def to_dict(self) -> dict[str, Any]:
        return {"sigma": self.sigma, "best": self.best, "pick": self.pick, "thresholds": dict(self.thresholds),
                "candidates": [c.to_dict() for c in self.candidates],
                "other_sigmas": [c.to_dict() for c in self.other_sigmas]}


def thresholds() -> dict[str, float]:
    """The target's constants by name (as printed in the dossier)."""
    return {"min_acr_ratio": MIN_ACR_RATIO, "max_clean_drop_points": MAX_CLEAN_DROP_POINTS,
            "min_recall_change": MIN_RECALL_CHANGE, "max_train_time_ratio": MAX_TRAIN_TIME_RATIO}


def _criterion(name: str, measured: float | None, threshold: float, comparison: str) -> Criterion:
    if measured is None:
        return Criterion(name, None, threshold, comparison, False)
    passed = measured >= threshold - TOLERANCE if comparison == ">=" else measured <= threshold + TOLERANCE
    return Criterion(name, measured, threshold, comparison, passed)


def compare(row: MethodRow, base: MethodRow) -> Candidate:
    """``row`` against the gaussian row ``base`` (same sigma): ACR ratio, clean-accuracy change in percentage points,
    melanoma and BCC recall change at r* (estimates), training-time ratio."""
    criteria = [_criterion("acr_ratio", row.acr / base.acr if base.acr > 0 else None, MIN_ACR_RATIO, ">="),
                _criterion("clean_accuracy_change_points",
                           100.0 * (row.clean_accuracy.estimate - base.clean_accuracy.estimate), -MAX_CLEAN_DROP_POINTS, ">=")]
    for name in RECALL_CLASSES:
        ours, theirs = row.recall_at_r_star.get(name), base.recall_at_r_star.get(name)
        known = ours is not None and theirs is not None and None not in (ours.certified_accuracy, theirs.certified_accuracy)
        change = ours.certified_accuracy - theirs.certified_accuracy if known else None  # type: ignore[operator,union-attr]
        criteria.append(_criterion(f"{name}_recall_change", change, MIN_RECALL_CHANGE, ">="))
    time_ratio = row.train_seconds / base.train_seconds if base.train_seconds > 0 else None
    criteria.append(_criterion("train_time_ratio", time_ratio, MAX_TRAIN_TIME_RATIO, "<="))
    return Candidate(row.sigma, row.method, tuple(criteria))


def _candidates(record: MethodRecord, sigma: float) -> tuple[Candidate, ...]:
    base = record.row(sigma, BASELINE)
    if base is None:
        return ()
    return tuple(compare(r, base) for r in record.rows
                 if r.method != BASELINE and math.isclose(r.sigma, sigma, abs_tol=1e-12))


def apply_target(record: MethodRecord, sigma: float) -> Selection:
    """The issue's rule at the shipped ``sigma``; InputError when the record has no gaussian row at that sigma."""
    if record.row(sigma, BASELINE) is None:
        raise InputError(f"the training-method record has no {BASELINE} row at sigma {sigma:g} (it has sigmas "
                         f"{', '.join(f'{s:g}' for s in record.sigmas()) or 'none'}); {FIX} with --sigmas {sigma:g}")
    candidates = _candidates(record, sigma)
    others = tuple(c for s in record.sigmas() if not math.isclose(s, sigma, abs_tol=1e-12) for c in _candidates(record, s))
    rows = {c.method: record.row(sigma, c.method) for c in candidates}
    best = max(candidates, key=lambda c: rows[c.method].acr, default=None)  # type: ignore[union-attr]
    pick = best.method if best is not None and best.meets_target else BASELINE
    return Selection(sigma, candidates, others, None if best is None else best.method, pick)


__all__ = ["SCHEMA", "METHODS", "BASELINE", "RECALL_CLASSES", "MIN_ACR_RATIO", "MAX_CLEAN_DROP_POINTS",
           "MIN_RECALL_CHANGE", "MAX_TRAIN_TIME_RATIO", "RadiusPoint", "CleanAccuracy", "MethodRow", "Settings",
           "MethodRecord", "Criterion", "Candidate", "Selection", "write_method_record", "read_method_record",
           "parse_method_record", "compare", "apply_target", "thresholds"]
