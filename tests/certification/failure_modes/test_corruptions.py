"""Lighting and camera variations: deterministic, clipped, growing with severity; coverage set against the radius."""
from __future__ import annotations

import numpy as np
import pytest

from certification.errors import InputError
from certification.failure_modes.camera_variations import VARIATION_NAMES, VARIATIONS, apply_variation
from certification.lighting import LightingCovariance
from certification.certificate_arrays import as_arrays
from certification.failure_modes.corruptions import evaluate_corruptions
from certification.onnx_model import open_session
from certification.smoothing import SmoothedClassifier
from support.linear_fixture import certify_records, make_split, nchw, shared_linear_fixture

SIGMA, ALPHA = 0.25, 0.01


@pytest.fixture(scope="module")
def split():
    fixture = shared_linear_fixture()
    rng = np.random.default_rng(21)
    margins = rng.uniform(0.2, 0.6, 24) * rng.choice([-1, 1], 24)
    arrays = make_split(fixture, margins, (margins > 0).astype(int), seed=22)
    return fixture, arrays


def _l2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sqrt(((a.astype(np.float64) - b) ** 2).reshape(len(a), -1).sum(axis=1))


def test_variations_are_deterministic_clipped_and_grow_with_severity(split):
    _, arrays = split
    images = nchw(arrays)
    indices = np.arange(len(images)) + 100
    assert len(VARIATIONS) == 9 and all(3 <= len(v.levels) <= 5 for v in VARIATIONS)
    for name in VARIATION_NAMES:
        sizes = []
        for severity in range(1, 5):
            varied = apply_variation(images, indices, name, severity, seed=7)
            assert varied.dtype == np.float32 and varied.shape == images.shape
            assert varied.min() >= 0.0 and varied.max() <= 1.0
            assert np.array_equal(varied, apply_variation(images, indices, name, severity, seed=7))
            # per-image randomness depends on the test index, not on the batch it comes in
            assert np.array_equal(varied[3:5], apply_variation(images[3:5], indices[3:5], name, severity, seed=7))
            sizes.append(_l2(varied, images).mean())
        assert sizes[0] > 0.0, name
        if name != "jpeg":  # JPEG error is not monotone in quality image by image; the others are
            assert sizes == sorted(sizes), (name, sizes)
    noisy_a = apply_variation(images, indices, "sensor_noise", 2, seed=7)
    noisy_b = apply_variation(images, indices, "sensor_noise", 2, seed=8)
    assert not np.array_equal(noisy_a, noisy_b)
    with pytest.raises(InputError, match="unknown variation"):
        apply_variation(images, indices, "fog", 1, seed=0)
    with pytest.raises(InputError, match="severity"):
        apply_variation(images, indices, "gamma", 9, seed=0)


def test_large_changes_are_reported_not_covered_and_small_ones_covered(split):
    fixture, arrays = split
    images = nchw(arrays)
    rows = as_arrays(certify_records(fixture.onnx_path, images, arrays["labels"], SIGMA, 50, 1000, ALPHA, 3))
    classifier = SmoothedClassifier.from_onnx(fixture.onnx_path, SIGMA, threads=1, provider="cpu")
    session = open_session(fixture.onnx_path, threads=1)
    clean, results = evaluate_corruptions(
        classifier, session, images, rows, predict_n=200, alpha=ALPHA, seed=5, confidence=0.95,
        names=["brightness", "sensor_noise"], severities=[1, 4],
    )
    by_key = {(r.name, r.severity): r for r in results}
    bright = by_key[("brightness", 4)]
    # +0.30 on every pixel of a 3x8x8 image is an L2 change near 0.3 * sqrt(192) = 4.2, far beyond any radius
    assert bright.l2_mean > 3.0 and bright.l2_mean > 5 * rows.radius.max()
    assert bright.coverage == "not covered" and bright.covered_share == 0.0
    faint = by_key[("sensor_noise", 1)]  # std 0.01: L2 about 0.14, inside the radius of the clearest examples
    assert faint.l2_mean == pytest.approx(0.01 * np.sqrt(192), rel=0.2)
    assert 0.0 < faint.covered_share <= 1.0 and faint.coverage in ("partial", "covered")
    covered = _l2(apply_variation(images, rows.index, "sensor_noise", 1, seed=5), images) <= rows.radius
    assert faint.covered_share == pytest.approx(covered.mean())
    assert all(r.covered_contradictions == 0 for r in results)
    # the linear model is exact: base accuracy on clean data is 1, and PREDICT is right or abstains
    assert clean.accuracy_base == 1.0 and clean.accuracy_smoothed + clean.abstention_smoothed == pytest.approx(1.0)
    for r in results:
        assert r.accuracy_smoothed_lower <= r.accuracy_smoothed <= r.accuracy_smoothed_upper
        assert r.n_examples == len(rows)


def test_vectorised_predict_matches_the_engine_and_scipy(split):
    from scipy.stats import binomtest

    from certification.failure_modes.onnx_base import predict_from_counts, smoothed_predictions

    rng = np.random.default_rng(3)
    counts = rng.integers(0, 40, size=(400, 3))
    counts[:20, 1] = counts[:20, 0]  # ties
    expected = []
    for row in counts:
        order = np.argsort(-row, kind="stable")
        c1, c2 = int(row[order[0]]), int(row[order[1]])
        expected.append(-1 if c1 + c2 == 0 or binomtest(c1, c1 + c2, p=0.5).pvalue > 0.05 else int(order[0]))
    assert predict_from_counts(counts, 0.05).tolist() == expected
    fixture, arrays = split
    images = nchw(arrays)
    classifier = SmoothedClassifier.from_onnx(fixture.onnx_path, SIGMA, threads=1, provider="cpu")
    indices = np.arange(len(images))
    assert smoothed_predictions(classifier, images, indices, 100, ALPHA, 4).tolist() == classifier.predict_many(images, 100, ALPHA, 4, indices)


def test_lighting_coverage_is_the_exact_ellipsoid_test_of_each_actual_change(split):
    """With lighting smoothing (dc) the brightness offsets the L2 certificate never covers are certified, the share
    is the dense delta^T Sigma^-1 delta < R^2 test of each clipped change, and no certified change contradicts PREDICT."""
    fixture, arrays = split
    images = nchw(arrays)
    covariance = LightingCovariance.build("dc", 0.04, SIGMA, images.shape[1:])
    records = certify_records(fixture.onnx_path, images, arrays["labels"], SIGMA, 50, 1000, ALPHA, 3, lighting=covariance)
    rows = as_arrays(records)
    radii = np.array([r.mahalanobis_radius for r in records])
    classifier = SmoothedClassifier.from_onnx(fixture.onnx_path, SIGMA, threads=1, provider="cpu", lighting=covariance)
    session = open_session(fixture.onnx_path, threads=1)
    clean, results = evaluate_corruptions(
        classifier, session, images, rows, predict_n=200, alpha=ALPHA, seed=5, confidence=0.95,
        names=["brightness", "contrast"], severities=[1, 2], lighting=covariance, mahalanobis_radius=radii,
    )
    basis = covariance.basis
    inverse = np.linalg.inv(SIGMA**2 * np.eye(basis.shape[1]) + covariance.tau_norm**2 * basis.T @ basis)
    certified = ~rows.abstained
    for result in results:
        varied = apply_variation(images, rows.index, result.name, result.severity, seed=5)
        delta = (varied.astype(np.float64) - images).reshape(len(images), -1)
        exact = (np.einsum("nd,de,ne->n", delta, inverse, delta) < radii**2) & certified
        assert result.lighting_certified_share == pytest.approx(exact.mean(), abs=1e-12)
        assert result.lighting_certified_share_of_certified == pytest.approx(exact.sum() / certified.sum(), abs=1e-12)
        assert result.lighting_contradictions == 0
        assert result.covered_share <= result.lighting_certified_share  # the ellipsoid contains the L2 ball
    by_key = {(r.name, r.severity): r for r in results}
    assert by_key[("brightness", 1)].covered_share == 0.0 and by_key[("brightness", 1)].lighting_certified_share > 0.5
    assert "lighting_certified_share" in by_key[("brightness", 1)].to_dict()
    assert clean.lighting_certified_share == pytest.approx(certified.mean())
