"""The data set's datasheet: where the data came from and what is in each split.

Shape (``data/datasheet.json``)::

    {"source", "generator_version", "seed", "image_size", "classes": [names], "malignant_classes": [names],
     "malignant_indices": [ints], "metadata_fields": [names],
     "splits": {"train"|"val"|"test": {"n", "sha256", "class_counts": {name: n},
                                      "fitzpatrick_counts": {"I".."VI": n[, "unknown": n]}}}}

``fitzpatrick_counts`` carries an ``unknown`` entry only for splits without skin-type metadata.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from certification.dataset_io import FITZPATRICK_NAMES


def split_summary(labels: np.ndarray, metadata: Mapping[str, np.ndarray], class_names: Sequence[str], sha256: str) -> dict[str, Any]:
    """Counts of one split by class and by Fitzpatrick skin type, with the split file's SHA-256."""
    class_counts = np.bincount(labels, minlength=len(class_names))
    summary: dict[str, Any] = {
        "n": int(labels.shape[0]),
        "sha256": sha256,
        "class_counts": {name: int(class_counts[i]) for i, name in enumerate(class_names)},
    }
    if "fitzpatrick" in metadata:
        skin = np.bincount(metadata["fitzpatrick"].astype(np.int64), minlength=7)
        summary["fitzpatrick_counts"] = {name: int(skin[i + 1]) for i, name in enumerate(FITZPATRICK_NAMES)}
    else:
        summary["fitzpatrick_counts"] = {**{name: 0 for name in FITZPATRICK_NAMES}, "unknown": int(labels.shape[0])}
    return summary


def build_datasheet(
    source: str,
    generator_version: str | None,
    seed: int | None,
    image_size: int,
    class_names: Sequence[str],
    malignant_classes: Sequence[str],
    splits: Mapping[str, dict[str, Any]],
    metadata_fields: Sequence[str] = (),
) -> dict[str, Any]:
    """Assemble the datasheet dict from split summaries (see :func:`split_summary`)."""
    return {
        "source": source,
        "generator_version": generator_version,
        "seed": seed,
        "image_size": int(image_size),
        "classes": list(class_names),
        "malignant_classes": list(malignant_classes),
        "malignant_indices": [list(class_names).index(c) for c in malignant_classes],
        "metadata_fields": list(metadata_fields),
        "splits": dict(splits),
    }
