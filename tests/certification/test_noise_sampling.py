"""The certification noise is N(0, sigma^2 I): checked against the exact law on many draws.

Each test compares the sampler with a property the exact Gaussian has (moments, the CDF, the law of a pair's
squared radius and angle, independence within pairs and between images) at a tolerance of several standard
errors, so a wrong scale, a missing half of a pair, a shared angle or a biased grid fails. The deterministic
tests pin the formulas of ``NOISE_SPEC`` (radius cap, bit layout) that the tail bound relies on.
"""
from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from certification.noise_sampling import NoiseStream, TAIL_PROBABILITY_PER_PAIR, noise_kernels, pairs_per_image, tail_bound
from support import REPO

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


class _FixedUniforms:
    """A stand-in for the generators that read a stream's words: always returns one fixed uniform, or raw
    words whose 32-bit halves read as that uniform ((a >> 8) 2^-24 = value, value on the 2^-24 grid)."""

    def __init__(self, value: float) -> None:
        self.value = value

    def random(self, dtype: type = np.float64, out: np.ndarray | None = None) -> None:
        out[...] = self.value

    def random_raw(self, size: int) -> np.ndarray:
        half = np.uint64(int(self.value * 2**24) << 8)
        return np.full(size, half | (half << np.uint64(32)), dtype=np.uint64)


@pytest.mark.parametrize("uniform,radius", [(1.0 - 2.0**-53, math.sqrt(106 * math.log(2))), (0.0, 0.0), (0.5, math.sqrt(2 * math.log(2)))])
def test_radius_formula_and_its_cap(uniform, radius) -> None:
    """u = 1 - U: the largest U that Generator.random returns, 1 - 2^-53, gives the largest radius sqrt(106 ln 2) = 8.57."""
    stream = NoiseStream(0, 0, 0, (1, 2, 2), 1.0)
    stream._radius_uniforms = _FixedUniforms(uniform)
    stream._angle_bits = _FixedUniforms(0.0)  # theta = 0: cos 1, sin 0
    e = stream.sample(1).ravel()
    np.testing.assert_allclose(e, [radius, radius, 0.0, 0.0], rtol=2e-6, atol=0)


@pytest.mark.parametrize("chw", [(3, 4, 4), (1, 3, 3), (3, 5, 5)])  # Q even; Q odd (one angle half unused per image)
def test_noise_is_the_documented_function_of_the_raw_words(chw) -> None:
    """NOISE_SPEC recomputed from the raw PCG64 words of the two streams, bit for bit, for three images:
    u = 1 - (r >> 11) 2^-53, theta = f32((a32 >> 8) 2^-24) * f32(2 pi) from the low-first 32-bit halves of A."""
    sigma, images = 0.3, 3
    stream = NoiseStream(5, 9, 1, chw, sigma)
    d = math.prod(chw)
    q = pairs_per_image(chw)
    words_per_image = (q + 1) // 2
    radii, angles = np.random.SeedSequence([5, 9, 1]).spawn(2)
    r = np.random.PCG64(radii).random_raw(images * q).reshape(images, q)
    a = np.random.PCG64(angles).random_raw(images * words_per_image).reshape(images, words_per_image)
    u = 1.0 - (r >> np.uint64(11)).astype(np.float64) * 2.0**-53
    halves = np.stack([a & np.uint64(0xFFFFFFFF), a >> np.uint64(32)], axis=-1).reshape(images, -1)[:, :q]
    theta = ((halves >> np.uint64(8)).astype(np.float64) * 2.0**-24).astype(np.float32) * np.float32(2 * math.pi)
    rho = np.sqrt(np.float32(-2 * sigma**2) * np.log(u.astype(np.float32)))
    expected = np.concatenate([rho * np.cos(theta), (rho * np.sin(theta))[:, : d - q]], axis=1)
    np.testing.assert_array_equal(stream.sample(images).reshape(images, d), expected)


def test_tail_bound_is_the_documented_figure() -> None:
    assert TAIL_PROBABILITY_PER_PAIR == 2.0**-53
    # the radius cap is exceeded by the exact law with probability exp(-r^2 / 2) = 2^-53 per pair
    assert math.exp(-106 * math.log(2) / 2) == pytest.approx(TAIL_PROBABILITY_PER_PAIR, rel=1e-12)
    assert tail_bound(10_000, (3, 32, 32)) == pytest.approx(10_000 * 1536 * 2.0**-53)
    assert tail_bound(100_000, (3, 64, 64)) < 7e-8


_DRAW_IN_CHILD = """
import json, sys, numpy as np
from certification.noise_sampling import NoiseStream, noise_kernels
print(json.dumps(noise_kernels()))
np.save(sys.argv[1], NoiseStream(2, 7, 1, (3, 32, 32), 0.25).sample(200))
"""


def test_noise_kernels_follow_numpy_dispatch_and_other_loops_only_round_differently(tmp_path) -> None:
    """The recorded kernels are the loops numpy runs: with its SIMD loops switched off (NPY_DISABLE_CPU_FEATURES)
    a child process reports the baseline loops, and its noise is the same Gaussian draws up to float32 rounding
    (on the AVX2 VM 12-22% of log/cos/sin values differ in the last bits, hence the record)."""
    here = noise_kernels()
    assert here["numpy"] == np.__version__ and set(here) == {"numpy", "log", "cos", "sin"}
    if platform.machine().lower() not in ("x86_64", "amd64") or "baseline" in here["cos"] or here["cos"] == "unknown":
        pytest.skip(f"needs numpy SIMD loops on x86-64 to switch off; here: {here}")
    out = tmp_path / "noise.npy"
    env = {**os.environ, "NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4"}
    done = subprocess.run([sys.executable, "-c", _DRAW_IN_CHILD, str(out)], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"numpy": np.__version__, "log": "baseline(X86_V2)", "cos": "baseline(X86_V2)", "sin": "baseline(X86_V2)"}
    baseline_noise = np.load(out)
    own_noise = NoiseStream(2, 7, 1, (3, 32, 32), 0.25).sample(200)
    np.testing.assert_allclose(baseline_noise, own_noise, rtol=1e-5, atol=1e-6)


def test_noise_kernels_say_unknown_where_numpy_cannot_tell(monkeypatch) -> None:
    """numpy before 2.0 has no numpy.lib.introspect: the record says "unknown" rather than failing the run."""
    monkeypatch.setitem(sys.modules, "numpy.lib.introspect", None)  # makes the import raise ImportError
    assert noise_kernels() == {"numpy": np.__version__, "log": "unknown", "cos": "unknown", "sin": "unknown"}
