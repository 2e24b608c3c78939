"""Pick the shipped sigma from DVC experiments, on the validation split only (not a stage: run it after the queue).

    dvc exp run --queue -S train.sigma=0.12,0.25,0.5 validate    # one experiment per sigma, up to validate only
    dvc queue start && dvc queue status                          # or, blocking: dvc exp run --run-all -j 1
    python -m pipeline.select_sigma [--json exp.json] [--out results/sigma_selection.json]

Reads ``dvc exp show --json`` (or the saved output given with ``--json``): every baseline commit and every
experiment whose ``metrics/validation.json`` exists (the workspace is not a candidate: commit it or run it as an
experiment). The rule's numbers are this params.yaml's pre-specified ``gate.radius`` and ``gate.min_clean_accuracy``;
the rule itself is :func:`certification.sigma_selection.select_sigma` (eligible: validation clean-accuracy lower
bound >= gate.min_clean_accuracy; chosen: the highest lower bound on validation certified accuracy at r*; ties: the
smaller sigma). Because the experiments stop at ``validate``, no candidate opens the test split; the chosen one
is then applied (``dvc exp apply NAME``, commit) and the full ``dvc repro`` certifies it on the sealed test split.

Prints the table and the choice. Exit 0: a candidate is chosen; 1: none is eligible; 2: bad input.
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from certification.errors import InputError, ParameterError
from certification.fileio import read_json, write_json_atomic
from certification.sigma_selection import Candidate, SelectionRule, ValidationMetrics, select_sigma, selection_table
from pipeline import layout
from pipeline.stage import load_document, run_stage

METRICS_KEY = layout.VALIDATION_METRICS.as_posix()


def _entries(document: Any) -> Iterator[tuple[str, bool, Any, dict[str, Any] | None]]:
    """(name, is_baseline, error, data) of every baseline commit and experiment of ``dvc exp show --json``; the
    workspace is skipped."""
    if not isinstance(document, list):
        raise InputError("dvc exp show --json: expected a list of commits; pass the output of `dvc exp show --json`")
    for commit in document:
        if not isinstance(commit, dict) or commit.get("rev") == "workspace":
            continue
        yield str(commit.get("name") or str(commit.get("rev", "?"))[:7]), True, commit.get("error"), commit.get("data")
        for experiment in commit.get("experiments") or []:
            for rev in experiment.get("revs") or []:
                name = str(rev.get("name") or experiment.get("name") or str(rev.get("rev", "?"))[:7])
                yield name, False, rev.get("error"), rev.get("data")


def certification_sigma(data: Mapping[str, Any]) -> float | None:
    """The sigma an entry's params certify at: certify.sigma, or train.sigma when that is null (None: not recorded)."""
    params = ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}
    sigma = (params.get("certify") or {}).get("sigma")
    if sigma is None:
        sigma = (params.get("train") or {}).get("sigma")
    return float(sigma) if isinstance(sigma, (int, float)) and not isinstance(sigma, bool) else None


def candidates_from_exp_show(document: Any) -> tuple[list[Candidate], dict[str, str], set[str]]:
    """The candidates with validation metrics, the entries that are not candidates (name -> why: failed, queued,
    never validated, or metrics of another sigma than their params, as a failed run leaves) and the baseline names."""
    found: list[Candidate] = []
    skipped: dict[str, str] = {}
    baselines: set[str] = set()
    for name, baseline, error, data in _entries(document):
        if baseline:
            baselines.add(name)
        if error:
            skipped[name] = "the run failed"
            continue
        metrics = ((data or {}).get("metrics") or {}).get(METRICS_KEY) or {}
        if "data" not in metrics:
            skipped[name] = f"no {METRICS_KEY}"
            continue
        candidate = Candidate(name, ValidationMetrics.from_mapping(metrics["data"], f"{name}: {METRICS_KEY}"))
        expected = certification_sigma(data or {})
        if expected is not None and not math.isclose(expected, candidate.metrics.sigma, rel_tol=1e-12, abs_tol=0):
            skipped[name] = (f"{METRICS_KEY} is for sigma {candidate.metrics.sigma:g}, its params certify at "
                             f"{expected:g}")
            continue
        found.append(candidate)
    return found, skipped, baselines


def rule_from_params() -> SelectionRule:
    """gate.radius and gate.min_clean_accuracy of params.yaml (the pre-specified protocol)."""
    gate = load_document().get("gate")
    values = {key: gate.get(key) if isinstance(gate, dict) else None for key in ("radius", "min_clean_accuracy")}
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ParameterError(f"gate.{key} must be a non-negative number, got {value!r}")
    return SelectionRule(radius=float(values["radius"]), min_clean_accuracy=float(values["min_clean_accuracy"]))


def exp_show_json() -> Any:
    try:
        done = subprocess.run(["dvc", "exp", "show", "--json"], capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise InputError("dvc not found on PATH; activate the virtual environment or pass --json FILE") from exc
    if done.returncode != 0:
        last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"
        raise InputError(f"dvc exp show --json failed: {last}")
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        raise InputError(f"dvc exp show --json printed no JSON ({exc}); run it yourself and pass --json FILE") from exc


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.select_sigma", description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=None, help="saved `dvc exp show --json` output (default: run it)")
    parser.add_argument("--out", type=Path, default=None, help="write the selection record (rule, candidates, choice)")
    args = parser.parse_args(argv)
    rule = rule_from_params()
    document = read_json(args.json) if args.json is not None else exp_show_json()
    candidates, skipped, baselines = candidates_from_exp_show(document)
    selection = select_sigma(candidates, rule)
    print(f"rule: {rule.text()}")
    print(selection_table(selection))
    for name, why in skipped.items():
        print(f"not a candidate: {name} ({why})")
    if args.out is not None:
        write_json_atomic(args.out, {**selection.record(), "skipped": skipped})
    if selection.chosen is None:
        print(f"no candidate is eligible: every validation clean-accuracy lower bound is below "
              f"{rule.min_clean_accuracy:g}")
        return 1
    chosen = selection.chosen
    if chosen.name in baselines:
        print(f"chosen: {chosen.name} (sigma {chosen.metrics.sigma:g}), the committed baseline: nothing to apply")
    else:
        print(f"chosen: {chosen.name} (sigma {chosen.metrics.sigma:g}); ship it with `dvc exp apply {chosen.name}`, "
              "commit, then `dvc repro` certifies it on the sealed test split")
    return 0


if __name__ == "__main__":
    run_stage("select_sigma", main)
