"""Clinical triage performance of the smoothed classifier: malignant vs benign, abstentions as their own outcome.

The device's clinical job is to flag malignant lesions. Each test example has a true class (malignant when it is
one of the model card's ``malignant_classes``) and one answer of the smoothed classifier: a class, or an
abstention (``ABSTAIN``). Answers are binarised: *flagged* = a malignant class was predicted, *cleared* = a benign
class was predicted, *abstained* = no answer.

Abstention rule (clinically conservative, "abstain = not flagged, not cleared, refer"): an abstention is neither
a detection nor a clearance. It counts as a miss in the sensitivity of a malignant lesion and as a failure to
clear in the specificity of a benign one; it is excluded from PPV (not flagged) and NPV (not cleared). The
workflow refers every abstention to a clinician, so the report adds the referral rate (abstentions among all,
malignant and benign examples) and the referral-inclusive sensitivity (flagged or referred, among malignant),
which is what the workflow achieves when every referral is followed.

    sensitivity = flagged malignant / malignant            specificity = cleared benign / benign
    PPV         = flagged malignant / flagged              NPV         = cleared benign / cleared

Every rate carries a two-sided Clopper-Pearson interval at ``level`` (each side one-sided at (1 + level) / 2,
``certification.dataset_bounds.proportion_bound``) and its counts; a rate with no trials (e.g. PPV when nothing
is flagged) has estimate and bounds ``None``. The interval covers the population rate with probability at least
``level`` over the sampling of the test set (examples i.i.d.); the answers are those of one run, so the rate is
that of this procedure (CERTIFY, or PREDICT at its n and alpha), noise included.

:func:`answers_at_radius` turns CERTIFY's records into answers: at radius 0 the clean prediction (abstentions
kept), at r > 0 only the predictions certified at r (a prediction with radius < r becomes an abstention).

JSON (one :class:`TriageReport`)::

    {"procedure": str, "radius": float | null, "level": float, "abstention_rule": str,
     "malignant_classes": [str], "class_names": [str], "n_examples": int,
     "rates": {"sensitivity"|"specificity"|"ppv"|"npv"|"referral_inclusive_sensitivity"|"referral_rate"|
               "referral_rate_malignant"|"referral_rate_benign": Rate},
     "counts": {"malignant_flagged", "malignant_cleared", "malignant_abstained", "benign_flagged",
                "benign_cleared", "benign_abstained"},
     "confusion": {"rows": [true class names], "columns": [class names..., "abstain"], "counts": [[int]]},
     "per_skin_type": [{"group": "I".."VI", "n_examples": int, "rates": {...the four rates...}}]}
    Rate = {"estimate", "lower", "upper", "successes", "trials", "level", "method"}
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from certification.dataset_bounds import proportion_bound
from certification.errors import InputError
from certification.failure_modes.grouping import Group
from certification.records import ABSTAIN

ABSTENTION_RULE = ("abstain = refer: an abstention is neither a detection nor a clearance; it counts as a miss for "
                   "sensitivity and as not cleared for specificity, and is excluded from PPV and NPV")
RATE_METHOD = "clopper-pearson (two-sided)"
CLINICAL_RATES = ("sensitivity", "specificity", "ppv", "npv")


@dataclass(frozen=True)
class Rate:
    """successes / trials with a two-sided Clopper-Pearson interval at ``level``; all None when trials == 0."""

    estimate: float | None
    lower: float | None
    upper: float | None
    successes: int
    trials: int
    level: float
    method: str = RATE_METHOD


def clinical_rate(successes: int, trials: int, level: float) -> Rate:
    """Two-sided Clopper-Pearson interval at ``level``: each side is the one-sided bound at (1 + level) / 2."""
    if not 0.0 < level < 1.0:
        raise InputError(f"the interval level must lie in (0, 1), got {level}")
    if trials == 0:
        return Rate(None, None, None, 0, 0, float(level))
    bound = proportion_bound(int(successes), int(trials), (1.0 + level) / 2.0)
    return Rate(bound.estimate, bound.lower, bound.upper, bound.successes, bound.trials, float(level))


@dataclass(frozen=True)
class SkinTypeTriage:
    group: str
    n_examples: int
    rates: dict[str, Rate]


@dataclass(frozen=True)
class TriageReport:
    procedure: str
    radius: float | None
    level: float
    malignant_classes: list[str]
    class_names: list[str]
    n_examples: int
    rates: dict[str, Rate]
    counts: dict[str, int]
    confusion: dict[str, Any]
    per_skin_type: list[SkinTypeTriage] = field(default_factory=list)
    abstention_rule: str = ABSTENTION_RULE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def answers_at_radius(predictions: np.ndarray, radii: np.ndarray, radius: float) -> np.ndarray:
    """CERTIFY's answers as deployed at ``radius``: the prediction where it is certified at ``radius`` (radius >=
    ``radius``, inclusive as in Cohen et al.), ``ABSTAIN`` elsewhere; at radius 0 every non-abstaining prediction."""
    predictions = np.asarray(predictions, dtype=np.int64)
    keep = (np.asarray(radii, dtype=np.float64) >= radius) & (predictions != ABSTAIN)
    return np.where(keep, predictions, ABSTAIN)


def _rates(truth_malignant: np.ndarray, flagged: np.ndarray, cleared: np.ndarray, level: float) -> dict[str, Rate]:
    benign = ~truth_malignant
    return {
        "sensitivity": clinical_rate(int((flagged & truth_malignant).sum()), int(truth_malignant.sum()), level),
        "specificity": clinical_rate(int((cleared & benign).sum()), int(benign.sum()), level),
        "ppv": clinical_rate(int((flagged & truth_malignant).sum()), int(flagged.sum()), level),
        "npv": clinical_rate(int((cleared & benign).sum()), int(cleared.sum()), level),
    }


def triage_report(
    labels: np.ndarray,
    answers: np.ndarray,
    class_names: Sequence[str],
    malignant_classes: Sequence[str],
    level: float,
    procedure: str,
    radius: float | None = None,
    skin_types: Sequence[Group] = (),
) -> TriageReport:
    """Triage rates, confusion matrix and per-skin-type rates of ``answers`` (class index or ``ABSTAIN``) against
    ``labels``; ``skin_types`` are groups whose masks are over the same positions (e.g. Fitzpatrick types)."""
    labels = np.asarray(labels, dtype=np.int64)
    answers = np.asarray(answers, dtype=np.int64)
    names = list(class_names)
    if labels.shape != answers.shape or labels.ndim != 1 or labels.size == 0:
        raise InputError(f"triage needs one answer per label, got {answers.shape} answers for {labels.shape} labels")
    unknown = [c for c in malignant_classes if c not in names]
    if unknown:
        raise InputError(f"malignant class '{unknown[0]}' is not one of the classes {', '.join(names)}; fix malignant_classes in models/model.json")
    if not malignant_classes:
        raise InputError("no malignant class declared; triage needs malignant_classes in models/model.json")
    if labels.min() < 0 or labels.max() >= len(names) or answers.min() < ABSTAIN or answers.max() >= len(names):
        raise InputError(f"labels and answers must be class indices in [0, {len(names)}) (answers may be {ABSTAIN}: abstain)")
    malignant = np.isin(np.arange(len(names)), [names.index(c) for c in malignant_classes])
    truth = malignant[labels]
    abstained = answers == ABSTAIN
    flagged = ~abstained & malignant[np.where(abstained, 0, answers)]
    cleared = ~abstained & ~flagged
    rates = _rates(truth, flagged, cleared, level)
    n = int(labels.size)
    rates["referral_inclusive_sensitivity"] = clinical_rate(int(((flagged | abstained) & truth).sum()), int(truth.sum()), level)
    rates["referral_rate"] = clinical_rate(int(abstained.sum()), n, level)
    rates["referral_rate_malignant"] = clinical_rate(int((abstained & truth).sum()), int(truth.sum()), level)
    rates["referral_rate_benign"] = clinical_rate(int((abstained & ~truth).sum()), int((~truth).sum()), level)
    counts = {
        "malignant_flagged": int((truth & flagged).sum()), "malignant_cleared": int((truth & cleared).sum()),
        "malignant_abstained": int((truth & abstained).sum()), "benign_flagged": int((~truth & flagged).sum()),
        "benign_cleared": int((~truth & cleared).sum()), "benign_abstained": int((~truth & abstained).sum()),
    }
    matrix = np.zeros((len(names), len(names) + 1), dtype=np.int64)
    np.add.at(matrix, (labels, np.where(abstained, len(names), answers)), 1)
    confusion = {"rows": names, "columns": [*names, "abstain"], "counts": matrix.tolist()}
    per_skin = [SkinTypeTriage(g.name, g.size, _rates(truth[g.mask], flagged[g.mask], cleared[g.mask], level))
                for g in skin_types]
    return TriageReport(procedure, None if radius is None else float(radius), float(level), list(malignant_classes), names,
                        n, rates, counts, confusion, per_skin)
