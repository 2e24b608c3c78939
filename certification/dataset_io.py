"""Reading and validating data splits in the pipeline's ``.npz`` format.

A split file holds ``images`` (uint8, N x H x W x C, the stored form; or float32 N x C x H x W in [0, 1]),
``labels`` (int64, N) and one array of length N per metadata field (for example ``fitzpatrick``).
Models always receive float32 NCHW in [0, 1]: :meth:`Split.model_input` converts. :func:`load_split` also reads
a DermaMNIST-format file (the keys the data stage reads: ``<split>_images``, ``<split>_labels``, labels (N,) or
(N,1); its ``test`` split unless another is named), so the CLI and the pipeline accept the same files.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from certification.errors import InputError

#: Metadata fields the synthetic generator records for every image (real data may carry fewer).
METADATA_FIELDS = ("fitzpatrick", "hair", "illumination", "vignette", "blur")
#: Names of the Fitzpatrick skin types 1..6 (the ``fitzpatrick`` metadata value k is FITZPATRICK_NAMES[k - 1]).
FITZPATRICK_NAMES = ("I", "II", "III", "IV", "V", "VI")


@dataclass(frozen=True)
class Split:
    """One data split: images, integer labels and per-image metadata arrays."""

    images: np.ndarray
    labels: np.ndarray
    metadata: dict[str, np.ndarray] = field(default_factory=dict)
    path: str = ""

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def channels_last(self) -> bool:
        """True when images are stored uint8 NHWC (the pipeline's stored form)."""
        return self.images.dtype == np.uint8

    def model_input(self, indices: np.ndarray | slice | None = None) -> np.ndarray:
        """Images as float32 NCHW in [0, 1], optionally only the rows ``indices``."""
        images = self.images if indices is None else self.images[indices]
        if self.channels_last:
            return np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0)
        return np.ascontiguousarray(images, dtype=np.float32)

    @property
    def image_shape_chw(self) -> tuple[int, int, int]:
        """(C, H, W) of one model input."""
        if self.channels_last:
            _, h, w, c = self.images.shape
            return int(c), int(h), int(w)
        _, c, h, w = self.images.shape
        return int(c), int(h), int(w)


def validate_arrays(images: np.ndarray, labels: np.ndarray, where: str, num_classes: int | None = None) -> None:
    """Check images and labels of one split; raise a one-line :class:`InputError` naming ``where``."""
    if images.ndim != 4:
        raise InputError(f"{where}: 'images' must have 4 dimensions (N,H,W,C uint8 or N,C,H,W float32), got shape {images.shape}")
    if images.dtype == np.uint8:
        if images.shape[-1] not in (1, 3):
            raise InputError(f"{where}: uint8 'images' must be N,H,W,C with C in (1, 3), got shape {images.shape}")
    elif images.dtype in (np.float32, np.float64):
        if images.shape[1] not in (1, 3):
            raise InputError(f"{where}: float 'images' must be N,C,H,W with C in (1, 3), got shape {images.shape}")
        if not np.all(np.isfinite(images)):
            raise InputError(f"{where}: 'images' contains NaN or inf; clean the data before certifying")
        lo, hi = float(images.min(initial=0.0)), float(images.max(initial=0.0))
        if lo < 0.0 or hi > 1.0:
            raise InputError(f"{where}: float 'images' must lie in [0, 1] (got min {lo:.4g}, max {hi:.4g}); divide 8-bit pixels by 255")
    else:
        raise InputError(f"{where}: 'images' has dtype {images.dtype}; expected uint8 (N,H,W,C) or float32 (N,C,H,W) in [0, 1]")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"{where}: 'labels' must be a 1-D integer array, got dtype {labels.dtype} shape {labels.shape}")
    if labels.shape[0] != images.shape[0]:
        raise InputError(f"{where}: {images.shape[0]} images but {labels.shape[0]} labels")
    if labels.shape[0] == 0:
        raise InputError(f"{where}: the split is empty; it needs at least one example")
    if labels.min() < 0 or (num_classes is not None and labels.max() >= num_classes):
        bad = int(labels.min()) if labels.min() < 0 else int(labels.max())
        limit = f"[0, {num_classes})" if num_classes is not None else "non-negative"
        raise InputError(f"{where}: label {bad} is outside the class range {limit}")


def read_npz(path: str | Path, hint: str = "") -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file (no pickles); InputError naming the file when missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: data file not found{'; ' + hint if hint else ''}")
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic != b"PK\x03\x04":
        kind = "an empty file" if not magic else "a single .npy array" if magic == b"\x93NUM" else "not a zip archive"
        raise InputError(f"{path}: not an .npz file ({kind}); save the split with numpy.savez (images, labels, ...)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        raise InputError(f"{path}: not a readable .npz file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None


DERMAMNIST_SPLITS = ("train", "val", "test")


def _dermamnist_split(arrays: dict[str, np.ndarray], split: str, path: Path) -> dict[str, np.ndarray]:
    """The arrays of one split of a DermaMNIST-format file under the split file's keys."""
    if f"{split}_images" not in arrays or f"{split}_labels" not in arrays:
        raise InputError(f"{path}: a DermaMNIST-format file without '{split}_images' and '{split}_labels'")
    labels = arrays[f"{split}_labels"]
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    images = arrays[f"{split}_images"]
    if images.ndim == 3:
        images = images[..., None]
    prefix = f"{split}_"
    metadata = {k[len(prefix):]: v for k, v in arrays.items()
                if k.startswith(prefix) and k not in (f"{split}_images", f"{split}_labels")}
    return {"images": images, "labels": labels, **metadata}


def load_split(path: str | Path, num_classes: int | None = None, split: str = "test") -> Split:
    """Load and validate one split file (or the ``split`` of a DermaMNIST-format file); errors name the file and
    the problem."""
    arrays = read_npz(path)
    path = Path(path)
    if "images" not in arrays and any(f"{s}_images" in arrays for s in DERMAMNIST_SPLITS):
        arrays = _dermamnist_split(arrays, split, path)
    for key in ("images", "labels"):
        if key not in arrays:
            raise InputError(f"{path}: missing array '{key}' (found: {', '.join(sorted(arrays)) or 'none'})")
    images, labels = arrays.pop("images"), arrays.pop("labels")
    validate_arrays(images, labels, str(path), num_classes)
    for key, values in arrays.items():
        if values.shape[:1] != labels.shape:
            raise InputError(f"{path}: metadata array '{key}' has length {values.shape[:1]}, expected {labels.shape[0]}")
    return Split(images=images, labels=labels.astype(np.int64, copy=False), metadata=arrays, path=str(path))
