"""Subgroups of a test set: by class, by Fitzpatrick skin type, and by tercile of each continuous metadata field.

A :class:`Group` names a field (``class``, ``fitzpatrick``, ``hair``, ...), a group label (``melanoma``,
``V``, ``high``) and the boolean mask of the examples it holds. Continuous fields are cut at the empirical
terciles of the evaluated examples (the bin edges are reported with the group), so every tercile holds about a
third of them; ties can make a tercile empty, in which case it is dropped.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from certification.dataset_io import FITZPATRICK_NAMES
from certification.errors import InputError

TERCILE_NAMES = ("low", "mid", "high")


@dataclass(frozen=True)
class Group:
    """One subgroup: ``field`` and ``name`` identify it; ``mask`` selects its examples; ``definition`` says how."""

    field: str
    name: str
    mask: np.ndarray
    definition: str

    @property
    def size(self) -> int:
        return int(self.mask.sum())


def class_groups(labels: np.ndarray, class_names: Sequence[str]) -> list[Group]:
    """One group per class (classes with no example are kept, with size 0, so absences are visible)."""
    return [
        Group("class", str(name), labels == k, f"label == {k}")
        for k, name in enumerate(class_names)
    ]


def fitzpatrick_groups(types: np.ndarray) -> list[Group]:
    """Fitzpatrick types 1..6 as I..VI; a value outside 1..6 is an input error."""
    types = np.asarray(types)
    bad = types[(types < 1) | (types > 6)]
    if bad.size:
        raise InputError(f"fitzpatrick metadata must lie in 1..6, found {int(bad[0])}; fix the data split")
    return [Group("fitzpatrick", FITZPATRICK_NAMES[t - 1], types == t, f"fitzpatrick == {t}") for t in range(1, 7)]


def tercile_groups(field: str, values: np.ndarray) -> list[Group]:
    """Three groups cut at the empirical 1/3 and 2/3 quantiles of ``values`` (low: v <= q1, mid, high: v > q2)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise InputError(f"metadata field '{field}' is empty or holds NaN/inf; fix the data split")
    q1, q2 = (float(q) for q in np.quantile(values, [1 / 3, 2 / 3]))
    masks = (values <= q1, (values > q1) & (values <= q2), values > q2)
    definitions = (f"{field} <= {q1:.4g}", f"{q1:.4g} < {field} <= {q2:.4g}", f"{field} > {q2:.4g}")
    return [
        Group(field, name, mask, definition)
        for name, mask, definition in zip(TERCILE_NAMES, masks, definitions)
        if mask.any()
    ]


def all_groups(labels: np.ndarray, metadata: Mapping[str, np.ndarray], class_names: Sequence[str]) -> list[Group]:
    """Class groups, then Fitzpatrick types (if present), then terciles of every other metadata field (sorted)."""
    groups = class_groups(labels, class_names)
    if "fitzpatrick" in metadata:
        groups += fitzpatrick_groups(metadata["fitzpatrick"])
    for field in sorted(set(metadata) - {"fitzpatrick"}):
        values = np.asarray(metadata[field])
        if values.ndim != 1 or not np.issubdtype(values.dtype, np.number):
            continue  # non-scalar or non-numeric metadata cannot be binned
        groups += tercile_groups(field, values)
    return groups
