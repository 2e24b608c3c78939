"""Approvals and signer identity (21 CFR 11.50/11.70/11.100): the printed name is the certificate's, the meaning is
the template's, one certificate signs one role, approvals need a verifying document, and verify reports the state."""
from __future__ import annotations

from io import BytesIO
from pathlib import Path

import pytest
from pyhanko.sign import signers
from pyhanko.sign.fields import SigSeedSubFilter

from certification.cli import main as cli
from certification.dossier.verify import EXIT_DEVELOPMENT, EXIT_NOT_VERIFIED, EXIT_VERIFIED, verify_dossier
from certification.errors import InputError
from certification.signing.devpki import issue_signer
from certification.signing.keys import load_signer
from certification.signing.sign import Manifestation, sign_field
from support.signed_dossier import APPROVALS, Signed, LocalCa, build_and_sign, build_and_sign_with, make_test_ca


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Signed:
    return build_and_sign(tmp_path_factory.mktemp("approvals"), accepted=True)


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> tuple[Signed, LocalCa]:
    """A dossier signed by a (test) production CA's key: the only kind that can reach VERIFIED."""
    root = tmp_path_factory.mktemp("production")
    ca = make_test_ca(root / "ca")
    author = ca.issue("Pipeline Service Account", b"author-pw")
    from cryptography.hazmat.primitives import serialization

    der = ca.cert.public_bytes(serialization.Encoding.DER)
    return build_and_sign_with(root, author, b"author-pw", der), ca


def _failed(report) -> dict[str, str]:
    return {c.name: c.detail for c in report.checks if not c.passed}


def _sign(pdf: Path, field: str, p12: Path, env: str, *extra: str) -> int:
    return cli(["sign", str(pdf), "--field", field, "--key", str(p12), "--passphrase-env", env, *extra])


def test_production_dossier_reports_approvals_and_requires_them(production, tmp_path: Path, monkeypatch, capsys) -> None:
    signed, ca = production
    pdf = tmp_path / "dossier.pdf"
    pdf.write_bytes(signed.pdf.read_bytes())
    root = str(ca.ca_pem)
    assert cli(["verify", str(pdf), "--trust-root", root]) == EXIT_VERIFIED
    assert capsys.readouterr().out.splitlines()[-1] == "VERIFIED: AUTHOR-SIGNED, 0/3 APPROVALS"
    assert cli(["verify", str(pdf), "--trust-root", root, "--require-approvals"]) == EXIT_NOT_VERIFIED
    monkeypatch.setenv("APPROVER_PW", "pw")
    for i, field in enumerate(APPROVALS):
        p12 = ca.issue(f"Dr. Approver {i}", b"pw")
        assert _sign(pdf, field, p12, "APPROVER_PW", "--trust-root", root) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert cli(["verify", str(pdf), "--trust-root", root, "--require-approvals"]) == EXIT_VERIFIED
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == "VERIFIED: AUTHOR-SIGNED, 3/3 APPROVALS", out
    assert "signature 'quality': Dr. Approver 0, PAdES B-B" in out


def test_development_dossier_is_its_own_state_and_exit_code(signed: Signed, monkeypatch, capsys) -> None:
    monkeypatch.chdir(signed.root)
    assert cli(["verify", str(signed.pdf)]) == EXIT_DEVELOPMENT == 3
    out = capsys.readouterr().out
    assert out.splitlines()[-1].startswith("DEVELOPMENT: AUTHOR-SIGNED, 0/3 APPROVALS")
    assert "VERIFIED:" not in out and "without --trust-root nothing is trusted" in out
    # with the development CA given explicitly it is still DEVELOPMENT, never VERIFIED
    assert cli(["verify", str(signed.pdf), "--trust-root", str(signed.pki.ca_cert)]) == EXIT_DEVELOPMENT


def test_name_that_disagrees_with_the_certificate_is_refused(signed: Signed, tmp_path: Path, monkeypatch, capsys) -> None:
    pdf = tmp_path / "dossier.pdf"
    pdf.write_bytes(signed.pdf.read_bytes())
    p12 = issue_signer(signed.pki, "Dr. Jane Roe", tmp_path / "qa.p12", b"pw")
    monkeypatch.setenv("PW", "pw")
    monkeypatch.chdir(signed.root)
    before = pdf.read_bytes()
    assert _sign(pdf, "quality", p12, "PW", "--name", "Dr. Somebody Else") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "differs from the signing certificate's common name 'Dr. Jane Roe'" in err[0]
    assert pdf.read_bytes() == before
    with pytest.raises(InputError, match="differs from the signing certificate's common name"):
        role = signed.built.roles["quality"]
        sign_field(before, "quality", load_signer(p12, b"pw"), Manifestation("Free Text", role["role"], role["meaning"]))


@pytest.mark.parametrize("option,value", [("--meaning", "Rejected"), ("--role", "Chief executive")])
def test_meaning_and_role_are_fixed_by_the_template(signed: Signed, tmp_path: Path, monkeypatch, capsys,
                                                    option: str, value: str) -> None:
    pdf = tmp_path / "dossier.pdf"
    pdf.write_bytes(signed.pdf.read_bytes())
    p12 = issue_signer(signed.pki, "Dr. Jane Roe", tmp_path / "qa.p12", b"pw")
    monkeypatch.setenv("PW", "pw")
    monkeypatch.chdir(signed.root)
    assert _sign(pdf, "quality", p12, "PW", option, value) == 2
    err = capsys.readouterr().err
    assert f"{option} '{value}' differs from the" in err and "the template fixes for field 'quality'" in err
    role = signed.built.roles["quality"]
    assert _sign(pdf, "quality", p12, "PW", "--meaning", role["meaning"], "--role", role["role"]) == 0


def test_verify_flags_a_meaning_the_template_does_not_give(signed: Signed, tmp_path: Path) -> None:
    """A signature made outside smoothcert sign, with 'Rejected' as its meaning, fails verify."""
    signer = load_signer(issue_signer(signed.pki, "Dr. Jane Roe", tmp_path / "qa.p12", b"pw"), b"pw")
    data = sign_field(signed.pdf.read_bytes(), "quality", signer, Manifestation("Dr. Jane Roe", "Quality assurance", "Rejected"))
    pdf = tmp_path / "dossier.pdf"
    pdf.write_bytes(data)
    failed = _failed(verify_dossier(pdf, trust_root=signed.pki.ca_cert))
    assert list(failed) == ["signature 'quality' role"] and "differs from the template's" in failed["signature 'quality' role"]


def test_one_certificate_two_roles_is_refused_by_sign_and_flagged_by_verify(signed: Signed, tmp_path: Path) -> None:
    author = signed.pki.signer()
    role = signed.built.roles["clinical"]
    manifest = Manifestation("smoothcert pipeline (development key)", role["role"], role["meaning"])
    with pytest.raises(InputError, match="already signed field 'author'; one certificate signs one role"):
        sign_field(signed.pdf.read_bytes(), "clinical", author, manifest)
    # the same signature made directly with pyHanko (as a careless tool would) is a failed check
    from certification.signing.sign import _writer

    meta = signers.PdfSignatureMetadata(field_name="clinical", subfilter=SigSeedSubFilter.PADES, md_algorithm="sha256",
                                        reason=f"{role['meaning']} ({role['role']})", name=manifest.name)
    out = BytesIO()
    signers.PdfSigner(meta, signer=author).sign_pdf(_writer(signed.pdf.read_bytes(), keep_metadata=True), output=out,
                                                   existing_fields_only=True)
    pdf = tmp_path / "dossier.pdf"
    pdf.write_bytes(out.getvalue())
    failed = _failed(verify_dossier(pdf, trust_root=signed.pki.ca_cert))
    assert "signature 'clinical' distinct signer" in failed
    assert "also signed 'author'" in failed["signature 'clinical' distinct signer"]


def test_sign_refuses_a_dossier_that_does_not_verify_against_the_root(production, tmp_path: Path, monkeypatch,
                                                                       capsys) -> None:
    signed, ca = production
    other = make_test_ca(tmp_path / "other", "Some Other Root CA")
    p12 = ca.issue("Dr. Careful", b"pw")
    monkeypatch.setenv("PW", "pw")
    pdf = tmp_path / "dossier.pdf"
    pdf.write_bytes(signed.pdf.read_bytes())
    assert _sign(pdf, "quality", p12, "PW", "--trust-root", str(other.ca_pem)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not verify (signature 'author' trusted" in err[0] and "trust anchor)" in err[0]
    assert _sign(pdf, "quality", p12, "PW") == 2  # production dossier, no root given
    assert "--trust-root" in capsys.readouterr().err
    assert pdf.read_bytes() == signed.pdf.read_bytes()


def test_a_second_certificate_for_the_same_key_is_still_the_same_signer(signed: Signed, tmp_path: Path) -> None:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.serialization import pkcs12
    from cryptography.x509.oid import NameOID

    key, _, cas = pkcs12.load_key_and_certificates(signed.pki.signer_p12.read_bytes(), signed.pki.passphrase())
    ca_key = serialization.load_pem_private_key((signed.pki.folder / "ca-key.pem").read_bytes(), None)
    ca = signed.pki.ca_certificate()
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Dr. Same Key")]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=5))
            .sign(ca_key, hashes.SHA256()))
    p12 = tmp_path / "same.p12"
    p12.write_bytes(pkcs12.serialize_key_and_certificates(b"s", key, cert, [ca], serialization.BestAvailableEncryption(b"pw")))
    role = signed.built.roles["clinical"]
    with pytest.raises(InputError, match="already signed field 'author'"):
        sign_field(signed.pdf.read_bytes(), "clinical", load_signer(p12, b"pw"),
                   Manifestation("Dr. Same Key", role["role"], role["meaning"]))
