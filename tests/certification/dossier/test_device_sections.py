"""What ships to the device, in the dossier: the model's detached signature (model identity), the smoothed predictor
and its single-core latency (deployed procedure), read from the files that produced them; absent files are not
listed, and a signature of another model is refused."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from certification.device_card import write_device_card
from certification.device_latency import LatencyRow, write_device_latency
from certification.device_run import device_files
from certification.dossier.attachments import read_pdf_content
from certification.dossier.build import SignerIdentity, build_dossier
from certification.dossier.evidence import collect_evidence
from certification.errors import StaleArtifactError
from certification.fileio import sha256_file
from certification.model_signing import sign_model
from certification.signing.choice import choose_signer
from pipeline.dossier import evidence_inputs
from support.dossier_outputs import make_outputs, write_onnx
from support.signed_dossier import APPROVALS, PARAMS, TEMPLATES

SIGNER = SignerIdentity(development_key=True, signer="dev", trust_anchor_sha256="0" * 64)


def _text(root: Path) -> tuple[dict, str]:
    built = build_dossier(evidence_inputs(root), PARAMS, TEMPLATES, APPROVALS, SIGNER)
    return built.evidence, "".join(read_pdf_content(built.unsigned_pdf).text.split())


def _device(root: Path) -> dict:
    return collect_evidence(evidence_inputs(root), PARAMS, {}, {})["device"]


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_outputs(tmp_path_factory.mktemp("device-dossier"))


def test_device_files_are_listed_from_their_producers(outputs: Path, tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "root"
    shutil.copytree(outputs, root)
    monkeypatch.chdir(root)
    monkeypatch.delenv("SMOOTHCERT_SIGNING_KEY", raising=False)
    assert _device(root) == {"model_signature": None, "smoothed": None, "latency": None}  # absent: not listed
    chosen = choose_signer("", "SMOOTHCERT_KEY_PASSPHRASE", dev_pki_dir=tmp_path / "pki")
    card = device_files(Path("models/model.onnx"), Path("models/smoothed.onnx"), 50, 0.25, 0.01, chosen)
    write_device_card(root / "models/smoothed.json", card)
    write_device_latency(root / "benchmarks/device_latency.json",
                         [LatencyRow("fp32", 100, 8.25, 12.5, 200, 61.0, card["smoothed"]["sha256"], 7.5)],
                         image_chw=(3, 8, 8), model_sha256={"fp32": sha256_file(root / "models/model.onnx")},
                         platform={"cpu_model": "Test CPU"}, command="benchmarks/device_latency.py", date_utc="2026-12-02T00:00:00Z",
                         target={"k": 100, "p99_ms": 30.0, "met": True},
                         agreement=[{"k": 100, "examples": 200, "agreement": 0.97, "graph_abstentions": 16,
                                     "library_abstentions": 15}])
    evidence, text = _text(root)
    sig = evidence["device"]["model_signature"]
    assert sig["path"] == "models/model.onnx.p7s" and sig["signed_sha256"] == evidence["hashes"]["model_sha256"]
    assert sig["sha256"] == card["signatures"]["model"]["sha256"] and sig["development"]
    assert f"SHA-256{sig['sha256']}" in text and "DEVELOPMENTkey" in text  # model identity
    assert f"models/smoothed.onnx(SHA-256{card['smoothed']['sha256']}):k=50noisycopies" in text
    assert "fp32,k=100" in text and "median8.2ms,p9912.5ms(200calls)" in text and "thismodel" in text
    assert "sameansweron97.0%of200testimages(abstentions16vs15" in text
    write_onnx(root / "models/other.onnx", seed=3)
    sign_model(root / "models/other.onnx", chosen, out=root / "models/model.onnx.p7s")  # a signature of another file
    with pytest.raises(StaleArtifactError, match="model.onnx.p7s: signs"):
        _device(root)
