"""``smoothcert audit``: a genuine dossier re-certifies exactly; doctored counts, wrong files and bad input are caught."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from scipy.stats import norm

from certification.audit import (EXIT_DIFFERENT, EXIT_OK, EXIT_TOLERANCE, MATCH, MISMATCH, WITHIN, AuditReport,
                                 AuditedEvidence, ExampleAudit, audit_dossier, audit_sample, compare, count_tolerance)
from certification.certify_run import RunOptions, certify_files, noise_record, runtime_record
from certification.cli import main as cli
from certification.dossier.build import build_dossier
from certification.fileio import sha256_file
from certification.signing.devpki import ensure_dev_pki
from certification.signing.keys import load_signer
from certification.signing.sign import Manifestation, sign_as_author
from certification.smoothing import SmoothedClassifier
from certification.records import CertifyRecord, certify_jsonl_text, read_certify_records
from certification.summary import certify_metrics, write_certify_metrics
from pipeline.dossier import evidence_inputs
from support.dossier_outputs import ALPHA, CLASSES, CONF, RADII, SIGMA, make_outputs, write_evaluate
from support.signed_dossier import APPROVALS, PARAMS, TEMPLATES, identity

N0, N, SEED = 20, 200, 3


def _write_certify_metrics(root: Path, records: list[CertifyRecord], runtime: dict) -> None:
    """metrics/certify.json and evaluate's subgroups from ``records``, by the pipeline's own producers."""
    model, data = root / "models" / "model.onnx", root / "data" / "test.npz"
    write_certify_metrics(root / "metrics" / "certify.json", certify_metrics(
        records, model={"path": "models/model.onnx", "sha256": sha256_file(model)},
        data={"path": "data/test.npz", "sha256": sha256_file(data), "n_examples_total": len(records)},
        max_examples=0, radii=RADII, confidence=CONF, class_names=CLASSES, runtime=runtime,
        noise=noise_record(N0 + N, (3, 8, 8)), batch_size=100))
    write_evaluate(root, records)


def _sign(root: Path) -> Path:
    pki = ensure_dev_pki(root / ".smoothcert" / "dev-pki")
    built = build_dossier(evidence_inputs(root), PARAMS, TEMPLATES, APPROVALS, identity(pki))
    signed = sign_as_author(built.unsigned_pdf, pki.signer(),
                            Manifestation("smoothcert pipeline (development key)", "Pipeline (author)", "Authorship"), APPROVALS)
    out = root / "dossier" / "dossier.pdf"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(signed)
    return out


@pytest.fixture(scope="module")
def genuine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fixture outputs whose certify.jsonl and metrics/certify.json come from a real CERTIFY run, signed."""
    root = make_outputs(tmp_path_factory.mktemp("audit"))
    options = RunOptions(sigma=SIGMA, alpha=ALPHA, seed=SEED, batch_size=100, threads=1, noise_threads=1)
    outcome, classifier, _ = certify_files(root / "models" / "model.onnx", root / "data" / "test.npz",
                                           root / "results" / "certify.jsonl", options, N0, N, show_progress=False)
    _write_certify_metrics(root, outcome.records, runtime_record(classifier))
    _sign(root)
    return root


def _doctor(record: dict) -> None:
    """Raise the estimation count of the certified class by 25 and recompute n_a, p_lower and radius, so that
    the record is self-consistent and only a re-run can tell."""
    top = record["prediction"]
    other = next(k for k, c in enumerate(record["counts_estimation"]) if k != top and c >= 25)
    record["counts_estimation"][top] += 25
    record["counts_estimation"][other] -= 25
    record["n_a"] += 25
    record["p_lower"] = SmoothedClassifier.lower_confidence_bound(record["n_a"], N, ALPHA)
    record["radius"] = SIGMA * float(norm.ppf(record["p_lower"]))


@pytest.fixture(scope="module")
def doctored(genuine: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The genuine outputs with one record's counts edited BEFORE signing; evidence recomputed consistently."""
    root = tmp_path_factory.mktemp("doctored") / "run"
    shutil.copytree(genuine, root)
    records = [r.to_dict() for r in read_certify_records(root / "results" / "certify.jsonl")]
    victim = next(r for r in records if r["prediction"] >= 0 and r["n_a"] + 25 <= N
                  and any(k != r["prediction"] and c >= 25 for k, c in enumerate(r["counts_estimation"])))
    _doctor(victim)
    doctored_records = [CertifyRecord.from_dict(r) for r in records]
    (root / "results" / "certify.jsonl").write_text(certify_jsonl_text(doctored_records))
    runtime = json.loads((genuine / "metrics" / "certify.json").read_text())["runtime"]
    _write_certify_metrics(root, doctored_records, runtime)
    _sign(root)
    (root / "victim").write_text(str(victim["index"]))
    return root


def _args(root: Path, *extra: str) -> list[str]:
    return ["audit", str(root / "dossier" / "dossier.pdf"), "--model", str(root / "models" / "model.onnx"),
            "--data", str(root / "data" / "test.npz"), "--trust-root", str(root / ".smoothcert" / "dev-pki" / "ca.pem"),
            "--threads", "1", *extra]


def test_genuine_dossier_matches_exactly(genuine: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    report_path = tmp_path / "audit.json"
    assert cli(_args(genuine, "--examples", "8", "--report", str(report_path))) == EXIT_OK
    out = capsys.readouterr().out
    assert "AUDIT PASSED: 8 of 60 examples re-certified, all match exactly on a matching platform" in out
    assert "DEVELOPMENT KEY" in out
    report = json.loads(report_path.read_text())
    assert report["exit_code"] == 0 and len(report["examples"]) == 8
    assert all(e["outcome"] == MATCH for e in report["examples"])


def test_doctored_counts_signed_validly_fail_the_rerun(doctored: Path, capsys: pytest.CaptureFixture) -> None:
    victim = int((doctored / "victim").read_text())
    report = audit_dossier(doctored / "dossier" / "dossier.pdf", doctored / "models" / "model.onnx",
                           doctored / "data" / "test.npz", examples=0, threads=1,
                           trust_root=doctored / ".smoothcert" / "dev-pki" / "ca.pem")
    assert report.failures == []  # signatures, evidence and hashes all hold: only the re-run can tell
    outcomes = {e.index: e.outcome for e in report.examples}
    assert outcomes[victim] == MISMATCH
    assert all(o == MATCH for i, o in outcomes.items() if i != victim)
    assert report.exit_code == EXIT_DIFFERENT
    assert cli(_args(doctored, "--examples", "0")) == EXIT_DIFFERENT
    assert "AUDIT FAILED: 1 mismatch(es)" in capsys.readouterr().out


def test_wrong_model_file_is_named(genuine: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from support.dossier_outputs import write_onnx

    other = tmp_path / "other.onnx"
    write_onnx(other, seed=5)
    args = _args(genuine)
    args[args.index("--model") + 1] = str(other)
    assert cli(args) == EXIT_DIFFERENT
    out = capsys.readouterr().out
    assert f"{other}: sha256 {sha256_file(other)} differs from the certified model's" in out
    assert "AUDIT FAILED" in out


def test_not_a_pdf_is_one_line_exit_2(genuine: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    fake = tmp_path / "dossier.pdf"
    fake.write_text("not a pdf\n")
    args = _args(genuine)
    args[1] = str(fake)
    assert cli(args) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == [f"smoothcert audit: error: {fake}: not a PDF file"]
    assert "Traceback" not in captured.err + captured.out
    args[1] = str(tmp_path / "missing.pdf")
    assert cli(args) == 2
    assert cli(_args(genuine, "--examples", "-1")) == 2


def _evidence() -> AuditedEvidence:
    return AuditedEvidence("m", "t", "c", n0=N0, n=N, alpha=ALPHA, sigma=SIGMA, seed=SEED, batch_size=100,
                           platform={"provider": "CPUExecutionProvider"}, development_key=True)


def _record(n_a: int, top: int = 1) -> dict:
    p_lower = SmoothedClassifier.lower_confidence_bound(n_a, N, ALPHA)
    return {"index": 4, "label": 1, "prediction": top, "n_a": n_a, "radius": SIGMA * float(norm.ppf(p_lower)),
            "counts_selection": [0, N0, 0, 0], "counts_estimation": [N - n_a, n_a, 0, 0]}


def test_tolerance_and_exit_codes() -> None:
    ev = _evidence()
    assert count_tolerance(200) == 3 and count_tolerance(10_000) == 10
    assert compare(4, _record(180), _record(180), ev).outcome == MATCH
    assert compare(4, _record(180), _record(182), ev).outcome == WITHIN
    assert compare(4, _record(180), _record(190), ev).outcome == MISMATCH
    inconsistent = {**_record(180), "radius": 0.5}  # radius not CERTIFY's for its n_a
    assert compare(4, inconsistent, _record(181), ev).outcome == MISMATCH
    within = compare(4, _record(180), _record(182), ev)
    report = AuditReport(pdf=Path("d.pdf"), examples=[within], platform_recorded={"provider": "A"},
                         platform_current={"provider": "B"})
    assert report.exit_code == EXIT_TOLERANCE and "different platform" in report.status_line()
    report.platform_current = {"provider": "A"}
    assert report.exit_code == EXIT_DIFFERENT  # on the recorded platform counts must match exactly
    report.examples = [ExampleAudit(4, _record(180), _record(180), MATCH, "")]
    assert report.exit_code == EXIT_OK


def test_audit_sample_is_seeded_and_sorted() -> None:
    pool = list(range(100))
    a = audit_sample(pool, 10, 0)
    assert list(a) == sorted(a) and len(set(a)) == 10
    assert list(a) == list(audit_sample(pool[::-1], 10, 0))
    assert list(a) != list(audit_sample(pool, 10, 1))
    assert list(audit_sample(pool, 0, 0)) == pool


def test_approved_dossier_audits_last_revision(genuine: Path, tmp_path: Path) -> None:
    from certification.signing.devpki import issue_signer
    from certification.signing.sign import sign_field

    pki = ensure_dev_pki(genuine / ".smoothcert" / "dev-pki")
    approved = tmp_path / "approved.pdf"
    approver = load_signer(issue_signer(pki, "Dr. A", tmp_path / "a.p12", b"pw"), b"pw")  # its own certificate
    approved.write_bytes(sign_field((genuine / "dossier" / "dossier.pdf").read_bytes(), "clinical",
                                    approver, Manifestation("Dr. A", "Clinical lead",
                                    "Approval: the intended use and residual risks are clinically acceptable")))
    report = audit_dossier(approved, genuine / "models" / "model.onnx", genuine / "data" / "test.npz", examples=3,
                           threads=1, trust_root=pki.ca_cert)
    assert report.failures == [] and report.exit_code == EXIT_OK and len(report.examples) == 3


def test_bytes_changed_after_signing_fail_before_the_rerun(genuine: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    data = bytearray((genuine / "dossier" / "dossier.pdf").read_bytes())
    at = data.index(b"/Producer")  # inside the signed bytes
    data[at + 1:at + 9] = b"Xroducer"
    tampered = tmp_path / "tampered.pdf"
    tampered.write_bytes(bytes(data))
    args = _args(genuine)
    args[1] = str(tampered)
    assert cli(args) == EXIT_DIFFERENT
    out = capsys.readouterr().out
    assert "FAIL verification: [FAIL] signature 'author' intact" in out
    assert "check(s) failed before the re-run" in out and "outcome" not in out  # no re-run
