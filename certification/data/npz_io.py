"""Writing split files with byte-stable content (the same arrays always give the same file bytes).

``numpy.savez`` stamps the current time into the zip entries, so identical data would hash differently on
every run (DVC churn). :func:`save_split` writes the same ``.npz`` layout with fixed entry timestamps.
"""
from __future__ import annotations

import os
import zipfile
from typing import Mapping

import numpy as np

from certification.fileio import atomic_output

_EPOCH = (1980, 1, 1, 0, 0, 0)


def save_npz(path: str | os.PathLike[str], arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` to an uncompressed ``.npz`` atomically, entries in the given order, fixed timestamps."""
    with atomic_output(path, suffix=".npz") as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            for name, array in arrays.items():
                info = zipfile.ZipInfo(f"{name}.npy", date_time=_EPOCH)
                info.external_attr = 0o644 << 16
                with archive.open(info, "w", force_zip64=True) as handle:
                    np.lib.format.write_array(handle, np.ascontiguousarray(array), allow_pickle=False)


def save_split(path: str | os.PathLike[str], images: np.ndarray, labels: np.ndarray,
               metadata: Mapping[str, np.ndarray]) -> None:
    """Write one split: ``images`` uint8 (N,H,W,C), ``labels`` int64 (N,), then each metadata array."""
    save_npz(path, {"images": images.astype(np.uint8, copy=False), "labels": labels.astype(np.int64, copy=False), **metadata})
