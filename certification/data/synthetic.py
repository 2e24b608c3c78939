"""Procedural dermoscopy-like images of skin lesions, deterministic from a seed.

Each image is one lesion on skin, rendered from a vector of clinical cues (the dermoscopic ABCD-style cues
clinicians use) and a set of nuisance factors that vary independently of the class:

* **Cues** (class-dependent, see :data:`CUE_PROTOTYPES`): diameter, elongation, asymmetry (low-order
  harmonics of the border and an off-centre pigment gradient), border irregularity (high-order harmonics),
  edge sharpness, pigment darkness, pinkness, opacity (translucency), central darkening, dark blotches,
  blue-grey areas, red/white regression, cerebriform ridges and milia-like cysts (seborrheic keratosis),
  pigment network (nevus), telangiectasia-like vessels and a pearly rim (basal cell carcinoma).
* **Nuisance factors** (recorded per image): Fitzpatrick skin type I-VI, hair occlusion, illumination
  gradient, dermoscope vignette and defocus blur.

Class overlap is deliberate: every image's cue vector is a mixture ``(1 - w) * own class + w * confuser
class`` plus per-cue noise, with the mixing weight ``w`` drawn from ``OVERLAP * Beta(a, b)``. Images with a
large ``w`` are genuinely ambiguous, so a good classifier stays well below 100% accuracy.

All randomness comes from one :class:`numpy.random.Generator` per split, derived from ``(seed, split)``
with :class:`numpy.random.SeedSequence`.

**Reproducibility guarantee** (since ``lesions-1.1``): the same ``(n, image_size, seed, split)`` gives the
same bytes (images, labels, metadata) on any CPU (x86-64, aarch64) and at any NumPy SIMD level (baseline,
AVX2, AVX-512, ``NPY_DISABLE_CPU_FEATURES``), for the pinned NumPy version (tested on x86-64 SIMD levels;
aarch64 by construction, as it runs the same IEEE operations). Rendering is vectorised over
chunks of images in float64 and uses only correctly rounded IEEE operations (``+ - * /``, ``sqrt``,
comparisons, clipping, rounding); exp, sin, cos and hypot come from :mod:`.exact_math`, powers are written
as products and square roots, and sums run in a fixed order. NumPy's own transcendental loops (which round
differently per SIMD level) are not used. The random draws themselves (``numpy.random`` C code, no SIMD
dispatch) are those of ``lesions-1.0`` in the same order, so labels and metadata are unchanged and images
differ from ``lesions-1.0`` only by rounding (at most one grey level, in about two of every 100,000 values).
``tests/test_data_reproducible.py`` checks the bytes under several ``NPY_DISABLE_CPU_FEATURES`` settings and
pins their SHA-256.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from certification.data import exact_math as xm
from certification.errors import InputError

GENERATOR_VERSION = "lesions-1.1"
CLASS_NAMES = ("nevus", "seborrheic_keratosis", "melanoma", "basal_cell_carcinoma")
MALIGNANT_CLASSES = ("melanoma", "basal_cell_carcinoma")
SUPPORTED_SIZES = (28, 32, 64)
#: Class frequencies of the synthetic population (nevus, SK, melanoma, BCC).
CLASS_PROBABILITIES = (0.35, 0.2, 0.25, 0.2)
#: Frequencies of Fitzpatrick skin types I..VI: light skin over-represented, as in public dermoscopy sets.
FITZPATRICK_PROBABILITIES = (0.2, 0.25, 0.2, 0.15, 0.1, 0.1)
#: Mean RGB skin colour in [0, 1] for Fitzpatrick types I..VI.
SKIN_RGB = np.array(
    [[0.96, 0.82, 0.75], [0.91, 0.74, 0.64], [0.82, 0.63, 0.51],
     [0.68, 0.49, 0.36], [0.50, 0.34, 0.24], [0.34, 0.23, 0.17]],
    dtype=np.float32,
)

CUE_NAMES = (
    "radius", "elongation", "asymmetry", "border_irregularity", "edge_softness", "darkness", "pinkness",
    "opacity", "waxy", "central_darkening", "dark_blotches", "blue_grey", "regression", "ridges", "milia",
    "network", "vessels", "pearly_rim",
)
#: Mean cue values per class (rows follow CLASS_NAMES, columns CUE_NAMES). Radius is in units of the
#: image half-width; the other cues are intensities, mostly in [0, 1].
CUE_PROTOTYPES = np.array(
    [
        # rad  elong asym  irreg edge  dark  pink  opac  waxy  cdark blot  blue  regr  ridge milia net   vess  rim
        [0.34, 1.08, 0.04, 0.02, 0.12, 0.55, 0.05, 0.85, 0.05, 0.45, 0.05, 0.05, 0.00, 0.00, 0.00, 0.50, 0.00, 0.00],
        [0.48, 1.30, 0.10, 0.04, 0.03, 0.30, 0.05, 0.80, 0.85, 0.05, 0.10, 0.05, 0.05, 0.90, 0.70, 0.00, 0.05, 0.10],
        [0.56, 1.35, 0.32, 0.15, 0.08, 0.80, 0.10, 0.92, 0.05, 0.10, 0.65, 0.55, 0.40, 0.10, 0.00, 0.25, 0.10, 0.00],
        [0.42, 1.20, 0.12, 0.05, 0.10, 0.15, 0.85, 0.50, 0.05, 0.00, 0.10, 0.35, 0.10, 0.00, 0.05, 0.00, 0.85, 0.70],
    ],
    dtype=np.float32,
)
#: Per-cue standard deviation of the within-class noise.
CUE_SPREAD = 0.5 * np.array(
    [0.08, 0.12, 0.06, 0.035, 0.03, 0.12, 0.12, 0.10, 0.12, 0.12, 0.15, 0.12, 0.12, 0.2, 0.2, 0.15, 0.2, 0.15],
    dtype=np.float32,
)
#: Mixing weight towards a confuser class: w = OVERLAP * Beta(OVERLAP_BETA).
OVERLAP = 0.5
OVERLAP_BETA = (1.2, 2.6)

_CHUNK = 500
_HAIR_STRANDS = 6
_VESSELS = 5
_BLOBS = 4
_SPLIT_KEYS = {"train": 0, "val": 1, "test": 2}
#: exp(-q) is taken as exactly 0 beyond this q (exp(-200) < 1.4e-87, far below one grey level).
_GAUSS_CUTOFF = 200.0
_SQRT2 = 1.4142135623730951  # correctly rounded sqrt(2)


@dataclass(frozen=True)
class SyntheticSplit:
    """Images (uint8 N,H,W,3), labels (int64 N) and metadata arrays (length N) of one generated split."""

    images: np.ndarray
    labels: np.ndarray
    metadata: dict[str, np.ndarray]


def check_image_size(size: int) -> int:
    """Return ``size`` if the generator supports it, else raise :class:`InputError`."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or int(size) not in SUPPORTED_SIZES:
        raise InputError(f"unsupported image size {size!r}; use one of {', '.join(map(str, SUPPORTED_SIZES))}")
    return int(size)


def split_rng(seed: int, split: str) -> np.random.Generator:
    """The generator of one split: independent streams for train, val and test from one seed."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), _SPLIT_KEYS[split]]))


def generate_split(n: int, image_size: int, seed: int, split: str = "train") -> SyntheticSplit:
    """Generate ``n`` lesion images of ``image_size`` pixels for ``split`` ("train", "val" or "test")."""
    size = check_image_size(image_size)
    if split not in _SPLIT_KEYS:
        raise InputError(f"unknown split {split!r}; use train, val or test")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"data seed must be a non-negative integer, got {seed!r}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(f"split '{split}' needs at least one image, got n={n!r}")
    rng = split_rng(seed, split)
    labels = rng.choice(len(CLASS_NAMES), size=n, p=CLASS_PROBABILITIES).astype(np.int64)
    metadata = _draw_nuisance(rng, n)
    cues = _draw_cues(rng, labels)
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    for start in range(0, n, _CHUNK):
        stop = min(n, start + _CHUNK)
        chunk_meta = {k: v[start:stop] for k, v in metadata.items()}
        images[start:stop] = _render(rng, cues[start:stop], chunk_meta, size)
    return SyntheticSplit(images=images, labels=labels, metadata=metadata)


def _draw_nuisance(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    fitz = rng.choice(6, size=n, p=FITZPATRICK_PROBABILITIES).astype(np.int64) + 1
    hairy = rng.random(n) < 0.5
    hair = np.where(hairy, rng.random(n), 0.0).astype(np.float32)
    return {
        "fitzpatrick": fitz,
        "hair": hair,
        "illumination": rng.random(n).astype(np.float32),
        "vignette": rng.random(n).astype(np.float32),
        "blur": rng.random(n).astype(np.float32),
    }


def _draw_cues(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """Cue vectors (N, len(CUE_NAMES)): own prototype mixed with a confuser's, plus per-cue noise."""
    n, k = labels.shape[0], len(CLASS_NAMES)
    confuser = (labels + rng.integers(1, k, size=n)) % k
    weight = (OVERLAP * rng.beta(*OVERLAP_BETA, size=n)).astype(np.float32)[:, None]
    cues = (1 - weight) * CUE_PROTOTYPES[labels] + weight * CUE_PROTOTYPES[confuser]
    cues = cues + CUE_SPREAD * rng.standard_normal(cues.shape).astype(np.float32)
    cues[:, 0] = np.clip(cues[:, 0], 0.15, 0.85)
    cues[:, 1] = np.clip(cues[:, 1], 1.0, 1.8)
    cues[:, 2:4] = np.clip(cues[:, 2:4], 0.0, 0.45)
    cues[:, 4] = np.clip(cues[:, 4], 0.015, 0.25)
    cues[:, 5:] = np.clip(cues[:, 5:], 0.0, 1.0)
    return cues.astype(np.float32)


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    u = ((np.arange(size, dtype=np.float64) + 0.5) / size) * 2 - 1
    return u[None, None, :], u[None, :, None]  # x varies along width, y along height; shapes (1,1,S),(1,S,1)


def _gauss(q: np.ndarray) -> np.ndarray:
    """exp(-q) for q >= 0, and exactly 0 where q > _GAUSS_CUTOFF (keeps every intermediate a normal float)."""
    return np.where(q > _GAUSS_CUTOFF, 0.0, xm.exp(-np.minimum(q, _GAUSS_CUTOFF)))


def _segments_distance(x: np.ndarray, y: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance from each pixel to a segment per image: a, b are (n, 2) endpoints; returns (n, S, S)."""
    ax, ay = a[:, 0, None, None], a[:, 1, None, None]
    dx, dy = (b[:, 0] - a[:, 0])[:, None, None], (b[:, 1] - a[:, 1])[:, None, None]
    t = np.clip(((x - ax) * dx + (y - ay) * dy) / (dx * dx + dy * dy + 1e-6), 0.0, 1.0)
    return xm.hypot(x - ax - t * dx, y - ay - t * dy)


def _f64(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def _render(rng: np.random.Generator, cues: np.ndarray, meta: dict[str, np.ndarray], size: int) -> np.ndarray:
    """Render one chunk of images (n, S, S, 3) uint8 from cue vectors and nuisance factors.

    The random draws are those of lesions-1.0 (same order, same float32 rounding of the parameters); the
    rendering is float64 with the CPU-independent functions of :mod:`.exact_math`.
    """
    n = cues.shape[0]
    cues = _f64(cues)
    f = {name: cues[:, i][:, None, None] for i, name in enumerate(CUE_NAMES)}
    x, y = _grid(size)
    px = 2.0 / size  # one pixel in image units

    # Geometry: centre, orientation, elongation, harmonic border.
    centre = _f64((0.08 * rng.standard_normal((n, 2))).astype(np.float32))
    angle = _f64(rng.uniform(0, 2 * np.pi, n).astype(np.float32))[:, None, None]
    sin_a, cos_a = xm.sincos(angle)
    dx, dy = x - centre[:, 0, None, None], y - centre[:, 1, None, None]
    along = dx * cos_a + dy * sin_a
    across = (-dx * sin_a + dy * cos_a) * f["elongation"]
    dist = xm.hypot(along, across)
    # Border harmonics cos(k*theta + phase), theta the polar angle of (along, across): cos/sin(k*theta) by
    # the angle-addition recurrence from cos/sin(theta) = (along, across) / dist (theta = 0 at dist = 0).
    safe = np.where(dist > 0, dist, 1.0)
    cos_t, sin_t = np.where(dist > 0, along / safe, 1.0), np.where(dist > 0, across / safe, 0.0)
    harmonics = {1: (cos_t, sin_t)}
    for k in range(2, 11):
        c, s = harmonics[k - 1]
        harmonics[k] = (c * cos_t - s * sin_t, s * cos_t + c * sin_t)
    border = np.zeros_like(dist)
    low = _f64(rng.dirichlet(np.ones(3), n).astype(np.float32))
    high = _f64(rng.dirichlet(np.ones(5), n).astype(np.float32))
    phase = _f64(rng.uniform(0, 2 * np.pi, (n, 8)).astype(np.float32))
    sin_p, cos_p = xm.sincos(phase)
    for j, k in enumerate((1, 2, 3)):
        c, s = harmonics[k]
        wave = c * cos_p[:, j, None, None] - s * sin_p[:, j, None, None]  # cos(k*theta + phase)
        border += f["asymmetry"] * 1.6 * low[:, j, None, None] * wave
    for j, k in enumerate((5, 6, 7, 8, 10)):
        c, s = harmonics[k]
        wave = c * cos_p[:, 3 + j, None, None] - s * sin_p[:, 3 + j, None, None]
        border += f["border_irregularity"] * 2.2 * high[:, j, None, None] * wave
    del harmonics
    radius = f["radius"] * (1 + border)
    edge = np.maximum(f["edge_softness"] * f["radius"], 0.35 * px)
    mask = 1.0 / (1.0 + xm.exp(-np.clip((radius - dist) / edge, -30, 30)))
    rel = np.clip(dist / np.maximum(radius, 1e-3), 0, 1.5)  # 0 at centre, 1 on the border

    # Pigment field: brown by darkness, pink for BCC-like lesions, darker on darker skin.
    fitz = _f64(meta["fitzpatrick"])
    darkness = np.clip(cues[:, 5] + 0.12 * (fitz - 1) / 5, 0, 1)[:, None]
    light_brown, dark_brown = _f64(np.array([0.72, 0.50, 0.35], np.float32)), _f64(np.array([0.28, 0.16, 0.10], np.float32))
    pearly_pink = _f64(np.array([0.93, 0.70, 0.72], np.float32))
    pigment = light_brown + darkness * (dark_brown - light_brown)
    waxy_tan = _f64(np.array([0.80, 0.66, 0.42], np.float32))
    pigment = pigment + f["waxy"][:, 0] * (waxy_tan - pigment)
    pigment = pigment + cues[:, 6:7] * (pearly_pink - pigment)
    colour = np.broadcast_to(pigment[:, None, None, :], (n, size, size, 3)).copy()
    # Asymmetric pigment: a linear density gradient across the lesion.
    grad_dir = _f64(rng.uniform(0, 2 * np.pi, n).astype(np.float32))[:, None, None]
    sin_g, cos_g = xm.sincos(grad_dir)
    gradient = (dx * cos_g + dy * sin_g) / np.maximum(f["radius"], 1e-3)
    shade = 1 - 0.5 * f["asymmetry"] * gradient - 0.5 * f["central_darkening"] * (1 - rel)
    colour *= np.clip(shade, 0.3, 1.6)[..., None]

    # Variegation: blobs of dark, blue-grey and regression (red/white) colour inside the lesion.
    palette = {
        "dark_blotches": _f64(np.array([0.08, 0.05, 0.05], np.float32)),
        "blue_grey": _f64(np.array([0.42, 0.48, 0.62], np.float32)),
        "regression": _f64(np.array([0.88, 0.62, 0.62], np.float32)),
    }
    for name, rgb in palette.items():
        for _ in range(_BLOBS // 2):
            mu = _f64((rng.standard_normal((n, 2)) * 0.5 * cues[:, :1]).astype(np.float32)) + centre
            s = _f64((cues[:, 0] * rng.uniform(0.2, 0.45, n)).astype(np.float32))[:, None, None]
            # The Gaussian is separable: exp(-(u^2 + v^2)) = exp(-u^2) * exp(-v^2), on S + S points.
            u, v = x - mu[:, 0, None, None], y - mu[:, 1, None, None]
            blob = _gauss(u * u / (2 * s * s)) * _gauss(v * v / (2 * s * s))
            weight = np.clip(f[name] * 1.3 * blob, 0, 1)[..., None]
            colour += weight * (rgb - colour)

    # Seborrheic keratosis: cerebriform ridges (gyri/sulci) and milia-like white cysts.
    freq = _f64(rng.uniform(11, 15, n).astype(np.float32))[:, None, None]
    warp = xm.sin(9 * x * cos_a - 7 * y * sin_a + phase[:, :1, None])
    ridge = 0.5 + 0.5 * xm.sin(freq * (along + 0.15 * warp))
    colour *= (1 - 0.45 * f["ridges"] * ridge)[..., None]
    colour += (0.12 * f["ridges"] * (1 - ridge))[..., None]
    dot_scale = 2 * (0.9 * px) * (0.9 * px)
    for _ in range(3):
        mu = _f64((rng.uniform(-0.6, 0.6, (n, 2)) * cues[:, :1]).astype(np.float32)) + centre
        u, v = x - mu[:, 0, None, None], y - mu[:, 1, None, None]
        dot = _gauss(u * u / dot_scale) * _gauss(v * v / dot_scale)
        colour += (np.clip(f["milia"] * dot, 0, 1))[..., None] * (0.97 - colour)

    # Nevus: reticular pigment network.
    net_freq = np.pi / (2.2 * px)
    net = np.maximum(xm.sin(net_freq * along), xm.sin(net_freq * across))
    colour *= (1 - 0.3 * f["network"] * (net > 0.6))[..., None]

    # BCC: pearly rolled rim and arborising telangiectasia-like vessels.
    rim_arg = (dist - 0.9 * radius) / (0.12 * f["radius"] + px)
    rim = _gauss(rim_arg * rim_arg)
    colour += (0.35 * f["pearly_rim"] * rim)[..., None] * (0.98 - colour)
    vessel_rgb = _f64(np.array([0.72, 0.12, 0.18], np.float32))
    for _ in range(_VESSELS):
        a = _f64((rng.uniform(-0.7, 0.7, (n, 2)) * cues[:, :1]).astype(np.float32)) + centre
        b = a + _f64((rng.uniform(-0.6, 0.6, (n, 2)) * cues[:, :1]).astype(np.float32))
        d = _segments_distance(x, y, a, b) / (0.9 * px)
        line = _gauss(d * d)
        colour += (np.clip(f["vessels"] * line, 0, 1))[..., None] * (vessel_rgb - colour)

    # Composite lesion over skin.
    skin = _f64(SKIN_RGB[meta["fitzpatrick"] - 1]) * _f64((1 + 0.04 * rng.standard_normal((n, 3))).astype(np.float32))
    skin_field = skin[:, None, None, :] * _f64((1 + 0.03 * rng.standard_normal((n, size, size, 1))).astype(np.float32))
    alpha = (mask * f["opacity"])[..., None]
    image = skin_field + alpha * (colour - skin_field)
    del colour, skin_field, alpha

    # Nuisance: hair strands (thin dark curves approximated by segments).
    hair = _f64(meta["hair"])
    hair_rgb = _f64(np.array([0.09, 0.07, 0.05], np.float32))
    for k in range(_HAIR_STRANDS):
        a = _f64(rng.uniform(-1.2, 1.2, (n, 2)).astype(np.float32))
        direction = rng.uniform(0, 2 * np.pi, n)
        length = rng.uniform(0.8, 2.2, n)
        sin_d, cos_d = xm.sincos(direction)
        b = a + _f64((np.stack([cos_d, sin_d], 1) * length[:, None]).astype(np.float32))
        strength = np.clip(hair * _HAIR_STRANDS - k, 0, 1)[:, None, None]
        d = _segments_distance(x, y, a, b) / (0.55 * px)
        line = _gauss(d * d)
        image += (0.9 * strength * line)[..., None] * (hair_rgb - image)

    # Nuisance: illumination gradient, dermoscope vignette.
    light_dir = _f64(rng.uniform(0, 2 * np.pi, n).astype(np.float32))[:, None, None]
    sin_l, cos_l = xm.sincos(light_dir)
    illum = _f64(meta["illumination"])[:, None, None]
    image *= (1 + 0.45 * illum * (x * cos_l + y * sin_l) / _SQRT2)[..., None]
    corner = np.clip((xm.hypot(x, y) - 0.8) / 0.6, 0, 1)
    image *= (1 - 0.85 * _f64(meta["vignette"])[:, None, None] * (corner * np.sqrt(corner)))[..., None]  # corner**1.5

    image = _blur(image, _f64(meta["blur"]) * 1.4 * size / 32)
    image += _f64((0.012 * rng.standard_normal(image.shape)).astype(np.float32))
    return np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)


def _blur(image: np.ndarray, sigma_px: np.ndarray, radius: int = 4) -> np.ndarray:
    """Separable Gaussian blur with a per-image standard deviation (pixels); sigma 0 leaves the image."""
    taps = np.arange(-radius, radius + 1, dtype=np.float64)
    s = np.maximum(sigma_px, 1e-3)[:, None]
    q = taps[None, :] / s
    kernel = _gauss(0.5 * q * q)
    kernel /= xm.fixed_sum(kernel, axis=1, keepdims=True)
    size = image.shape[1]
    for axis in (1, 2):
        pad = [(0, 0)] * 4
        pad[axis] = (radius, radius)
        padded = np.pad(image, pad, mode="reflect")
        out = np.zeros_like(image)
        for j in range(2 * radius + 1):
            window = padded[:, j:j + size] if axis == 1 else padded[:, :, j:j + size]
            out += kernel[:, j, None, None, None] * window
        image = out
    return image
