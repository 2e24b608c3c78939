"""What an L2 radius in [0,1]-pixel units means for an image, and the largest radius CERTIFY can return.

* Spread evenly: a perturbation of L2 norm r changes each of the d = C*H*W input values by r / sqrt(d) at most
  (equality when all changes are equal), i.e. ``r / sqrt(d) * 255`` gray levels of an 8-bit image.
* Concentrated: the same norm spent on one value changes it by r, i.e. ``min(r, 1) * 255`` gray levels (a value
  cannot leave [0, 1], so a single-value change is capped at 255 levels).
* Limit: with n estimation samples and per-image failure probability alpha, the one-sided Clopper-Pearson lower
  bound on p_A never exceeds alpha^(1/n) (all n samples on the top class), so no certificate exceeds
  ``sigma * Phi^-1(alpha^(1/n))``; a certified-accuracy curve is 0 beyond it by construction, not by measurement.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

from scipy.stats import norm

from certification.errors import InputError

GRAY_LEVELS = 255


@dataclass(frozen=True)
class RadiusInPixels:
    """An L2 radius ([0,1]-pixel units) as 8-bit gray levels, for an input of ``values`` numbers."""

    radius: float
    values: int
    even_gray_levels: float        # per value, spread evenly over all values
    single_value_gray_levels: float  # on one value alone (capped at 255)

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def input_values(shape: Sequence[int | None]) -> int:
    """C*H*W of an NCHW input shape (the batch axis, first, may be None)."""
    dims = list(shape)[1:] if len(shape) == 4 else list(shape)
    if not dims or any(not isinstance(d, int) or isinstance(d, bool) or d <= 0 for d in dims):
        raise InputError(f"input shape {list(shape)} must end in positive C, H, W")
    return int(math.prod(dims))


def in_pixels(radius: float, values: int) -> RadiusInPixels:
    """``radius`` as gray levels per value (spread evenly over ``values`` numbers) and on a single value."""
    if not radius >= 0 or values <= 0:
        raise InputError(f"radius must be >= 0 and values > 0, got {radius} and {values}")
    return RadiusInPixels(float(radius), int(values), float(radius) / math.sqrt(values) * GRAY_LEVELS,
                          min(float(radius), 1.0) * GRAY_LEVELS)


def max_certifiable_radius(sigma: float, n: int, alpha: float) -> float:
    """sigma * Phi^-1(alpha^(1/n)): the largest radius CERTIFY with n samples at level alpha can return."""
    if not sigma > 0 or n < 1 or not 0 < alpha < 1:
        raise InputError(f"need sigma > 0, n >= 1 and 0 < alpha < 1, got {sigma}, {n}, {alpha}")
    return float(sigma * norm.ppf(alpha ** (1.0 / n)))


def radius_limit(sigma: float, n: int, alpha: float) -> dict[str, float]:
    """The certify summary's ``radius_limit`` entry: the largest p_A lower bound and the largest radius."""
    return {"p_lower_max": float(alpha ** (1.0 / n)), "radius": max_certifiable_radius(sigma, n, alpha)}
