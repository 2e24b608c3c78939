"""The default protocol accepts the default model and rejects one trained without noise augmentation.

Both models are trained by the real stages on the default synthetic data and default training params (with
``train.portable_kernels`` off: the same procedure on this CPU's fast kernels, 4x quicker), then
certified at the default sigma on the default test subset with fewer estimation samples (n = 2000 instead of
10,000, which can only lower radii, so an ACCEPT here implies one at full n for the same examples), and gated
with the default protocol from params.yaml.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support import REPO

REPO_ROOT = REPO
STAGES = ("data", "train", "export", "protocol", "certify", "gate")

pytestmark = pytest.mark.slow


def _run_pipeline(root: Path, params: dict, stages: tuple[str, ...]) -> None:
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "SMOOTHCERT_TRACKING": "off", "PYTHONWARNINGS": "ignore"}
    for stage in stages:
        done = subprocess.run([sys.executable, "-m", f"pipeline.{stage}"], cwd=root, env=env,
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{stage}: {done.stderr[-2000:]}"


def _verdict(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SMOOTHCERT_TRACKING": "off", "SMOOTHCERT_FAIL_ON_REJECT": "1"}  # CI's switch: exit 1 on REJECT
    return subprocess.run([sys.executable, "-m", "pipeline.verdict"], cwd=root, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("calibration")
    for name in ("pipeline", "certification"):
        shutil.copytree(REPO_ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["certify"]["n"] = 2000
    params["train"]["portable_kernels"] = False
    # dossier/evidence.json is a dependency of the verdict stage in dvc.yaml, not read by it
    _run_pipeline(root, params, STAGES)
    return root, params


def test_default_model_is_accepted(workspace: tuple[Path, dict]) -> None:
    root, _ = workspace
    gate = json.loads((root / "metrics/gate.json").read_text())
    assert gate["verdict"] == "ACCEPT", gate["failed"]
    done = _verdict(root)
    assert done.returncode == 0, done.stdout + done.stderr


def test_model_trained_without_noise_is_rejected(workspace: tuple[Path, dict]) -> None:
    root, params = workspace
    params = json.loads(json.dumps(params))
    params["train"]["sigma"] = 0.0
    params["certify"]["sigma"] = 0.25  # the protocol's smoothing noise; certify.sigma null would follow train.sigma
    _run_pipeline(root, params, STAGES[1:])
    gate = json.loads((root / "metrics/gate.json").read_text())
    assert gate["verdict"] == "REJECT"
    assert "certified_accuracy" in gate["failed"]
    done = _verdict(root)
    assert done.returncode == 1
    last_lines = done.stdout.strip().splitlines()[-len(gate["failed"]):] + done.stderr.strip().splitlines()
    for name in gate["failed"]:
        assert any(name in line and "REJECTED" in line for line in last_lines), (name, done.stdout, done.stderr)
