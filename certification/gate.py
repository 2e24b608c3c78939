"""The acceptance gate: pre-specified criteria on certified L2 robustness, judged on confidence bounds.

A :class:`Protocol` is fixed before testing (the ``gate:`` section of params.yaml) and named by
:func:`protocol_sha256`. :func:`evaluate` turns per-example certification results into a :class:`Verdict`:

1. ``certified_accuracy``: lower confidence bound on the rate of examples certified correct at radius r*
   (``certified_rate_bound``: Clopper-Pearson at ``confidence`` minus the per-example alpha) >= threshold.
2. ``certified_recall_<class>``, one per malignant class: the same bound within that class >= threshold.
   A malignant class with no test example has lower bound 0 (no evidence) and is judged on that.
3. ``abstention_rate``: UPPER one-sided Clopper-Pearson bound on the abstention rate <= threshold.
4. ``clean_accuracy``: lower bound (``certified_rate_bound``) on the rate of correct, non-abstaining
   predictions of the smoothed classifier (certified at radius 0) >= threshold.
5. ``lighting_brightness`` (optional; lighting runs of mode fixed only, :mod:`certification.lighting`): with
   ``lighting_brightness_offset`` b* and ``min_lighting_covered_lower`` q, the lower bound (``certified_rate_bound``)
   on the rate of examples certified correct for every brightness offset |b| <= b* (the offset b* on every pixel lies
   in the certified ellipsoid: R > b* ||1||_Sigma^-1; the ellipsoid is convex and symmetric, so all smaller offsets
   too) >= q. Both keys null (the default) leave the protocol, and its SHA-256, as before.

Pass/fail is always decided on the bound, never on the point estimate. Every bound holds at the protocol's
``confidence`` on its own (no correction across the criteria is applied: each criterion is a separate claim,
and the verdict ACCEPT needs all of them).

The rows are :class:`~certification.records.DecisionRecord` objects ("certified at r*?" per example), made by
the sequential test (mode ``sequential``) or read off fixed-n CERTIFY rows (mode ``fixed``,
:meth:`~certification.records.DecisionRecord.from_certify`). An example is certified correct at r* iff
``certified`` and ``correct``; ``prediction == ABSTAIN`` is an abstention.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from certification.dataset_bounds import certified_rate_bound, proportion_bound
import numpy as np

from certification.errors import InputError, StaleArtifactError
from certification.fileio import sha256_bytes
from certification.lighting import LightingCovariance
from certification.records import DecisionRecord

MODES = ("fixed", "sequential")
ACCEPT, REJECT = "ACCEPT", "REJECT"

#: protocol key -> (meaning, lowest allowed value, highest allowed value or None)
PROTOCOL_KEYS: dict[str, tuple[str, float, float | None]] = {
    "radius": ("certification radius r* (L2, [0,1]-pixel units)", 0.0, None),
    "min_certified_accuracy_lower": ("minimum lower bound on certified accuracy at r*", 0.0, 1.0),
    "min_malignant_recall_lower": ("minimum lower bound on certified recall at r* of each malignant class", 0.0, 1.0),
    "max_abstention_rate": ("maximum upper bound on the abstention rate", 0.0, 1.0),
    "min_clean_accuracy": ("minimum lower bound on clean accuracy of the smoothed classifier", 0.0, 1.0),
    "confidence": ("confidence level of every bound", 0.0, 1.0),
}
#: Optional protocol keys (null or absent: no such criterion; left out of the canonical JSON, so the SHA-256 of a
#: protocol without them is unchanged). Both or neither.
OPTIONAL_PROTOCOL_KEYS: dict[str, tuple[str, float, float | None]] = {
    "lighting_brightness_offset": ("brightness offset b* certified on every pixel (lighting runs; [0,1]-pixel units)", 0.0, 1.0),
    "min_lighting_covered_lower": ("minimum lower bound on the rate certified correct under brightness offsets up to b*", 0.0, 1.0),
}


@dataclass(frozen=True)
class Protocol:
    """The pre-specified acceptance criteria. Radii in [0,1]-pixel L2 units; rates in [0, 1]."""

    radius: float
    min_certified_accuracy_lower: float
    min_malignant_recall_lower: float
    max_abstention_rate: float
    min_clean_accuracy: float
    confidence: float
    mode: str = "fixed"
    lighting_brightness_offset: float | None = None
    min_lighting_covered_lower: float | None = None

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "protocol") -> Protocol:
        """Validate strictly: every key required, no unknown key, numbers in range; errors name the key."""
        if not isinstance(values, Mapping):
            raise InputError(f"{source}: the protocol must be a mapping of {', '.join(sorted(cls.keys()))}")
        allowed = cls.keys()
        unknown = sorted(set(values) - set(allowed) - set(OPTIONAL_PROTOCOL_KEYS))
        if unknown:
            raise InputError(f"{source}: unknown protocol key '{unknown[0]}'; allowed keys: "
                             f"{', '.join(sorted({*allowed, *OPTIONAL_PROTOCOL_KEYS}))}")
        missing = [key for key in allowed if key not in values]
        if missing:
            raise InputError(f"{source}: missing protocol key '{missing[0]}'")
        numbers: dict[str, float] = {}
        for key, (meaning, low, high) in PROTOCOL_KEYS.items():
            value = values[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InputError(f"{source}: protocol key '{key}' ({meaning}) must be a number, got {value!r}")
            value = float(value)
            open_range = key == "confidence"
            too_low = value <= low if open_range else value < low
            too_high = high is not None and (value >= high if open_range else value > high)
            if too_low or too_high:
                interval = f"({low}, {high})" if open_range else f"[{low}, {'inf' if high is None else high}]"
                raise InputError(f"{source}: protocol key '{key}' must lie in {interval}, got {value}")
            numbers[key] = value
        mode = values["mode"]
        if mode not in MODES:
            raise InputError(f"{source}: protocol key 'mode' must be one of {', '.join(MODES)}, got {mode!r}")
        optional: dict[str, float] = {}
        for key, (meaning, low, high) in OPTIONAL_PROTOCOL_KEYS.items():
            value = values.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InputError(f"{source}: protocol key '{key}' ({meaning}) must be a number or null, got {value!r}")
            if not (low < float(value) <= float(high if high is not None else math.inf)):
                raise InputError(f"{source}: protocol key '{key}' must lie in ({low}, {high}], got {value}")
            optional[key] = float(value)
        if len(optional) == 1:
            given, absent = (list(optional)[0], next(k for k in OPTIONAL_PROTOCOL_KEYS if k not in optional))
            raise InputError(f"{source}: protocol key '{given}' is set but '{absent}' is null; set both (or neither)")
        if optional and mode != "fixed":
            raise InputError(f"{source}: the lighting criterion needs mode fixed (its rows carry the Mahalanobis radius); "
                             "set mode: fixed or the lighting keys to null")
        return cls(mode=str(mode), **numbers, **optional)

    @staticmethod
    def keys() -> tuple[str, ...]:
        return (*PROTOCOL_KEYS, "mode")

    @property
    def has_lighting_criterion(self) -> bool:
        return self.lighting_brightness_offset is not None

    def to_dict(self) -> dict[str, Any]:
        """The protocol; optional keys only when set (so adding them as null changes no SHA-256)."""
        return {key: value for key, value in asdict(self).items() if key not in OPTIONAL_PROTOCOL_KEYS or value is not None}


def protocol_sha256(protocol: Protocol) -> str:
    """SHA-256 of the protocol's canonical JSON (sorted keys, no whitespace, numbers as floats)."""
    canonical = json.dumps(protocol.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return sha256_bytes(canonical.encode("utf-8"))


@dataclass(frozen=True)
class Criterion:
    """One acceptance criterion: ``bound <comparison> threshold`` must hold (``comparison`` is >= or <=)."""

    name: str
    description: str
    estimate: float | None
    bound: float
    bound_kind: str
    threshold: float
    comparison: str
    passed: bool
    successes: int
    trials: int
    bound_method: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Verdict:
    """The gate's decision: ACCEPT iff every criterion passed. Serialises to metrics/gate.json."""

    verdict: str
    mode: str
    radius: float
    protocol: dict[str, Any]
    protocol_sha256: str
    model_sha256: str
    n_examples: int
    alpha: float
    criteria: list[Criterion] = field(default_factory=list)

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.criteria if not c.passed]

    @property
    def accepted(self) -> bool:
        return self.verdict == ACCEPT

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["criteria"] = [c.to_dict() for c in self.criteria]
        data["failed"] = self.failed
        data["accepted"] = self.accepted
        data["bounds"] = {c.name: c.bound for c in self.criteria}  # flat, so `dvc metrics diff` shows them
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "gate.json") -> Verdict:
        """Read a verdict back (e.g. metrics/gate.json), checking it is complete and self-consistent."""
        try:
            criteria = [Criterion(**c) for c in data["criteria"]]
            verdict = cls(
                verdict=data["verdict"], mode=data["mode"], radius=float(data["radius"]), protocol=dict(data["protocol"]),
                protocol_sha256=data["protocol_sha256"], model_sha256=data["model_sha256"],
                n_examples=int(data["n_examples"]), alpha=float(data["alpha"]), criteria=criteria,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{source}: not a gate verdict ({type(exc).__name__}: {exc}); rerun the gate stage") from None
        for c in criteria:
            holds = c.bound >= c.threshold if c.comparison == ">=" else c.bound <= c.threshold
            if c.comparison not in (">=", "<=") or holds != c.passed:
                raise InputError(f"{source}: criterion {c.name} says {'pass' if c.passed else 'fail'} but its bound "
                                 f"{c.bound} {c.comparison} {c.threshold} does not agree; rerun the gate stage")
        expected = ACCEPT if criteria and all(c.passed for c in criteria) else REJECT
        if verdict.verdict != expected or list(data.get("failed", verdict.failed)) != verdict.failed:
            raise InputError(f"{source}: verdict {verdict.verdict!r} contradicts its criteria; rerun the gate stage")
        return verdict


@dataclass(frozen=True)
class _Outcomes:
    """Per-example facts the criteria count: true-label index, certified correct at r*, correct, abstained."""

    labels: list[int]
    certified_correct: list[bool]
    correct: list[bool]
    abstained: list[bool]


def _outcomes(rows: Sequence[DecisionRecord], protocol: Protocol, num_classes: int, alpha: float) -> _Outcomes:
    if not rows:
        raise InputError("the results hold zero examples; run certification on at least one example")
    modes = {row.mode for row in rows}
    if len(modes) != 1:
        raise InputError("the results mix decision modes; use one results file")
    mode = modes.pop()
    if mode != protocol.mode:
        raise InputError(f"the protocol's mode is '{protocol.mode}' but the results are {mode} rows; "
                         f"give {'results/certify.jsonl' if protocol.mode == 'fixed' else 'sequential decision rows (results/gate.jsonl)'}")
    sigmas = {row.sigma for row in rows}
    if len(sigmas) != 1:
        raise StaleArtifactError(f"the results mix sigma {sorted(sigmas)}; judge the rows of one certification run")
    seen: set[int] = set()
    for position, row in enumerate(rows):
        if row.index in seen:
            raise InputError(f"results row {position}: example index {row.index} appears twice; merge shards without duplicates")
        seen.add(row.index)
        if not 0 <= row.label < num_classes:
            raise InputError(f"results row {position}: label {row.label!r} is not a class index in [0, {num_classes})")
        if not row.prediction < num_classes:
            raise InputError(f"results row {position}: prediction {row.prediction!r} is not -1 (abstain) or a class index")
        if not math.isclose(row.alpha, alpha, rel_tol=1e-12):
            raise InputError(f"results row {position}: alpha {row.alpha} differs from {alpha}; certify all examples with one alpha")
        if not math.isclose(row.radius_threshold, protocol.radius, rel_tol=1e-12, abs_tol=1e-12):
            raise InputError(f"results row {position}: decided at radius {row.radius_threshold}, but the protocol radius is "
                             f"{protocol.radius}; rerun the decision at the protocol radius")
    return _Outcomes([r.label for r in rows], [r.correct and r.certified for r in rows], [r.correct for r in rows],
                     [r.abstained for r in rows])


def _lower_criterion(name: str, description: str, successes: int, trials: int, alpha: float, threshold: float, confidence: float) -> Criterion:
    if trials == 0:  # no evidence: the only valid lower bound on a rate is 0
        return Criterion(name, description + " (no test examples: lower bound 0)", None, 0.0, "lower", threshold, ">=",
                         0.0 >= threshold, 0, 0, "no-data")
    bound = certified_rate_bound(successes, trials, alpha, confidence)
    return Criterion(name, description, bound.estimate, bound.lower, "lower", threshold, ">=", bound.lower >= threshold,
                     successes, trials, bound.method)


def evaluate(
    rows: Iterable[DecisionRecord],
    protocol: Protocol,
    class_names: Sequence[str],
    malignant_classes: Sequence[str],
    alpha: float,
    model_sha256: str,
    lighting: LightingCovariance | None = None,
) -> Verdict:
    """Judge per-example results against the protocol; see the module docstring for the criteria.

    ``lighting``: the covariance the certificates were made with (metrics/certify.json ``noise.covariance``), needed
    by the lighting criterion only.

    ``alpha`` is the per-example failure probability of the certificates (every row must carry it);
    ``model_sha256`` names the artifact the rows were computed on (every row must name it). Raises InputError
    on inconsistent rows, zero examples, or results whose mode does not match ``protocol.mode``.
    """
    rows = list(rows)
    if not 0.0 <= alpha < 1.0:
        raise InputError(f"alpha must lie in [0, 1), got {alpha}")
    names = list(class_names)
    unknown = [c for c in malignant_classes if c not in names]
    if unknown:
        raise InputError(f"malignant class '{unknown[0]}' is not one of the classes {', '.join(names)}")
    others = sorted({r.model_sha256 for r in rows} - {model_sha256})
    if others:
        raise StaleArtifactError(f"the results were computed on model {others[0][:12]}..., not on {model_sha256[:12]}...; "
                                 "rerun certification on the current model")
    outcomes = _outcomes(rows, protocol, len(names), alpha)
    n, r, conf = len(rows), protocol.radius, protocol.confidence
    criteria = [_lower_criterion(
        "certified_accuracy", f"certified accuracy at radius {r:g}", sum(outcomes.certified_correct), n, alpha,
        protocol.min_certified_accuracy_lower, conf)]
    for name in malignant_classes:
        k = names.index(name)
        in_class = [c for c, label in zip(outcomes.certified_correct, outcomes.labels) if label == k]
        criteria.append(_lower_criterion(
            f"certified_recall_{name}", f"certified recall of malignant class {name} at radius {r:g}", sum(in_class),
            len(in_class), alpha, protocol.min_malignant_recall_lower, conf))
    abstain = proportion_bound(sum(outcomes.abstained), n, conf)
    assert abstain.upper is not None
    criteria.append(Criterion(
        "abstention_rate", "abstention rate of the smoothed classifier", abstain.estimate, abstain.upper, "upper",
        protocol.max_abstention_rate, "<=", abstain.upper <= protocol.max_abstention_rate, abstain.successes, n,
        abstain.method))
    criteria.append(_lower_criterion(
        "clean_accuracy", "clean accuracy of the smoothed classifier (certified at radius 0)", sum(outcomes.correct), n,
        alpha, protocol.min_clean_accuracy, conf))
    if protocol.has_lighting_criterion:
        criteria.append(_lighting_criterion(rows, protocol, lighting, alpha))
    verdict = ACCEPT if all(c.passed for c in criteria) else REJECT
    return Verdict(verdict, protocol.mode, r, protocol.to_dict(), protocol_sha256(protocol), model_sha256, n, float(alpha), criteria)


def _lighting_criterion(rows: Sequence[DecisionRecord], protocol: Protocol, lighting: LightingCovariance | None,
                        alpha: float) -> Criterion:
    """Criterion 5 of the module docstring."""
    if lighting is None or lighting.isotropic:
        raise InputError("the protocol sets gate.lighting_brightness_offset but the certificates are isotropic "
                         "(certify.lighting directions none); certify with lighting directions or set the lighting keys to null")
    missing = next((r for r in rows if "mahalanobis_radius" not in r.details), None)
    if missing is not None:
        raise StaleArtifactError(f"example {missing.index} carries no mahalanobis_radius; re-run certify with certify.lighting")
    offset = float(protocol.lighting_brightness_offset or 0.0)
    size = float(lighting.mahalanobis_norm(np.full(lighting.chw, offset)))
    covered = sum(r.correct and not r.abstained and float(r.details["mahalanobis_radius"]) > size for r in rows)
    return _lower_criterion(
        "lighting_brightness", f"certified correct under every brightness offset up to +-{offset:g} "
        f"(lighting {lighting.directions}, tau {lighting.tau:g})", covered, len(rows), alpha,
        float(protocol.min_lighting_covered_lower or 0.0), protocol.confidence)


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def failure_lines(verdict: Verdict) -> list[str]:
    """One line per failed criterion, e.g. ``REJECTED: certified_accuracy: lower bound 0.310 < threshold 0.450``."""
    lines = []
    for c in verdict.criteria:
        if not c.passed:
            broken = "<" if c.comparison == ">=" else ">"
            lines.append(f"REJECTED: {c.name}: {c.bound_kind} bound {c.bound:.3f} {broken} threshold {c.threshold:.3f}")
    return lines


def render_table(verdict: Verdict) -> str:
    """A plain-text table of the criteria, a header naming the protocol and model, and the verdict line."""
    header = ("criterion", "estimate", "bound", "kind", "required", "result")
    body = [(c.name, _number(c.estimate), _number(c.bound), c.bound_kind, f"{c.comparison} {c.threshold:.3f}",
             "pass" if c.passed else "FAIL") for c in verdict.criteria]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    fmt = "  ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths))
    lines = [
        f"gate: mode {verdict.mode}, radius r* = {verdict.radius:g}, confidence {verdict.protocol['confidence']:g}, "
        f"{verdict.n_examples} examples, per-example alpha {verdict.alpha:g}",
        f"protocol sha256 {verdict.protocol_sha256}",
        f"model sha256    {verdict.model_sha256}",
        fmt.format(*header),
        fmt.format(*("-" * w for w in widths)),
        *(fmt.format(*row) for row in body),
        f"verdict: {verdict.verdict}" + (f" ({len(verdict.failed)} failed: {', '.join(verdict.failed)})" if verdict.failed else ""),
    ]
    return "\n".join(lines)
