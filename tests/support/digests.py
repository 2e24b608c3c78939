"""A content digest of a generated split (images, labels and metadata bytes with their shapes and dtypes)."""
from __future__ import annotations

import hashlib

import numpy as np

from certification.data import synthetic


def split_digest(split: synthetic.SyntheticSplit) -> str:
    """SHA-256 over images, labels and metadata (sorted by name) bytes, with shapes and dtypes."""
    h = hashlib.sha256()
    arrays = [("images", split.images), ("labels", split.labels)] + sorted(split.metadata.items())
    for name, array in arrays:
        array = np.ascontiguousarray(array)
        h.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
        h.update(array.tobytes())
    return h.hexdigest()
