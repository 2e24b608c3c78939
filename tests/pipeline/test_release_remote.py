"""Release step: `make release` pushes DVC outputs to the default remote of the shipped .dvc/config, and a fresh
clone beside the repository gets the very same bytes back with `dvc pull`."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from certification.fileio import sha256_file

from support import REPO
BIN = Path(sys.executable).parent
DVC = BIN / "dvc"
STAGE = """stages:
  make_blob:
    cmd: python -c "import numpy as np; np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tofile('out/blob.bin')"
    outs:
      - out/blob.bin
"""

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not DVC.is_file() or shutil.which("git") is None or shutil.which("make") is None,
                       reason="needs dvc beside the Python interpreter, git and make"),
]


def _env() -> dict[str, str]:
    env = dict(os.environ, DVC_NO_ANALYTICS="1", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.org",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.org")
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def _run(*cmd: str | Path, cwd: Path) -> str:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_release_push_then_fresh_clone_pulls_same_bytes(tmp_path: Path) -> None:
    repo = tmp_path / "smoothcert"
    (repo / "out").mkdir(parents=True)
    _run("git", "init", "-q", cwd=repo)
    _run(DVC, "init", "-q", cwd=repo)
    shutil.copy(REPO / ".dvc" / "config", repo / ".dvc" / "config")  # the shipped remote configuration
    for name in ("Makefile", "requirements.lock", "pyproject.toml"):
        shutil.copy(REPO / name, repo / name)
    (repo / "dvc.yaml").write_text(STAGE)
    _run(DVC, "repro", "-q", cwd=repo)
    original = sha256_file(repo / "out" / "blob.bin")
    _run("git", "add", "-A", cwd=repo)
    _run("git", "commit", "-qm", "tiny pipeline", cwd=repo)

    _run("make", "--no-print-directory", "release", f"BIN={BIN}", cwd=repo)
    remote = tmp_path / "smoothcert-dvc-remote"  # default remote: a folder beside the repository
    assert remote.is_dir() and any(p.is_file() for p in remote.rglob("*"))

    clone = tmp_path / "auditor-clone"
    _run("git", "clone", "-q", repo, clone, cwd=tmp_path)
    assert not (clone / "out" / "blob.bin").exists()
    _run(DVC, "pull", "-q", cwd=clone)
    assert sha256_file(clone / "out" / "blob.bin") == original
    assert "up to date" in _run(DVC, "status", cwd=clone)
