"""The dossier's sequential-decision paragraph: printed only when the gate ran in mode sequential, with the model
evaluations the examples spent (metrics/gate.json)."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest

from certification.dossier.evidence import collect_evidence
from certification.dossier.layout import styles
from certification.dossier.render import _sequential_method
from certification.dossier.templates import load_texts
from pipeline.dossier import evidence_inputs
from support.dossier_outputs import make_outputs
from support.signed_dossier import PARAMS, REPO

SIGNING = {"development_key": True, "signer": "dev", "trust_anchor_sha256": "0" * 64, "approvals": {}}


@pytest.fixture(scope="module")
def evidence(tmp_path_factory: pytest.TempPathFactory) -> dict:
    outputs: Path = make_outputs(tmp_path_factory.mktemp("outputs"))
    return collect_evidence(evidence_inputs(outputs), PARAMS, {"document_id": "X"}, SIGNING)


def _text(flowables: list) -> str:
    return " ".join(getattr(f, "text", "") or str(getattr(f, "_cellvalues", "")) for f in flowables)


def test_sequential_paragraph_only_in_sequential_mode(evidence: dict) -> None:
    assert evidence["verdict"]["evaluations"]["total"] > 0  # read from metrics/gate.json
    texts = load_texts(REPO / "dossier_templates", evidence)
    assert "anytime-valid confidence sequence" in texts.verification["sequential"]
    assert _sequential_method(evidence, texts, styles()) == [] or evidence["verdict"]["mode"] == "sequential"
    sequential = copy.deepcopy(evidence)
    sequential["verdict"]["mode"] = "sequential"
    sequential["verdict"]["evaluations"] = {"total": 12345, "per_example": 617.25, "min": 164, "median": 164,
                                            "max": 10100, "at_most": 10100}
    fixed = copy.deepcopy(evidence)
    fixed["verdict"]["mode"] = "fixed"
    st = styles()
    assert _sequential_method(fixed, load_texts(REPO / "dossier_templates", fixed), st) == []
    flowables = _sequential_method(sequential, load_texts(REPO / "dossier_templates", sequential), st)
    printed = _text(flowables)
    assert "Sequential decision at the gate radius" in printed and "at most alpha" in printed
    assert all(value in printed for value in ("12345", "617.250", "10100", "164"))
