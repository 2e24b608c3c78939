"""Certificates of one certification run as parallel numpy arrays, the form the dataset summaries count.

:func:`as_arrays` turns :class:`~certification.records.CertifyRecord` rows (one sigma, one alpha) into a
:class:`CertificateArrays`; :func:`check_against_split` refuses rows whose indices or labels do not belong to the
split they are compared with (stale results). Radii are L2 norms in [0,1]-pixel units.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from certification.errors import InputError
from certification.records import ABSTAIN, CertifyRecord


@dataclass(frozen=True)
class CertificateArrays:
    """Certificates of some test examples as parallel arrays (row order = file order)."""

    index: np.ndarray  # int64, position in the test split
    label: np.ndarray  # int64
    prediction: np.ndarray  # int64, ABSTAIN = -1
    radius: np.ndarray  # float64, L2 in [0,1]-pixel units
    sigma: float
    alpha: float
    seed: int | None

    def __len__(self) -> int:
        return int(self.index.shape[0])

    @property
    def correct(self) -> np.ndarray:
        """Smoothed prediction equals the label (abstentions are not correct)."""
        return (self.prediction == self.label) & (self.prediction != ABSTAIN)

    @property
    def abstained(self) -> np.ndarray:
        return self.prediction == ABSTAIN

    def certified_correct_at(self, radius: float) -> np.ndarray:
        """Claims "correct with certified radius >= ``radius``" (inclusive, as in Cohen et al.)."""
        return self.correct & (self.radius >= radius)

    def subset(self, rows: np.ndarray) -> CertificateArrays:
        """The rows at positions ``rows`` (not test-split indices)."""
        return CertificateArrays(self.index[rows], self.label[rows], self.prediction[rows], self.radius[rows],
                                 self.sigma, self.alpha, self.seed)


def as_arrays(records: Sequence[CertifyRecord], where: str = "certify rows") -> CertificateArrays:
    """Parallel arrays of ``records``; they must share one sigma and one alpha (one certification run)."""
    if not records:
        raise InputError(f"{where}: no certificates; run the certify stage first")
    sigmas = {r.sigma for r in records}
    alphas = {r.alpha for r in records}
    if len(sigmas) != 1 or len(alphas) != 1:
        raise InputError(f"{where}: mixed sigma {sorted(sigmas)} or alpha {sorted(alphas)}; certify all examples with one setting")
    seeds = {r.seed for r in records}
    return CertificateArrays(
        index=np.array([r.index for r in records], dtype=np.int64),
        label=np.array([r.label for r in records], dtype=np.int64),
        prediction=np.array([r.prediction for r in records], dtype=np.int64),
        radius=np.array([r.radius for r in records], dtype=np.float64),
        sigma=sigmas.pop(), alpha=alphas.pop(), seed=seeds.pop() if len(seeds) == 1 else None,
    )


def check_against_split(rows: CertificateArrays, labels: np.ndarray, where: str = "certify rows") -> None:
    """Every row's index must exist in the split and carry the split's label (catches stale results)."""
    n = labels.shape[0]
    if rows.index.min() < 0 or rows.index.max() >= n:
        raise InputError(f"{where}: example index {int(rows.index.max())} is outside the test split of {n}; re-run certify on this data")
    mismatch = np.flatnonzero(labels[rows.index] != rows.label)
    if mismatch.size:
        i = int(rows.index[mismatch[0]])
        raise InputError(f"{where}: example {i} has label {int(rows.label[mismatch[0]])} but the test split says {int(labels[i])}; re-run certify on this data")
