"""The three data sources behind one call: the synthetic generator, a DermaMNIST-format .npz, an image folder.

:func:`build_dataset` returns every split in memory (validated) with the datasheet's source fields, so a caller can
write nothing until all of it is known to be good.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from certification.data import synthetic
from certification.data.real import SPLITS, load_folder, load_npz
from certification.errors import ParameterError

SOURCES = ("synthetic", "npz", "folder")
Split = tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]


@dataclass(frozen=True)
class Dataset:
    """``splits``: split name -> (uint8 NHWC images, int64 labels, metadata arrays); the rest is datasheet provenance."""

    splits: dict[str, Split]
    generator_version: str | None
    seed: int | None
    classes: list[str]
    malignant: list[str]


def build_dataset(source: str, path: str, image_size: int, sizes: Mapping[str, int], seed: int,
                  classes: Sequence[str] = (), malignant_classes: Sequence[str] = ()) -> Dataset:
    """The splits of ``source``: ``synthetic`` (``sizes`` images per split from ``seed``), ``npz`` (the file at
    ``path``) or ``folder`` (images + labels.csv at ``path``, split by ``seed``; labels must be among ``classes``
    when it is given, else names of a known vocabulary). ``malignant_classes`` names the malignant classes of real
    data (default: the known names; none found is an error). Synthetic data is generated at 28, 32 or 64 pixels;
    real data is resized to any side >= 8. ParameterError / InputError on bad input, before anything is written."""
    if source not in SOURCES:
        raise ParameterError(f"data.source must be one of {', '.join(SOURCES)}, got {source!r}")
    if source == "synthetic":
        size = synthetic.check_image_size(image_size)
        if malignant_classes and list(malignant_classes) != list(synthetic.MALIGNANT_CLASSES):
            raise ParameterError(f"data.malignant_classes {list(malignant_classes)} differs from the synthetic data's "
                                 f"{list(synthetic.MALIGNANT_CLASSES)}; leave it [] for synthetic data")
        for split in SPLITS:
            if sizes[split] < 1:
                raise ParameterError(f"data.n_{split} must be >= 1 (an empty {split} split), got {sizes[split]}")
        splits: dict[str, Split] = {}
        for split in SPLITS:
            generated = synthetic.generate_split(sizes[split], size, seed, split)
            splits[split] = (generated.images, generated.labels, generated.metadata)
        return Dataset(splits, synthetic.GENERATOR_VERSION, seed, list(synthetic.CLASS_NAMES),
                       list(synthetic.MALIGNANT_CLASSES))
    if not path:
        raise ParameterError(f"data.path is empty; data.source '{source}' needs the file or folder to read")
    dataset = (load_npz(path, image_size, malignant_classes) if source == "npz"
               else load_folder(path, image_size, seed, classes, malignant_classes))
    return Dataset(dataset.splits, None, seed if source == "folder" else None, list(dataset.class_names),
                   list(dataset.malignant_classes))


def provenance(dataset: Dataset) -> dict[str, Any]:
    """The datasheet fields the source determines."""
    return {"generator_version": dataset.generator_version, "seed": dataset.seed, "classes": dataset.classes,
            "malignant": dataset.malignant}
