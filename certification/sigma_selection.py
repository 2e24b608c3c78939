"""Sigma selection on the validation split: the validation metrics file and the rule that picks the shipped sigma.

Each candidate (one training run at one sigma) is certified by CERTIFY on the same seeded subset of the
validation split with the same n0, n, alpha and noise seed (:mod:`certification.validation_run`); the summary is
one small file, ``metrics/validation.json`` (:func:`write_validation_metrics`, :func:`read_validation_metrics`).

The rule (:func:`select_sigma`), fixed before any candidate is seen:

1. eligible: the lower confidence bound on the smoothed classifier's clean accuracy on the validation subset is
   at least ``min_clean_accuracy`` (the gate's ``gate.min_clean_accuracy``, judged on the same kind of bound);
2. among the eligible, the highest lower confidence bound on certified accuracy at the gate radius r* wins;
3. ties go to the smaller sigma (less noise: the better clean accuracy on the device), then to the name.

No candidate eligible: nothing is chosen. The test split plays no part: the shipped model's claims come from
certify on the sealed test split afterwards, so picking the best of several validation bounds (which favours the
luckiest candidate) biases only the choice, never the certified test figures.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

from certification.errors import InputError, StaleArtifactError
from certification.fileio import read_json, write_json_atomic

#: Certification settings two candidates must share to be compared (same examples, same noise, same bounds).
SHARED_SETTINGS = ("radius", "n_examples", "n0", "n", "alpha", "seed", "confidence")
RULE_TEXT = ("eligible: validation clean-accuracy lower bound >= {min_clean:g}; chosen: the highest lower bound on "
             "validation certified accuracy at r* = {radius:g}; ties: the smaller sigma")


@dataclass(frozen=True)
class ValidationMetrics:
    """The smoothed classifier of one candidate on the seeded validation subset (``metrics/validation.json``).

    ``sigma`` and ``radius`` are L2 norms in [0,1]-pixel units; accuracies are fractions of ``n_examples``; each
    ``*_lower`` is a one-sided lower bound at ``confidence`` (certified accuracy: Clopper-Pearson minus alpha, as
    the certify stage's); ``average_certified_radius`` counts wrong or abstained examples as radius 0.
    """

    sigma: float
    radius: float
    n_examples: int
    certified_accuracy: float
    certified_accuracy_lower: float
    clean_accuracy: float
    clean_accuracy_lower: float
    average_certified_radius: float
    abstention_rate: float
    n0: int
    n: int
    alpha: float
    seed: int
    confidence: float
    split: str = "validation"

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], source: str) -> "ValidationMetrics":
        """Checked: every field present, numbers finite, fractions in [0, 1], the split the validation split."""
        if not isinstance(values, Mapping):
            raise InputError(f"{source}: expected a JSON object of validation metrics; rerun the validate stage")
        fields = {name: values.get(name) for name in cls.__dataclass_fields__}
        missing = [name for name, value in fields.items() if value is None and name != "split"]
        if missing:
            raise StaleArtifactError(f"{source}: missing key '{missing[0]}'; rerun the validate stage")
        if fields["split"] not in (None, "validation"):
            raise InputError(f"{source}: split is {fields['split']!r}, not 'validation': sigma is chosen on the "
                             "validation split only")
        for name in ("n_examples", "n0", "n", "seed"):
            value = fields[name]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InputError(f"{source}: '{name}' must be a non-negative integer, got {value!r}")
        for name in ("sigma", "radius", "certified_accuracy", "certified_accuracy_lower", "clean_accuracy",
                     "clean_accuracy_lower", "average_certified_radius", "abstention_rate", "alpha", "confidence"):
            value = fields[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise InputError(f"{source}: '{name}' must be a finite non-negative number, got {value!r}")
            fields[name] = float(value)
        for name in ("certified_accuracy", "certified_accuracy_lower", "clean_accuracy", "clean_accuracy_lower",
                     "abstention_rate"):
            if fields[name] > 1:
                raise InputError(f"{source}: '{name}' must be a fraction in [0, 1], got {fields[name]!r}")
        if fields["sigma"] <= 0:
            raise InputError(f"{source}: 'sigma' must be positive, got {fields['sigma']!r}")
        fields["split"] = "validation"
        return cls(**fields)

    def settings(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in SHARED_SETTINGS)


def write_validation_metrics(path: str | os.PathLike[str], metrics: ValidationMetrics) -> None:
    """The one writer of ``metrics/validation.json`` (atomic: a failed write leaves no file)."""
    write_json_atomic(path, {"split": metrics.split, **{k: v for k, v in asdict(metrics).items() if k != "split"}})


def read_validation_metrics(path: str | os.PathLike[str]) -> ValidationMetrics:
    """The one reader of ``metrics/validation.json``."""
    return ValidationMetrics.from_mapping(read_json(path), str(path))


@dataclass(frozen=True)
class Candidate:
    """One trained candidate: a name (a DVC experiment, a file) and its validation metrics."""

    name: str
    metrics: ValidationMetrics


@dataclass(frozen=True)
class SelectionRule:
    """The rule's two numbers, both from the pre-specified gate: r* and the clean-accuracy floor (fractions)."""

    radius: float
    min_clean_accuracy: float

    def text(self) -> str:
        return RULE_TEXT.format(min_clean=self.min_clean_accuracy, radius=self.radius)

    def eligible(self, candidate: Candidate) -> bool:
        return candidate.metrics.clean_accuracy_lower >= self.min_clean_accuracy


@dataclass(frozen=True)
class Selection:
    """Every candidate in rule order (best first, ineligible last), which were eligible, and the chosen one
    (``None`` when no candidate is eligible)."""

    rule: SelectionRule
    ranked: tuple[Candidate, ...]
    eligible: tuple[bool, ...]
    chosen: Candidate | None

    def record(self) -> dict[str, Any]:
        """A JSON-ready record of the selection (the rule in words and numbers, every candidate, the choice)."""
        return {
            "rule": {"text": self.rule.text(), "radius": self.rule.radius,
                     "min_clean_accuracy": self.rule.min_clean_accuracy, "split": "validation"},
            "candidates": [{"name": c.name, "eligible": ok, **asdict(c.metrics)}
                           for c, ok in zip(self.ranked, self.eligible)],
            "chosen": None if self.chosen is None else {"name": self.chosen.name, "sigma": self.chosen.metrics.sigma},
        }


def select_sigma(candidates: Sequence[Candidate], rule: SelectionRule) -> Selection:
    """Apply the rule of this module's docstring to ``candidates``.

    Refuses (one line) an empty list, a candidate validated at another radius than ``rule.radius``, and candidates
    whose validation runs differ in examples, n0, n, alpha, noise seed or confidence (their bounds would not be
    comparable).
    """
    if not candidates:
        raise InputError("no candidates with validation metrics; run the validate stage for each candidate "
                         "(e.g. dvc exp run --queue -S train.sigma=0.12,0.25,0.5 validate, then dvc queue start)")
    for candidate in candidates:
        if not math.isclose(candidate.metrics.radius, rule.radius, rel_tol=0, abs_tol=1e-12):
            raise StaleArtifactError(f"{candidate.name}: validated at radius {candidate.metrics.radius:g}, but the "
                                     f"gate radius is {rule.radius:g}; rerun its validate stage")
    first = candidates[0]
    for candidate in candidates[1:]:
        if candidate.metrics.settings() != first.metrics.settings():
            differs = next(n for n, a, b in zip(SHARED_SETTINGS, candidate.metrics.settings(), first.metrics.settings())
                           if a != b)
            raise InputError(f"{candidate.name} and {first.name} were validated with different {differs} "
                             f"({getattr(candidate.metrics, differs)!r} vs {getattr(first.metrics, differs)!r}); "
                             "rerun their validate stages with the same validate params")

    def order(candidate: Candidate) -> tuple[Any, ...]:
        return (not rule.eligible(candidate), -candidate.metrics.certified_accuracy_lower, candidate.metrics.sigma,
                candidate.name)

    ranked = tuple(sorted(candidates, key=order))
    eligible = tuple(rule.eligible(c) for c in ranked)
    return Selection(rule=rule, ranked=ranked, eligible=eligible, chosen=ranked[0] if eligible[0] else None)


def selection_table(selection: Selection) -> str:
    """The candidates as a Markdown table in rule order, the chosen one marked."""
    radius = selection.rule.radius
    lines = [f"| | candidate | sigma | cert. acc. r*={radius:g} (LB) | clean acc. (LB) | ACR | abstain | eligible |",
             "|---|---|---|---|---|---|---|---|"]
    for candidate, ok in zip(selection.ranked, selection.eligible):
        m = candidate.metrics
        mark = "chosen" if candidate is selection.chosen else ""
        lines.append(f"| {mark} | {candidate.name} | {m.sigma:g} | "
                     f"{m.certified_accuracy:.3f} ({m.certified_accuracy_lower:.3f}) | {m.clean_accuracy:.3f} ({m.clean_accuracy_lower:.3f}) | {m.average_certified_radius:.3f} | "
                     f"{m.abstention_rate:.3f} | {'yes' if ok else 'no'} |")
    return "\n".join(lines)
