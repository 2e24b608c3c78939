"""params dossier.require_approvals (submission profiles): the verdict stage fails until every approval is signed and
the dossier verifies against the production trust root."""
from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization

from certification.cli import main as cli
from pipeline import verdict
from support.signed_dossier import APPROVALS, build_and_sign_with, make_test_ca


def _params(root: Path, require: bool, trust_root: Path) -> None:
    (root / "params.yaml").write_text(f"dossier:\n  require_approvals: {'true' if require else 'false'}\n"
                                      f"  trust_root: {trust_root}\n")


def test_require_approvals_fails_the_verdict_until_all_are_signed(tmp_path: Path, monkeypatch, capsys) -> None:
    ca = make_test_ca(tmp_path / "ca")
    author = ca.issue("Pipeline Service Account", b"pw")
    signed = build_and_sign_with(tmp_path / "run", author, b"pw", ca.cert.public_bytes(serialization.Encoding.DER))
    monkeypatch.chdir(signed.root)
    _params(signed.root, False, ca.ca_pem)
    assert verdict.approvals_exit() == 0
    _params(signed.root, True, ca.ca_pem)
    assert verdict.approvals_exit() == 1
    assert "AUTHOR-SIGNED, 0/3 APPROVALS; approvals required" in capsys.readouterr().out
    monkeypatch.setenv("APPROVER_PW", "pw")
    for i, field in enumerate(APPROVALS):
        assert cli(["sign", "dossier/dossier.pdf", "--field", field, "--key", str(ca.issue(f"Approver {i}", b"pw")),
                    "--passphrase-env", "APPROVER_PW", "--trust-root", str(ca.ca_pem)]) == 0
    assert verdict.approvals_exit() == 0
    assert "VERIFIED: AUTHOR-SIGNED, 3/3 APPROVALS" in capsys.readouterr().out


def test_require_approvals_rejects_a_development_dossier(tmp_path: Path, monkeypatch, capsys) -> None:
    from support.signed_dossier import build_and_sign

    signed = build_and_sign(tmp_path / "dev", accepted=True)
    monkeypatch.chdir(signed.root)
    (signed.root / "params.yaml").write_text("dossier:\n  require_approvals: true\n  trust_root: ''\n")
    assert verdict.approvals_exit() == 1
    assert "NOT VERIFIED" in capsys.readouterr().out
