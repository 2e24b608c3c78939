"""The dossier of an externally certified model (`smoothcert dossier`): Cohen et al.'s published log and certify JSONL
rows reach the same signed PDF, which verifies, prints what the input records and says what it does not."""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
from pypdf import PdfReader

from certification.cli import main
from certification.dossier.external import (COHEN_FORMAT, ExternalInputs, collect_external_evidence,
                                            read_external_records)
from certification.dossier.verify import verify_dossier
from certification.errors import InputError, StaleArtifactError
from certification.fileio import sha256_file
from certification.gate import Protocol
from certification.gate_io import load_protocol
from certification.cohen_log import IMPORTED_UNKNOWN, read_cohen_log
from certification.records import certify_jsonl_text
from certification.summary import summarize
from support import REPO
from support.linear_fixture import make_record
from support.signed_dossier import TEMPLATES

LOG = REPO / "tests/fixtures/cohen2019/cifar10_resnet110_noise_0.25_sigma_0.25.tsv"
RADII = [0.0, 0.25, 0.5, 0.75]


def _protocol() -> Protocol:
    return load_protocol(REPO / "params.yaml", "gate")


def _statements(evidence: dict) -> dict[str, dict]:
    return {s["item"]: s for s in evidence["statements"]}


@pytest.fixture(scope="module")
def cohen(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """`smoothcert dossier` on the published sigma = 0.25 log, in a fresh folder (development key created there)."""
    root = tmp_path_factory.mktemp("external")
    here = os.getcwd()
    os.chdir(root)
    try:
        code = main(["dossier", "--results", str(LOG), "--sigma", "0.25", "--protocol", str(REPO / "params.yaml"),
                     "--templates", str(TEMPLATES), "--out", "dossier.pdf", "--evidence", "evidence.json",
                     "--radii", *map(str, RADII)])
    finally:
        os.chdir(here)
    assert code == 0
    return root / "dossier.pdf", root / ".smoothcert/dev-pki/ca.pem", json.loads((root / "evidence.json").read_text())


def test_cohen_log_reaches_a_signed_dossier_that_verifies(cohen) -> None:
    pdf, ca, ev = cohen
    report = verify_dossier(pdf, trust_root=ca)
    assert report.ok, [c.line() for c in report.failed()]
    assert report.summary_line().startswith("DEVELOPMENT: AUTHOR-SIGNED, 0/3 APPROVALS")
    expected = summarize(read_cohen_log(LOG, 0.25), RADII, 0.95)
    assert ev["certify"]["curve"] == expected["curve"] and ev["certify"]["n_examples"] == 500
    assert ev["source"]["format"] == COHEN_FORMAT and ev["hashes"]["model_sha256"] == IMPORTED_UNKNOWN
    attached = set(PdfReader(pdf).attachments)
    assert {"evidence.json", "certify.jsonl", f"imported_{LOG.name}"} <= attached


def test_the_dossier_says_what_a_cohen_log_does_not_hold(cohen) -> None:
    pdf, _, ev = cohen
    said = _statements(ev)
    assert said["certification performed by"]["statement"].startswith("not by smoothcert")
    assert said["per-example counts"]["known"] == "no" and said["samples n0 / n"]["known"] == "no"
    assert said["model identity"]["known"] == "no" and said["test data identity"]["known"] == "no"
    assert said["noise sigma"]["known"] == "given" and "--sigma" in said["noise sigma"]["statement"]
    text = " ".join(" ".join(page.extract_text().split()) for page in PdfReader(pdf).pages)
    for words in ("certification not performed by smoothcert", "per-example counts", "not recorded",
                  "the model was not trained or exported by this pipeline", "malignant-recall criterion is not judged"):
        assert words in text, words
    assert "Model development" not in text and "Training record" not in text


def test_a_model_file_given_with_a_log_is_named_but_not_claimed_checked(tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(b"the submitter's file")
    inputs = ExternalInputs(results=LOG, protocol=_protocol(), radii=RADII, confidence=0.95, sigma=0.25, model=model)
    imported = read_external_records(inputs)
    ev = collect_external_evidence(inputs, imported, {}, {})
    assert ev["hashes"]["model_sha256"] == sha256_file(model)
    assert "submitter's statement, not checked" in _statements(ev)["model identity"]["statement"]


def test_jsonl_rows_record_counts_and_must_name_the_given_model(tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(b"certified model bytes")
    rows = [dataclasses.replace(make_record(i, label=i % 2, prediction=i % 2 if i % 5 else -1, radius=0.3 + 0.01 * i),
                                model_sha256=sha256_file(model)) for i in range(12)]
    results = tmp_path / "certify.jsonl"
    results.write_text(certify_jsonl_text(rows))
    inputs = ExternalInputs(results=results, protocol=_protocol(), radii=RADII, confidence=0.95, model=model)
    ev = collect_external_evidence(inputs, read_external_records(inputs), {}, {})
    said = _statements(ev)
    assert said["per-example counts"]["known"] == "yes" and said["model identity"]["known"] == "yes"
    assert said["noise sigma"]["statement"] == "0.25 as recorded by every row"
    other = tmp_path / "other.onnx"
    other.write_bytes(b"another model")
    with pytest.raises(StaleArtifactError, match="certified on model"):
        collect_external_evidence(dataclasses.replace(inputs, model=other), read_external_records(inputs), {}, {})
    with pytest.raises(InputError, match="drop --sigma"):
        read_external_records(dataclasses.replace(inputs, sigma=0.5))


def test_cli_refuses_a_log_without_sigma_and_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    code = main(["dossier", "--results", str(LOG), "--protocol", str(REPO / "params.yaml"), "--templates", str(TEMPLATES),
                 "--out", "d.pdf"])
    err = capsys.readouterr().err
    assert code == 2 and "pass --sigma" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "d.pdf").exists() and not (tmp_path / ".smoothcert").exists()
