"""Lighting and camera variations of float32 NCHW images in [0, 1], each at four severities.

Every variation is deterministic: random choices (gradient direction, motion direction, sensor noise) come
from a generator seeded by (seed, variation, test index), so a result does not depend on batch composition or
order, and the severities of one image share their draws (only the strength changes). Outputs are clipped to [0, 1] as a camera would, and float32.

| name                  | parameter (severity 1..4)         | model |
|-----------------------|-----------------------------------|-------|
| brightness            | offset +0.04, +0.08, +0.16, +0.30 | x + offset |
| contrast              | factor 0.85, 0.70, 0.50, 0.30     | mean + factor (x - mean), mean per image |
| gamma                 | gamma 1.25, 1.5, 2.0, 2.5         | x ** gamma (darker mid-tones) |
| illumination_gradient | strength 0.10, 0.20, 0.35, 0.50   | x * (1 + strength * t), t in [-1, 1] along a seeded direction |
| color_temperature     | shift 0.05, 0.10, 0.20, 0.30      | R * (1 + shift), B * (1 - shift) (warmer light) |
| defocus_blur          | disk radius 1, 1.5, 2, 3 px       | convolution with a uniform disk, reflected edges |
| motion_blur           | length 3, 5, 7, 9 px              | convolution with a line at a seeded angle |
| sensor_noise          | std 0.01, 0.02, 0.04, 0.08        | x + std * N(0, 1) per pixel and channel |
| jpeg                  | quality 85, 60, 35, 15            | Pillow JPEG round trip of the 8-bit image |
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image
from scipy import ndimage

from certification.errors import InputError

Transform = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]  # one CHW image -> CHW image


@dataclass(frozen=True)
class Variation:
    name: str
    parameter: str
    levels: tuple[float, ...]
    transform: Transform


def _brightness(x: np.ndarray, offset: float, rng: np.random.Generator) -> np.ndarray:
    return x + offset


def _contrast(x: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    mean = x.mean()
    return mean + factor * (x - mean)


def _gamma(x: np.ndarray, gamma: float, rng: np.random.Generator) -> np.ndarray:
    return np.power(np.clip(x, 0.0, 1.0), gamma)


def _illumination_gradient(x: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    _, h, w = x.shape
    angle = rng.uniform(0.0, 2.0 * np.pi)
    yy, xx = np.meshgrid(np.linspace(-1.0, 1.0, h), np.linspace(-1.0, 1.0, w), indexing="ij")
    ramp = np.cos(angle) * xx + np.sin(angle) * yy
    ramp /= max(float(np.abs(ramp).max()), 1e-12)
    return x * (1.0 + strength * ramp)[None]


def _color_temperature(x: np.ndarray, shift: float, rng: np.random.Generator) -> np.ndarray:
    if x.shape[0] != 3:
        return x  # a single-channel sensor has no colour temperature
    gains = np.array([1.0 + shift, 1.0, 1.0 - shift], dtype=x.dtype)[:, None, None]
    return x * gains


def _convolve(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    kernel = kernel / kernel.sum()
    return np.stack([ndimage.convolve(channel, kernel, mode="reflect") for channel in x])


def _defocus_blur(x: np.ndarray, radius: float, rng: np.random.Generator) -> np.ndarray:
    half = int(np.ceil(radius))
    yy, xx = np.mgrid[-half:half + 1, -half:half + 1]
    return _convolve(x, (xx ** 2 + yy ** 2 <= radius ** 2 + 1e-9).astype(np.float64))


def _motion_blur(x: np.ndarray, length: float, rng: np.random.Generator) -> np.ndarray:
    angle = rng.uniform(0.0, np.pi)
    half = int(length) // 2
    kernel = np.zeros((2 * half + 1, 2 * half + 1))
    for t in np.linspace(-half, half, 8 * int(length)):
        kernel[int(round(half + t * np.sin(angle))), int(round(half + t * np.cos(angle)))] = 1.0
    return _convolve(x, kernel)


def _sensor_noise(x: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    return x + std * rng.standard_normal(x.shape)


def _jpeg(x: np.ndarray, quality: float, rng: np.random.Generator) -> np.ndarray:
    pixels = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
    hwc = pixels.transpose(1, 2, 0)
    picture = Image.fromarray(hwc[..., 0] if hwc.shape[-1] == 1 else hwc)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=int(quality))
    decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert(picture.mode), dtype=np.float64) / 255.0
    return decoded[None] if decoded.ndim == 2 else decoded.transpose(2, 0, 1)


VARIATIONS: tuple[Variation, ...] = (
    Variation("brightness", "offset", (0.04, 0.08, 0.16, 0.30), _brightness),
    Variation("contrast", "factor", (0.85, 0.70, 0.50, 0.30), _contrast),
    Variation("gamma", "gamma", (1.25, 1.5, 2.0, 2.5), _gamma),
    Variation("illumination_gradient", "strength", (0.10, 0.20, 0.35, 0.50), _illumination_gradient),
    Variation("color_temperature", "shift", (0.05, 0.10, 0.20, 0.30), _color_temperature),
    Variation("defocus_blur", "radius_px", (1.0, 1.5, 2.0, 3.0), _defocus_blur),
    Variation("motion_blur", "length_px", (3.0, 5.0, 7.0, 9.0), _motion_blur),
    Variation("sensor_noise", "std", (0.01, 0.02, 0.04, 0.08), _sensor_noise),
    Variation("jpeg", "quality", (85.0, 60.0, 35.0, 15.0), _jpeg),
)
VARIATION_NAMES = tuple(v.name for v in VARIATIONS)


def variation(name: str) -> Variation:
    for candidate in VARIATIONS:
        if candidate.name == name:
            return candidate
    raise InputError(f"unknown variation '{name}'; choose from {', '.join(VARIATION_NAMES)}")


def apply_variation(images: np.ndarray, indices: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """Apply variation ``name`` at ``severity`` (1-based) to float32 NCHW ``images`` in [0, 1].

    ``indices`` are the examples' test-split indices (they seed per-image randomness). Returns float32 NCHW
    clipped to [0, 1].
    """
    spec = variation(name)
    if not 1 <= severity <= len(spec.levels):
        raise InputError(f"severity of '{name}' must be in 1..{len(spec.levels)}, got {severity}")
    if images.ndim != 4 or len(indices) != len(images):
        raise InputError(f"expected NCHW images and one index per image, got {images.shape} and {len(indices)} indices")
    level = spec.levels[severity - 1]
    variation_id = VARIATION_NAMES.index(name)
    out = np.empty_like(images, dtype=np.float32)
    for i, (image, index) in enumerate(zip(images, indices)):
        rng = np.random.default_rng([int(seed), variation_id, int(index)])  # same draws at every severity
        out[i] = np.clip(spec.transform(image.astype(np.float64), level, rng), 0.0, 1.0)
    return out
