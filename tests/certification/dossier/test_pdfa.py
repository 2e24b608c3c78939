"""PDF/A-3b structure of the dossier, unsigned and after the author and approval signatures (pikepdf/qpdf checks;
veraPDF cannot be installed from the registries reachable here, see README "Archival format")."""
from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
from io import BytesIO
from pathlib import Path

import pikepdf
import pytest
from pypdf import PdfReader

from certification.dossier.attachments import EVIDENCE_ATTACHMENT, RECORDS_ATTACHMENT, read_pdf_content
from certification.dossier.layout import document_template, signature_page_painter, styles
from certification.dossier.pdfa import ArchivalMetadata, make_archival, parse_evidence_time
from certification.errors import InputError
from certification.signing.devpki import issue_signer
from certification.signing.keys import load_signer
from certification.signing.sign import Manifestation, sign_field
from support.signed_dossier import Signed, build_and_sign

EPOCH = 1764660000  # 2025-12-02 07:20:00 UTC
XMP_ID, XMP_DC, XMP_XMP, XMP_PDF = ("{http://www.aiim.org/pdfa/ns/id/}", "{http://purl.org/dc/elements/1.1/}",
                                    "{http://ns.adobe.com/xap/1.0/}", "{http://ns.adobe.com/pdf/1.3/}")


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Signed:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOURCE_DATE_EPOCH", str(EPOCH))
        return build_and_sign(tmp_path_factory.mktemp("pdfa"), accepted=True)


@pytest.fixture(scope="module")
def approved(signed: Signed) -> bytes:
    """The author-signed dossier with one approval signature added incrementally."""
    p12 = issue_signer(signed.pki, "QA reviewer", signed.root / "qa.p12", b"qa-pw")
    role = signed.built.roles["quality"]
    return sign_field(signed.pdf.read_bytes(), "quality", load_signer(p12, b"qa-pw"),
                      Manifestation("QA reviewer", role["role"], role["meaning"]))


def _pdf_time(text: str) -> dt.datetime:
    m = re.fullmatch(r"D:(\d{14})(Z|[+-]\d\d'?\d\d'?)?", str(text))
    assert m, text
    when = dt.datetime.strptime(m.group(1), "%Y%m%d%H%M%S")
    tz = (m.group(2) or "Z").replace("'", "")
    offset = dt.timedelta(0) if tz == "Z" else (1 if tz[0] == "+" else -1) * dt.timedelta(hours=int(tz[1:3]), minutes=int(tz[3:5]))
    return when.replace(tzinfo=dt.timezone(offset)).astimezone(dt.timezone.utc)


def _xmp_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.timezone.utc)


def _fonts(obj: pikepdf.Object, seen: set[tuple[int, int]], out: list[pikepdf.Dictionary]) -> None:
    """Every font dictionary reachable from ``obj`` through resources, form XObjects and appearance streams."""
    if isinstance(obj, (pikepdf.Dictionary, pikepdf.Stream)):
        if obj.is_indirect:
            if obj.objgen in seen:
                return
            seen.add(obj.objgen)
        if obj.get("/Type") == "/Font" and "/Subtype" in obj:
            out.append(obj)
        for key in list(obj.keys()):
            if key not in ("/Parent", "/P", "/Contents", "/Outlines", "/Dest", "/First", "/Last", "/Next", "/Prev"):
                _fonts(obj[key], seen, out)
    elif isinstance(obj, pikepdf.Array):
        for item in obj:
            _fonts(item, seen, out)


def _font_problems(pdf: pikepdf.Pdf) -> list[str]:
    fonts: list[pikepdf.Dictionary] = []
    seen: set[tuple[int, int]] = set()
    for page in pdf.pages:
        _fonts(page.obj, seen, fonts)
    if "/AcroForm" in pdf.Root:
        _fonts(pdf.Root.AcroForm, seen, fonts)
    assert fonts
    problems = []
    for font in fonts:
        descendants = font.get("/DescendantFonts")
        target = descendants[0] if descendants is not None else font
        descriptor = target.get("/FontDescriptor")
        if descriptor is None or not any(k in descriptor for k in ("/FontFile", "/FontFile2", "/FontFile3")):
            problems.append(str(font.get("/BaseFont")))
    return problems


def _check_structure(data: bytes, signed: Signed) -> None:
    """What every revision of the dossier must keep: PDF/A identification, output intent, /Lang, outline, /AF."""
    with pikepdf.open(BytesIO(data)) as pdf:
        assert pdf.check_pdf_syntax() == []
        assert not pdf.is_encrypted and "/Encrypt" not in pdf.trailer
        root = pdf.Root
        assert "/JavaScript" not in root.get("/Names", {}) and "/OpenAction" not in root and "/AA" not in root
        with pdf.open_metadata() as xmp:
            assert xmp[XMP_ID + "part"] == "3" and xmp[XMP_ID + "conformance"] == "B"
            info = pdf.docinfo
            assert xmp[XMP_DC + "title"] == str(info.Title)
            assert xmp[XMP_DC + "creator"] == [str(info.Author)]
            assert xmp[XMP_DC + "description"] == str(info.Subject)
            assert _xmp_time(xmp[XMP_XMP + "CreateDate"]) == _pdf_time(info.CreationDate)
            assert _xmp_time(xmp[XMP_XMP + "ModifyDate"]) == _pdf_time(info.ModDate)
            assert xmp[XMP_PDF + "Producer"]
            assert "/Producer" not in info or str(info.Producer) == xmp[XMP_PDF + "Producer"]
            assert _xmp_time(xmp[XMP_XMP + "CreateDate"]) == dt.datetime.fromtimestamp(EPOCH, dt.timezone.utc)
        assert str(root.Lang) == "en-GB"
        (intent,) = root.OutputIntents
        assert intent.S == "/GTS_PDFA1" and intent.DestOutputProfile.N == 3
        icc = intent.DestOutputProfile.read_bytes()
        assert icc[12:20] == b"mntrRGB " and icc[36:40] == b"acsp" and icc[8] <= 4
        names = root.Names.EmbeddedFiles.Names
        tree = {str(names[i]): names[i + 1] for i in range(0, len(names), 2)}
        assert sorted(tree) == [RECORDS_ATTACHMENT, EVIDENCE_ATTACHMENT]
        af = {str(spec.UF): spec for spec in root.AF}
        assert af.keys() == tree.keys() and all(af[n].objgen == tree[n].objgen for n in tree)
        mime = {EVIDENCE_ATTACHMENT: "/application/json", RECORDS_ATTACHMENT: "/application/jsonl"}
        for name, spec in af.items():
            assert spec.AFRelationship in ("/Data", "/Source") and str(spec.F) == name
            stream = spec.EF.F
            assert stream.Subtype == mime[name]
            assert stream.Params.Size == len(stream.read_bytes())
            assert _pdf_time(stream.Params.ModDate) == dt.datetime.fromtimestamp(EPOCH, dt.timezone.utc)
        assert af[EVIDENCE_ATTACHMENT].EF.F.read_bytes() == signed.built.evidence_json
        with pdf.open_outline() as outline:
            top = [item.title for item in outline.root]
    numbered = [t for t in top if re.match(r"\d+ ", t)]
    assert [int(t.split()[0]) for t in numbered] == list(range(1, len(numbered) + 1)) and len(numbered) >= 10
    content = read_pdf_content(data)
    assert content.attachments[EVIDENCE_ATTACHMENT] == signed.built.evidence_json


def test_unsigned_dossier_is_pdfa3b_with_embedded_fonts(signed: Signed) -> None:
    _check_structure(signed.built.unsigned_pdf, signed)
    with pikepdf.open(BytesIO(signed.built.unsigned_pdf)) as pdf:
        assert _font_problems(pdf) == []


def test_outline_has_one_entry_per_numbered_section_pointing_at_its_page(signed: Signed) -> None:
    reader = PdfReader(BytesIO(signed.built.unsigned_pdf))
    pages = [re.sub(r"\s+", "", page.extract_text() or "") for page in reader.pages]
    text = "".join(pages)
    headings = re.findall(r"^(\d+)\s\s?(\S.*)$", "\n".join(p.extract_text() or "" for p in reader.pages), re.M)
    top = reader.outline
    numbered = [item for item in top if not isinstance(item, list) and re.match(r"\d+ ", item.title)]
    assert numbered and len(numbered) == len({t for t in (i.title for i in numbered)})
    for item in numbered:
        page = reader.get_destination_page_number(item)
        assert re.sub(r"\s+", "", item.title) in pages[page], item.title
        assert re.sub(r"\s+", "", item.title) in text
    assert headings  # the numbered headings are in the text too
    children = [entry for item in top if isinstance(item, list) for entry in item]
    assert any(child.title == "Acceptance rationale" for child in children)


def test_signatures_keep_the_pdfa_structure(signed: Signed, approved: bytes) -> None:
    author = signed.pdf.read_bytes()
    _check_structure(author, signed)
    _check_structure(approved, signed)
    unsigned_id = pikepdf.open(BytesIO(signed.built.unsigned_pdf)).open_metadata()
    for data in (author, approved):
        with pikepdf.open(BytesIO(data)) as pdf, pdf.open_metadata() as xmp:
            assert (xmp[XMP_ID + "part"], xmp[XMP_ID + "conformance"]) == ("3", "B")
            assert xmp[XMP_DC + "title"] == unsigned_id[XMP_DC + "title"]


def test_fonts_stay_embedded_after_signing(signed: Signed, approved: bytes) -> None:
    for data in (signed.pdf.read_bytes(), approved):
        with pikepdf.open(BytesIO(data)) as pdf:
            assert _font_problems(pdf) == []


@pytest.mark.skipif(shutil.which("pdffonts") is None, reason="poppler's pdffonts is not installed")
def test_pdffonts_reports_every_font_embedded(signed: Signed, tmp_path: Path) -> None:
    path = tmp_path / "dossier_unsigned.pdf"
    path.write_bytes(signed.built.unsigned_pdf)
    run = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True, check=True)
    rows = run.stdout.splitlines()[2:]
    assert rows and run.stderr == ""
    assert all(re.search(r"\byes\s+(yes|no)\s+(yes|no)\s+\d+\s+\d+\s*$", row) for row in rows), run.stdout


def _tiny_pdf(story_titles: list[tuple[str, str]]) -> bytes:
    from reportlab.platypus import Paragraph

    st = styles()
    buffer = BytesIO()
    doc = document_template(buffer, "t", "a", signature_page_painter({}, {}))
    doc.build([Paragraph(text, st[style]) for style, text in story_titles])
    return buffer.getvalue()


def test_subheading_before_any_section_is_promoted_and_dates_never_come_from_the_clock() -> None:
    pdf = _tiny_pdf([("h2", "Preface"), ("h1", "1  First"), ("h2", "Detail"), ("body", "text")])
    meta = ArchivalMetadata(title="T", author="A", subject="S", language="de-DE", created=None)
    out = make_archival(pdf, meta)
    assert make_archival(pdf, meta) == out
    with pikepdf.open(BytesIO(out)) as doc, doc.open_outline() as outline:
        assert [(i.title, [c.title for c in i.children]) for i in outline.root] == [("Preface", []), ("1 First", ["Detail"])]
        assert str(doc.Root.Lang) == "de-DE"
        assert "/CreationDate" not in doc.docinfo and "/ModDate" not in doc.docinfo
        with doc.open_metadata() as xmp:
            assert XMP_XMP + "CreateDate" not in xmp and xmp[XMP_ID + "part"] == "3"


def test_bad_language_and_time_are_one_line_input_errors() -> None:
    pdf = _tiny_pdf([("h1", "1  First")])
    with pytest.raises(InputError, match="language"):
        make_archival(pdf, ArchivalMetadata("T", "A", "S", "english please", None))
    with pytest.raises(InputError, match="evidence time"):
        parse_evidence_time("yesterday")
    assert parse_evidence_time("not recorded") is None
    assert parse_evidence_time("2025-12-02 07:20:00 UTC") == dt.datetime.fromtimestamp(EPOCH, dt.timezone.utc)


def test_srgb_profile_bytes_do_not_depend_on_the_clock() -> None:
    from PIL import ImageCms

    from certification.dossier.pdfa import ICC_DATE, srgb_profile

    icc = srgb_profile()
    profile = ImageCms.ImageCmsProfile(BytesIO(icc))
    assert profile.profile.creation_date == dt.datetime(*ICC_DATE)
    assert profile.profile.xcolor_space == "RGB " and profile.profile.device_class == "mntr"
