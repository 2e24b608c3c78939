"""Trust, visible changes, timestamps, passphrases and bad input: what verify trusts, what it flags, how it fails."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from io import BytesIO
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

from certification.cli import main as cli
from certification.dossier.verify import EXIT_DEVELOPMENT, EXIT_NOT_VERIFIED, EXIT_VERIFIED, verify_dossier
from certification.errors import InputError
from certification.signing.devpki import ensure_dev_pki
from certification.signing.sign import Manifestation, sign_as_author, timestamper_for
from support import REPO
from support.local_tsa import local_tsa
from support.signed_dossier import APPROVALS, Signed, build_and_sign, build_and_sign_with, make_test_ca


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Signed:
    return build_and_sign(tmp_path_factory.mktemp("trust"), accepted=True)


def _failed(report) -> dict[str, str]:
    return {c.name: c.detail for c in report.checks if not c.passed}


def test_resigned_from_a_fresh_development_pki_is_not_trusted(signed: Signed, tmp_path: Path, monkeypatch, capsys) -> None:
    """Someone re-signs the (unsigned, or edited) dossier with a development PKI of their own."""
    fresh = ensure_dev_pki(tmp_path / "fresh-pki")
    author = signed.built.roles["author"]
    forged = sign_as_author(signed.built.unsigned_pdf, fresh.signer(),
                            Manifestation("smoothcert pipeline (development key)", author["role"], author["meaning"]),
                            APPROVALS)
    pdf = tmp_path / "dossier.pdf"
    pdf.write_bytes(forged)
    # in the genuine repository (its development CA), without --trust-root: the chain does not hold
    monkeypatch.chdir(signed.root)
    assert cli(["verify", str(pdf)]) == EXIT_NOT_VERIFIED
    out = capsys.readouterr().out
    assert "[FAIL] signature 'author' trusted" in out and out.splitlines()[-1].startswith("NOT VERIFIED")
    # with the forger's own CA as the root: the printed trust anchor is not the root used
    failed = _failed(verify_dossier(pdf, trust_root=fresh.ca_cert))
    assert list(failed) == ["trust anchor"] and "a different root" in failed["trust anchor"]
    # a CA lying in the working directory is never a trust anchor: at best DEVELOPMENT
    monkeypatch.chdir(tmp_path)
    shutil.copytree(fresh.folder, tmp_path / ".smoothcert" / "dev-pki")
    assert cli(["verify", str(pdf)]) in (EXIT_NOT_VERIFIED, EXIT_DEVELOPMENT)
    assert "VERIFIED: " not in capsys.readouterr().out.replace("NOT VERIFIED: ", "")


def test_title_only_incremental_update_fails_verify(signed: Signed, tmp_path: Path) -> None:
    """pyHanko's diff policy treats a new /Info /Title as harmless; a reader sees it on the title bar."""
    writer = IncrementalPdfFileWriter(BytesIO(signed.pdf.read_bytes()), strict=False)
    info_ref = writer.trailer.raw_get("/Info")
    info = info_ref.get_object()
    info[generic.pdf_name("/Title")] = generic.TextStringObject("APPROVED FOR SALE")
    writer.mark_update(info_ref)
    out = BytesIO()
    writer.write(out)
    pdf = tmp_path / "dossier.pdf"
    pdf.write_bytes(out.getvalue())
    report = verify_dossier(pdf, trust_root=signed.pki.ca_cert)
    failed = _failed(report)
    assert "visible metadata unchanged" in failed, failed
    assert "info /Title changed by an incremental update after the last signature" in failed["visible metadata unchanged"]


def test_title_update_with_pypdf_fails_verify(signed: Signed, tmp_path: Path) -> None:
    from pypdf import PdfWriter

    writer = PdfWriter(str(signed.pdf), incremental=True)
    writer.add_metadata({"/Title": "Something else"})
    pdf = tmp_path / "dossier.pdf"
    with pdf.open("wb") as handle:
        writer.write(handle)
    failed = _failed(verify_dossier(pdf, trust_root=signed.pki.ca_cert))
    assert "info /Title changed" in failed.get("visible metadata unchanged", ""), failed


def test_timestamped_signatures_reach_pades_b_t(tmp_path: Path, capsys) -> None:
    ca = make_test_ca(tmp_path / "ca")
    tsa_key, tsa_cert = ca.issue_pair("Loopback TSA", tsa=True)
    author = ca.issue("Pipeline Service Account", b"pw")
    der = ca.cert.public_bytes(serialization.Encoding.DER)
    with local_tsa(tsa_key, tsa_cert, ca.cert) as url:
        signed = build_and_sign_with(tmp_path / "run", author, b"pw", der, timestamper=timestamper_for(url))
        os.environ["TSA_TEST_PW"] = "pw"
        try:
            assert cli(["sign", str(signed.pdf), "--field", "quality", "--key", str(ca.issue("Dr. Q", b"pw")),
                        "--passphrase-env", "TSA_TEST_PW", "--trust-root", str(ca.ca_pem), "--tsa-url", url]) == 0
        finally:
            del os.environ["TSA_TEST_PW"]
    capsys.readouterr()
    assert cli(["verify", str(signed.pdf), "--trust-root", str(ca.ca_pem)]) == EXIT_VERIFIED
    out = capsys.readouterr().out
    assert "signature 'author': Pipeline Service Account, PAdES B-T" in out
    assert "signature 'quality': Dr. Q, PAdES B-T" in out
    assert out.splitlines()[-1] == "VERIFIED: AUTHOR-SIGNED, 1/3 APPROVALS"
    # the timestamp counts only when the TSA chains to a trusted root
    other = make_test_ca(tmp_path / "other", "Unrelated Root")
    report = verify_dossier(signed.pdf, trust_root=ca.ca_pem)
    assert {s.field_name: s.pades_level for s in report.signatures} == {"author": "B-T", "quality": "B-T"}
    assert other.ca_pem.is_file()


def test_unreachable_tsa_is_one_line(signed: Signed) -> None:
    author = signed.built.roles["author"]
    with pytest.raises(InputError, match="time-stamping authority did not answer"):
        sign_as_author(signed.built.unsigned_pdf, signed.pki.signer(),
                       Manifestation("smoothcert pipeline (development key)", author["role"], author["meaning"]),
                       APPROVALS, timestamper=timestamper_for("http://127.0.0.1:9/"))
    with pytest.raises(InputError, match="must start with http"):
        timestamper_for("ftp://tsa.example")


def test_untimestamped_signature_is_b_b(signed: Signed) -> None:
    report = verify_dossier(signed.pdf, trust_root=signed.pki.ca_cert)
    assert [s.pades_level for s in report.signatures] == ["B-B"]


def test_dev_pki_passphrase_from_environment_and_migration(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DEV_PW_TEST", "from the environment")
    pki = ensure_dev_pki(tmp_path / "pki", passphrase_env="DEV_PW_TEST")
    assert not pki.passphrase_file.exists()
    pkcs12.load_key_and_certificates(pki.signer_p12.read_bytes(), b"from the environment")
    # an older, unencrypted PKCS#12 is re-encrypted in place (same key and certificate)
    old = tmp_path / "old"
    monkeypatch.delenv("DEV_PW_TEST")
    made = ensure_dev_pki(old, passphrase_env="DEV_PW_TEST")
    key, cert, cas = pkcs12.load_key_and_certificates(made.signer_p12.read_bytes(), made.passphrase())
    made.signer_p12.write_bytes(pkcs12.serialize_key_and_certificates(b"x", key, cert, cas, serialization.NoEncryption()))
    made.passphrase_file.unlink()
    again = ensure_dev_pki(old, passphrase_env="DEV_PW_TEST")
    with pytest.raises(ValueError):
        pkcs12.load_key_and_certificates(again.signer_p12.read_bytes(), None)
    _, cert2, _ = pkcs12.load_key_and_certificates(again.signer_p12.read_bytes(), again.passphrase())
    assert cert2 == cert and again.passphrase_file.stat().st_mode & 0o777 == 0o600
    assert again.signer_p12.stat().st_mode & 0o777 == 0o600


def _run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")]), **env}
    full.pop("SMOOTHCERT_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "certification.cli", *args], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow  # seven fresh interpreters, each importing the PDF stack: ~80 s on the shared 2-core VM
def test_bad_input_is_one_line_exit_2_without_library_noise(signed: Signed, tmp_path: Path) -> None:
    not_pdf = tmp_path / "notes.pdf"
    not_pdf.write_text("just text\n")
    pem_key = tmp_path / "key.pem"
    pem_key.write_bytes(signed.pki.ca_cert.read_bytes())
    p12 = tmp_path / "ok.p12"
    from certification.signing.devpki import issue_signer

    issue_signer(signed.pki, "Dr. Bad Input", p12, b"right")
    cases = [
        (["verify", str(not_pdf), "--trust-root", str(signed.pki.ca_cert)], "not a PDF"),
        (["verify", str(signed.pdf), "--trust-root", str(pem_key.with_name("missing.pem"))], "not found"),
        (["verify", str(signed.pdf), "--trust-root", str(p12)], "not a PEM or DER X.509 certificate"),
        (["sign", str(not_pdf), "--field", "quality", "--key", str(p12), "--passphrase-env", "GOOD_PW"], "not a PDF"),
        (["sign", str(signed.pdf), "--field", "quality", "--key", str(pem_key), "--passphrase-env", "BAD_PW"],
         "a PEM file, not a PKCS#12"),
        (["sign", str(signed.pdf), "--field", "quality", "--key", str(p12), "--passphrase-env", "BAD_PW"], "wrong passphrase"),
        (["sign", str(signed.pdf), "--field", "quality", "--key", str(p12), "--passphrase-env", "GOOD_PW",
          "--trust-root", str(ensure_dev_pki(tmp_path / "wrong-root").ca_cert), "--out", str(tmp_path / "o.pdf")],
         "does not verify"),
    ]
    for args, message in cases:
        done = _run(args, signed.root, BAD_PW="wrong", GOOD_PW="right")
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert len(lines) == 1 and message in lines[0], (args, done.stderr)
        assert "Traceback" not in done.stderr and "WARNING" not in done.stderr
    assert not (tmp_path / "o.pdf").exists()


def test_verify_help_documents_the_exit_codes(capsys) -> None:
    with pytest.raises(SystemExit):
        cli(["verify", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for code in ("0 VERIFIED", "3 DEVELOPMENT", "1 NOT VERIFIED", "2 bad input"):
        assert code in text


@pytest.mark.skipif(shutil.which("pdffonts") is None, reason="poppler-utils (pdffonts) not installed")
def test_stamp_font_is_embedded_and_indirect_after_sign(signed: Signed, tmp_path: Path, monkeypatch) -> None:
    from certification.signing.devpki import issue_signer

    pdf = tmp_path / "dossier.pdf"
    pdf.write_bytes(signed.pdf.read_bytes())
    monkeypatch.setenv("FONT_PW", "pw")
    monkeypatch.chdir(signed.root)
    p12 = issue_signer(signed.pki, "Dr. Font", tmp_path / "f.p12", b"pw")
    assert cli(["sign", str(pdf), "--field", "quality", "--key", str(p12), "--passphrase-env", "FONT_PW"]) == 0
    for tool in ("pdffonts", "pdfsig"):
        if shutil.which(tool) is None:
            continue
        done = subprocess.run([tool, str(pdf)], capture_output=True, text=True)
        assert "error" not in (done.stdout + done.stderr).lower(), (tool, done.stdout, done.stderr)
    if shutil.which("pdffonts") is None:
        return
    fonts = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True).stdout.splitlines()[2:]
    stamps = [line for line in fonts if "DejaVuSansMono-Identity-H" in line]  # one subset per signature stamp
    assert len(stamps) == 2 and all(" yes yes yes " in line and "[none]" not in line for line in fonts), fonts

