"""PAdES B-LT: validation data embedded after a signature, with a loopback TSA and a loopback CRL/OCSP service, and
what verify accepts after a signature (validation data only, never a visible change)."""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Iterator

import pytest
from asn1crypto import crl as asn1_crl
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import serialization
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.generic import pdf_name
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation.dss import DocumentSecurityStore

from certification.cli import main as cli
from certification.dossier.verify import EXIT_VERIFIED, verify_dossier
from certification.errors import InputError
from certification.signing.keys import load_signer
from certification.signing.ltv import MetadataKeepingWriter
from certification.signing.sign import LongTerm, Manifestation, sign_as_author, sign_field, timestamper_for
from certification.signing.verify import signed_revision, visible_metadata
from support.local_revocation import RevocationService, local_revocation
from support.local_tsa import local_tsa
from support.signed_dossier import APPROVALS, LocalCa, Signed, build_and_sign_with, make_test_ca


@dataclass
class Pki:
    ca: LocalCa
    service: RevocationService
    tsa_url: str
    signed: Signed
    notes: list[str]


@pytest.fixture(scope="module")
def blt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pki]:
    """A production-like CA whose signer certificates name a loopback CRL and whose TSA certificate names a loopback
    OCSP responder; a dossier author-signed with a timestamp and validation data ("auto")."""
    root = tmp_path_factory.mktemp("blt")
    ca = make_test_ca(root / "ca")
    with contextlib.ExitStack() as stack:
        service = stack.enter_context(local_revocation(ca.key, ca.cert))
        tsa_key, tsa_cert = ca.issue_pair("Loopback TSA", tsa=True, revocation=service, via="ocsp")
        url = stack.enter_context(local_tsa(tsa_key, tsa_cert, ca.cert))
        author = ca.issue("Pipeline Service Account", b"pw", revocation=service, via="crl")
        long_term = LongTerm(mode="auto")
        signed = build_and_sign_with(root / "run", author, b"pw", ca.cert.public_bytes(serialization.Encoding.DER),
                                     timestamper=timestamper_for(url), long_term=long_term)
        yield Pki(ca, service, url, signed, long_term.notes)


def _failed(report) -> dict[str, str]:
    return {c.name: c.detail for c in report.checks if not c.passed}


def _copy(data: bytes, tmp_path: Path, name: str = "dossier.pdf") -> Path:
    out = tmp_path / name
    out.write_bytes(data)
    return out


def test_author_signature_reaches_b_lt_without_touching_the_metadata(blt: Pki) -> None:
    pdf = blt.signed.pdf.read_bytes()
    report = verify_dossier(blt.signed.pdf, trust_root=blt.ca.ca_pem)
    assert report.ok, _failed(report)
    assert [(s.field_name, s.pades_level) for s in report.signatures] == [("author", "B-LT")]
    assert {"crl", "ocsp"} <= set(blt.service.served)  # fetched from the certificates' URLs
    assert len(blt.notes) == 1 and blt.notes[0].startswith("PAdES B-LT: validation data for 'author'"), blt.notes
    checks = {c.name: c.detail for c in report.checks}
    assert "followed only by 1 validation-data revision" in checks["nothing after the last signature"]
    reader = PdfFileReader(BytesIO(pdf), strict=False)
    dss = reader.root["/DSS"]
    assert len(dss["/CRLs"]) == 1 and len(dss["/OCSPs"]) == 1 and len(dss["/VRI"]) == 1
    # the trailing revision adds the /DSS and nothing else: no /ModDate, no XMP rewrite
    signed_part = signed_revision(pdf, reader.embedded_signatures[0])
    assert len(signed_part) < len(pdf) and visible_metadata(signed_part) == visible_metadata(pdf)


def test_without_revocation_data_the_signature_stays_b_t_or_is_refused(blt: Pki, tmp_path: Path) -> None:
    author = blt.signed.built.roles["author"]
    plain = load_signer(blt.ca.issue("Service Without CRL", b"pw"), b"pw")  # names no CRL or OCSP URL
    manifest = Manifestation("Service Without CRL", author["role"], author["meaning"])
    auto = LongTerm(mode="auto")
    pdf = sign_as_author(blt.signed.built.unsigned_pdf, plain, manifest, APPROVALS,
                         timestamper=timestamper_for(blt.tsa_url), long_term=auto)
    assert "PAdES B-T only: no validation data for signature 'author'" in auto.notes[0], auto.notes
    report = verify_dossier(_copy(pdf, tmp_path), trust_root=blt.ca.ca_pem)
    assert report.ok and [s.pades_level for s in report.signatures] == ["B-T"], _failed(report)
    with pytest.raises(InputError, match="CRL or OCSP URL"):
        sign_as_author(blt.signed.built.unsigned_pdf, plain, manifest, APPROVALS,
                       timestamper=timestamper_for(blt.tsa_url), long_term=LongTerm(mode="required"))
    with pytest.raises(InputError, match="needs a signature timestamp"):
        sign_as_author(blt.signed.built.unsigned_pdf, plain, manifest, APPROVALS, long_term=LongTerm(mode="required"))
    with pytest.raises(InputError, match="not one of auto, off, required"):
        LongTerm(mode="always")


def test_a_revoked_signing_certificate_is_refused(blt: Pki) -> None:
    author = blt.signed.built.roles["author"]
    p12 = blt.ca.issue("Revoked Service", b"pw", revocation=blt.service, via="crl")
    signer = load_signer(p12, b"pw")
    blt.service.revoked.add(signer.signing_cert.serial_number)
    with pytest.raises(InputError, match="revoked"):
        sign_as_author(blt.signed.built.unsigned_pdf, signer, Manifestation("Revoked Service", author["role"],
                                                                            author["meaning"]),
                       APPROVALS, timestamper=timestamper_for(blt.tsa_url), long_term=LongTerm(mode="auto"))


def _dss_plus(pdf: bytes, change: str, service: RevocationService) -> bytes:
    """A revision after the last signature that adds validation data (a CRL to the /DSS) and also ``change``s
    something a reader sees: "title" (document information), "page" (a page's content), "field" (a form value)."""
    writer = MetadataKeepingWriter(BytesIO(pdf), strict=False)
    DocumentSecurityStore.supply_dss_in_writer(writer, None, crls=[asn1_crl.CertificateList.load(service.crl())])
    if change == "title":
        info_ref = writer.trailer.raw_get("/Info")
        info_ref.get_object()[pdf_name("/Title")] = generic.TextStringObject("APPROVED FOR SALE")
        writer.mark_update(info_ref)
    elif change == "page":
        page_ref = writer.root["/Pages"]["/Kids"].raw_get(0)
        page = page_ref.get_object()
        stream = writer.add_object(generic.StreamObject(stream_data=b"BT /F1 30 Tf 100 400 Td (APPROVED) Tj ET"))
        old = page.raw_get("/Contents")
        page[pdf_name("/Contents")] = generic.ArrayObject((list(old) if isinstance(old, generic.ArrayObject) else [old])
                                                          + [stream])
        writer.mark_update(page_ref)
    elif change == "field":
        field_ref = writer.root["/AcroForm"]["/Fields"].raw_get(0)
        field_ref.get_object()[pdf_name("/TU")] = generic.TextStringObject("Approved by QA")
        writer.mark_update(field_ref)
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


def test_a_further_validation_data_revision_verifies(blt: Pki, tmp_path: Path) -> None:
    data = _dss_plus(blt.signed.pdf.read_bytes(), "none", blt.service)
    assert len(data) > blt.signed.pdf.stat().st_size
    report = verify_dossier(_copy(data, tmp_path), trust_root=blt.ca.ca_pem)
    assert report.ok, _failed(report)
    assert "followed only by 2 validation-data revision(s)" in {c.name: c.detail for c in report.checks}[
        "nothing after the last signature"]


@pytest.mark.parametrize("change, reason", [("title", "(document information)"), ("page", "(/Page)"),
                                            ("field", "(/Annot)")])
def test_validation_data_with_a_visible_change_fails(blt: Pki, tmp_path: Path, change: str, reason: str) -> None:
    report = verify_dossier(_copy(_dss_plus(blt.signed.pdf.read_bytes(), change, blt.service), tmp_path), trust_root=blt.ca.ca_pem)
    failed = _failed(report)
    detail = failed.get("nothing after the last signature", "")
    assert "change what a reader sees: revision 3: it changes object" in detail and reason in detail, failed
    assert len(detail.splitlines()) == 1
    if change != "title":
        return
    with pytest.raises(InputError, match="bytes follow the last signed revision"):  # no approval over it either
        sign_field(_dss_plus(blt.signed.pdf.read_bytes(), change, blt.service), "quality",
                   load_signer(blt.ca.issue("Dr. Late", b"pw"), b"pw"), Manifestation("Dr. Late", "QA", "Review"))


def test_a_visible_change_between_signatures_fails_even_when_a_later_signature_covers_it(blt: Pki, tmp_path: Path) -> None:
    """The next signer (here pyHanko directly, bypassing sign's own check) signs over a DSS revision that also
    retitles the document: each unsigned revision between signatures must hold validation data only."""
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import signers
    from pyhanko.sign.fields import SigSeedSubFilter

    tampered = _dss_plus(blt.signed.pdf.read_bytes(), "title", blt.service)
    out = signers.sign_pdf(IncrementalPdfFileWriter(BytesIO(tampered), strict=False),
                           signers.PdfSignatureMetadata(field_name="quality", subfilter=SigSeedSubFilter.PADES),
                           signer=load_signer(blt.ca.issue("Dr. Over", b"pw"), b"pw"))
    failed = _failed(verify_dossier(_copy(out.getvalue(), tmp_path), trust_root=blt.ca.ca_pem))
    assert "revision 3: it changes object" in failed.get("updates between signatures", ""), failed
    assert "(document information)" in failed["updates between signatures"]


def test_pyhankos_own_validation_data_revision_is_refused(blt: Pki, tmp_path: Path) -> None:
    """pyHanko's add_validation_info rewrites the XMP metadata (/ModDate) in the trailing revision: a change verify
    refuses, which is why signing writes the /DSS itself."""
    from pyhanko.sign.validation import add_validation_info
    from pyhanko_certvalidator import ValidationContext
    from pyhanko_certvalidator.fetchers.requests_fetchers import RequestsFetcherBackend

    pdf = blt.signed.pdf.read_bytes()
    reader = PdfFileReader(BytesIO(signed_revision(pdf, PdfFileReader(BytesIO(pdf)).embedded_signatures[0])))
    root = asn1_x509.Certificate.load(blt.ca.cert.public_bytes(serialization.Encoding.DER))
    out = add_validation_info(reader.embedded_signatures[0], ValidationContext(
        trust_roots=[root], allow_fetching=True, fetcher_backend=RequestsFetcherBackend()))
    failed = _failed(verify_dossier(_copy(out.getvalue(), tmp_path), trust_root=blt.ca.ca_pem))
    assert "(/Metadata)" in failed.get("nothing after the last signature", ""), failed
    assert "XMP metadata changed" in failed["visible metadata unchanged"]


def test_approvals_after_a_b_lt_author_signature_reach_b_lt(blt: Pki, tmp_path: Path, capsys) -> None:
    pdf = _copy(blt.signed.pdf.read_bytes(), tmp_path)
    os.environ["BLT_TEST_PW"] = "pw"
    try:
        p12 = blt.ca.issue("Dr. Q", b"pw", revocation=blt.service, via="crl")
        assert cli(["sign", str(pdf), "--field", "quality", "--key", str(p12), "--passphrase-env", "BLT_TEST_PW",
                    "--trust-root", str(blt.ca.ca_pem), "--tsa-url", blt.tsa_url,
                    "--validation-data", "required"]) == 0, capsys.readouterr().err
        assert "sign: PAdES B-LT: validation data for 'quality'" in capsys.readouterr().err
    finally:
        del os.environ["BLT_TEST_PW"]
    assert cli(["verify", str(pdf), "--trust-root", str(blt.ca.ca_pem)]) == EXIT_VERIFIED
    out = capsys.readouterr().out
    for line in ("signature 'author': Pipeline Service Account, PAdES B-LT", "signature 'quality': Dr. Q, PAdES B-LT",
                 "[PASS] updates between signatures: 1 unsigned revision(s)",
                 "[PASS] nothing after the last signature: followed only by 1 validation-data revision(s)"):
        assert line in out, out
    assert out.splitlines()[-1] == "VERIFIED: AUTHOR-SIGNED, 1/3 APPROVALS"
    reader = PdfFileReader(BytesIO(pdf.read_bytes()), strict=False)
    assert len(reader.root["/DSS"]["/VRI"]) == 2  # one entry per signature, in one store updated again
    if shutil.which("pdfsig"):
        done = subprocess.run(["pdfsig", str(pdf)], capture_output=True, text=True)
        assert done.stdout.count("Signature is Valid.") == 2, done.stdout
        assert "error" not in (done.stdout + done.stderr).lower(), (done.stdout, done.stderr)


@pytest.mark.skipif(shutil.which("pdfsig") is None, reason="poppler-utils (pdfsig) not installed")
def test_pdfsig_validates_the_b_lt_file(blt: Pki) -> None:
    done = subprocess.run(["pdfsig", str(blt.signed.pdf)], capture_output=True, text=True)
    assert done.stdout.count("Signature is Valid.") == 1 and "Not total document signed" in done.stdout, done.stdout
    assert "error" not in (done.stdout + done.stderr).lower(), (done.stdout, done.stderr)
