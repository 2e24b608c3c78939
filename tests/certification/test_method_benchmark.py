"""The training-method record's one reader and writer, and the issue's target rule on records with known outcomes."""
from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from certification.errors import InputError
from certification.method_benchmark import (METHODS, MAX_CLEAN_DROP_POINTS, MAX_TRAIN_TIME_RATIO, MIN_ACR_RATIO, apply_target,
                                            read_method_record, write_method_record)
from support.method_records import record, row

BASE = dict(acr=0.40, clean=0.90, melanoma=0.60, bcc=0.50, seconds=100.0)
#: at every threshold exactly: 1.2x ACR, -2 points clean accuracy, equal recall, 3x training time (all hold)
AT_THRESHOLDS = dict(acr=0.48, clean=0.88, melanoma=0.60, bcc=0.50, seconds=300.0)


def _criteria(candidate) -> dict[str, bool]:
    return {c.name: c.passed for c in candidate.criteria}


def test_the_thresholds_are_the_issues() -> None:
    assert (MIN_ACR_RATIO, MAX_CLEAN_DROP_POINTS, MAX_TRAIN_TIME_RATIO) == (1.2, 2.0, 3.0)
    from certification.training_losses import METHODS as TRAINING_METHODS
    assert METHODS == TRAINING_METHODS


def test_a_candidate_at_every_threshold_meets_the_target_and_is_picked() -> None:
    selection = apply_target(record(row("gaussian", **BASE), row("consistency", **AT_THRESHOLDS)), 0.25)
    (candidate,) = selection.candidates
    measured = {c.name: c.measured for c in candidate.criteria}
    assert measured["acr_ratio"] == pytest.approx(1.2) and measured["clean_accuracy_change_points"] == pytest.approx(-2.0)
    assert measured["melanoma_recall_change"] == 0 and measured["train_time_ratio"] == pytest.approx(3.0)
    assert candidate.meets_target and selection.best == "consistency" and selection.pick == "consistency"


@pytest.mark.parametrize("failing, change", [
    ("acr_ratio", {"acr": 0.479}), ("clean_accuracy_change_points", {"clean": 0.875}),
    ("melanoma_recall_change", {"melanoma": 0.58}), ("basal_cell_carcinoma_recall_change", {"bcc": 0.48}),
    ("train_time_ratio", {"seconds": 301.0})])
def test_each_criterion_failing_alone_keeps_gaussian(failing: str, change: dict) -> None:
    selection = apply_target(record(row("gaussian", **BASE), row("consistency", **{**AT_THRESHOLDS, **change})), 0.25)
    (candidate,) = selection.candidates
    assert {name for name, ok in _criteria(candidate).items() if not ok} == {failing}
    assert selection.best == "consistency" and selection.pick == "gaussian"


def test_the_best_candidate_by_acr_decides_and_the_other_sigma_does_not() -> None:
    good, better_but_slow = row("consistency", **AT_THRESHOLDS), row("macer", **{**AT_THRESHOLDS, "acr": 0.6, "seconds": 400.0})
    other_sigma = [row("gaussian", 0.5, **BASE), row("consistency", 0.5, **{**AT_THRESHOLDS, "acr": 0.9})]
    selection = apply_target(record(row("gaussian", **BASE), good, better_but_slow, *other_sigma), 0.25)
    assert selection.best == "macer" and selection.pick == "gaussian"  # the best misses the target (training time)
    assert [c.method for c in selection.other_sigmas] == ["consistency"] and selection.other_sigmas[0].meets_target
    assert apply_target(record(row("gaussian", **BASE), good, *other_sigma), 0.25).pick == "consistency"
    assert apply_target(record(row("gaussian", **BASE), row("consistency", **{**AT_THRESHOLDS, "acr": 0.3}), *other_sigma),
                        0.5).pick == "consistency"


def test_without_candidates_or_baseline() -> None:
    alone = apply_target(record(row("gaussian", **BASE)), 0.25)
    assert alone.best is None and alone.pick == "gaussian" and alone.candidates == ()
    with pytest.raises(InputError, match="no gaussian row at sigma 0.25 .*sigmas 0.5"):
        apply_target(record(row("gaussian", 0.5), row("consistency", 0.5)), 0.25)


def test_missing_recall_is_not_measured_and_fails() -> None:
    candidate = replace(row("consistency", **AT_THRESHOLDS), recall_at_r_star={})
    (c,) = apply_target(record(row("gaussian", **BASE), candidate), 0.25).candidates
    assert [x.measured for x in c.criteria if not x.passed] == [None, None]


def test_the_writer_and_reader_round_trip(tmp_path: Path) -> None:
    written = record(row("gaussian", **BASE), row("consistency", **AT_THRESHOLDS))
    write_method_record(tmp_path / "r.json", written)
    assert read_method_record(tmp_path / "r.json") == written


def _bad(tmp_path: Path, edit) -> InputError:
    document = record(row("gaussian", **BASE), row("consistency", **AT_THRESHOLDS)).to_dict()
    edit(document)
    (tmp_path / "bad.json").write_text(json.dumps(document))
    with pytest.raises(InputError) as caught:
        read_method_record(tmp_path / "bad.json")
    assert "\n" not in str(caught.value) and str(tmp_path / "bad.json") in str(caught.value)
    return caught.value


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["rows"][1].pop("acr"), r"rows\[1\]: missing key 'acr'"),
    (lambda d: d["settings"].pop("n"), "settings: missing key 'n'"),
    (lambda d: d["rows"][0].update(acr="0.4"), "'acr' must be a number"),
    (lambda d: d["rows"][0].update(epochs=2.5), "'epochs' must be an integer"),
    (lambda d: d["rows"][0]["clean_accuracy"].update(estimate=True), "'estimate' must be a number"),
    (lambda d: d["rows"][0].update(method="adversarial"), "unknown method 'adversarial'"),
    (lambda d: d["params_hyperparameters"].update(smoothadv={}), "params_hyperparameters"),
    (lambda d: d["rows"][0].update(model_sha256="abc"), "not a SHA-256"),
    (lambda d: d["rows"][0]["certified_at_r_star"].update(certified_accuracy=1.5), r"must lie in \[0, 1\]"),
    (lambda d: d["rows"].append(dict(d["rows"][0])), "repeated"),
    (lambda d: d.update(schema="other/1"), "not a training-method benchmark record"),
    (lambda d: d.update(partial=True), "partial record"),
])
def test_the_reader_refuses_a_malformed_record_in_one_line(tmp_path: Path, edit, message: str) -> None:
    assert re.search(message, str(_bad(tmp_path, edit)))


def test_the_writer_refuses_a_bad_record_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown method"):
        write_method_record(tmp_path / "r.json", record(row("gaussian"), replace(row("consistency"), method="smoothadv")))
    assert not (tmp_path / "r.json").exists()
    partial = record(row("gaussian"), partial=True)
    write_method_record(tmp_path / "p.json", partial)
    assert read_method_record(tmp_path / "p.json", allow_partial=True) == partial
