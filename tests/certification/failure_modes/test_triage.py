"""Clinical triage metrics: counts, the abstention rule, the confusion matrix, and the intervals' coverage."""
from __future__ import annotations

import numpy as np
import pytest

from certification.errors import InputError
from certification.failure_modes.grouping import fitzpatrick_groups
from certification.failure_modes.triage import answers_at_radius, clinical_rate, triage_report
from certification.records import ABSTAIN

CLASSES = ["nevus", "seborrheic_keratosis", "melanoma", "bcc"]
MALIGNANT = ["melanoma", "bcc"]
A = ABSTAIN


def test_counts_rates_and_the_abstention_rule_on_a_hand_checked_case() -> None:
    # malignant truth (labels 2, 3): flagged 2->2, 3->2 (wrong malignant class still flags), missed 2->0, abstained 3->A
    # benign truth (labels 0, 1): cleared 0->0, 1->0, flagged 1->3, abstained 0->A, cleared 0->1
    labels = np.array([2, 3, 2, 3, 0, 1, 1, 0, 0])
    answers = np.array([2, 2, 0, A, 0, 0, 3, A, 1])
    report = triage_report(labels, answers, CLASSES, MALIGNANT, 0.95, "test").to_dict()
    r = report["rates"]
    assert (r["sensitivity"]["successes"], r["sensitivity"]["trials"]) == (2, 4)  # the abstention is a miss
    assert (r["specificity"]["successes"], r["specificity"]["trials"]) == (3, 5)  # the abstention is not cleared
    assert (r["ppv"]["successes"], r["ppv"]["trials"]) == (2, 3)  # abstentions are not flagged
    assert (r["npv"]["successes"], r["npv"]["trials"]) == (3, 4)  # ... and not cleared
    assert (r["referral_inclusive_sensitivity"]["successes"], r["referral_inclusive_sensitivity"]["trials"]) == (3, 4)
    assert (r["referral_rate"]["successes"], r["referral_rate"]["trials"]) == (2, 9)
    assert r["referral_rate_malignant"]["successes"] == 1 and r["referral_rate_benign"]["successes"] == 1
    assert report["counts"] == {"malignant_flagged": 2, "malignant_cleared": 1, "malignant_abstained": 1,
                                "benign_flagged": 1, "benign_cleared": 3, "benign_abstained": 1}
    assert report["confusion"]["columns"] == [*CLASSES, "abstain"]
    matrix = np.array(report["confusion"]["counts"])
    assert matrix.sum() == 9 and matrix[3, 4] == 1 and matrix[0, 4] == 1 and matrix[3, 2] == 1 and matrix[1, 3] == 1
    assert (matrix.sum(axis=1) == np.bincount(labels, minlength=4)).all()
    for rate in r.values():
        assert rate["lower"] <= rate["estimate"] <= rate["upper"] and rate["level"] == 0.95
    assert "abstain = refer" in report["abstention_rule"]


def test_a_rate_without_trials_is_not_applicable_and_skin_types_split_the_examples() -> None:
    labels = np.array([0, 0, 2, 2, 1, 3])
    answers = np.array([0, 1, A, 0, 1, A])  # nothing flagged
    skin = fitzpatrick_groups(np.array([1, 1, 1, 2, 2, 2]))
    report = triage_report(labels, answers, CLASSES, MALIGNANT, 0.95, "test", skin_types=skin).to_dict()
    assert report["rates"]["ppv"] == {"estimate": None, "lower": None, "upper": None, "successes": 0, "trials": 0,
                                      "level": 0.95, "method": "clopper-pearson (two-sided)"}
    by_type = {g["group"]: g for g in report["per_skin_type"]}
    assert [g["group"] for g in report["per_skin_type"]] == ["I", "II", "III", "IV", "V", "VI"]
    assert by_type["I"]["n_examples"] == 3 and by_type["II"]["n_examples"] == 3 and by_type["VI"]["n_examples"] == 0
    assert by_type["I"]["rates"]["sensitivity"]["trials"] == 1 and by_type["I"]["rates"]["specificity"]["successes"] == 2
    assert by_type["VI"]["rates"]["sensitivity"]["estimate"] is None


def test_answers_at_radius_keep_only_certified_predictions() -> None:
    predictions = np.array([2, 0, A, 3])
    radii = np.array([0.3, 0.1, 0.0, 0.25])
    assert answers_at_radius(predictions, radii, 0.0).tolist() == [2, 0, A, 3]
    assert answers_at_radius(predictions, radii, 0.25).tolist() == [2, A, A, 3]  # inclusive at r


@pytest.mark.parametrize("bad", [{"malignant": ["mole"]}, {"malignant": []}, {"answers": np.array([0, 7])},
                                 {"answers": np.array([0])}])
def test_bad_input_is_a_one_line_error(bad: dict) -> None:
    with pytest.raises(InputError):
        triage_report(np.array([0, 2]), bad.get("answers", np.array([0, 2])), CLASSES, bad.get("malignant", MALIGNANT), 0.95, "t")


def _simulate(rng: np.random.Generator, n: int, prevalence: float, flag_m: float, abstain_m: float, clear_b: float,
              abstain_b: float) -> tuple[np.ndarray, np.ndarray]:
    """A test set with known triage behaviour: outcome probabilities given the true (malignant/benign) status."""
    malignant = rng.random(n) < prevalence
    labels = np.where(malignant, rng.integers(2, 4, n), rng.integers(0, 2, n))
    u = rng.random(n)
    flagged = np.where(malignant, u < flag_m, u >= clear_b + abstain_b)
    abstained = np.where(malignant, (u >= flag_m) & (u < flag_m + abstain_m), (u >= clear_b) & (u < clear_b + abstain_b))
    answers = np.where(flagged, rng.integers(2, 4, n), rng.integers(0, 2, n))
    return labels, np.where(abstained, ABSTAIN, answers)


@pytest.mark.parametrize("level", [0.95, 0.8])
def test_clopper_pearson_intervals_cover_the_true_rates_at_least_at_nominal(level: float) -> None:
    """Simulate many test sets against known sensitivity, specificity, PPV and NPV; each interval must cover its
    truth at least ``level`` of the time (up to 3 Monte-Carlo standard errors); a too-narrow interval must fail."""
    prevalence, flag_m, abstain_m, clear_b, abstain_b = 0.3, 0.85, 0.05, 0.80, 0.06
    flag_b = 1 - clear_b - abstain_b
    clear_m = 1 - flag_m - abstain_m
    truth = {"sensitivity": flag_m, "specificity": clear_b,
             "ppv": prevalence * flag_m / (prevalence * flag_m + (1 - prevalence) * flag_b),
             "npv": (1 - prevalence) * clear_b / ((1 - prevalence) * clear_b + prevalence * clear_m)}
    rng = np.random.default_rng(20261202)
    reps = 1500
    covered = {name: 0 for name in truth}
    narrow = {name: 0 for name in truth}  # a point-estimate +/- half the CP half-width: must undercover
    for _ in range(reps):
        labels, answers = _simulate(rng, 80, prevalence, flag_m, abstain_m, clear_b, abstain_b)
        rates = triage_report(labels, answers, CLASSES, MALIGNANT, level, "simulation").rates
        for name, p in truth.items():
            rate = rates[name]
            covered[name] += rate.lower <= p <= rate.upper
            narrow[name] += (rate.estimate - (rate.estimate - rate.lower) / 2) <= p <= (rate.estimate + (rate.upper - rate.estimate) / 2)
    slack = 3 * np.sqrt(level * (1 - level) / reps)
    for name in truth:
        assert covered[name] / reps >= level - slack, (name, covered[name] / reps)
        assert narrow[name] / reps < level - slack, (name, narrow[name] / reps)


def test_clinical_rate_is_two_sided_at_its_level() -> None:
    from statsmodels.stats.proportion import proportion_confint

    rate = clinical_rate(17, 40, 0.95)
    lower, upper = proportion_confint(17, 40, alpha=0.05, method="beta")
    assert rate.lower == pytest.approx(lower, abs=1e-12) and rate.upper == pytest.approx(upper, abs=1e-12)
    assert clinical_rate(0, 0, 0.95).estimate is None
