"""Radius in pixel terms and the largest certifiable radius, against analytic values and CERTIFY's own bound."""
from __future__ import annotations

import math

import pytest
from scipy.stats import beta, norm

from certification.errors import InputError
from certification.radius_units import in_pixels, input_values, max_certifiable_radius, radius_limit


def test_pixel_terms_of_a_radius() -> None:
    d = input_values([None, 3, 32, 32])
    assert d == 3072
    p = in_pixels(0.25, d)
    assert p.even_gray_levels == pytest.approx(0.25 / math.sqrt(3072) * 255)  # ~1.15 levels on every value
    assert p.single_value_gray_levels == pytest.approx(0.25 * 255)
    assert in_pixels(2.0, d).single_value_gray_levels == 255  # one value cannot move by more than the range
    # the evenly spread change has exactly the radius as its L2 norm
    assert math.sqrt(d * (p.even_gray_levels / 255) ** 2) == pytest.approx(0.25)


def test_largest_radius_is_the_bound_of_n_out_of_n() -> None:
    sigma, n, alpha = 0.25, 10_000, 0.001
    p_max = beta.ppf(alpha, n, 1)  # one-sided Clopper-Pearson lower bound when all n samples hit the top class
    assert radius_limit(sigma, n, alpha)["p_lower_max"] == pytest.approx(p_max, rel=1e-12)
    assert max_certifiable_radius(sigma, n, alpha) == pytest.approx(sigma * norm.ppf(p_max), rel=1e-9)
    assert 0.79 < max_certifiable_radius(sigma, n, alpha) < 0.80
    assert max_certifiable_radius(sigma, 100_000, alpha) > max_certifiable_radius(sigma, n, alpha)


@pytest.mark.parametrize("args", [(0.0, 10, 0.01), (0.25, 0, 0.01), (0.25, 10, 1.0)])
def test_bad_arguments_are_refused(args) -> None:
    with pytest.raises(InputError):
        max_certifiable_radius(*args)
    with pytest.raises(InputError):
        input_values([None, 3, 0, 4])
