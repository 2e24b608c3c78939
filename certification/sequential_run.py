"""Run the sequential decision over a data split and write one JSON row per example (decisions.jsonl).

Rows, in index order: index, label, prediction (-1 abstain), certified, correct, evaluations (n0 + estimation
draws), radius_threshold, alpha, sigma, n0, n, n_a, n_max, looks_used, p_lower, p_upper, seed, seconds,
counts_selection, abstention_resolved, mode ("sequential"), model_sha256. The example subset is the certify stage's
(:func:`certification.certify_run.select_indices` with the same seed), so both gates judge the same examples.
"""
from __future__ import annotations

import json
import os
from typing import Any

from certification.certify_run import parameter_checks, select_indices
from certification.dataset_io import load_split
from certification.errors import InputError
from certification.fileio import write_text_atomic
from certification.progress import progress
from certification.sequential import iter_decide
from certification.smoothing import SmoothedClassifier

CHUNK_EXAMPLES = 128


def decide_files(
    model_path: str | os.PathLike[str],
    data_path: str | os.PathLike[str],
    out: str | os.PathLike[str] | None,
    *,
    radius: float,
    sigma: float,
    n0: int,
    n_max: int,
    alpha: float,
    seed: int,
    batch_size: int,
    max_examples: int = 0,
    first_look: int = 100,
    resolve_abstention: bool = True,
    threads: int | None = None,
    show_progress: bool = True,
) -> list[dict[str, Any]]:
    """Decide every selected example of ``data_path`` at ``radius`` with the ONNX model; write ``out`` atomically
    (when given) and return the rows."""
    parameter_checks(sigma, n0, n_max, alpha, batch_size, seed, max_examples)
    if not isinstance(radius, (int, float)) or radius < 0:
        raise InputError(f"radius must be a non-negative number ([0,1]-pixel L2 units), got {radius!r}")
    smoothed = SmoothedClassifier.from_onnx(model_path, sigma, batch_size=batch_size, threads=threads)
    split = load_split(data_path, num_classes=smoothed.num_classes)
    smoothed.base_classifier.check_input_shape(split.image_shape_chw, str(data_path))
    indices = select_indices(len(split.labels), max_examples, seed)
    model_sha256 = smoothed.base_classifier.sha256
    rows: list[dict[str, Any]] = []
    bar = progress(total=len(indices), desc="decide", unit="ex", **({} if show_progress else {"disable": True}))
    try:
        for start in range(0, len(indices), CHUNK_EXAMPLES):
            chunk = indices[start:start + CHUNK_EXAMPLES]
            images = split.model_input(chunk)
            for decision in iter_decide(smoothed, images, split.labels[chunk], radius, n0, n_max, alpha, seed,
                                        indices=chunk, first_look=first_look, resolve_abstention=resolve_abstention):
                rows.append({**decision.to_dict(), "model_sha256": model_sha256})
                bar.update(1)
    finally:
        bar.close()
    if out is not None:
        write_text_atomic(out, "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows))
    return rows
