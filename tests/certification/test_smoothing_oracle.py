"""Statistical tests of CERTIFY and PREDICT against the analytic linear oracle (see smoothing_oracle.py).

Every tolerance is a binomial quantile at a test false-alarm level of 1e-6, so the tests are not flaky, and
each test would fail for a plausible bug (a point-estimate bound, reused selection samples, clipped noise,
a wrong radius formula, a wrong abstention rule); two tests check that directly by breaking the bound.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import beta, binom, binomtest, norm

from certification.smoothing import SmoothedClassifier
from certification.smoothing import CertifyResult
from support.oracle import exact_margin, linear_onnx, oracle_classifier, points_at_margins

CHW = (1, 4, 4)
SIGMA = 0.25
TEST_LEVEL = 1e-6  # probability that a correct implementation fails a tolerance check


@pytest.fixture(scope="module")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> tuple[SmoothedClassifier, np.ndarray, float]:
    return oracle_classifier(tmp_path_factory.mktemp("oracle"), seed=7, b=0.3, sigma=SIGMA, batch_size=1000, chw=CHW)


def _points(w: np.ndarray, b: float, margins: np.ndarray) -> np.ndarray:
    return points_at_margins(w, b, np.full(CHW, 0.5), margins)


def _overclaims(results: list[CertifyResult], margins: np.ndarray) -> int:
    """Certificates that claim more than the truth: a wrong class, or a radius above the exact distance."""
    bad = 0
    for result, margin in zip(results, margins):
        if result.prediction == -1:
            continue
        true_class = 1 if margin > 0 else 0
        if result.prediction != true_class or result.radius > abs(margin):
            bad += 1
    return bad


def _allowed(trials: int, alpha: float) -> int:
    """Largest overclaim count a valid alpha-level certifier reaches with probability >= 1 - TEST_LEVEL."""
    return int(binom.ppf(1 - TEST_LEVEL, trials, alpha))


def test_overclaim_rate_within_alpha(oracle) -> None:
    classifier, w, b = oracle
    alpha, n0, n, count = 0.01, 100, 2000, 1200
    margins = np.linspace(-0.7, 0.7, count)  # many distances, both classes, inside and beyond the radius cap
    points = _points(w, b, margins)
    exact = np.array([exact_margin(w, b, x) for x in points])
    np.testing.assert_allclose(exact, margins, atol=1e-6)
    results = classifier.certify_many(points, None, n0, n, alpha, seed=11)
    assert len(results) == count and [r.index for r in results] == list(range(count))
    bad = _overclaims(results, exact)
    assert bad <= _allowed(count, alpha), f"{bad} overclaims in {count} certificates at alpha={alpha}"
    # the certifier is not vacuous: most points far from the boundary are certified with the right class
    far = np.abs(margins) > 0.2
    right = [r.prediction == (1 if m > 0 else 0) for r, m in zip(results, margins)]
    assert np.mean(np.array(right)[far]) > 0.95


def test_overclaim_check_detects_an_invalid_bound(oracle, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same check fails for a certifier that uses the point estimate n_a/n instead of a confidence bound."""
    classifier, w, b = oracle
    alpha, count = 0.01, 400
    margins = np.linspace(0.02, 0.4, count)
    points = _points(w, b, margins)
    monkeypatch.setattr(SmoothedClassifier, "lower_confidence_bound", staticmethod(lambda n_a, n, a: n_a / n))
    results = classifier.certify_many(points, None, 100, 2000, alpha, seed=12)
    assert _overclaims(results, margins) > _allowed(count, alpha)


def test_counts_follow_the_analytic_probability_unclipped(oracle) -> None:
    """Estimation counts of class 1 are Binomial(n, Phi(margin / sigma)); clipping x + noise would break this."""
    classifier, w, b = oracle
    n = 4000
    margins = np.linspace(-0.3, 0.3, 41)
    points = _points(w, b, margins)
    results = classifier.certify_many(points, None, 10, n, 0.01, seed=13)
    p = norm.cdf(margins / SIGMA)
    observed = np.array([r.counts_estimation[1] for r in results])
    z = (observed - n * p) / np.sqrt(n * p * (1 - p))
    assert np.all(np.abs(z) < 5.3), z  # |z| < 5.3 per point: P(any of 41 fails) < 1e-5
    chi2 = float((z**2).sum())
    assert chi2 < 100, chi2  # chi-square with 41 d.o.f.: P(> 100) ~ 1e-6


def test_noise_is_not_clipped_at_the_pixel_range(tmp_path) -> None:
    """On an all-black image every clipped noise vector would be >= 0; unclipped noise keeps P = Phi(m/sigma)."""
    w = np.full(CHW, 0.25)  # unit norm, all positive: clipped noise would push w.(x+e) up
    b = -0.05  # x = 0 sits at signed distance -0.05
    classifier = SmoothedClassifier.from_onnx(linear_onnx(tmp_path / "lin.onnx", w, b, CHW), SIGMA, threads=1)
    n = 20000
    result = classifier.certify(np.zeros(CHW, dtype=np.float32), 10, n, 0.01, seed=3)
    p = norm.cdf(-0.05 / SIGMA)
    interval = binom.ppf([TEST_LEVEL / 2, 1 - TEST_LEVEL / 2], n, p)
    assert interval[0] <= result.counts_estimation[1] <= interval[1]


def test_radius_recomputed_independently_and_abstention_rule(oracle) -> None:
    classifier, w, b = oracle
    alpha, n = 0.01, 1000
    margins = np.linspace(-0.12, 0.12, 300)  # around the boundary: many abstentions and many certificates
    results = classifier.certify_many(_points(w, b, margins), None, 50, n, alpha, seed=14)
    abstained = 0
    for r in results:
        selected = int(np.argmax(r.counts_selection))
        assert r.n_a == r.counts_estimation[selected] and sum(r.counts_estimation) == n and sum(r.counts_selection) == 50
        bound = 0.0 if r.n_a == 0 else float(beta.ppf(alpha, r.n_a, n - r.n_a + 1))
        assert r.p_lower == pytest.approx(bound, abs=1e-12)
        if bound < 0.5:
            assert r.prediction == -1 and r.radius == 0.0
            abstained += 1
        else:
            assert r.prediction == selected
            assert abs(r.radius - SIGMA * norm.ppf(bound)) <= 1e-9
    assert 0 < abstained < len(results)


def test_lower_confidence_bound_is_one_sided_clopper_pearson() -> None:
    n, alpha = 500, 0.001
    for n_a in range(0, n + 1, 7):
        expected = 0.0 if n_a == 0 else beta.ppf(alpha, n_a, n - n_a + 1)
        assert SmoothedClassifier.lower_confidence_bound(n_a, n, alpha) == pytest.approx(expected, abs=1e-12)
    # the radius ceiling quoted by Cohen et al.: n = 100,000, alpha = 0.001 -> 3.8115 sigma
    assert norm.ppf(SmoothedClassifier.lower_confidence_bound(100_000, 100_000, 0.001)) == pytest.approx(3.8115, abs=5e-4)


def test_certificates_tighten_with_n(oracle) -> None:
    classifier, w, b = oracle
    margins = np.linspace(0.1, 0.5, 12)  # well inside the certifiable range (cap ~ 0.95 at n = 100,000)
    results = classifier.certify_many(_points(w, b, margins), None, 100, 100_000, 0.001, seed=15)
    ratios = np.array([r.radius for r in results]) / margins
    assert np.median(ratios) > 0.9, ratios
    assert np.all(ratios <= 1.0)


def _predict_theory(n: int, p1: float, alpha: float) -> tuple[float, float]:
    """Exact P(abstain) and P(predict class 0) of PREDICT with P(f = 1) = p1 over n samples."""
    abstain = wrong = 0.0
    for x in range(n + 1):
        top, second = max(x, n - x), min(x, n - x)
        mass = float(binom.pmf(x, n, p1))
        if binomtest(top, top + second, 0.5).pvalue > alpha:
            abstain += mass
        elif x < n - x:
            wrong += mass
    return abstain, wrong


@pytest.mark.parametrize("margin", [0.0, 0.02])
def test_predict_abstention_rate_matches_theory(oracle, margin: float) -> None:
    classifier, w, b = oracle
    n, alpha, count = 100, 0.05, 1500
    points = _points(w, b, np.full(count, margin))
    answers = np.array(classifier.predict_many(points, n, alpha, seed=16))
    p_abstain, p_wrong = _predict_theory(n, float(norm.cdf(margin / SIGMA)), alpha)
    for observed, p in ((np.sum(answers == -1), p_abstain), (np.sum(answers == 0), p_wrong)):
        lo, hi = binom.ppf([TEST_LEVEL / 2, 1 - TEST_LEVEL / 2], count, p)
        assert lo <= observed <= hi, (observed, count * p)
    if margin == 0.0:
        assert np.sum(answers == 1) <= binom.ppf(1 - TEST_LEVEL, count, alpha / 2)  # a class at p = 1/2 at most alpha/2


def test_single_certify_equals_certify_many_at_the_same_index(oracle) -> None:
    classifier, w, b = oracle
    points = _points(w, b, np.array([0.35, -0.2, 0.3]))  # pA >= Phi(0.8): 20 selection draws pick the true class
    many = classifier.certify_many(points, [1, 0, 1], 20, 500, 0.01, seed=17)
    one = classifier.certify(points[2], 20, 500, 0.01, seed=17, index=2)
    assert one.counts_estimation == many[2].counts_estimation and one.radius == many[2].radius
    assert many[0].correct and many[1].label == 0
