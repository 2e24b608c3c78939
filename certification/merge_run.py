"""Merge the shards of one certification run into the run's results and its ``metrics/certify.json``.

Each worker runs ``smoothcert certify --shard K/N --out shard_K.jsonl --summary shard_K.json``; the merge reads
every ``shard_K.jsonl`` with the summary beside it (same name, ``.json``), checks that the shards are one run
(same model, data, parameters, radii, confidence, class names and noise recipe) and cover its examples exactly
once, and writes the merged JSONL and TSV and, when asked, the summary through the same producer as a
single-machine run (:func:`certification.summary.certify_metrics`). The merged rows equal a single run's rows.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from certification.certify_run import write_run_files
from certification.dataset_io import load_split
from certification.errors import MissingInputError, ParameterError, StaleArtifactError
from certification.fileio import sha256_file
from certification.records import CertifyRecord
from certification.shards import check_coverage, merge_shards, select_indices
from certification.summary import certify_metrics, read_certify_metrics, write_certify_metrics

def summary_path_for(shard: str | os.PathLike[str]) -> Path:
    """Where a shard's summary lives: beside it, same name with ``.json``."""
    return Path(shard).with_suffix(".json")


@dataclass(frozen=True)
class MergeOutcome:
    records: list[CertifyRecord]
    summary: dict[str, Any] | None


def _shared(summaries: Sequence[dict[str, Any]], paths: Sequence[Path]) -> dict[str, Any]:
    first = summaries[0]
    for path, summary in zip(paths[1:], summaries[1:]):
        for key in ("model", "data", "confidence", "radii", "noise"):
            mine, theirs = summary[key], first[key]
            if key == "noise":
                mine, theirs = mine["spec"], theirs["spec"]
            if mine != theirs:
                raise StaleArtifactError(f"{path}: '{key}' differs from {paths[0]}; merge only shards of one run")
        if summary["class_names"] != first["class_names"]:
            raise StaleArtifactError(f"{path}: class names differ from {paths[0]}; merge only shards of one run")
        if summary["params"]["max_examples"] != first["params"]["max_examples"]:
            raise StaleArtifactError(f"{path}: max_examples differs from {paths[0]}; merge only shards of one run")
    return first


def _merged_context(summaries: Sequence[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The runtime and noise blocks of the merged run: the shards' own, with every distinct one listed."""
    runtimes = [s["runtime"] for s in summaries]
    runtime = dict(runtimes[0]) if all(r == runtimes[0] for r in runtimes) else {"per_shard": runtimes}
    runtime["shards"] = len(summaries)
    noise = dict(summaries[0]["noise"])
    kernels = [s["noise"]["kernels"] for s in summaries]
    if any(k != kernels[0] for k in kernels):
        noise["kernels_per_shard"] = kernels
    return runtime, noise


def merge_files(
    shards: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    summary_out: str | os.PathLike[str] | None = None,
    data: str | os.PathLike[str] | None = None,
    max_examples: int | None = None,
) -> MergeOutcome:
    """Merge ``shards`` into ``out`` (+ TSV) and, with ``summary_out``, the run's summary.

    Coverage (every example of the run in exactly one shard) is checked against the run's example list, taken
    from ``data`` or, for the summary, from the data split the shards' summaries name (its hash is checked).
    """
    paths = [Path(p) for p in shards]
    records = merge_shards(paths)
    summary = None
    if summary_out is not None:
        summary_paths = [summary_path_for(p) for p in paths]
        for shard, path in zip(paths, summary_paths):
            if not path.is_file():
                raise MissingInputError(f"{path}: summary of shard {shard} not found; certify each shard with "
                                        f"--summary {path} (the merge needs the shards' model, data, radii and class names)")
        summaries = [read_certify_metrics(p) for p in summary_paths]
        shared = _shared(summaries, summary_paths)
        recorded = int(shared["params"]["max_examples"])
        if max_examples is not None and max_examples != recorded:
            raise ParameterError(f"--max-examples {max_examples} differs from the shards' {recorded}; leave it out")
        max_examples = recorded
        data = Path(data) if data is not None else Path(shared["data"]["path"])
        if not data.is_file():
            raise MissingInputError(f"{data}: the data split the shards certified was not found; pass --data")
        if sha256_file(data) != shared["data"]["sha256"]:
            raise StaleArtifactError(f"{data}: hashes differently from the split the shards certified; pass the right --data")
    if data is not None:
        total = len(load_split(data))
        check_coverage(records, select_indices(total, max_examples or 0, records[0].seed))
    if summary_out is not None:
        runtime, noise = _merged_context(summaries)
        summary = certify_metrics(
            records, model=shared["model"], data=shared["data"], max_examples=max_examples, radii=shared["radii"],
            confidence=shared["confidence"], class_names=shared["class_names"], runtime=runtime, noise=noise,
            batch_size=shared["params"].get("batch_size"),
        )
    write_run_files(out, records)
    if summary is not None:
        write_certify_metrics(summary_out, summary)
    return MergeOutcome(records, summary)
