"""The dossier stage signs with the production key named by SMOOTHCERT_SIGNING_KEY (CI's secret), never a params path."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from certification.dossier.verify import VERIFIED, verify_dossier
from support.dossier_outputs import make_outputs
from support.signed_dossier import APPROVALS, copy_templates, make_test_ca


@pytest.mark.slow
def test_the_signing_key_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_outputs(tmp_path / "run")
    copy_templates(root / "dossier_templates")
    ca = make_test_ca(tmp_path / "ca")
    key = ca.issue("Release Signing Service", b"ci-secret")
    (root / "params.yaml").write_text(yaml.safe_dump({"dossier": {
        "signing_key": "", "passphrase_env": "CI_KEY_PASSPHRASE", "approval_fields": APPROVALS, "tsa_url": "", "validation_data": "auto",
        "trust_root": str(ca.ca_pem), "require_approvals": False}}))
    monkeypatch.chdir(root)
    monkeypatch.setenv("SMOOTHCERT_TRACKING", "off")
    monkeypatch.setenv("SMOOTHCERT_SIGNING_KEY", str(key))
    monkeypatch.setenv("CI_KEY_PASSPHRASE", "ci-secret")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1764000000")
    from pipeline.dossier import main

    assert main() == 0
    report = verify_dossier(root / "dossier" / "dossier.pdf", trust_root=ca.ca_pem)
    assert report.state() == VERIFIED, [c.line() for c in report.failed()]
    assert not (root / ".smoothcert").exists()  # no development key was made
    assert "Release Signing Service" in (root / "dossier" / "evidence.json").read_text()
