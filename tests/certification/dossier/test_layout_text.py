"""Text layout of the dossier: words and hashes break only where chosen, every rate has its bound and n."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from reportlab.pdfbase.pdfmetrics import stringWidth

from certification.dossier.attachments import read_pdf_content
from certification.dossier.layout import styles
from certification.dossier.sections import fit_token
from support.signed_dossier import Signed, build_and_sign

needs_pdftotext = pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils not installed")


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Signed:
    return build_and_sign(tmp_path_factory.mktemp("layout"))


@pytest.fixture(scope="module")
def text(signed: Signed) -> str:
    return subprocess.run(["pdftotext", "-layout", str(signed.pdf), "-"], capture_output=True, text=True, check=True).stdout


def test_long_tokens_break_only_at_chosen_places() -> None:
    st = styles()
    cell, mono = st["cell"], st["mono"]
    digest = "ab" * 32
    out = fit_token(digest, mono.fontName, mono.fontSize, 100)
    lines = out.split("<br/>")
    assert "".join(lines) == digest and all(len(line) % 16 == 0 for line in lines)
    ident = "certified_recall_basal_cell_carcinoma"
    lines = fit_token(ident, cell.fontName, cell.fontSize, 60).split("<br/>")
    assert "".join(lines) == ident and all(line.endswith("_") for line in lines[:-1])
    assert all(stringWidth(line, cell.fontName, cell.fontSize) <= 60 for line in lines)
    # a word with no break place is set smaller, never split
    word = fit_token("unacceptable", cell.fontName, cell.fontSize, 40)
    assert "<br/>" not in word and "unacceptable" in word and "font size" in word
    assert fit_token("short", cell.fontName, cell.fontSize, 100) == "short"


@needs_pdftotext
def test_hashes_print_whole_or_at_chunk_boundaries(signed: Signed, text: str) -> None:
    ev = signed.built.evidence
    model = ev["hashes"]["model_sha256"]
    assert any(model in line for line in text.splitlines())  # intact on one line (cover, model section)
    assert model in read_pdf_content(signed.built.unsigned_pdf).text_compact  # what verify checks
    for digest in ev["hashes"]["splits"].values():
        if not any(digest in line for line in text.splitlines()):
            pieces = re.findall(r"\b[0-9a-f]{16,64}\b", text)
            joined = [p for p in pieces if digest.startswith(p) or p in digest]
            assert joined and all(len(p) % 16 == 0 for p in joined), digest


@needs_pdftotext
def test_no_section_zero_and_kernels_named_once(signed: Signed, text: str) -> None:
    assert not re.search(r"\bsection 0\b", text, re.IGNORECASE)
    assert not re.search(r"\|\s*0,", text)
    kernels = signed.built.evidence["certify"]["noise"]["kernels"]
    if len({kernels["log"], kernels["cos"], kernels["sin"]}) == 1:
        assert f"{kernels['log']}, {kernels['log']}" not in text
        assert f"{kernels['log']} (log, cos, sin)" in re.sub(r"\s+", " ", text)


@needs_pdftotext
def test_every_subgroup_below_threshold_is_named_with_n_and_bound(signed: Signed, text: str) -> None:
    ev = signed.built.evidence
    below = ev["claims"]["subgroups_below"]
    flat = re.sub(r"\s+", " ", text)
    section = flat.split("Subgroups below the gate threshold")[1]
    flagged = ev["evaluate"]["subgroups"]["flagged"]
    assert len(below) == len(flagged)
    for b in below:
        assert f"{b['field']} {b['group']} {b['n']}" in section, b
        assert f"{100 * b['lower']:.1f}%" in section
    labelling = flat.split("Limitations to state in the labelling")[-1]
    assert "Limitations to state in the labelling" in flat  # the section the FMEA controls refer to exists
    for b in below:
        assert f"{b['field']} = {b['group']}" in labelling


@needs_pdftotext
def test_rates_carry_bound_and_n(signed: Signed, text: str) -> None:
    ev = signed.built.evidence
    flat = re.sub(r"\s+", " ", text)
    ab = ev["certify"]["abstention_rate"]
    cover = flat.split("Document control")[0]
    assert f"upper {100 * ab['upper']:.1f}%; {ab['successes']}/{ab['trials']}" in cover
    assert "descriptive, no confidence bound" in flat  # ACR and median radius
    compact = read_pdf_content(signed.built.unsigned_pdf).text_compact  # table cells wrap; compare without spaces
    for row in ev["claims"]["coverage"]:
        c = row["covered"]
        assert f"{c['successes']}/{row['n']}{100 * c['estimate']:.1f}%({100 * c['lower']:.1f}%,{100 * c['upper']:.1f}%)" in compact
    assert "acceptable if the gate passes" not in flat.lower()
    assert "Overall residual risk" in flat
