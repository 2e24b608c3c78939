"""The acceptance gate's verdict logic on constructed per-example rows, and the protocol's validation and hash."""
from __future__ import annotations

import pytest

from certification.dataset_bounds import certified_rate_bound, proportion_bound
from certification.errors import InputError
from certification.gate import Protocol, Verdict, evaluate, failure_lines, protocol_sha256, render_table
from support.gate_rows import ALL_CRITERIA, ALPHA, CLASSES, PROTOCOL, SHA, certify_row, decisions, good_rows, judge, protocol, with_changes

def test_accept_when_every_bound_clears_its_threshold() -> None:
    verdict = judge(good_rows())
    assert verdict.verdict == "ACCEPT" and verdict.failed == [] and verdict.accepted
    assert [c.name for c in verdict.criteria] == ALL_CRITERIA
    assert verdict.model_sha256 == SHA and verdict.n_examples == 200 and verdict.radius == 0.25
    assert verdict.protocol_sha256 == protocol_sha256(protocol())


# Each case changes the baseline so that exactly one criterion fails.
FAIL_ALONE = {
    # benign examples correct but certified only to 0.1 < r*: certified accuracy 0.5
    "certified_accuracy": (lambda rows: with_changes(rows, range(0, 100), radius=0.1), {}),
    # 40 of 50 melanomas certified only to 0.1: recall 0.2
    "certified_recall_melanoma": (lambda rows: with_changes(rows, range(100, 140), radius=0.1), {}),
    "certified_recall_basal_cell_carcinoma": (lambda rows: with_changes(rows, range(150, 190), radius=0.1), {}),
    # 50 benign abstentions: abstention 0.25 > 0.2, everything else still passes
    "abstention_rate": (lambda rows: with_changes(rows, range(0, 50), prediction=-1), {}),
    # 20 benign examples confidently wrong: clean accuracy 0.9, lower bound below a 0.9 requirement
    "clean_accuracy": (lambda rows: with_changes(rows, range(0, 20), prediction=3), {"min_clean_accuracy": 0.9}),
}


@pytest.mark.parametrize("name", sorted(FAIL_ALONE))
def test_each_criterion_fails_alone(name: str) -> None:
    make_rows, changes = FAIL_ALONE[name]
    assert judge(good_rows(), protocol(**changes)).verdict == "ACCEPT"
    verdict = judge(make_rows(good_rows()), protocol(**changes))
    assert verdict.verdict == "REJECT"
    assert verdict.failed == [name]
    (line,) = failure_lines(verdict)
    assert line.startswith(f"REJECTED: {name}: ")
    failed = next(c for c in verdict.criteria if c.name == name)
    assert f"bound {failed.bound:.3f}" in line and f"threshold {failed.threshold:.3f}" in line
    assert ("<" if failed.comparison == ">=" else ">") in line


def test_all_failed_criteria_are_named() -> None:
    rows = [certify_row(i, i % 4, -1, 0.0) for i in range(40)]  # everything abstains
    verdict = judge(rows)
    assert verdict.failed == ALL_CRITERIA
    assert [line.split(":")[1].strip() for line in failure_lines(verdict)] == ALL_CRITERIA


def test_bounds_are_the_documented_ones() -> None:
    rows = with_changes(good_rows(), range(0, 30), radius=0.1)
    rows = with_changes(rows, range(30, 40), prediction=-1)
    rows = with_changes(rows, range(100, 105), prediction=0, radius=0.4)  # melanoma called nevus
    verdict = judge(rows)
    by_name = {c.name: c for c in verdict.criteria}
    certified = 200 - 40 - 5
    assert by_name["certified_accuracy"].bound == certified_rate_bound(certified, 200, ALPHA, 0.95).lower
    assert by_name["certified_accuracy"].estimate == certified / 200
    assert by_name["certified_recall_melanoma"].bound == certified_rate_bound(45, 50, ALPHA, 0.95).lower
    assert by_name["certified_recall_melanoma"].trials == 50
    abstain = proportion_bound(10, 200, 0.95)
    assert by_name["abstention_rate"].bound == abstain.upper and by_name["abstention_rate"].bound_kind == "upper"
    assert by_name["abstention_rate"].comparison == "<="
    assert by_name["clean_accuracy"].bound == certified_rate_bound(200 - 10 - 5, 200, ALPHA, 0.95).lower


def test_pass_fail_uses_the_bound_not_the_estimate() -> None:
    rows = [certify_row(i, 2 + i % 2, 2 + i % 2, 0.5) for i in range(10)]  # 10 malignant, all certified
    verdict = judge(rows, protocol(min_certified_accuracy_lower=0.9, min_malignant_recall_lower=0.0,
                                   max_abstention_rate=1.0, min_clean_accuracy=0.0))
    accuracy = verdict.criteria[0]
    assert accuracy.estimate == 1.0 and accuracy.bound < 0.9 and not accuracy.passed
    # the abstention estimate 0 is below a 0.2 ceiling, but its upper bound over 10 examples is not
    verdict = judge(rows, protocol(min_certified_accuracy_lower=0.0, min_malignant_recall_lower=0.0, max_abstention_rate=0.2))
    assert verdict.failed == ["abstention_rate"]


def test_radius_comparison_is_inclusive() -> None:
    rows = with_changes(good_rows(), range(0, 200), radius=0.25)
    assert judge(rows).verdict == "ACCEPT"
    rows = with_changes(good_rows(), range(0, 200), radius=0.2499)
    assert "certified_accuracy" in judge(rows).failed


def test_malignant_class_without_examples_has_lower_bound_zero() -> None:
    rows = [r for r in good_rows() if r["label"] != 3]
    verdict = judge(rows)
    bcc = next(c for c in verdict.criteria if c.name == "certified_recall_basal_cell_carcinoma")
    assert bcc.trials == 0 and bcc.bound == 0.0 and bcc.estimate is None and not bcc.passed
    assert judge(rows, protocol(min_malignant_recall_lower=0.0)).verdict == "ACCEPT"


def test_sequential_rows_are_judged_like_certify_rows() -> None:
    rows = with_changes(good_rows(), range(0, 30), radius=0.1)
    rows = with_changes(rows, range(30, 40), prediction=-1)
    decisions = [{"index": r["index"], "label": r["label"], "prediction": r["prediction"], "correct": bool(r["correct"]),
                  "certified": r["prediction"] != -1 and r["radius"] >= 0.25, "radius_threshold": 0.25, "alpha": ALPHA,
                  "evaluations": 300, "mode": "sequential", "sigma": 0.25, "n0": 100, "n": 200, "n_a": 190, "seed": 3,
                  "model_sha256": SHA} for r in rows]
    fixed = judge(rows)
    sequential = judge(decisions, protocol(mode="sequential"))
    assert [c.bound for c in fixed.criteria] == [c.bound for c in sequential.criteria]
    assert sequential.mode == "sequential"
    with pytest.raises(InputError, match="mode is 'fixed'"):
        judge(decisions)
    with pytest.raises(InputError, match="mode is 'sequential'"):
        judge(rows, protocol(mode="sequential"))
    with pytest.raises(InputError, match="decided at radius"):
        judge([{**d, "radius_threshold": 0.5} for d in decisions], protocol(mode="sequential"))


@pytest.mark.parametrize("breakage,message", [
    (lambda rows: [], "zero examples"),
    (lambda rows: rows + [dict(rows[0])], "appears twice"),
    (lambda rows: [{**rows[0], "alpha": 0.01}] + rows[1:], "alpha"),
    (lambda rows: [{k: v for k, v in rows[0].items() if k != "radius"}] + rows[1:], "missing key"),
    (lambda rows: [{**rows[0], "radius": float("nan")}] + rows[1:], "finite"),
    (lambda rows: [{**rows[0], "sigma": 0.5}] + rows[1:], "mix sigma"),
    (lambda rows: [{**rows[0], "label": 7}] + rows[1:], "label 7"),
    (lambda rows: [{**rows[0], "correct": False}] + rows[1:], "contradicts"),
])
def test_malformed_rows_are_input_errors(breakage, message: str) -> None:
    with pytest.raises(InputError, match=message):
        judge(breakage(good_rows(5)))


def test_unknown_malignant_class_is_an_input_error() -> None:
    with pytest.raises(InputError, match="'melanomaa'"):
        evaluate(decisions(good_rows(5)), protocol(), CLASSES, ["melanomaa"], ALPHA, SHA)


def test_protocol_hash_is_stable_and_canonical() -> None:
    reordered = dict(reversed(list(PROTOCOL.items())))
    as_ints = {**PROTOCOL, "min_certified_accuracy_lower": 1, "min_malignant_recall_lower": 0}
    assert protocol_sha256(Protocol.from_dict(PROTOCOL)) == protocol_sha256(Protocol.from_dict(reordered))
    assert protocol_sha256(Protocol.from_dict(as_ints)) == protocol_sha256(
        Protocol.from_dict({**PROTOCOL, "min_certified_accuracy_lower": 1.0, "min_malignant_recall_lower": 0.0}))
    assert len(protocol_sha256(protocol())) == 64


@pytest.mark.parametrize("key,value", [
    ("radius", 0.26), ("min_certified_accuracy_lower", 0.61), ("min_malignant_recall_lower", 0.51),
    ("max_abstention_rate", 0.21), ("min_clean_accuracy", 0.59), ("confidence", 0.99), ("mode", "sequential"),
])
def test_protocol_hash_changes_with_every_key(key: str, value: object) -> None:
    assert protocol_sha256(protocol(**{key: value})) != protocol_sha256(protocol())


@pytest.mark.parametrize("values,message", [
    ({**PROTOCOL, "min_recall": 0.5}, "unknown protocol key 'min_recall'"),
    ({k: v for k, v in PROTOCOL.items() if k != "confidence"}, "missing protocol key 'confidence'"),
    ({**PROTOCOL, "radius": "0.25"}, "'radius'"),
    ({**PROTOCOL, "radius": True}, "'radius'"),
    ({**PROTOCOL, "radius": -0.1}, "'radius'"),
    ({**PROTOCOL, "min_clean_accuracy": 1.5}, "'min_clean_accuracy'"),
    ({**PROTOCOL, "confidence": 1.0}, "'confidence'"),
    ({**PROTOCOL, "mode": "fast"}, "'mode'"),
    ([1, 2], "mapping"),
])
def test_bad_protocols_name_the_key(values: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        Protocol.from_dict(values)  # type: ignore[arg-type]


def test_verdict_json_round_trip_and_schema() -> None:
    verdict = judge(with_changes(good_rows(), range(100, 140), radius=0.1))
    data = verdict.to_dict()
    for key in ("verdict", "mode", "radius", "protocol", "protocol_sha256", "model_sha256", "criteria", "failed"):
        assert key in data
    for criterion in data["criteria"]:
        assert {"name", "description", "estimate", "bound", "bound_kind", "threshold", "comparison", "passed"} <= set(criterion)
    assert data["failed"] == ["certified_recall_melanoma"] and data["protocol"] == PROTOCOL
    assert Verdict.from_dict(data) == verdict
    forged = {**data, "verdict": "ACCEPT"}
    with pytest.raises(InputError, match="contradicts"):
        Verdict.from_dict(forged)
    with pytest.raises(InputError, match="not a gate verdict"):
        Verdict.from_dict({"verdict": "ACCEPT"})


def test_table_names_every_criterion_and_the_verdict() -> None:
    verdict = judge(with_changes(good_rows(), range(0, 50), prediction=-1))
    table = render_table(verdict)
    for criterion in verdict.criteria:
        assert criterion.name in table
    assert table.splitlines()[-1].startswith("verdict: REJECT") and "abstention_rate" in table.splitlines()[-1]
    assert SHA in table and verdict.protocol_sha256 in table


def test_rows_certified_on_another_model_are_refused() -> None:
    from certification.errors import StaleArtifactError
    from certification.gate_io import decisions_from_certify
    from certification.records import CertifyRecord

    rows = [CertifyRecord.from_dict({**r, "model_sha256": "ef" * 32}) if r["index"] == 7 else CertifyRecord.from_dict(r)
            for r in good_rows(5)]
    with pytest.raises(StaleArtifactError, match="example 7 was certified on model efefefefefef"):
        decisions_from_certify(rows, 0.25, SHA)
