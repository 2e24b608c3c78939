"""PGD against the smoothed linear model, whose true robust radius is its margin: honest certificates survive,
mis-scaled or inflated ones are caught as confirmed contradictions, and the curves bracket the truth."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from certification.failure_modes.attacks import attack_smoothed
from certification.certificate_arrays import as_arrays
from certification.onnx_model import open_session
from certification.failure_modes.pgd import smoothed_pgd_l2
from certification.smoothing import SmoothedClassifier
from support.linear_fixture import certify_records, make_split, nchw, shared_linear_fixture

ALPHA, CONFIDENCE, RADII = 0.01, 0.95, [0.1, 0.2, 0.4]


@pytest.fixture(scope="module")
def data():
    torch.set_num_threads(1)
    fixture = shared_linear_fixture()
    rng = np.random.default_rng(31)
    margins = rng.uniform(-0.6, 0.6, 40)
    arrays = make_split(fixture, margins, (margins > 0).astype(int), seed=32)
    return fixture, nchw(arrays), arrays["labels"]


def _attack(fixture, images, rows, sigma):
    classifier = SmoothedClassifier.from_onnx(fixture.onnx_path, sigma, threads=1, provider="cpu")
    return attack_smoothed(
        fixture.model, classifier, open_session(fixture.onnx_path, 1), images, rows, RADII, steps=10, samples=16,
        sigma=sigma, screen_n=200, confirm_n=1000, alpha=ALPHA, confidence=CONFIDENCE,
        noise_seed=5, screen_seed=6, confirm_seed=7,
    )


def test_pgd_stays_in_the_ball_and_the_box_and_reaches_the_boundary(data):
    fixture, images, labels = data
    x = torch.from_numpy(images[:8])
    adversarial = smoothed_pgd_l2(fixture.model, x, torch.from_numpy(labels[:8]), 0.3, 10, 8, 0.25, torch.Generator().manual_seed(0))
    distance = (adversarial - x).flatten(1).norm(dim=1)
    assert torch.all(distance <= 0.3 + 1e-5) and adversarial.min() >= 0 and adversarial.max() <= 1
    # for a linear model the best move is straight across the boundary: the margin drops by (almost) eps
    drop = np.abs(fixture.margin(images[:8])) - np.sign(fixture.margin(images[:8])) * fixture.margin(adversarial.numpy())
    assert np.all(drop > 0.27)


def test_honest_certificates_survive_and_curves_bracket_the_truth(data):
    fixture, images, labels = data
    rows = as_arrays(certify_records(fixture.onnx_path, images, labels, 0.25, 50, 500, ALPHA, 3))
    margin = np.abs(fixture.margin(images))
    # the certificate is a lower bound on the exact radius (allowing the alpha-rate of certificate failures)
    assert np.mean(rows.radius > margin + 1e-3) <= 0.1
    report = _attack(fixture, images, rows, 0.25)
    assert report.confirmed_contradictions == 0
    assert report.radii == [0.0, *RADII] and report.surrogate_agreement == 1.0
    for certified, empirical in zip(report.certified_accuracy, report.empirical_robust_accuracy):
        eps = certified["radius"]
        truth = float(np.mean(margin > eps))
        assert certified["certified_accuracy"] <= truth + 0.05  # certified is a lower bound
        assert empirical["accuracy"] >= certified["certified_accuracy"] - 0.05
        assert empirical["upper_bound"] >= empirical["accuracy"]
        # the attack is strong: examples well inside the ball's reach are flipped
        assert empirical["accuracy"] <= float(np.mean(margin > eps - 0.12)) + 1e-9
    for example, m in zip(report.examples, margin):
        if example["smallest_flipping_eps"] is not None:
            assert example["smallest_flipping_eps"] >= m - 0.05  # no flip closer than the true boundary


def test_mis_scaled_certificates_are_confirmed_contradictions(data):
    """Noise actually drawn at sigma 0.05, radius reported as if it were 0.25 (a units mix-up): caught."""
    fixture, images, labels = data
    honest = as_arrays(certify_records(fixture.onnx_path, images, labels, 0.05, 50, 500, ALPHA, 3))
    claimed = dataclasses.replace(honest, radius=honest.radius * 5.0, sigma=0.25)
    report = _attack(fixture, images, claimed, 0.05)
    assert report.confirmed_contradictions >= 5
    assert report.candidates >= report.confirmed_contradictions
    margin = dict(zip(range(len(images)), np.abs(fixture.margin(images))))
    for c in report.contradictions:
        # every confirmed contradiction is real: the point crossed the exact boundary, inside the claimed radius
        assert margin[c.index] <= c.distance + 1e-3 and c.distance < c.radius
        assert c.confirm_prediction not in (-1, c.certified_prediction)
