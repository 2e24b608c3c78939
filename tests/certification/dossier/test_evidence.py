"""Bad inputs to the dossier: templates with unknown placeholders or missing fields, missing or stale files."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.dossier import evidence_inputs
from certification.dossier.evidence import collect_evidence
from certification.dossier.templates import fill, load_texts, namespace, read_raw
from certification.errors import InputError
from support.dossier_outputs import make_outputs
from support.signed_dossier import PARAMS, REPO, copy_templates

SIGNING = {"development_key": True, "signer": "dev", "trust_anchor_sha256": "0" * 64, "approvals": {}}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_outputs(tmp_path_factory.mktemp("outputs"))


@pytest.fixture(scope="module")
def evidence(outputs: Path) -> dict:
    return collect_evidence(evidence_inputs(outputs), PARAMS, {"document_id": "X"}, SIGNING)


def test_placeholders_fill_with_formats(evidence: dict) -> None:
    space = namespace(evidence)
    n = evidence["certify"]["params"]["n"]
    bound = evidence["verdict"]["criteria"][0]["bound"]
    assert fill("n = {{certify.params.n}}", space, "t") == f"n = {n}"
    assert fill("{{ criteria.certified_accuracy.bound | pct }}", space, "t") == f"{100 * bound:.1f}%"
    assert fill("{{hashes.model_sha256|short}}", space, "t") == evidence["hashes"]["model_sha256"][:12]
    assert fill("{{certify.curve.1.radius|f2}}", space, "t") == f"{evidence['certify']['curve'][1]['radius']:.2f}"


@pytest.mark.parametrize("text, message", [
    ("{{certify.params.nn}}", "unknown placeholder '{{certify.params.nn}}'"),
    ("{{certify.params.n|percent}}", "unknown format '|percent'"),
    ("{{certify.params}}", "names a whole section"),
    ("{{certify.params.n", "malformed placeholder"),
])
def test_bad_placeholders_are_named(evidence: dict, text: str, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("|", r"\|").replace("{", r"\{").replace("}", r"\}")):
        fill(text, namespace(evidence), "fmea.yaml")


def test_unknown_placeholder_in_a_template_names_file_and_placeholder(evidence: dict, tmp_path: Path) -> None:
    folder = copy_templates(tmp_path / "templates")
    fmea = yaml.safe_load((folder / "fmea.yaml").read_text())
    fmea["rows"][0]["likelihood_evidence"] = "measured {{certify.no_such_number}}"
    (folder / "fmea.yaml").write_text(yaml.safe_dump(fmea))
    with pytest.raises(InputError, match=r"fmea.yaml.*rows\[0\].*likelihood_evidence.*certify.no_such_number"):
        load_texts(folder, evidence)


@pytest.mark.parametrize("file, mutate, message", [
    ("intended_use.yaml", lambda d: d.pop("population"), "missing required field 'population'"),
    ("fmea.yaml", lambda d: d["rows"][1].pop("control"), r"rows\[1\]: missing required field 'control'"),
    ("document.yaml", lambda d: d.update(revision_history="x"), "'revision_history' must be a list"),
])
def test_missing_required_template_field_is_named(tmp_path: Path, file: str, mutate, message: str) -> None:
    folder = copy_templates(tmp_path / "templates")
    data = yaml.safe_load((folder / file).read_text())
    mutate(data)
    (folder / file).write_text(yaml.safe_dump(data))
    with pytest.raises(InputError, match=message):
        read_raw(folder)


def test_shipped_templates_fill_completely(evidence: dict) -> None:
    texts = load_texts(REPO / "dossier_templates", evidence)
    assert len(texts.fmea["rows"]) >= 5 and all("{{" not in json.dumps(r) for r in texts.fmea["rows"])


@pytest.mark.parametrize("path, edit, message", [
    ("metrics/evaluate.json", None, "metrics/evaluate.json: file not found"),
    ("metrics/evaluate.json", lambda d: d.pop("corruptions"), "metrics/evaluate.json: missing key 'corruptions'"),
    ("metrics/certify.json", lambda d: d["params"].pop("alpha"), "metrics/certify.json: missing key 'params.alpha'"),
    ("metrics/gate.json", lambda d: d.update(model_sha256="f" * 64), "metrics/gate.json: the judged model's hash.*stale"),
    ("models/model.json", lambda d: d.pop("opset"), "models/model.json: missing key 'opset'"),
])
def test_missing_or_stale_inputs_are_named(tmp_path: Path, path: str, edit, message: str) -> None:
    root = make_outputs(tmp_path)
    target = root / path
    if edit is None:
        target.unlink()
    else:
        data = json.loads(target.read_text())
        edit(data)
        target.write_text(json.dumps(data))
    with pytest.raises(InputError, match=message):
        collect_evidence(evidence_inputs(root), PARAMS, {}, SIGNING)


def test_quantization_section_may_be_null_or_present(tmp_path: Path) -> None:
    root = make_outputs(tmp_path)
    assert collect_evidence(evidence_inputs(root), PARAMS, {}, SIGNING)["summary"]["quantized"] is False
    data = json.loads((root / "metrics/evaluate.json").read_text())
    data["quantization"] = {"argmax_agreement": 0.99}
    (root / "metrics/evaluate.json").write_text(json.dumps(data))
    assert collect_evidence(evidence_inputs(root), PARAMS, {}, SIGNING)["evaluate"]["quantization"] == {"argmax_agreement": 0.99}


def test_pipeline_stage_writes_signed_dossier_that_verifies(tmp_path: Path) -> None:
    root = make_outputs(tmp_path)
    copy_templates(root / "dossier_templates")
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    env = {**os.environ, "SMOOTHCERT_TRACKING": "off", "SOURCE_DATE_EPOCH": "1790000000",
           "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-m", "pipeline.dossier"], cwd=root, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "DEVELOPMENT KEY" in run.stderr
    for name in ("evidence.json", "dossier_unsigned.pdf", "dossier.pdf"):
        assert (root / "dossier" / name).is_file()
    evidence = json.loads((root / "dossier" / "evidence.json").read_text())
    assert evidence["document"]["time_utc"] == "2026-09-21 14:13:20 UTC"
    check = subprocess.run([sys.executable, "-m", "certification.cli", "verify", "dossier/dossier.pdf", "--model",
                            "models/model.onnx"], cwd=root, env=env, capture_output=True, text=True)
    assert check.returncode == 3, check.stdout + check.stderr  # every check holds; development PKI: exit 3
    assert "development CA" in check.stdout and "DEVELOPMENT: AUTHOR-SIGNED, 0/3 APPROVALS" in check.stdout
    (root / "params.yaml").write_text(yaml.safe_dump({"dossier": {**PARAMS["dossier"], "signing_key": "missing.p12"}}))
    bad = subprocess.run([sys.executable, "-m", "pipeline.dossier"], cwd=root, env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "missing.p12: signing key file not found" in bad.stderr


def test_group_tables_are_read_from_the_files_that_produced_them(evidence: dict) -> None:
    """One fact, one producer: the dossier's per-class clean accuracy (bound included) is metrics/certify.json's
    (Clopper-Pearson minus alpha), and its per-class and per-skin-type rows at r* are the evaluate stage's subgroups."""
    certify, subgroups = evidence["certify"], evidence["evaluate"]["subgroups"]
    for name, row in evidence["groups"]["per_class"].items():
        if row["n_examples"]:
            assert row["clean_accuracy"] == certify["per_class"][name]["clean_accuracy"]
            assert row["clean_accuracy"]["method"] == "clopper-pearson-minus-alpha"
    by_group = {(g["field"], g["group"]): g for g in subgroups["groups"]}
    for name, row in (evidence["groups"]["per_skin_type"] or {}).items():
        group = by_group[("fitzpatrick", name)]
        assert row["certified"]["lower"] == group["at_gate"]["lower_bound"] and row["n_examples"] == group["n_examples"]
