"""Per-example certificates (``results/certify.jsonl``) as arrays, validated against the test split.

Each JSON line is one example: ``index`` (position in the test split), ``label``, ``prediction`` (-1 for
abstain), ``radius`` (L2, [0,1]-pixel units, 0.0 when abstaining), ``alpha``, ``sigma``, ``seed`` and counts.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from certification.errors import InputError

ABSTAIN = -1
_REQUIRED = ("index", "label", "prediction", "radius", "alpha", "sigma")


@dataclass(frozen=True)
class CertifiedRows:
    """Certificates of some test examples, as parallel arrays (row order = file order)."""

    index: np.ndarray  # int64, position in the test split
    label: np.ndarray  # int64
    prediction: np.ndarray  # int64, -1 = abstain
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

    def subset(self, rows: np.ndarray) -> "CertifiedRows":
        """The rows at positions ``rows`` (not test-split indices)."""
        return CertifiedRows(
            self.index[rows], self.label[rows], self.prediction[rows], self.radius[rows], self.sigma, self.alpha, self.seed
        )


def rows_from_records(records: Iterable[Mapping[str, Any]], where: str = "certify rows") -> CertifiedRows:
    """Validate and convert certify records (dicts in the ``results/certify.jsonl`` schema)."""
    records = list(records)
    if not records:
        raise InputError(f"{where}: no certificates; run the certify stage first")
    for number, record in enumerate(records, start=1):
        missing = [key for key in _REQUIRED if key not in record]
        if missing:
            raise InputError(f"{where}: record {number} lacks '{missing[0]}'; regenerate it with the certify stage")
    sigmas = {float(r["sigma"]) for r in records}
    alphas = {float(r["alpha"]) for r in records}
    if len(sigmas) != 1 or len(alphas) != 1:
        raise InputError(f"{where}: mixed sigma {sorted(sigmas)} or alpha {sorted(alphas)}; certify all examples with one setting")
    seeds = {r.get("seed") for r in records}
    rows = CertifiedRows(
        index=np.array([int(r["index"]) for r in records], dtype=np.int64),
        label=np.array([int(r["label"]) for r in records], dtype=np.int64),
        prediction=np.array([int(r["prediction"]) for r in records], dtype=np.int64),
        radius=np.array([float(r["radius"]) for r in records], dtype=np.float64),
        sigma=sigmas.pop(),
        alpha=alphas.pop(),
        seed=int(next(iter(seeds))) if len(seeds) == 1 and None not in seeds else None,
    )
    if len(np.unique(rows.index)) != len(rows):
        raise InputError(f"{where}: an example index appears twice; regenerate the certificates")
    if np.any(rows.radius < 0) or not np.all(np.isfinite(rows.radius)):
        raise InputError(f"{where}: radii must be finite and >= 0")
    if np.any(rows.radius[rows.abstained] != 0.0):
        raise InputError(f"{where}: an abstention carries a non-zero radius; regenerate the certificates")
    return rows


def load_certify_rows(path: str | Path) -> CertifiedRows:
    """Read ``results/certify.jsonl``; one-line :class:`InputError` naming the file on any problem."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found; run the certify stage first")
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}: line {number} is not valid JSON ({exc.msg})") from None
    return rows_from_records(records, str(path))


def check_against_split(rows: CertifiedRows, labels: np.ndarray, where: str = "certify rows") -> None:
    """Every row's index must exist in the split and carry the split's label (catches stale results)."""
    n = labels.shape[0]
    if rows.index.min() < 0 or rows.index.max() >= n:
        raise InputError(f"{where}: example index {int(rows.index.max())} is outside the test split of {n}; re-run certify on this data")
    mismatch = np.flatnonzero(labels[rows.index] != rows.label)
    if mismatch.size:
        i = int(rows.index[mismatch[0]])
        raise InputError(f"{where}: example {i} has label {int(rows.label[mismatch[0]])} but the test split says {int(labels[i])}; re-run certify on this data")
