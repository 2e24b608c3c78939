"""The single-core latency record of the smoothed predictor (benchmarks/device_latency.py writes it, the dossier
reads it): one writer, one reader.

Each row is one configuration (precision fp32 or int8, k noisy copies) timed on one core (onnxruntime
intra_op_num_threads = inter_op_num_threads = 1, sequential execution): the median and 99th percentile of the
wall-clock time of one call of the smoothed graph (one image in, class counts out), in milliseconds, over
``calls`` timed calls after warm-up, and the peak resident memory of the process that ran it (MiB, ``ru_maxrss``).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

from certification.errors import InputError
from certification.fileio import read_json, write_json_atomic

SCHEMA = "smoothcert-device-latency/1"


@dataclass(frozen=True)
class LatencyRow:
    """One configuration's timing on one core (milliseconds) and its process's peak resident memory (MiB)."""

    precision: str
    k: int
    median_ms: float
    p99_ms: float
    calls: int
    peak_rss_mib: float
    smoothed_sha256: str
    baseline_median_ms: float | None = None  # the library's PREDICT (numpy noise + base model) at the same k

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def write_device_latency(path: str | os.PathLike[str], rows: Sequence[LatencyRow], *, image_chw: Sequence[int],
                         model_sha256: Mapping[str, str], platform: Mapping[str, Any], command: str, date_utc: str,
                         target: Mapping[str, Any], agreement: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """Write the record (atomically) and return it; ``model_sha256`` names the base models timed (fp32, int8);
    ``agreement``: rows (k, examples, agreement, abstentions) comparing the graph + rule with the library's PREDICT."""
    document = {"schema": SCHEMA, "date_utc": date_utc, "command": command, "image_chw": [int(d) for d in image_chw],
                "threads": {"intra_op_num_threads": 1, "inter_op_num_threads": 1}, "model_sha256": dict(model_sha256),
                "platform": dict(platform), "target": dict(target), "rows": [row.to_dict() for row in rows],
                "agreement": [dict(a) for a in agreement]}
    write_json_atomic(path, document)
    return document


def read_device_latency(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The record at ``path``, checked (schema, one row per precision and k, positive timings)."""
    document = read_json(path)
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        raise InputError(f"{path}: not a device latency record ({SCHEMA}); rerun benchmarks/device_latency.py")
    rows = document.get("rows")
    if not isinstance(rows, list) or not rows:
        raise InputError(f"{path}: no latency rows; rerun benchmarks/device_latency.py")
    seen = set()
    for row in rows:
        try:
            key = (str(row["precision"]), int(row["k"]))
            values = [float(row[name]) for name in ("median_ms", "p99_ms", "peak_rss_mib")]
        except (KeyError, TypeError, ValueError):
            raise InputError(f"{path}: a latency row lacks precision, k, median_ms, p99_ms or peak_rss_mib") from None
        if key in seen or min(values) <= 0 or values[1] < values[0]:
            raise InputError(f"{path}: latency row {key} repeated or not positive (p99 below the median); rerun the benchmark")
        seen.add(key)
    return document
