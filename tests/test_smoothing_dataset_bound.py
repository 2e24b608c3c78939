"""The dataset-level bound (clopper-pearson-minus-alpha) covers the population value as often as it claims.

Two simulations: (1) a worst-case model of certificates (every truly-robust example is claimed, every other
example is falsely claimed with probability exactly alpha), with many replicates; (2) end to end, the real
certifier on the linear oracle, where the population certified accuracy at radius r is known exactly.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom

from certification import SmoothedClassifier
from certification.dataset_bounds import certified_rate_bound, proportion_bound
from certification.summary import summarize
from smoothing_oracle import linear_onnx, points_at_margins

TEST_LEVEL = 1e-6


def _max_misses(replicates: int, confidence: float) -> int:
    return int(binom.ppf(1 - TEST_LEVEL, replicates, 1 - confidence))


def _worst_case_claims(rng: np.random.Generator, p: float, alpha: float, trials: int, replicates: int) -> np.ndarray:
    truly = rng.random((replicates, trials)) < p
    false_claim = rng.random((replicates, trials)) < alpha
    return (truly | false_claim).sum(axis=1)


@pytest.mark.parametrize("p,alpha,trials", [(0.6, 0.02, 100), (0.9, 0.01, 300), (0.3, 0.05, 50)])
def test_certified_rate_bound_covers_the_population_rate(p: float, alpha: float, trials: int) -> None:
    rng = np.random.default_rng(int(p * 1000) + trials)
    confidence, replicates = 0.9, 3000
    claims = _worst_case_claims(rng, p, alpha, trials, replicates)
    misses = sum(certified_rate_bound(int(k), trials, alpha, confidence).lower > p for k in claims)
    assert misses <= _max_misses(replicates, confidence), misses


def test_ignoring_alpha_would_fail_the_same_check() -> None:
    """Without the alpha term (a plain Clopper-Pearson bound) coverage breaks when false claims are frequent."""
    rng = np.random.default_rng(5)
    p, alpha, trials, confidence, replicates = 0.6, 0.05, 300, 0.9, 3000
    claims = _worst_case_claims(rng, p, alpha, trials, replicates)
    misses = sum(proportion_bound(int(k), trials, confidence).lower > p for k in claims)
    assert misses > _max_misses(replicates, confidence), misses


def test_plain_proportion_bound_covers_both_sides() -> None:
    rng = np.random.default_rng(6)
    p, trials, confidence, replicates = 0.15, 80, 0.95, 3000
    successes = rng.binomial(trials, p, size=replicates)
    bounds = [proportion_bound(int(k), trials, confidence) for k in successes]
    assert sum(b.lower > p for b in bounds) <= _max_misses(replicates, confidence)
    assert sum(b.upper < p for b in bounds) <= _max_misses(replicates, confidence)


def test_end_to_end_bound_covers_the_oracle_population(tmp_path) -> None:
    """Population: points at signed distance m ~ U(-0.3, 0.6) from the oracle's hyperplane, all labelled 1.
    True certified accuracy at r is P(m >= r) = (0.6 - r) / 0.9."""
    chw = (1, 4, 4)
    rng = np.random.default_rng(8)
    w = rng.choice([-1.0, 1.0], size=chw) * rng.uniform(0.8, 1.2, size=chw)
    sigma, alpha, confidence = 0.25, 0.05, 0.9
    classifier = SmoothedClassifier.from_onnx(linear_onnx(tmp_path / "lin.onnx", w, 0.3, chw), sigma, threads=1)
    radii = [0.0, 0.1, 0.2]
    truth = [(0.6 - r) / 0.9 for r in radii]
    replicates, examples = 150, 40
    misses = np.zeros(len(radii), dtype=int)
    for rep in range(replicates):
        margins = rng.uniform(-0.3, 0.6, size=examples)
        points = points_at_margins(w, 0.3, np.full(chw, 0.5), margins)
        results = classifier.certify_many(points, np.ones(examples, dtype=int), 20, 200, alpha, seed=rep)
        records = [{"correct": r.correct, "radius": r.radius, "prediction": r.prediction, "label": r.label} for r in results]
        curve = summarize(records, radii, alpha, confidence, ["zero", "one"])["curve"]
        misses += np.array([row["lower_bound"] > t for row, t in zip(curve, truth)])
    assert np.all(misses <= _max_misses(replicates, confidence)), misses
