"""PREDICT the smoothed classifier's label for each example of a data split; JSONL output written atomically.

One object per example, in index order: {"index", "label", "prediction" (-1 abstain), "correct", "n", "alpha",
"sigma", "seed"}. Noise comes from the PREDICT phase of (seed, example index), independent of CERTIFY's draws.
"""
from __future__ import annotations

import json
import os
from typing import Any

from certification.certify_run import CHUNK_EXAMPLES, parameter_checks, select_indices
from certification.dataset_io import load_split
from certification.fileio import write_text_atomic
from certification.progress import progress
from certification.smoothing import SmoothedClassifier


def predict_files(
    model_path: str | os.PathLike[str],
    data_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    sigma: float,
    n: int,
    alpha: float,
    batch_size: int,
    seed: int,
    max_examples: int = 0,
    threads: int | None = None,
    noise_threads: int | None = None,
    provider: str = "auto",
) -> list[dict[str, Any]]:
    """PREDICT on the split at ``data_path`` (a seeded subset when ``max_examples`` > 0); write ``out``."""
    parameter_checks(sigma, 1, n, alpha, batch_size, seed, max_examples)
    classifier = SmoothedClassifier.from_onnx(model_path, sigma, batch_size=batch_size, threads=threads, provider=provider,
                                              noise_threads=noise_threads)
    split = load_split(data_path, num_classes=classifier.num_classes)
    classifier.base_classifier.check_input_shape(split.image_shape_chw, str(data_path))
    chosen = select_indices(len(split), max_examples, seed)
    records: list[dict[str, Any]] = []
    with progress(total=len(chosen), unit="ex", desc="predict") as bar:
        for start in range(0, len(chosen), CHUNK_EXAMPLES):
            part = chosen[start : start + CHUNK_EXAMPLES]
            answers = classifier.predict_many(split.model_input(part), n, alpha, seed, indices=part)
            for index, label, prediction in zip(part, split.labels[part], answers):
                records.append({
                    "index": int(index), "label": int(label), "prediction": int(prediction),
                    "correct": bool(prediction == label), "n": int(n), "alpha": float(alpha),
                    "sigma": classifier.sigma, "seed": int(seed),
                })
            bar.update(len(part))
    write_text_atomic(out, "".join(json.dumps(r) + "\n" for r in records))
    return records
