"""The dataset-level bounds hold their stated confidence, simulated against known truth.

Two kinds of simulation: (1) a worst-case model of certificates (every truly-robust example is claimed, every other
example is falsely claimed with probability exactly alpha), with many replicates; (2) end to end, the real certifier
on the linear ONNX oracle, where the population certified accuracy at radius r is known exactly."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from certification.certify_run import record_from_result
from certification.dataset_bounds import CERTIFIED_BOUND_METHOD, certified_rate_bound, proportion_bound
from certification.errors import InputError
from certification.smoothing import SmoothedClassifier
from certification.summary import summarize
from support.oracle import linear_onnx, points_at_margins


def _coverage_floor(confidence: float, trials: int, false_alarm: float = 1e-4) -> float:
    """Smallest observed coverage consistent with true coverage >= confidence (binomial test)."""
    return stats.binom.ppf(false_alarm, trials, confidence) / trials


def _simulate_claims(rng: np.random.Generator, p: float, alpha: float, n_examples: int, reps: int) -> np.ndarray:
    """Worst case allowed by CERTIFY: truly certified examples always claim, others claim w.p. alpha."""
    truly = rng.random((reps, n_examples)) < p
    failure = rng.random((reps, n_examples)) < alpha
    return (truly | failure).sum(axis=1)


@pytest.mark.parametrize("p,alpha,n_examples", [(0.5, 0.05, 400), (0.8, 0.01, 200), (0.95, 0.001, 1000), (0.6, 0.02, 100),
                                                (0.3, 0.05, 50)])
def test_certified_rate_bound_covers_truth(p: float, alpha: float, n_examples: int) -> None:
    rng = np.random.default_rng(7)
    reps, confidence = 4000, 0.95
    claims = _simulate_claims(rng, p, alpha, n_examples, reps)
    lowers = np.array([certified_rate_bound(int(k), n_examples, alpha, confidence).lower for k in claims])
    coverage = float(np.mean(lowers <= p))
    assert coverage >= _coverage_floor(confidence, reps), coverage


def test_ignoring_alpha_would_be_caught() -> None:
    """The same simulation rejects a bound that forgets the per-example failure probability."""
    rng = np.random.default_rng(11)
    p, alpha, n_examples, reps, confidence = 0.5, 0.05, 2000, 2000, 0.95
    claims = _simulate_claims(rng, p, alpha, n_examples, reps)
    naive = proportion_confint(claims, n_examples, alpha=2 * (1 - confidence), method="beta")[0]
    assert float(np.mean(naive <= p)) < _coverage_floor(confidence, reps)


def test_proportion_bound_two_one_sided_bounds_cover() -> None:
    rng = np.random.default_rng(3)
    p, n, reps, confidence = 0.3, 150, 4000, 0.9
    k = rng.binomial(n, p, size=reps)
    bounds = [proportion_bound(int(x), n, confidence) for x in k]
    assert np.mean([b.lower <= p for b in bounds]) >= _coverage_floor(confidence, reps)
    assert np.mean([b.upper >= p for b in bounds]) >= _coverage_floor(confidence, reps)


def test_bound_fields_and_method() -> None:
    b = certified_rate_bound(90, 100, alpha=0.001, confidence=0.95)
    assert b.method == CERTIFIED_BOUND_METHOD and b.upper is None
    assert b.estimate == pytest.approx(0.9)
    expected = stats.beta.ppf(0.05, 90, 11) - 0.001
    assert b.lower == pytest.approx(expected, abs=1e-12)
    assert certified_rate_bound(0, 10, 0.01, 0.95).lower == 0.0


@pytest.mark.parametrize("args", [(1, 0, 0.01, 0.95), (5, 4, 0.01, 0.95), (1, 4, 0.01, 1.0), (1, 4, -0.1, 0.9)])
def test_bad_arguments(args: tuple) -> None:
    with pytest.raises(InputError):
        certified_rate_bound(*args)


def test_end_to_end_bound_covers_the_oracle_population(tmp_path) -> None:
    """Population: points at signed distance m ~ U(-0.3, 0.6) from the oracle's hyperplane, all labelled 1.
    True certified accuracy at r is P(m >= r) = (0.6 - r) / 0.9; the summary's lower bounds must cover it."""
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
        records = [record_from_result(r, alpha, sigma, rep, model_sha256="oracle", data_sha256=f"draw-{rep}")
                   for r in results]
        curve = summarize(records, radii, confidence, ["zero", "one"])["curve"]
        misses += np.array([row["lower_bound"] > t for row, t in zip(curve, truth)])
    floor = _coverage_floor(confidence, replicates)
    assert np.all(1 - misses / replicates >= floor), misses
