"""Sections 8.1 (clinical triage) and 8.2 (the deployed procedure): read from metrics/evaluate.json, never recomputed."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from certification.dossier.attachments import read_pdf_content
from certification.dossier.build import BuiltDossier, SignerIdentity, build_dossier
from certification.errors import InputError, StaleArtifactError
from pipeline.dossier import evidence_inputs
from support.dossier_outputs import DEPLOY_N, make_outputs
from support.signed_dossier import APPROVALS, PARAMS, TEMPLATES

SIGNER = SignerIdentity(development_key=True, signer="dev", trust_anchor_sha256="0" * 64)


def _build(root: Path, templates: Path = TEMPLATES) -> BuiltDossier:
    return build_dossier(evidence_inputs(root), PARAMS, templates, APPROVALS, SIGNER)


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_outputs(tmp_path_factory.mktemp("clinical"))


@pytest.fixture(scope="module")
def built(outputs: Path) -> BuiltDossier:
    return _build(outputs)


def _compact(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _cell(rate: dict) -> str:
    return f"{100 * rate['estimate']:.1f}% ({100 * rate['lower']:.1f}-{100 * rate['upper']:.1f}%) {rate['successes']}/{rate['trials']}"


def test_clinical_evidence_is_the_evaluate_stage_output_as_written(outputs: Path, built: BuiltDossier) -> None:
    evaluate = json.loads((outputs / "metrics/evaluate.json").read_text())
    clinical = built.evidence["clinical"]
    assert clinical["triage"] == {k: evaluate["triage"][k] for k in ("deployed", "clean", "certified")}
    assert clinical["deployed"] == evaluate["deployed"]
    assert clinical["input"] == {"channels": 3, "height": 8, "width": 8, "range": [0, 1]}


def test_sections_print_every_rate_with_its_interval_and_n(built: BuiltDossier) -> None:
    text = read_pdf_content(built.unsigned_pdf).text
    compact = _compact(text)
    clinical = built.evidence["clinical"]
    assert "8.1 Clinical triage performance" in " ".join(text.split())
    assert "8.2 The deployed procedure" in " ".join(text.split())
    for name in ("deployed", "clean", "certified"):
        for key, rate in clinical["triage"][name]["rates"].items():
            if key in ("sensitivity", "specificity", "ppv", "npv", "referral_rate") and rate["estimate"] is not None:
                assert _compact(_cell(rate)) in compact, (name, key)
    for group in clinical["triage"]["deployed"]["per_skin_type"]:
        for key, rate in group["rates"].items():
            expected = _cell(rate) if rate["estimate"] is not None else f"n/a ({rate['trials']} images)"
            assert _compact(expected) in compact, (group["group"], key)
    assert "abstain = refer" in text and "abstain" in clinical["triage"]["deployed"]["confusion"]["columns"]
    deployed = clinical["deployed"]
    ab = deployed["abstention_rate"]
    assert _compact(f"{ab['successes']}/{ab['trials']}, clopper-pearson") in compact
    assert _compact(f"PREDICT (n = {DEPLOY_N}, alpha = {deployed['alpha']:g})") in compact
    assert _compact(f"median {1000 * deployed['latency']['median_s']:.1f} ms") in compact
    crit = next(c for c in built.evidence["verdict"]["criteria"] if c["name"] == "abstention_rate")
    n = built.evidence["certify"]["params"]["n"]
    assert _compact(f"judged on CERTIFY's abstentions at n = {n}") in compact
    assert _compact(f"{crit['successes']} of {crit['trials']} images, upper bound {100 * crit['bound']:.1f}%") in compact
    protocol = built.evidence["verdict"]["protocol"]
    for key in ("min_certified_accuracy_lower", "min_malignant_recall_lower", "max_abstention_rate", "min_clean_accuracy"):
        assert _compact(f"{100 * protocol[key]:.1f}%") in compact


def test_stale_or_missing_triage_is_refused(outputs: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(outputs, copy)
    path = copy / "metrics/evaluate.json"
    document = json.loads(path.read_text())
    document["triage"]["certified"]["radius"] = 0.5
    path.write_text(json.dumps(document))
    with pytest.raises(StaleArtifactError, match="radius 0.5"):
        _build(copy)
    del document["triage"]
    path.write_text(json.dumps(document))
    with pytest.raises(InputError, match="missing key 'triage'"):
        _build(copy)


def test_every_gate_criterion_needs_a_rationale(outputs: Path, tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    acceptance = yaml.safe_load((templates / "acceptance.yaml").read_text())
    acceptance["criteria_rationale"] = [e for e in acceptance["criteria_rationale"] if e["criterion"] != "abstention_rate"]
    (templates / "acceptance.yaml").write_text(yaml.safe_dump(acceptance))
    with pytest.raises(InputError, match="no entry for gate criterion 'abstention_rate'"):
        _build(outputs, templates)
