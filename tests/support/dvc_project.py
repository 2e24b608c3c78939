"""A temporary git clone of the working tree for real `dvc` runs: source files, chosen params, optional outputs."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping

import yaml

from support import REPO

BIN = Path(sys.executable).parent
DVC = BIN / "dvc"
#: Pipeline outputs (gitignored or DVC-tracked), never copied as source.
OUTPUT_PREFIXES = ("data/", "models/", "metrics/", "results/", "plots/", "dossier/", "dvc.lock", "mlflow.db", "mlartifacts/")
#: Outputs of data..evaluate that a clone can reuse from the working tree (after `make repro`).
UPSTREAM_OUTPUTS = ("data", "models", "results/protocol.json", "results/test_access.json", "results/certify.jsonl",
                    "results/certify.tsv", "results/evaluate", "metrics", "plots")


def source_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True,
                            check=True).stdout.split("\n")
    return [f for f in listed if f and not f.startswith(OUTPUT_PREFIXES) and (REPO / f).is_file()]


def env_for(root: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", "DVC_NO_ANALYTICS": "1", "SMOOTHCERT_TRACKING": "on",
                "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
                "GIT_COMMITTER_EMAIL": "t@example.com", **extra})
    for key in ("PYTHONPATH", "MLFLOW_TRACKING_URI", "SMOOTHCERT_FAIL_ON_REJECT", "SMOOTHCERT_EXECUTION", "DVC_ROOT",
                "DVC_EXP_NAME"):
        env.pop(key, None)
    env.update(extra)
    return env


def run(args: list[str | Path], cwd: Path, env: Mapping[str, str], timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=cwd, env=dict(env), capture_output=True, text=True, timeout=timeout)


def make_clone(root: Path, params: Mapping[str, Mapping[str, Any]] | None = None) -> None:
    """Copy the source files to ``root``, update params.yaml sections with ``params``, `git init` and commit."""
    for rel in source_files():
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, dest)
    if params:
        document = yaml.safe_load((root / "params.yaml").read_text())
        for section, values in params.items():
            document.setdefault(section, {}).update(values)
        (root / "params.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    env = env_for(root)
    for cmd in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"], ["git", "commit", "-q", "-m", "base"]):
        subprocess.run(cmd, cwd=root, env=env, check=True, capture_output=True)


def upstream_outputs_available() -> bool:
    """True when the working tree holds the outputs of data..evaluate (a previous `dvc repro`)."""
    return all((REPO / rel).exists() for rel in UPSTREAM_OUTPUTS) and (REPO / "results/evaluate/subgroups.png").is_file()


def restore_upstream(root: Path, env: Mapping[str, str]) -> None:
    """Copy the working tree's outputs of data..evaluate (validate's too) into ``root`` and record them with `dvc commit` (as a
    `dvc pull` from a remote would restore them), so that only gate, dossier and verdict need to run."""
    for rel in UPSTREAM_OUTPUTS:
        source, dest = REPO / rel, root / rel
        if source.is_dir():
            shutil.copytree(source, dest, dirs_exist_ok=True)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest)
    validated = (root / "metrics/validation.json").is_file()  # else the first `dvc repro` runs validate (seconds)
    for stage in ("data", "train", "export", *(("validate",) if validated else ()), "protocol", "certify", "evaluate"):
        done = run([DVC, "commit", "-f", "-q", stage], root, env)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
