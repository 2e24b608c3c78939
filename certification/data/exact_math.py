"""Elementary functions whose float64 results do not depend on the CPU or on NumPy's SIMD loops.

NumPy picks the loop of ``np.exp``, ``np.sin``, ``np.cos``, ``np.power``, ``np.hypot``, ``np.arctan2`` ... by
CPU feature (baseline, AVX2, AVX-512 on x86-64; NEON/SVE on aarch64) and these loops round differently, so
the same input can give different bits on different machines. The functions here are built only from
operations IEEE 754 requires to be correctly rounded, or that are exact: ``+ - * /``, ``np.sqrt``,
comparisons, ``np.rint``, ``np.clip``/``np.maximum``/``np.where``, integer arithmetic and bit reinterpretation
(no ``np.ldexp``, no fused multiply-add: every NumPy ufunc rounds once). Their results are therefore the
same bits on every CPU, SIMD level and NumPy build that keeps IEEE semantics (no flush-to-zero on the inputs
used here: results below the smallest normal are returned as 0 by :func:`exp`).

Accuracy against ``np.exp``/``np.sin``/``np.cos`` in float64 (checked on dense grids, including the
range-reduction boundaries, by ``tests/test_data_reproducible.py``):

* :func:`exp`: relative error below 1e-15 (measured: 1 ulp, 2.2e-16) on [-708, 709]; exactly 0 below -708
  (true value < 3.3e-308);
  raises on NaN and on arguments above 709 (overflow).
* :func:`sin`, :func:`cos`, :func:`sincos`: absolute error below 1e-15 (measured: 1.1e-16) for
  ``|x| <= MAX_TRIG_ARGUMENT`` (1e5); raises outside that domain and on NaN.
* :func:`hypot`: ``sqrt(x*x + y*y)`` (no overflow protection; exact to about 1 ulp for moderate inputs).
* :func:`fixed_sum`: a sum along one axis in index order (NumPy's ``np.sum`` uses pairwise, unrolled and
  SIMD-width-dependent summation orders).

Inputs are converted to float64; outputs are float64 arrays.
"""
from __future__ import annotations

from math import factorial

import numpy as np

#: Largest ``|x|`` accepted by the trigonometric functions (Cody-Waite reduction stays exact far beyond it).
MAX_TRIG_ARGUMENT = 1.0e5
#: Below this argument :func:`exp` returns exactly 0 (keeps every result a normal float64).
EXP_UNDERFLOW = -708.0
#: Above this argument :func:`exp` raises (the result would overflow float64).
EXP_OVERFLOW = 709.0

_LOG2E = 1.4426950408889634  # 1/ln 2
# ln 2 split in two (fdlibm): the high part has 32 significant bits, so k * _LN2_HI is exact for |k| < 2^21.
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
# Taylor coefficients 1/k! for exp(r), |r| <= ln2/2 (+ rounding): the truncation error of degree 13 is < 5e-18.
_EXP_COEFFS = tuple(1 / factorial(k) for k in range(14))  # int / int: correctly rounded

_TWO_OVER_PI = 6.36619772367581382433e-01
# pi/2 split in two (fdlibm): the high part has 33 significant bits, so k * _PIO2_HI is exact for |k| < 2^20.
_PIO2_HI = 1.57079632673412561417e+00
_PIO2_LO = 6.07710050650619224932e-11
# Taylor coefficients on |r| <= pi/4 (+ rounding): sin to r^17, cos to r^18 (truncation error < 1e-17).
_SIN_COEFFS = tuple((-1) ** j / factorial(2 * j + 1) for j in range(9))
_COS_COEFFS = tuple((-1) ** j / factorial(2 * j) for j in range(10))


def _as_float64(x: np.ndarray | float) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _horner(r: np.ndarray, coeffs: tuple[float, ...]) -> np.ndarray:
    """sum_k coeffs[k] * r**k, evaluated by Horner's rule with one rounding per operation."""
    acc = np.full_like(r, coeffs[-1])
    for c in coeffs[-2::-1]:
        acc *= r
        acc += c
    return acc


def exp(x: np.ndarray | float) -> np.ndarray:
    """e**x, bit-identical on every CPU; 0 below :data:`EXP_UNDERFLOW`, ValueError on NaN or overflow."""
    x = _as_float64(x)
    if x.size and not (np.max(x) <= EXP_OVERFLOW):  # also catches NaN (comparisons with NaN are False)
        raise ValueError(f"exp argument out of range (NaN or above {EXP_OVERFLOW})")
    xc = np.maximum(x, EXP_UNDERFLOW)
    k = np.rint(xc * _LOG2E)
    r = xc - k * _LN2_HI  # exact: k * _LN2_HI is exact and the difference is small (Sterbenz)
    r -= k * _LN2_LO
    p = _horner(r, _EXP_COEFFS)
    # 2**k from its bits: k in [-1022, 1023], so the scale is a normal number and the product is exact
    # except for the final rounding when the result is subnormal, which the cut-off below excludes.
    scale = ((k.astype(np.int64) + 1023) << 52).view(np.float64)
    p *= scale
    return np.where(x < EXP_UNDERFLOW, 0.0, p)


def _reduce(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(r, quadrant) with x = quadrant * pi/2 + r, |r| <= pi/4 (+ rounding), quadrant in 0..3."""
    if x.size and not (np.max(np.abs(x)) <= MAX_TRIG_ARGUMENT):
        raise ValueError(f"trigonometric argument out of range (NaN or |x| above {MAX_TRIG_ARGUMENT})")
    k = np.rint(x * _TWO_OVER_PI)
    r = x - k * _PIO2_HI  # exact (k * _PIO2_HI is exact, Sterbenz for the difference)
    r -= k * _PIO2_LO
    return r, k.astype(np.int64) & 3


def _sin_cos_reduced(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r2 = r * r
    s = _horner(r2, _SIN_COEFFS)
    s *= r
    return s, _horner(r2, _COS_COEFFS)


def sincos(x: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """(sin x, cos x), bit-identical on every CPU, for ``|x| <= MAX_TRIG_ARGUMENT`` (ValueError otherwise)."""
    r, q = _reduce(_as_float64(x))
    s, c = _sin_cos_reduced(r)
    odd = (q & 1) == 1
    sin = np.where(odd, c, s)
    cos = np.where(odd, s, c)
    sin[(q & 2) == 2] *= -1.0  # quadrants 2, 3: sin = -sin(r), -cos(r)
    cos[((q + 1) & 2) == 2] *= -1.0  # quadrants 1, 2: cos = -sin(r), -cos(r)
    return sin, cos


def sin(x: np.ndarray | float) -> np.ndarray:
    """sin x, bit-identical on every CPU (see :func:`sincos`)."""
    return sincos(x)[0]


def cos(x: np.ndarray | float) -> np.ndarray:
    """cos x, bit-identical on every CPU (see :func:`sincos`)."""
    return sincos(x)[1]


def hypot(x: np.ndarray | float, y: np.ndarray | float) -> np.ndarray:
    """sqrt(x*x + y*y) in float64, bit-identical on every CPU (no overflow protection)."""
    x, y = _as_float64(x), _as_float64(y)
    return np.sqrt(x * x + y * y)


def fixed_sum(a: np.ndarray, axis: int, keepdims: bool = False) -> np.ndarray:
    """Sum of ``a`` along ``axis`` added in index order 0, 1, 2, ... (one rounding per addition)."""
    a = np.asarray(a)
    axis = axis % a.ndim
    total = np.take(a, 0, axis=axis).copy()
    for i in range(1, a.shape[axis]):
        total += np.take(a, i, axis=axis)
    return np.expand_dims(total, axis) if keepdims else total
