"""The certification noise is N(0, sigma^2 I): checked against the exact law on many draws.

Each test compares the sampler with a property the exact Gaussian has (moments, the CDF, the law of a pair's
squared radius and angle, independence within pairs and between images) at a tolerance of several standard
errors, so a wrong scale, a missing half of a pair, a shared angle or a biased grid fails. The deterministic
tests pin the formulas of ``NOISE_SPEC`` (radius cap, bit layout) that the tail bound relies on.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from certification.noise_sampling import NoiseStream, TAIL_PROBABILITY_PER_PAIR, pairs_per_image, tail_bound

CHW = (3, 16, 16)  # D = 768 values, Q = 384 pairs per image
SIGMA = 0.5


@pytest.fixture(scope="module")
def draws() -> np.ndarray:
    """1,500 images (1,152,000 values) of one stream, in units of sigma, float64."""
    return NoiseStream(11, 3, 1, CHW, SIGMA).sample(1500).reshape(1500, -1).astype(np.float64) / SIGMA


def test_moments_match_the_standard_normal(draws) -> None:
    z = draws.ravel()
    se = 1 / math.sqrt(z.size)
    assert abs(z.mean()) < 5 * se
    assert abs(z.var() - 1) < 5 * math.sqrt(2) * se  # var of the sample variance of N(0,1) is 2/n
    assert abs(stats.skew(z)) < 5 * math.sqrt(6) * se
    assert abs(stats.kurtosis(z)) < 5 * math.sqrt(24) * se


def test_distribution_function_matches_the_normal(draws) -> None:
    z = draws.ravel()
    assert stats.kstest(z, "norm").pvalue > 1e-4
    # tail frequencies beyond 2, 3 and 4 sigma within five binomial standard errors of the exact values
    for t in (2.0, 3.0, 4.0):
        p = 2 * stats.norm.sf(t)
        observed = np.mean(np.abs(z) > t)
        assert abs(observed - p) < 5 * math.sqrt(p * (1 - p) / z.size) + 1 / z.size, (t, observed, p)


def test_pairs_have_exponential_squared_radius_and_uniform_angle(draws) -> None:
    q = pairs_per_image(CHW)
    x, y = draws[:, :q].ravel(), draws[:, q : 2 * q].ravel()
    squared = x**2 + y**2  # chi-square with 2 degrees of freedom: exponential with mean 2
    assert stats.kstest(squared, "expon", args=(0, 2)).pvalue > 1e-4
    angle = np.arctan2(y, x)
    assert stats.kstest(angle, "uniform", args=(-math.pi, 2 * math.pi)).pvalue > 1e-4
    # independent coordinates: no correlation of the values or of their squares (a shared angle or radius
    # between the two halves would show in the squares)
    bound = 5 / math.sqrt(x.size)
    assert abs(np.corrcoef(x, y)[0, 1]) < bound
    assert abs(np.corrcoef(x**2, y**2)[0, 1]) < bound


def test_consecutive_images_and_neighbouring_values_are_uncorrelated(draws) -> None:
    bound = 5 / math.sqrt(draws[:-1].size)
    assert abs(np.corrcoef(draws[:-1].ravel(), draws[1:].ravel())[0, 1]) < bound
    assert abs(np.corrcoef(draws[:, :-1].ravel(), draws[:, 1:].ravel())[0, 1]) < bound


def test_every_position_has_unit_variance(draws) -> None:
    """Per pixel position (1,500 draws each): the variances scatter like chi-square / n around 1."""
    variances = (draws**2).mean(axis=0)
    n = draws.shape[0]
    assert stats.kstest(variances * n, "chi2", args=(n,)).pvalue > 1e-4


class _FixedWords:
    """A stand-in bit generator returning one fixed 64-bit word: pins the formulas of NOISE_SPEC."""

    def __init__(self, word: int) -> None:
        self.word = np.uint64(word)

    def random_raw(self, size: int) -> np.ndarray:
        return np.full(size, self.word, dtype=np.uint64)


@pytest.mark.parametrize("word,radius", [(0xFFFFFFFFFFFFFFFF, math.sqrt(104 * math.log(2))), (0, 0.0),
                                         (0x8000000000000000, math.sqrt(2 * math.log(2)))])
def test_radius_formula_and_its_cap(word, radius) -> None:
    """u = 2 - f64(0x3FF.. | w >> 12): all-ones words give u = 2^-52, the largest radius sqrt(104 ln 2) = 8.49."""
    stream = NoiseStream(0, 0, 0, (1, 2, 2), 1.0)
    stream._radius_bits = _FixedWords(word)
    stream._angle_bits = _FixedWords(0)  # theta = 0: cos 1, sin 0
    e = stream.sample(1).ravel()
    np.testing.assert_allclose(e, [radius, radius, 0.0, 0.0], rtol=2e-6, atol=0)


def test_angle_bits_layout() -> None:
    """theta_j = (a_j >> 8) 2 pi / 2^24 from the 32-bit halves of A's words, low half first."""
    stream = NoiseStream(0, 0, 0, (1, 2, 2), 2.0)
    stream._radius_bits = _FixedWords(0x8000000000000000)  # u = 1/2: rho = sigma sqrt(2 ln 2)
    quarter, eighth = 1 << 30, 1 << 29  # angles pi/2 (low half) and pi/4 (high half)
    stream._angle_bits = _FixedWords(quarter | (eighth << 32))
    e = stream.sample(1).ravel()
    rho = 2.0 * math.sqrt(2 * math.log(2))
    expected = [rho * math.cos(math.pi / 2), rho * math.cos(math.pi / 4), rho * math.sin(math.pi / 2), rho * math.sin(math.pi / 4)]
    np.testing.assert_allclose(e, expected, rtol=1e-6, atol=1e-6)


def test_tail_bound_is_the_documented_figure() -> None:
    assert TAIL_PROBABILITY_PER_PAIR == 2.0**-52
    # the radius cap is exceeded by the exact law with probability exp(-r^2 / 2) = 2^-52 per pair
    assert math.exp(-104 * math.log(2) / 2) == pytest.approx(TAIL_PROBABILITY_PER_PAIR, rel=1e-12)
    assert tail_bound(10_000, (3, 32, 32)) == pytest.approx(10_000 * 1536 * 2.0**-52)
    assert tail_bound(100_000, (3, 64, 64)) < 1.5e-7
