"""Lighting certificates (anisotropic smoothing, issue 19) against an analytic oracle.

The oracle is a linear two-class model f(x) = 1[w.x + b > 0]. Under e ~ N(0, Sigma), w.e is normal with variance
w^T Sigma w, so P(f(x + e) = 1) = Phi(s(x)) with s(x) = (w.x + b) / sqrt(w^T Sigma w), and the smoothed classifier
keeps its class on x + delta iff the sign of s(x) + w.delta / sqrt(w^T Sigma w) is unchanged: its exact Mahalanobis
robust radius is |s(x)| (the ellipsoid delta^T Sigma^-1 delta < s^2 touches the hyperplane at one point).
Tolerances are binomial or normal quantiles at a test false-alarm level of about 1e-6.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom, norm

from certification.errors import ParameterError
from certification.lighting import LightingCovariance, check_lighting, lighting_directions
from certification.noise_sampling import NoiseStream
from certification.smoothing import CertifyResult, SmoothedClassifier
from support.oracle import linear_onnx

CHW = (3, 4, 4)
D = 48
SIGMA, TAU = 0.25, 0.05
TEST_LEVEL = 1e-6


def _dense(covariance: LightingCovariance) -> np.ndarray:
    basis = covariance.basis
    return covariance.sigma**2 * np.eye(covariance.d) + covariance.tau_norm**2 * basis.T @ basis


@pytest.fixture(scope="module")
def covariance() -> LightingCovariance:
    return LightingCovariance.build("dc+ramps", TAU, SIGMA, CHW)


@pytest.fixture(scope="module")
def oracle(tmp_path_factory: pytest.TempPathFactory, covariance: LightingCovariance):
    """A linear model with a large component along the lighting directions (where Sigma is not sigma^2 I)."""
    rng = np.random.default_rng(19)
    w = 0.6 * rng.standard_normal(D) + covariance.basis.T @ (3.0 * rng.standard_normal(covariance.k))
    b = float(-w @ np.full(D, 0.5))  # the decision boundary through the grey image, so every point stays in [0, 1]
    path = linear_onnx(tmp_path_factory.mktemp("lighting") / "linear.onnx", w.reshape(CHW), b, CHW)
    classifier = SmoothedClassifier.from_onnx(path, SIGMA, batch_size=1000, threads=1, lighting=covariance)
    scale = float(np.sqrt(w @ _dense(covariance) @ w))
    return classifier, w, b, scale


def _points(w: np.ndarray, b: float, scale: float, margins: np.ndarray) -> np.ndarray:
    """Images 0.5 + t_j w/||w|| whose exact Mahalanobis margin s(x_j) is margins_j."""
    centre = np.full(D, 0.5)
    steps = (margins * scale - (w @ centre + b)) / np.linalg.norm(w)
    points = centre[None] + steps[:, None] * (w / np.linalg.norm(w))[None]
    assert points.min() >= 0.0 and points.max() <= 1.0
    return points.reshape(-1, *CHW).astype(np.float32)


def _truth(w: np.ndarray, b: float, scale: float, points: np.ndarray) -> np.ndarray:
    return (points.reshape(len(points), -1).astype(np.float64) @ w + b) / scale


def _overclaims(results: list[CertifyResult], truth: np.ndarray) -> int:
    bad = 0
    for result, s in zip(results, truth):
        if result.prediction != -1 and (result.prediction != int(s > 0) or result.mahalanobis_radius > abs(s)):
            bad += 1
    return bad


def test_directions_are_orthonormal_lighting_patterns() -> None:
    dc = lighting_directions("dc", CHW)
    ramps = lighting_directions("dc+ramps", CHW)
    assert dc.shape == (3, D) and ramps.shape == (9, D) and lighting_directions("none", CHW).shape == (0, D)
    np.testing.assert_allclose(ramps @ ramps.T, np.eye(9), atol=1e-12)
    # a brightness offset of every channel lies in span(dc); an x-ramp on every channel in span(dc+ramps) only
    offset = np.ones(D)
    assert np.linalg.norm(offset - dc.T @ (dc @ offset)) < 1e-12
    ramp = np.broadcast_to(np.linspace(-1, 1, 4)[None, None, :], CHW).reshape(D)
    assert np.linalg.norm(ramp - dc.T @ (dc @ ramp)) > 1.0
    assert np.linalg.norm(ramp - ramps.T @ (ramps @ ramp)) < 1e-12


def test_woodbury_norm_equals_the_dense_inverse(covariance: LightingCovariance) -> None:
    rng = np.random.default_rng(1)
    deltas = rng.standard_normal((20, D)) * rng.uniform(0.01, 1.0, size=(20, 1))
    deltas[:5] = covariance.basis[:5] * 3.0  # purely along lighting directions: no cancellation either
    inverse = np.linalg.inv(_dense(covariance))
    exact = np.sqrt(np.einsum("nd,de,ne->n", deltas, inverse, deltas))
    np.testing.assert_allclose(covariance.mahalanobis_norm(deltas), exact, rtol=1e-12)
    iso = LightingCovariance.build("none", 0.0, SIGMA, CHW)
    np.testing.assert_allclose(iso.mahalanobis_norm(deltas), np.linalg.norm(deltas, axis=1) / SIGMA, rtol=1e-12)
    # the ellipsoid contains the L2 ball of radius sigma * R: never a larger norm than isotropic smoothing's
    assert np.all(covariance.mahalanobis_norm(deltas) <= iso.mahalanobis_norm(deltas) + 1e-12)


def test_noise_has_the_covariance_and_keeps_the_isotropic_draws(covariance: LightingCovariance) -> None:
    m = 20000
    plain = NoiseStream(5, 3, 1, CHW, SIGMA).sample(m).reshape(m, D).astype(np.float64)
    lit = NoiseStream(5, 3, 1, CHW, SIGMA, covariance).sample(m).reshape(m, D).astype(np.float64)
    # the lighting part lies in span(V): off it the draws are the isotropic ones (float32 rounding apart)
    extra = lit - plain
    off_span = extra - (extra @ covariance.basis.T) @ covariance.basis
    assert np.abs(off_span).max() < 1e-5
    # along each v_k the variance is sigma^2 + tau'^2 (a chi-square quantile at level ~1e-6 either side)
    along = (lit @ covariance.basis.T).var(axis=0) / (SIGMA**2 + covariance.tau_norm**2)
    assert np.all(np.abs(along - 1.0) < 5.0 * np.sqrt(2.0 / m))
    # a stream skipped ahead draws the same images as one read from the start
    skipped = NoiseStream(5, 3, 1, CHW, SIGMA, covariance).skip(7).sample(3).reshape(3, D)
    np.testing.assert_array_equal(skipped, lit[7:10].astype(np.float32))


def test_counts_follow_the_analytic_probability(oracle) -> None:
    """Estimation counts are Binomial(n, Phi(s(x))) with s computed from Sigma; isotropic noise would not fit."""
    classifier, w, b, scale = oracle
    n, margins = 4000, np.linspace(-1.5, 1.5, 21)
    points = _points(w, b, scale, margins)
    results = classifier.certify_many(points, None, 10, n, 0.01, seed=21)
    p = norm.cdf(_truth(w, b, scale, points))
    ones = np.array([r.counts_estimation[1] for r in results])
    z = (ones - n * p) / np.sqrt(n * p * (1 - p))
    assert np.abs(z).max() < 5.3, z


def test_overclaim_rate_within_alpha_and_ellipsoid_exact(oracle, covariance: LightingCovariance) -> None:
    classifier, w, b, scale = oracle
    alpha, count = 0.01, 600
    margins = np.linspace(-3.0, 3.0, count)
    points = _points(w, b, scale, margins)
    truth = _truth(w, b, scale, points)
    results = classifier.certify_many(points, None, 100, 1000, alpha, seed=22)
    bad = _overclaims(results, truth)
    assert bad <= int(binom.ppf(1 - TEST_LEVEL, count, alpha)), f"{bad} overclaims in {count} at alpha {alpha}"
    assert all(r.radius == pytest.approx(SIGMA * r.mahalanobis_radius, rel=1e-12) for r in results)
    far = np.abs(margins) > 1.0
    assert np.mean([r.prediction == int(s > 0) for r, s in np.array(list(zip(results, truth)), dtype=object)[far]]) > 0.95
    # exactness: the worst perturbation on the ellipsoid of radius R moves w.x + b by R sqrt(w^T Sigma w) towards 0
    sigma_w = _dense(covariance) @ w
    rng = np.random.default_rng(3)
    checked = 0
    for result, x, s in zip(results, points, truth):
        if result.prediction == -1 or result.mahalanobis_radius > abs(s):
            continue
        radius, sign = result.mahalanobis_radius, 1.0 if result.prediction == 1 else -1.0
        worst = -sign * radius * sigma_w / scale
        assert covariance.mahalanobis_norm(worst) == pytest.approx(radius, rel=1e-9)
        inside = worst * (1 - 1e-9)
        assert covariance.certifies(inside, radius) and not covariance.certifies(worst * (1 + 1e-9), radius)
        moved = (x.reshape(D).astype(np.float64) + inside) @ w + b
        assert np.sign(moved) == sign  # no certified delta flips the true smoothed class
        # random certified perturbations (scaled into the ellipsoid) keep the class too
        randoms = rng.standard_normal((8, D))
        randoms *= (0.999 * radius / covariance.mahalanobis_norm(randoms))[:, None]
        assert np.all(np.sign((x.reshape(D) + randoms) @ w + b) == sign)
        checked += 1
    assert checked > count // 2


def test_overclaim_check_detects_isotropic_noise_with_a_mahalanobis_claim(oracle, covariance: LightingCovariance) -> None:
    """A certifier that draws N(0, sigma^2 I) but claims the lighting ellipsoid overclaims: the oracle test catches it."""
    classifier, w, b, scale = oracle
    iso = SmoothedClassifier(classifier.base_classifier, SIGMA, batch_size=1000)
    margins = np.linspace(0.2, 2.0, 200)
    points = _points(w, b, scale, margins)
    results = iso.certify_many(points, None, 100, 1000, 0.01, seed=23)
    assert _overclaims(results, _truth(w, b, scale, points)) > int(binom.ppf(1 - TEST_LEVEL, 200, 0.01))


def test_covered_extents_are_the_boundary_of_the_ellipsoid(covariance: LightingCovariance) -> None:
    x = np.random.default_rng(4).uniform(0.2, 0.8, size=CHW)
    extents = covariance.covered_extents(x, 2.0)
    ones = np.ones(CHW)
    assert covariance.certifies(ones * extents.brightness_offset * (1 - 1e-9), 2.0)
    assert not covariance.certifies(ones * extents.brightness_offset * (1 + 1e-9), 2.0)
    gain = np.zeros(CHW)
    gain[0] = x[0]
    assert covariance.mahalanobis_norm(gain * extents.gain_change) <= 2.0 * (1 + 1e-9)
    ramp = np.broadcast_to(np.linspace(-1, 1, 4)[None, :, None], CHW)
    assert covariance.mahalanobis_norm(ramp * extents.ramp_strength) <= 2.0 * (1 + 1e-9)
    # an offset lies in span(dc): b sqrt(D / (sigma^2 + tau'^2)) < R, sqrt(1 + tau^2 D / sigma^2) times the L2 ball's
    assert extents.brightness_offset == pytest.approx(2.0 * np.sqrt((SIGMA**2 + TAU**2 * D) / D), rel=1e-12)
    iso = LightingCovariance.build("none", 0.0, SIGMA, CHW)
    assert extents.brightness_offset / iso.covered_extents(x, 2.0).brightness_offset == pytest.approx(
        np.sqrt(1 + TAU**2 * D / SIGMA**2), rel=1e-12)


@pytest.mark.parametrize(("directions", "tau", "sigma", "message"), [
    ("dc", -0.1, 0.25, "tau must be a finite number >= 0"),
    ("sky", 0.05, 0.25, "unknown lighting direction set 'sky'"),
    ("dc", 0.05, 0.0, "set on a sigma of 0"),
    ("none", 0.05, 0.25, "directions is none"),
    ("dc+ramps", 0.0, 0.25, "tau is 0"),
])
def test_bad_lighting_params_are_one_line_errors(directions: str, tau: float, sigma: float, message: str) -> None:
    with pytest.raises(ParameterError, match=message) as raised:
        check_lighting(directions, tau, sigma, where="certify.lighting")
    assert "\n" not in str(raised.value)
