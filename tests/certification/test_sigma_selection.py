"""Sigma selection: the rule on recorded rows, the validation metrics file, and the validation run's counts."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from certification.certify_run import RunOptions, certify_files
from certification.errors import InputError
from certification.sigma_selection import (Candidate, SelectionRule, ValidationMetrics, read_validation_metrics,
                                           select_sigma, selection_table, write_validation_metrics)
from certification.summary import summarize
from certification.validation_run import ValidationSettings, validate_model
from support.oracle import conv_onnx, write_split

RULE = SelectionRule(radius=0.25, min_clean_accuracy=0.75)
BASE = ValidationMetrics(sigma=0.25, radius=0.25, n_examples=200, certified_accuracy=0.70,
                         certified_accuracy_lower=0.645, clean_accuracy=0.87, clean_accuracy_lower=0.824, average_certified_radius=0.40,
                         abstention_rate=0.03, n0=100, n=1000, alpha=0.001, seed=5, confidence=0.95)


def candidate(name: str, sigma: float, certified_lower: float, clean_lower: float, **changes: object) -> Candidate:
    return Candidate(name, dataclasses.replace(BASE, sigma=sigma, certified_accuracy_lower=certified_lower,
                                               clean_accuracy_lower=clean_lower, **changes))


def test_the_highest_certified_lower_bound_among_the_eligible_wins() -> None:
    rows = [candidate("a", 0.12, 0.593, 0.863), candidate("b", 0.25, 0.645, 0.824), candidate("c", 0.5, 0.660, 0.732)]
    selection = select_sigma(rows, RULE)
    assert selection.chosen.name == "b"  # c has the higher bound but its clean-accuracy bound is below 0.75
    assert [c.name for c in selection.ranked] == ["b", "a", "c"] and selection.eligible == (True, True, False)
    assert select_sigma(rows, SelectionRule(radius=0.25, min_clean_accuracy=0.70)).chosen.name == "c"
    table = selection_table(selection)
    assert "| chosen | b | 0.25 | 0.700 (0.645) | 0.870 (0.824) |" in table and table.count("chosen") == 1
    record = selection.record()
    assert record["chosen"] == {"name": "b", "sigma": 0.25} and record["rule"]["split"] == "validation"
    assert [c["eligible"] for c in record["candidates"]] == [True, True, False]


def test_ties_go_to_the_smaller_sigma_then_the_name() -> None:
    rows = [candidate("z", 0.5, 0.645, 0.80), candidate("y", 0.25, 0.645, 0.78), candidate("x", 0.25, 0.645, 0.90)]
    assert [c.name for c in select_sigma(rows, RULE).ranked] == ["x", "y", "z"]


def test_no_eligible_candidate_chooses_nothing() -> None:
    selection = select_sigma([candidate("a", 0.25, 0.7, 0.74), candidate("b", 0.5, 0.6, 0.5)], RULE)
    assert selection.chosen is None and selection.eligible == (False, False)
    assert selection.record()["chosen"] is None


@pytest.mark.parametrize("rows, message", [
    ([], "no candidates"),
    ([candidate("a", 0.25, 0.6, 0.8, radius=0.5)], "validated at radius 0.5"),
    ([candidate("a", 0.25, 0.6, 0.8), candidate("b", 0.5, 0.6, 0.8, n=2000)], "different n "),
    ([candidate("a", 0.25, 0.6, 0.8), candidate("b", 0.5, 0.6, 0.8, seed=6)], "different seed"),
])
def test_incomparable_candidates_are_refused(rows: list, message: str) -> None:
    with pytest.raises(InputError, match=message):
        select_sigma(rows, RULE)


def test_the_metrics_file_round_trips_and_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "validation.json"
    write_validation_metrics(path, BASE)
    assert json.loads(path.read_text())["split"] == "validation" and read_validation_metrics(path) == BASE
    document = json.loads(path.read_text())
    for change, message in (({"split": "test"}, "validation split only"), ({"clean_accuracy": 1.5}, "fraction"),
                            ({"n": 2.5}, "'n' must be"), ({"sigma": 0}, "'sigma' must be positive")):
        path.write_text(json.dumps({**document, **change}))
        with pytest.raises(InputError, match=message):
            read_validation_metrics(path)
    path.write_text(json.dumps({k: v for k, v in document.items() if k != "certified_accuracy_lower"}))
    with pytest.raises(InputError, match="missing key 'certified_accuracy_lower'; rerun the validate stage"):
        read_validation_metrics(path)


def test_validation_counts_are_the_certify_runs_on_the_same_examples(tmp_path: Path) -> None:
    """Same seeded subset, same per-example noise streams as CERTIFY of a certify run: the same summary."""
    model = conv_onnx(tmp_path / "m.onnx", (3, 8, 8), num_classes=4, seed=5)
    rng = np.random.default_rng(2)
    split = write_split(tmp_path / "val.npz", rng.integers(0, 256, size=(12, 8, 8, 3), dtype=np.uint8),
                        rng.integers(0, 4, size=12))
    settings = ValidationSettings(n0=20, n=300, alpha=0.01, seed=3, max_examples=6, confidence=0.9)
    names = ["a", "b", "c", "d"]
    metrics = validate_model(model, split, 0.1, 0.05, settings, names, batch_size=100)
    outcome, _, _ = certify_files(model, split, tmp_path / "c.jsonl", RunOptions(sigma=0.1, alpha=0.01, seed=3,
                                  batch_size=100, max_examples=6), 20, 300, show_progress=False)
    summary = summarize(outcome.records, [0.0, 0.05], 0.9, names)
    point = summary["curve"][1]
    assert metrics.n_examples == 6 and metrics.sigma == 0.1 and metrics.radius == 0.05
    assert (metrics.certified_accuracy, metrics.certified_accuracy_lower) == (point["certified_accuracy"],
                                                                             point["lower_bound"])
    assert (metrics.clean_accuracy, metrics.clean_accuracy_lower) == (summary["clean_accuracy"]["estimate"],
                                                                     summary["clean_accuracy"]["lower"])
    assert metrics.average_certified_radius == summary["average_certified_radius"]
    assert metrics.abstention_rate == summary["abstention_rate"]["estimate"]
    with pytest.raises(InputError, match="confidence"):
        validate_model(model, split, 0.1, 0.05, dataclasses.replace(settings, confidence=1.0), names, batch_size=100)
