"""Lighting certificates: anisotropic Gaussian smoothing along a fixed lighting subspace (issue 19).

The smoothing noise is e ~ N(0, Sigma) with Sigma = sigma^2 I + sum_k tau'^2 v_k v_k^T, where v_1..v_K are fixed
orthonormal "lighting directions" of the image space (D = C*H*W values) that never depend on the input:

* ``dc``: one per channel, the constant image of that channel (K = C);
* ``dc+ramps``: the constant and the centred linear ramps in x and in y of each channel (K = 3C).

``tau`` is the root-mean-square per-pixel standard deviation each direction adds over the whole image ([0,1]-pixel
units): a unit-norm v_k adds per-pixel variance tau'^2 / D on average, so tau' = tau * sqrt(D) (``tau_norm``).

**The guarantee.** Cohen et al.'s Theorem 1 after the change of variables Sigma^-1/2: with p_A lower bounding
P(f(x + e) = c_A), the smoothed classifier g(x) = argmax_c P(f(x + e) = c) returns c_A at every x + delta with
delta^T Sigma^-1 delta < R^2, R = Phi^-1(p_A) (the ``mahalanobis_radius``). Sigma >= sigma^2 I, so the ellipsoid
contains the L2 ball of radius sigma * R: the usual L2 certificate still holds for the same classifier.

**The exact test.** :meth:`LightingCovariance.mahalanobis_norm` computes sqrt(delta^T Sigma^-1 delta) by the
Woodbury identity Sigma^-1 = (1/sigma^2)(I - V diag(tau'^2/(sigma^2 + tau'^2)) V^T), written without cancellation
as ||r||^2 / sigma^2 + sum_k p_k^2 / (sigma^2 + tau'^2), p = V delta, r = delta - V^T p. ``directions: none`` is
the isotropic case (K = 0): the norm is ||delta|| / sigma and nothing changes.

**The noise.** The K extra normals of an image come from a third stream of the example's SeedSequence (children
0 and 1 draw the isotropic noise, unchanged), by Box-Muller in float64 (``LIGHTING_NOISE_SPEC``), so a run with
lighting ``none`` draws exactly the noise it always drew.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from certification.errors import ParameterError

DIRECTION_SETS = ("none", "dc", "dc+ramps")

#: Recorded with the noise spec of a lighting run (the module docstring gives the reasoning).
LIGHTING_NOISE_SPEC = (
    "lighting: e += sum_k tau' z_k v_k (float64, added to the float32 image), tau' = tau sqrt(D), z ~ N(0, I_K) by "
    "Box-Muller from SeedSequence([seed, index, phase]).spawn(3)[2] (PCG64, Generator.random float64): image t takes "
    "2 ceil(K/2) words, pair j: u = 1 - w[2j], v = w[2j+1], z[2j] = sqrt(-2 ln u) cos(2 pi v), z[2j+1] = "
    "sqrt(-2 ln u) sin(2 pi v); v_k: orthonormal per-channel constant (dc), then x and y ramps (ramps) images"
)


def lighting_directions(directions: str, chw: tuple[int, ...]) -> np.ndarray:
    """The orthonormal lighting directions (K, D) of the named set for images of shape ``chw`` (float64, flat C
    order): per channel the constant image (``dc``), then per channel the centred ramps along x and along y
    (``dc+ramps``). ``none``: an empty (0, D) array."""
    check_directions(directions)
    c, h, w = (int(v) for v in chw)
    d = c * h * w
    if directions == "none":
        return np.zeros((0, d))
    yy, xx = np.meshgrid(np.linspace(-1.0, 1.0, h), np.linspace(-1.0, 1.0, w), indexing="ij")
    patterns = [np.ones((h, w))]
    if directions == "dc+ramps":
        patterns += [xx, yy]
    rows = []
    for pattern in patterns:
        norm = float(np.linalg.norm(pattern))
        if norm == 0.0:  # a 1-pixel-wide image has no ramp along that axis
            raise ParameterError(f"lighting directions {directions!r} need images at least 2 pixels wide and high, got {h}x{w}")
        for channel in range(c):
            v = np.zeros((c, h, w))
            v[channel] = pattern / norm
            rows.append(v.reshape(d))
    basis = np.stack(rows)
    assert np.allclose(basis @ basis.T, np.eye(len(basis)), atol=1e-12), "lighting directions must be orthonormal"
    return basis


def check_directions(directions: Any) -> str:
    if directions not in DIRECTION_SETS:
        raise ParameterError(f"unknown lighting direction set {directions!r}; choose one of {', '.join(DIRECTION_SETS)}")
    return str(directions)


def check_lighting(directions: Any, tau: Any, sigma: float | None, where: str = "lighting") -> tuple[str, float]:
    """(directions, tau) checked: a known direction set, a finite tau >= 0, tau > 0 exactly when directions are
    given, and no lighting on a sigma of 0 (noise along a subspace alone certifies nothing in L2)."""
    directions = check_directions(directions)
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not math.isfinite(tau) or tau < 0:
        raise ParameterError(f"{where}.tau must be a finite number >= 0 (RMS per-pixel std, [0,1]-pixel units), got {tau!r}")
    tau = float(tau)
    if directions == "none" and tau != 0.0:
        raise ParameterError(f"{where}.tau is {tau} but {where}.directions is none; set directions to dc or dc+ramps, or tau to 0")
    if directions != "none" and tau == 0.0:
        raise ParameterError(f"{where}.directions is {directions} but {where}.tau is 0; set tau > 0 (e.g. 0.05) or directions to none")
    if tau > 0 and sigma is not None and not sigma > 0:
        raise ParameterError(f"{where}.tau {tau} is set on a sigma of {sigma}; lighting noise needs sigma > 0 (set sigma, or tau 0)")
    return directions, tau


@dataclass(frozen=True)
class CoveredExtents:
    """The largest lighting changes of one image a certificate covers (all strict: a change of exactly this size is
    not covered). ``brightness_offset``: b of delta = b (every pixel); ``gain_change``: g of delta = g x_c on one
    channel c (the smallest over channels; the offset a gain change produces on this image); ``ramp_strength``: s of
    delta = s t on every channel, t in [-1, 1] linear along x or along y (the smaller of the two)."""

    brightness_offset: float
    gain_change: float
    ramp_strength: float

    def to_dict(self) -> dict[str, float]:
        return {"brightness_offset": self.brightness_offset, "gain_change": self.gain_change,
                "ramp_strength": self.ramp_strength}


@dataclass(frozen=True)
class LightingCovariance:
    """The smoothing covariance Sigma = sigma^2 I + tau'^2 V^T V of images of shape ``chw`` (module docstring).

    ``sigma`` and ``tau`` in [0,1]-pixel units; ``tau_norm`` = tau' = tau sqrt(D) is each direction's standard
    deviation along its unit vector. Fixed before certification, never a function of the input."""

    directions: str
    tau: float
    sigma: float
    chw: tuple[int, int, int]
    basis: np.ndarray = field(repr=False, compare=False)

    @classmethod
    def build(cls, directions: str, tau: float, sigma: float, chw: tuple[int, ...]) -> "LightingCovariance":
        directions, tau = check_lighting(directions, tau, sigma)
        if not sigma > 0:
            raise ParameterError(f"the smoothing covariance needs sigma > 0, got {sigma}")
        shape = tuple(int(v) for v in chw)
        if len(shape) != 3:
            raise ParameterError(f"lighting directions need (C, H, W) images, got shape {shape}")
        return cls(directions, tau, float(sigma), shape, lighting_directions(directions, shape))  # type: ignore[arg-type]

    @property
    def k(self) -> int:
        return int(self.basis.shape[0])

    @property
    def d(self) -> int:
        return int(math.prod(self.chw))

    @property
    def tau_norm(self) -> float:
        return self.tau * math.sqrt(self.d)

    @property
    def isotropic(self) -> bool:
        return self.k == 0

    def mahalanobis_norm(self, delta: np.ndarray) -> np.ndarray | float:
        """sqrt(delta^T Sigma^-1 delta) of one perturbation (shape ``chw`` or (D,)) or of each of a batch (N, ...),
        exactly (Woodbury, no cancellation; float64)."""
        delta = np.asarray(delta, dtype=np.float64)
        single = delta.ndim in (1, 3)  # (D,) or (C, H, W); a batch is (N, D) or (N, C, H, W)
        flat = delta.reshape(1 if single else len(delta), self.d)
        total = np.einsum("nd,nd->n", flat, flat)
        if self.k:
            p = flat @ self.basis.T
            r = flat - p @ self.basis
            residual = np.einsum("nd,nd->n", r, r)
            q = residual / self.sigma**2 + np.einsum("nk,nk->n", p, p) / (self.sigma**2 + self.tau_norm**2)
        else:
            q = total / self.sigma**2
        norms = np.sqrt(q)
        return float(norms[0]) if single else norms

    def certifies(self, delta: np.ndarray, mahalanobis_radius: float | np.ndarray) -> bool | np.ndarray:
        """True where x + delta lies inside the certified ellipsoid delta^T Sigma^-1 delta < R^2 (R = 0: never)."""
        return np.asarray(self.mahalanobis_norm(delta)) < np.asarray(mahalanobis_radius)

    def covered_extents(self, x: np.ndarray, mahalanobis_radius: float) -> CoveredExtents:
        """The largest brightness offset, per-channel gain change and ramp strength certified around image ``x``
        (float (C, H, W) in [0, 1]) by a certificate of Mahalanobis radius R: R / ||u||_Sigma for each change's
        unit pattern u (the ellipsoid is symmetric and convex, so every smaller change is covered too)."""
        c, h, w = self.chw
        x = np.asarray(x, dtype=np.float64).reshape(c, h, w)
        radius = float(mahalanobis_radius)
        offset = radius / float(self.mahalanobis_norm(np.ones(self.chw)))
        gains = []
        for channel in range(c):
            u = np.zeros(self.chw)
            u[channel] = x[channel]
            size = float(self.mahalanobis_norm(u))
            gains.append(math.inf if size == 0 else radius / size)
        yy, xx = np.meshgrid(np.linspace(-1.0, 1.0, h), np.linspace(-1.0, 1.0, w), indexing="ij")
        ramps = [radius / float(self.mahalanobis_norm(np.broadcast_to(t, self.chw))) for t in (xx, yy) if np.any(t)]
        return CoveredExtents(offset, min(gains), min(ramps) if ramps else math.inf)

    def to_record(self) -> dict[str, Any]:
        """The covariance as recorded in ``noise.covariance`` of metrics/certify.json (read back by
        :func:`covariance_from_record`)."""
        return {"directions": self.directions, "tau": self.tau, "tau_norm": self.tau_norm, "k": self.k, "d": self.d,
                "sigma": self.sigma, "chw": list(self.chw),
                "formula": "Sigma = sigma^2 I + tau_norm^2 sum_k v_k v_k^T, tau_norm = tau sqrt(d)"}


def smoothing_covariance(directions: str, tau: float, sigma: float, chw: tuple[int, ...]) -> LightingCovariance | None:
    """The smoothing covariance of a run's lighting params (directions, tau) at ``sigma`` for images of shape ``chw``;
    None for isotropic noise (directions ``none``). Certification and the device graph both build it here."""
    if check_directions(directions) == "none":
        check_lighting(directions, tau, sigma)
        return None
    return LightingCovariance.build(directions, tau, sigma, chw)


def covariance_from_record(record: Mapping[str, Any] | None, sigma: float, chw: tuple[int, ...] | None = None,
                           where: str = "noise.covariance") -> LightingCovariance | None:
    """The covariance a certify run recorded (``noise.covariance``), rebuilt and checked against the record's own
    k and d; None when the run recorded none (isotropic runs before issue 19, or lighting ``none``)."""
    if record is None:
        return None
    try:
        shape = tuple(int(v) for v in (record["chw"] if chw is None else chw))
        covariance = LightingCovariance.build(record["directions"], record["tau"], sigma, shape)
    except (KeyError, TypeError) as exc:
        raise ParameterError(f"{where}: not a lighting covariance record ({exc}); rerun the certify stage") from None
    if covariance.k != record.get("k") or covariance.d != record.get("d"):
        raise ParameterError(f"{where}: the record says k={record.get('k')}, d={record.get('d')} but the directions give "
                             f"k={covariance.k}, d={covariance.d}; rerun the certify stage")
    return covariance


class LightingNoise:
    """The lighting part of the noise of one stream (seed, index, phase): sum_k tau' z_k v_k per image, image
    after image; ``skip`` moves ahead without drawing (``LIGHTING_NOISE_SPEC``)."""

    def __init__(self, bits: np.random.SeedSequence, covariance: LightingCovariance) -> None:
        self._generator = np.random.Generator(np.random.PCG64(bits))
        self._covariance = covariance
        self._pairs = (covariance.k + 1) // 2
        self._scaled_basis = covariance.basis * covariance.tau_norm

    def skip(self, images: int) -> None:
        self._generator.bit_generator.advance(int(images) * 2 * self._pairs)

    def normals(self, images: int) -> np.ndarray:
        """The next ``images`` draws of z ~ N(0, I_K), float64 (images, K)."""
        words = self._generator.random((int(images), self._pairs, 2))
        rho = np.sqrt(-2.0 * np.log(1.0 - words[..., 0]))
        angle = 2.0 * np.pi * words[..., 1]
        z = np.stack([rho * np.cos(angle), rho * np.sin(angle)], axis=-1).reshape(int(images), 2 * self._pairs)
        return z[:, : self._covariance.k]

    def add(self, out_flat: np.ndarray) -> None:
        """Add the next len(out_flat) lighting draws to the float32 (m, D) rows of ``out_flat`` in place."""
        out_flat += (self.normals(len(out_flat)) @ self._scaled_basis).astype(np.float32)
