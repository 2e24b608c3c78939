"""PREDICT the smoothed classifier's label for each example of a data split; JSONL output written atomically.

One object per example, in index order: {"index", "label", "prediction" (-1 abstain), "correct", "n", "alpha",
"sigma", "seed"}. Noise comes from the PREDICT phase of (seed, example index), independent of CERTIFY's draws.
"""
from __future__ import annotations

import json
import os
from typing import Any

from certification.certify_run import CHUNK_EXAMPLES, RunOptions, open_run
from certification.fileio import write_text_atomic
from certification.progress import progress


def predict_files(model_path: str | os.PathLike[str], data_path: str | os.PathLike[str], out: str | os.PathLike[str],
                  options: RunOptions, n: int) -> list[dict[str, Any]]:
    """PREDICT on the split at ``data_path`` (a seeded subset when ``options.max_examples`` > 0); write ``out``."""
    options.check(1, n)
    classifier, split, chosen = open_run(model_path, data_path, options)
    alpha, seed = options.alpha, options.seed
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
