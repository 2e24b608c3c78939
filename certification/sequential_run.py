"""Run the sequential decision over a data split and write one JSON row per example (decisions.jsonl).

Rows, in index order: index, label, prediction (-1 abstain), certified, correct, evaluations (n0 + estimation
draws: the model evaluations this example spent), radius_threshold, alpha, sigma, n0, n, n_a, n_max, looks_used,
p_lower, p_upper (the confidence sequence's bounds where it stopped), decided_by ("sequence" or "fixed_at_n_max"),
alpha_final, final_lower (the fallback's Clopper-Pearson bound, when it answered), seed, seconds (the chunk's time
shared by evaluations), counts_selection, abstention_resolved, mode ("sequential"), model_sha256. The example subset is the certify stage's
(:func:`certification.certify_run.select_indices` with the same seed), so both gates judge the same examples.
"""
from __future__ import annotations

import os

from certification.certify_run import RunOptions, open_run
from certification.errors import ParameterError
from certification.fileio import write_text_atomic
from certification.progress import progress
from certification.records import DecisionRecord, decision_jsonl_text
from certification.sequential import FIRST_LOOK, iter_decide

CHUNK_EXAMPLES = 1024  # examples decided together (their installments share the noise threads)


def decide_files(model_path: str | os.PathLike[str], data_path: str | os.PathLike[str], out: str | os.PathLike[str] | None,
                 options: RunOptions, radius: float, n0: int, n_max: int, *, first_look: int = FIRST_LOOK,
                 resolve_abstention: bool = True, show_progress: bool = True) -> list[DecisionRecord]:
    """Decide every selected example of ``data_path`` at ``radius`` with the ONNX model; write ``out`` atomically
    (when given) and return the rows."""
    options.check(n0, n_max)
    if isinstance(first_look, bool) or not isinstance(first_look, int) or not 1 <= first_look <= n_max:
        raise ParameterError(f"first look {first_look!r} must be an integer in [1, n_max = {n_max}]")
    if isinstance(radius, bool) or not isinstance(radius, (int, float)) or not radius >= 0:
        raise ParameterError(f"radius must be a non-negative number ([0,1]-pixel L2 units), got {radius!r}")
    smoothed, split, indices = open_run(model_path, data_path, options)
    alpha, seed = options.alpha, options.seed
    rows: list[DecisionRecord] = []
    bar = progress(total=len(indices), desc="decide", unit="ex", **({} if show_progress else {"disable": True}))
    try:
        for start in range(0, len(indices), CHUNK_EXAMPLES):
            chunk = indices[start:start + CHUNK_EXAMPLES]
            images = split.model_input(chunk)
            for decision in iter_decide(smoothed, images, split.labels[chunk], radius, n0, n_max, alpha, seed,
                                        indices=chunk, first_look=first_look, resolve_abstention=resolve_abstention):
                rows.append(decision)
                bar.update(1)
    finally:
        bar.close()
    if out is not None:
        write_text_atomic(out, decision_jsonl_text(rows))
    return rows
