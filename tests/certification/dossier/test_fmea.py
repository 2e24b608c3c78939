"""Risk management: strict acceptability matrix, probabilities from measured rates, residual-risk statement."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.dossier import evidence_inputs
from certification.dossier.evidence import collect_evidence
from certification.dossier.risk import AssessedRow, assess, parse_matrix, residual_statement
from certification.dossier.templates import load_texts, read_raw, risk_matrix
from certification.errors import InputError
from support.dossier_outputs import make_outputs
from support.signed_dossier import PARAMS, TEMPLATES, copy_templates

SIGNING = {"development_key": True, "signer": "dev", "trust_anchor_sha256": "0" * 64, "approvals": {}}


@pytest.fixture(scope="module")
def evidence(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = make_outputs(tmp_path_factory.mktemp("fmea"))
    return collect_evidence(evidence_inputs(root), PARAMS, {"document_id": "X"}, SIGNING)


def _edit(tmp_path: Path, file: str, mutate) -> Path:
    folder = copy_templates(tmp_path / "templates")
    data = yaml.safe_load((folder / file).read_text())
    mutate(data)
    (folder / file).write_text(yaml.safe_dump(data))
    return folder


@pytest.mark.parametrize("file, mutate, message", [
    ("risk_matrix.yaml", lambda d: d["matrix"][5].__setitem__(0, "tolerable"), r"risk_matrix.yaml: matrix.5: unknown risk level 'tolerable'"),
    ("risk_matrix.yaml", lambda d: d["matrix"].pop(3), r"risk_matrix.yaml: matrix.3 must list 5 risk levels"),
    ("risk_matrix.yaml", lambda d: d["probability"][1].__setitem__("max_rate", 0.5), r"risk_matrix.yaml: probability levels must have strictly increasing"),
    ("fmea.yaml", lambda d: d["rows"][0].__setitem__("severity", 7), r"fmea.yaml: rows\[0\] \(FM-01\): unknown severity 7"),
    ("fmea.yaml", lambda d: d["rows"][0].__setitem__("probability", {"measured": "guess"}), r"fmea.yaml: rows\[0\].*unknown measured rate 'guess'"),
    ("fmea.yaml", lambda d: d["rows"][4].__setitem__("probability", {"level": "P9", "rationale": "x"}), r"fmea.yaml: rows\[4\].*level 'P9'"),
    ("fmea.yaml", lambda d: d["rows"][4]["probability"].pop("rationale"), r"fmea.yaml: rows\[4\].*with a rationale"),
])
def test_bad_matrix_or_row_is_refused_naming_the_file(tmp_path: Path, file: str, mutate, message: str) -> None:
    with pytest.raises(InputError, match=message):
        read_raw(_edit(tmp_path, file, mutate))


def test_measured_rate_upper_bound_sets_the_probability_and_the_risk(evidence: dict) -> None:
    matrix = risk_matrix(read_raw(TEMPLATES), TEMPLATES)
    rates = evidence["claims"]["risk_rates"]
    row = {"id": "X", "severity": 2, "probability": {"measured": "abstention"}}
    (a,) = assess([row], rates, matrix)
    upper = rates["abstention"]["upper"]
    assert a.probability == matrix.probability_of(upper) and upper <= a.probability.max_rate
    assert a.risk == matrix.risk(2, a.probability.level)
    assert f"{rates['abstention']['failures']}/{rates['abstention']['trials']}" in a.basis
    # the same row with a tiny measured rate is a lower level; an unmeasured rate takes the highest level
    low = {**rates, "abstention": {**rates["abstention"], "upper": 5e-5}}
    assert assess([row], low, matrix)[0].probability.level == "P1"
    assert assess([row], {**rates, "abstention": None}, matrix)[0].probability.level == "P5"
    assert rates["uncertified_at_radius"]["upper"] == pytest.approx(
        1 - next(c for c in evidence["verdict"]["criteria"] if c["name"] == "certified_accuracy")["bound"])


def test_matrix_lookup_and_residual_statement() -> None:
    raw = yaml.safe_load((TEMPLATES / "risk_matrix.yaml").read_text())
    m = parse_matrix(raw, "risk_matrix.yaml")
    assert m.risk(5, "P5") == "unacceptable" and m.risk(1, "P1") == "acceptable"
    p = m.probabilities
    rows = [AssessedRow("A", 5, p[4], "", "unacceptable"), AssessedRow("B", 2, p[0], "", "acceptable")]
    text = residual_statement(rows)
    assert "1 unacceptable" in text and "cannot be stated as acceptable" in text and "A" in text
    assert "is acceptable." in residual_statement([rows[1]])
    assert "only if the benefit-risk" in residual_statement([AssessedRow("C", 5, p[0], "", "ALARP")])


def test_shipped_fmea_has_the_expected_hazards_and_no_gate_conditional_acceptance(evidence: dict) -> None:
    texts = load_texts(TEMPLATES, evidence)
    modes = " ".join(r["failure_mode"].lower() for r in texts.fmea["rows"])
    for hazard in ("out-of-distribution", "cybersecurity", "use error", "abstention"):
        assert hazard in modes
    assert all("residual_risk" not in r for r in texts.fmea["rows"])
    assessed = assess(texts.fmea["rows"], evidence["claims"]["risk_rates"], texts.risk_matrix)
    assert {a.risk for a in assessed} <= {"acceptable", "ALARP", "unacceptable"}
