"""Incremental randomized smoothing against an analytic truth: two parallel linear classifiers.

The original f(x) = 1[w.x + b > 0] and the approximation f^a(x) = 1[w.x + b - delta ||w|| > 0] disagree exactly
when the noisy point's signed distance m(x + e) to f's hyperplane lies in (0, delta], so with m = m(x):

    zeta(x) = Phi(m / sigma) - Phi((m - delta) / sigma),

and for m > 0 the incremental bound is tight: P(f^a(x + e) = 1) = P(f(x + e) = 1) - zeta. The smoothed f^a's
exact answer is class 1[m > delta] with radius |m - delta|. Tolerances are binomial quantiles at a test
false-alarm level of 1e-6 (not flaky); each check fails for a plausible bug (the point estimate of zeta instead
of its upper bound, no subtraction of zeta, zeta counted on different noise for the two models).
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom, norm

from certification.incremental import IncrementalCertifier, disagreement_upper_bound, incremental_answer
from certification.onnx_model import OnnxClassifier
from certification.smoothing import SmoothedClassifier
from support.oracle import linear_onnx, points_at_margins

CHW = (1, 4, 4)
SIGMA, DELTA = 0.25, 0.05
ALPHA_F, ALPHA_Z = 0.05, 0.05
TEST_LEVEL = 1e-6


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("incremental")
    rng = np.random.default_rng(7)
    w = rng.choice([-1.0, 1.0], size=CHW) * rng.uniform(0.8, 1.2, size=CHW)
    b = 0.3
    original = linear_onnx(folder / "f.onnx", w, b, CHW)
    approximate = linear_onnx(folder / "fa.onnx", w, b - DELTA * float(np.linalg.norm(w)), CHW)
    margins = np.linspace(0.005, 0.6, 800)
    points = points_at_margins(w, b, np.full(CHW, 0.5), margins)
    smoothed = SmoothedClassifier.from_onnx(original, SIGMA, batch_size=1000, threads=1, provider="cpu")
    full = smoothed.certify_many(points, None, 100, 1000, ALPHA_F, seed=11)
    certifier = IncrementalCertifier(OnnxClassifier(original, threads=1, provider="cpu"),
                                     OnnxClassifier(approximate, threads=1, provider="cpu"), SIGMA, batch_size=1000)
    results = list(certifier.iter_certify(points, [r.prediction for r in full], [r.p_lower for r in full], 500, ALPHA_Z,
                                          seed=11, indices=list(range(len(points)))))
    return margins, full, results, certifier, points


def _allowed(trials: int, rate: float) -> int:
    return int(binom.ppf(1 - TEST_LEVEL, trials, rate))


def test_overclaim_rate_within_the_summed_alpha(runs):
    margins, _, results, _, _ = runs
    bad = 0
    for result, m in zip(results, margins):
        if result.prediction == -1:
            continue
        true_class, true_radius = (1, m - DELTA) if m > DELTA else (0, DELTA - m)
        bad += result.prediction != true_class or result.radius > true_radius
    assert bad <= _allowed(len(results), ALPHA_F + ALPHA_Z), f"{bad} overclaims in {len(results)}"
    # not vacuous: far from both hyperplanes most examples are certified, with radii below the truth by little
    far = [r for r, m in zip(results, margins) if m > 0.3]
    assert np.mean([r.prediction == 1 for r in far]) > 0.95
    assert np.median([(m - DELTA) - r.radius for r, m in zip(results, margins) if m > 0.3 and r.prediction == 1]) < 0.15


def test_disagreement_upper_bound_covers_the_analytic_rate(runs):
    margins, _, results, _, _ = runs
    zeta = norm.cdf(margins / SIGMA) - norm.cdf((margins - DELTA) / SIGMA)
    sampled = [(r, z) for r, z in zip(results, zeta) if r.n_p]
    assert len(sampled) > 600
    misses = sum(r.zeta_upper < z for r, z in sampled)
    assert misses <= _allowed(len(sampled), ALPHA_Z)
    # the point estimate k / n_p misses about half the time: the check above would catch it
    assert sum(r.disagreements / r.n_p < z for r, z in sampled) > 3 * _allowed(len(sampled), ALPHA_Z)
    # the counts are those of a binomial(n_p, zeta): mean within 6 standard errors
    k = np.array([r.disagreements for r, _ in sampled]); z = np.array([z for _, z in sampled])
    assert abs(k.sum() - (500 * z).sum()) < 6 * np.sqrt((500 * z * (1 - z)).sum())


def test_abstentions_and_low_bounds_sample_nothing(runs):
    _, full, results, certifier, points = runs
    for original, result in zip(full, results):
        if original.prediction == -1 or original.p_lower <= 0.5:
            assert (result.prediction, result.radius, result.n_p) == (-1, 0.0, 0)
    last = list(range(len(points) - 5, len(points)))
    again = list(certifier.iter_certify(points[last], [-1, 1, 1, 1, 1], [0.4, 0.5, 0.99, 0.99, 0.99], 500, ALPHA_Z, 11, last))
    assert [r.n_p for r in again] == [0, 0, 500, 500, 500] and all(r.n_p for r in results[-3:])
    # noise depends on (seed, index) only: the same examples give the same counts in another batch
    assert [r.disagreements for r in again[2:]] == [r.disagreements for r in results[-3:]]


def test_answer_rule():
    assert incremental_answer(1, 0.9, 0.1, 0.5) == (1, pytest.approx(0.5 * norm.ppf(0.8)), pytest.approx(0.8))
    assert incremental_answer(1, 0.6, 0.1, 0.5)[:2] == (-1, 0.0)  # 0.5 exactly: abstain
    assert incremental_answer(-1, 0.99, 0.0, 0.5)[:2] == (-1, 0.0)
    assert disagreement_upper_bound(0, 1000, 0.001) == pytest.approx(1 - 0.001 ** (1 / 1000))
