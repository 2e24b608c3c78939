"""The unsigned dossier: printed numbers equal the evidence, pages render, output is deterministic."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from pypdf import PdfReader

from pipeline.dossier import evidence_inputs
from certification.dossier.attachments import EVIDENCE_ATTACHMENT, RECORDS_ATTACHMENT, read_pdf_content
from certification.dossier.build import build_dossier
from certification.dossier.layout import DEV_WARNING
from certification.fileio import sha256_bytes
from support.signed_dossier import APPROVALS, PARAMS, TEMPLATES, Signed, build_and_sign, identity


@pytest.fixture(scope="module")
def accepted(tmp_path_factory: pytest.TempPathFactory) -> Signed:
    return build_and_sign(tmp_path_factory.mktemp("accepted"), accepted=True)


@pytest.fixture(scope="module")
def rejected(tmp_path_factory: pytest.TempPathFactory) -> Signed:
    return build_and_sign(tmp_path_factory.mktemp("rejected"), accepted=False)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _texts(pdf_bytes: bytes, path) -> list[str]:
    texts = [read_pdf_content(pdf_bytes).text]
    if shutil.which("pdftotext"):
        texts.append(subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True,
                                    check=True).stdout)
    return texts


def test_printed_text_carries_verdict_hash_and_numbers_of_the_evidence(accepted: Signed) -> None:
    ev = accepted.built.evidence
    assert ev["verdict"]["word"] == "ACCEPTED"
    c = ev["certify"]
    expected = [ev["verdict"]["word"], ev["hashes"]["model_sha256"], ev["hashes"]["protocol_sha256"],
                sha256_bytes(accepted.built.evidence_json), _pct(c["clean_accuracy"]["estimate"]),
                _pct(c["clean_accuracy"]["lower"]), f"{c['average_certified_radius']:.3f}"]
    expected += [_pct(p["lower_bound"]) for p in c["curve"]] + [_pct(p["certified_accuracy"]) for p in c["curve"]]
    expected += [f"{crit['bound']:.3f} ({crit['bound_kind']})" for crit in ev["verdict"]["criteria"]]
    for name, group in ev["groups"]["per_skin_type"].items():
        expected.append(_pct(group["certified"]["lower"]))
    kernels = c["noise"]["kernels"]  # the numpy loops that drew the noise, for bit-for-bit regeneration
    expected += [f"numpy {kernels['numpy']}'s", f"loops {ev['claims']['noise_loops']}"]
    for text in _texts(accepted.pdf.read_bytes(), accepted.pdf):
        compact = re.sub(r"\s+", "", text)
        for value in expected:
            assert re.sub(r"\s+", "", value) in compact, value
        assert not re.search(r"\b(nan|NaN|None|inf)\b", text)
        for forbidden in ("{{", "}}", "\ufffd"):
            assert forbidden not in text


def test_attachments_are_the_evidence_and_the_results(accepted: Signed) -> None:
    content = read_pdf_content(accepted.built.unsigned_pdf)
    assert content.attachments[EVIDENCE_ATTACHMENT] == accepted.built.evidence_json
    assert content.attachments[RECORDS_ATTACHMENT] == (accepted.root / "results" / "certify.jsonl").read_bytes()
    assert json.loads(content.attachments[EVIDENCE_ATTACHMENT])["hashes"]["model_sha256"] == \
        sha256_bytes((accepted.root / "models" / "model.onnx").read_bytes())


def test_every_page_says_development_key(accepted: Signed) -> None:
    reader = PdfReader(accepted.pdf)
    assert len(reader.pages) >= 8
    for page in reader.pages:
        assert DEV_WARNING in page.extract_text()


def test_rejected_model_dossier_says_rejected(rejected: Signed) -> None:
    first = PdfReader(rejected.pdf).pages[0].extract_text()
    assert "REJECTED" in first and "ACCEPTED" not in first
    assert rejected.built.evidence["verdict"]["failed"]
    for name in rejected.built.evidence["verdict"]["failed"]:
        assert name in PdfReader(rejected.pdf).pages[1].extract_text()


def test_two_builds_from_the_same_inputs_are_byte_identical(accepted: Signed) -> None:
    again = build_dossier(evidence_inputs(accepted.root), PARAMS, TEMPLATES, APPROVALS, identity(accepted.pki))
    assert sha256_bytes(again.unsigned_pdf) == sha256_bytes(accepted.built.unsigned_pdf)
    assert again.evidence_json == accepted.built.evidence_json


def test_a_changed_input_changes_the_pdf(accepted: Signed, tmp_path) -> None:
    params = {**PARAMS, "extra": {"note": "different"}}
    other = build_dossier(evidence_inputs(accepted.root), params, TEMPLATES, APPROVALS, identity(accepted.pki))
    assert sha256_bytes(other.unsigned_pdf) != sha256_bytes(accepted.built.unsigned_pdf)


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils (pdftoppm) not installed")
def test_pages_render_and_are_not_blank(accepted: Signed, tmp_path) -> None:
    from PIL import Image

    subprocess.run(["pdftoppm", "-r", "40", "-png", str(accepted.pdf), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) == len(PdfReader(accepted.pdf).pages)
    for page in pages:
        pixels = np.asarray(Image.open(page).convert("L"))
        height = pixels.shape[0]
        body = pixels[int(height * 0.08): int(height * 0.93)]  # without header and footer lines
        assert (body < 160).mean() > 0.003, f"{page.name} has nothing but header and footer"


def test_non_latin_class_names_print_as_letters(tmp_path) -> None:
    """The dossier embeds a font that covers Cyrillic, Greek and accented Latin (no boxes for non-Latin names)."""
    from io import BytesIO

    from pypdf import PdfReader
    from reportlab.platypus import Paragraph, SimpleDocTemplate

    from certification.dossier.layout import styles

    names = "меланома, νέφος, Hautläsion, naevus bleu"
    buffer = BytesIO()
    SimpleDocTemplate(buffer).build([Paragraph(names, styles()["body"])])
    page = PdfReader(BytesIO(buffer.getvalue())).pages[0]
    assert names in page.extract_text()
    fonts = {str(f["/BaseFont"]) for f in page["/Resources"]["/Font"].values()}
    assert any("DejaVuSans" in f for f in fonts), fonts
