"""Signatures on the dossier: they validate, and tampering, wrong roots, wrong models and bad keys are caught."""
from __future__ import annotations

import shutil
import subprocess
from io import BytesIO
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.generic import pdf_name
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

from certification.cli import main as cli
from certification.errors import InputError
from certification.signing.devpki import ensure_dev_pki, issue_signer
from certification.signing.keys import load_signer
from certification.signing.sign import Manifestation, empty_signature_fields, sign_field
from certification.dossier.verify import verify_dossier
from support.signed_dossier import APPROVALS, Signed, build_and_sign


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Signed:
    return build_and_sign(tmp_path_factory.mktemp("signed"), accepted=True)


def _failed(report) -> dict[str, str]:
    return {c.name: c.detail for c in report.checks if not c.passed}


def _copy(signed: Signed, tmp_path: Path, data: bytes | None = None) -> Path:
    out = tmp_path / "dossier.pdf"
    out.write_bytes(signed.pdf.read_bytes() if data is None else data)
    return out


def test_author_signature_validates_and_fields_are_ready(signed: Signed) -> None:
    report = verify_dossier(signed.pdf, trust_root=signed.pki.ca_cert, model=signed.root / "models" / "model.onnx")
    assert report.ok, _failed(report)
    names = {c.name for c in report.checks}
    assert {"signature 'author' intact", "signature 'author' trusted", "evidence hash", "model file"} <= names
    assert empty_signature_fields(signed.pdf.read_bytes()) == APPROVALS


def test_default_trust_root_is_the_development_ca_and_says_so(signed: Signed, monkeypatch) -> None:
    monkeypatch.chdir(signed.root)
    report = verify_dossier(signed.pdf)
    assert report.ok, _failed(report)
    assert "development CA" in report.trust_root_note and "NOT FOR SUBMISSION" in report.trust_root_note


@pytest.mark.skipif(shutil.which("pdfsig") is None, reason="poppler-utils (pdfsig) not installed")
def test_pdfsig_reports_the_signature_valid(signed: Signed) -> None:
    out = subprocess.run(["pdfsig", str(signed.pdf)], capture_output=True, text=True).stdout
    assert out.count("Signature is Valid.") == 1 and "Total document signed" in out


def test_flipped_byte_is_detected(signed: Signed, tmp_path: Path) -> None:
    data = bytearray(signed.pdf.read_bytes())
    position = data.find(b"stream", 2000) + 40  # inside the first content stream after the header objects
    data[position] ^= 0x01
    report = verify_dossier(_copy(signed, tmp_path, bytes(data)), trust_root=signed.pki.ca_cert)
    assert not report.ok
    failed = _failed(report)
    assert any("intact" in name or "validation" in name for name in failed), failed
    assert report.summary_line().startswith("NOT VERIFIED: ") and "AUTHOR SIGNATURE FAILED, 0/3 APPROVALS" in report.summary_line()


def test_appended_incremental_edit_is_detected(signed: Signed, tmp_path: Path) -> None:
    writer = IncrementalPdfFileWriter(BytesIO(signed.pdf.read_bytes()))
    page_ref = writer.root["/Pages"]["/Kids"].raw_get(0)
    page = page_ref.get_object()
    stream = writer.add_object(generic.StreamObject(stream_data=b"BT /F1 30 Tf 100 400 Td (APPROVED) Tj ET"))
    old = page.raw_get("/Contents")
    items = list(old) if isinstance(old, generic.ArrayObject) else [old]
    page[pdf_name("/Contents")] = generic.ArrayObject(items + [stream])
    writer.mark_update(page_ref)
    out = BytesIO()
    writer.write(out)
    report = verify_dossier(_copy(signed, tmp_path, out.getvalue()), trust_root=signed.pki.ca_cert)
    failed = _failed(report)
    assert "signature 'author' coverage" in failed
    assert "changed after signing" in failed["signature 'author' coverage"]


def test_wrong_trust_root_is_detected(signed: Signed, tmp_path: Path) -> None:
    other = ensure_dev_pki(tmp_path / "other-pki")
    report = verify_dossier(signed.pdf, trust_root=other.ca_cert)
    failed = _failed(report)
    assert "signature 'author' trusted" in failed and "does not chain" in failed["signature 'author' trusted"]


def test_different_model_file_is_detected(signed: Signed, tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes((signed.root / "models" / "model.onnx").read_bytes() + b"\0")
    failed = _failed(verify_dossier(signed.pdf, trust_root=signed.pki.ca_cert, model=model))
    assert list(failed) == ["model file"] and "differs from" in failed["model file"]


def test_missing_key_file_and_wrong_passphrase_are_clear_errors(signed: Signed, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="signing key file not found"):
        load_signer(tmp_path / "nope.p12", None)
    key, cert, cas = pkcs12.load_key_and_certificates(signed.pki.signer_p12.read_bytes(), signed.pki.passphrase())
    encrypted = tmp_path / "prod.p12"
    encrypted.write_bytes(pkcs12.serialize_key_and_certificates(
        b"prod", key, cert, cas, serialization.BestAvailableEncryption(b"right passphrase")))
    with pytest.raises(InputError, match="wrong passphrase.*SECRET_VAR"):
        load_signer(encrypted, b"wrong", "SECRET_VAR")
    with pytest.raises(InputError, match="no passphrase was given"):
        load_signer(encrypted, None, "SECRET_VAR")
    assert load_signer(encrypted, b"right passphrase") is not None


def test_cli_sign_adds_an_approval_and_all_signatures_validate(signed: Signed, tmp_path: Path, monkeypatch, capsys) -> None:
    pdf = _copy(signed, tmp_path)
    p12 = issue_signer(signed.pki, "Dr. Jane Roe", tmp_path / "qa.p12", b"qa-secret")
    monkeypatch.setenv("QA_PASS", "qa-secret")
    monkeypatch.chdir(signed.root)  # the development CA of a development dossier
    assert cli(["sign", str(pdf), "--field", "quality", "--key", str(p12), "--passphrase-env", "QA_PASS",
                "--name", "Dr. Jane Roe"]) == 0
    assert "(Quality assurance: Review: the evidence is complete and traceable)" in capsys.readouterr().err
    report = verify_dossier(pdf, trust_root=signed.pki.ca_cert)
    assert report.ok, _failed(report)
    assert sum(1 for c in report.checks if c.name.endswith("intact")) == 2
    assert empty_signature_fields(pdf.read_bytes()) == ["regulatory", "clinical"]
    assert "qa-secret" not in capsys.readouterr().err
    assert cli(["verify", str(pdf), "--trust-root", str(signed.pki.ca_cert)]) == 3  # development PKI
    assert capsys.readouterr().out.splitlines()[-1].startswith("DEVELOPMENT: AUTHOR-SIGNED, 1/3 APPROVALS")
    if shutil.which("pdfsig"):
        out = subprocess.run(["pdfsig", str(pdf)], capture_output=True, text=True).stdout
        assert out.count("Signature is Valid.") == 2
    assert cli(["sign", str(pdf), "--field", "quality", "--key", str(p12), "--passphrase-env", "QA_PASS"]) == 2
    assert "already signed" in capsys.readouterr().err
    assert cli(["sign", str(pdf), "--field", "clinical", "--key", str(p12), "--passphrase-env", "QA_PASS"]) == 2
    assert "already signed field 'quality'" in capsys.readouterr().err  # one certificate, one role
    assert cli(["sign", str(pdf), "--field", "nosuch", "--key", str(p12), "--passphrase-env", "QA_PASS"]) == 2
    assert "no approval field 'nosuch'" in capsys.readouterr().err
    monkeypatch.setenv("QA_PASS", "wrong")
    assert cli(["sign", str(pdf), "--field", "clinical", "--key", str(p12), "--passphrase-env", "QA_PASS"]) == 2
    assert "wrong passphrase" in capsys.readouterr().err


def test_cli_verify_exit_codes(signed: Signed, tmp_path: Path, capsys) -> None:
    root = str(signed.pki.ca_cert)
    assert cli(["verify", str(signed.pdf), "--trust-root", root]) == 3
    assert capsys.readouterr().out.splitlines()[-1].startswith("DEVELOPMENT: AUTHOR-SIGNED, 0/3 APPROVALS")
    assert cli(["verify", str(tmp_path / "missing.pdf"), "--trust-root", root]) == 2
    other = tmp_path / "other.onnx"
    other.write_bytes(b"not the model")
    assert cli(["verify", str(signed.pdf), "--trust-root", root, "--model", str(other)]) == 1
    assert "[FAIL] model file" in capsys.readouterr().out
    garbage = tmp_path / "root.pem"
    garbage.write_text("nonsense")
    assert cli(["verify", str(signed.pdf), "--trust-root", str(garbage)]) == 2
    assert cli(["verify", str(signed.pdf), "--trust-root", root, "--require-approvals"]) == 1
    assert "approvals required, unsigned: clinical, quality, regulatory" in capsys.readouterr().out


def _approver(signed: Signed, tmp_path: Path, name: str = "Dr. A"):
    return load_signer(issue_signer(signed.pki, name, tmp_path / f"{name}.p12", b"pw"), b"pw")


def _clinical(signed: Signed) -> Manifestation:
    role = signed.built.roles["clinical"]
    return Manifestation("Dr. A", role["role"], role["meaning"])


def test_approval_with_sign_field_keeps_author_valid(signed: Signed, tmp_path: Path) -> None:
    data = sign_field(signed.pdf.read_bytes(), "clinical", _approver(signed, tmp_path), _clinical(signed))
    report = verify_dossier(_copy(signed, tmp_path, data), trust_root=signed.pki.ca_cert)
    assert report.ok, _failed(report)
    coverage = {c.name: c.detail for c in report.checks if c.name.endswith("coverage")}
    assert "form_filling" in coverage["signature 'author' coverage"]
    assert "whole file" in coverage["signature 'clinical' coverage"]


def test_dev_pki_certificates_and_reuse(tmp_path: Path) -> None:
    pki = ensure_dev_pki(tmp_path / "pki", passphrase_env="NO_SUCH_VARIABLE_SET")
    first = (pki.ca_cert.read_bytes(), pki.signer_p12.read_bytes())
    assert ensure_dev_pki(tmp_path / "pki", passphrase_env="NO_SUCH_VARIABLE_SET") == pki
    assert (pki.ca_cert.read_bytes(), pki.signer_p12.read_bytes()) == first
    ca = x509.load_pem_x509_certificate(first[0])
    with pytest.raises(ValueError):  # encrypted: the passphrase is needed
        pkcs12.load_key_and_certificates(first[1], None)
    assert pki.passphrase_file.stat().st_mode & 0o077 == 0 and len(pki.passphrase()) >= 32
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    _, cert, _ = pkcs12.load_key_and_certificates(first[1], pki.passphrase())
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.content_commitment and not usage.key_cert_sign
    assert cert.issuer == ca.subject
    assert (pki.folder / "ca-key.pem").stat().st_mode & 0o077 == 0


def test_bytes_appended_after_the_last_signature_fail_verify(signed: Signed, tmp_path: Path) -> None:
    data = signed.pdf.read_bytes() + b"\n% unsigned words appended after %%EOF\n1 0 obj (x) endobj\n"
    report = verify_dossier(_copy(signed, tmp_path, data), trust_root=signed.pki.ca_cert)
    assert not report.ok
    assert "signed by nobody" in _failed(report)["nothing after the last signature"]
    trailing_newlines = verify_dossier(_copy(signed, tmp_path, signed.pdf.read_bytes() + b"\n\n"), trust_root=signed.pki.ca_cert)
    assert trailing_newlines.ok, _failed(trailing_newlines)


def test_sign_refuses_an_approval_on_a_tampered_dossier(signed: Signed, tmp_path: Path) -> None:
    data = bytearray(signed.pdf.read_bytes())
    position = data.find(b"stream", 2000) + 40
    data[position] ^= 0x01
    signer = _approver(signed, tmp_path)
    with pytest.raises(InputError, match="signatures do not hold.*not intact.*refusing to add an approval"):
        sign_field(bytes(data), "quality", signer, Manifestation("Dr. A", "Quality", "Review"))
    with pytest.raises(InputError, match="bytes follow the last signed revision"):
        sign_field(signed.pdf.read_bytes() + b"% appended\n", "quality", signer, Manifestation("Dr. A", "Quality", "Review"))


def test_expired_or_not_yet_valid_signing_certificates_are_refused(tmp_path: Path) -> None:
    import datetime as dt

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Expired Signer")])
    now = dt.datetime.now(dt.timezone.utc)
    for start, end, message in ((now - dt.timedelta(days=30), now - dt.timedelta(days=1), "expired on"),
                                (now + dt.timedelta(days=1), now + dt.timedelta(days=30), "valid only from")):
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
                .sign(key, hashes.SHA256()))
        p12 = tmp_path / "signer.p12"
        p12.write_bytes(pkcs12.serialize_key_and_certificates(b"s", key, cert, None, serialization.NoEncryption()))
        with pytest.raises(InputError, match=message):
            load_signer(p12, None)


def test_a_changed_byte_in_the_signature_padding_fails_verify(signed: Signed, tmp_path: Path) -> None:
    """/Contents is padded with zeros outside the signed byte range; pyHanko ignores bytes after the CMS object."""
    import re

    data = signed.pdf.read_bytes()
    start, end = re.search(rb"/Contents <([0-9a-fA-F]+)>", data).span(1)
    assert data[end - 10:end] == b"0" * 10
    tampered = data[:end - 10] + b"1" + data[end - 9:]
    report = verify_dossier(_copy(signed, tmp_path, tampered), trust_root=signed.pki.ca_cert)
    assert not report.ok and "beyond the CMS object" in _failed(report)["signature 'author' contents"]
