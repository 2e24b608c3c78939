"""Splitting a certification run across machines, and merging the pieces back.

A certificate depends only on (model, data, seed, example index, n0, n, alpha, sigma), never on which machine or
process computed it. Shard k of N certifies every N-th example of the run's example list, starting at k; the
merged rows, sorted by index, are exactly those of a single-machine run (timing fields aside).
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from certification.errors import InputError, ParameterError, StaleArtifactError
from certification.records import CertifyRecord, read_certify_records

_SUBSET_TAG = 0x53554253  # "SUBS": keeps subset selection apart from the noise streams of the same seed
#: Fields that must agree across every shard of one run.
RUN_FIELDS = ("model_sha256", "data_sha256", "n0", "n", "alpha", "sigma", "seed")


def select_indices(total: int, max_examples: int, seed: int) -> np.ndarray:
    """Sorted test-set positions to certify: all of them when ``max_examples`` is 0 or at least ``total``,
    else a seeded uniform sample without replacement (the positions stay the examples' original indices)."""
    if max_examples < 0:
        raise ParameterError(f"max_examples must be 0 (all) or positive, got {max_examples}")
    if max_examples == 0 or max_examples >= total:
        return np.arange(total, dtype=np.int64)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), _SUBSET_TAG])))
    return np.sort(rng.choice(total, size=max_examples, replace=False)).astype(np.int64)


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> (K, N) with 0 <= K < N."""
    try:
        k_text, n_text = text.split("/")
        k, n = int(k_text), int(n_text)
    except ValueError:
        raise ParameterError(f"--shard {text!r}: expected K/N, e.g. 0/4 for the first of four shards") from None
    if n < 1 or not 0 <= k < n:
        raise ParameterError(f"--shard {text!r}: need 0 <= K < N and N >= 1")
    return k, n


def shard_indices(indices: np.ndarray, shard: tuple[int, int]) -> np.ndarray:
    """The examples of shard (K, N): every N-th entry of the run's example list, starting at K."""
    k, n = shard
    chosen = np.asarray(indices, dtype=np.int64)[k::n]
    if chosen.size == 0:
        raise ParameterError(f"shard {k}/{n} has no examples (the run has {len(indices)}); use fewer shards")
    return chosen


def merge_shards(paths: Sequence[str | os.PathLike[str]]) -> list[CertifyRecord]:
    """Rows of all shard files, sorted by example index.

    Checks that every shard used the same run parameters and that no example appears twice.
    """
    if not paths:
        raise InputError("no shard files given")
    rows: list[CertifyRecord] = []
    reference: dict[str, object] | None = None
    for path in paths:
        for row in read_certify_records(path):
            run = {key: getattr(row, key) for key in RUN_FIELDS}
            if reference is None:
                reference = run
            elif run != reference:
                changed = next(key for key in RUN_FIELDS if run[key] != reference[key])
                raise StaleArtifactError(f"{path}: {changed} = {run[changed]!r} differs from {reference[changed]!r} in an earlier shard; "
                                 "merge only shards of one run")
            rows.append(row)
    rows.sort(key=lambda r: r.index)
    seen = np.array([r.index for r in rows], dtype=np.int64)
    duplicates = seen[1:][seen[1:] == seen[:-1]]
    if duplicates.size:
        raise InputError(f"example {int(duplicates[0])} appears in more than one shard; each example must be certified once")
    return rows


def check_coverage(rows: Sequence[CertifyRecord], expected: np.ndarray) -> None:
    """Raise InputError unless the merged ``rows`` cover exactly the run's example indices ``expected``."""
    seen = np.array([r.index for r in rows], dtype=np.int64)
    expected = np.asarray(expected, dtype=np.int64)
    missing = np.setdiff1d(expected, seen)
    if missing.size:
        raise InputError(f"{missing.size} example(s) of the run are in no shard (first: {int(missing[0])}); certify the missing shard")
    extra = np.setdiff1d(seen, expected)
    if extra.size:
        raise InputError(f"example {int(extra[0])} is not part of this run; check --max-examples and --seed")

