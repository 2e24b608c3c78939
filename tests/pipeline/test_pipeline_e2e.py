"""End to end: a real `dvc repro` of the whole pipeline on tiny params in a temporary git clone.

Checks every stage's outputs, that a second `dvc repro` does nothing, that changing train.sigma re-runs
train and everything downstream only, and that the MLflow run exists in a temporary store.
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
BIN = Path(sys.executable).parent

TINY = {
    "data": {"image_size": 28, "n_train": 480, "n_val": 120, "n_test": 120},
    "train": {"epochs": 2, "batch_size": 64, "width": 8},
    "export": {"calibration_samples": 64, "parity_samples": 64},
    "validate": {"n0": 20, "n": 200, "alpha": 0.01, "max_examples": 12},
    "certify": {"n0": 20, "n": 200, "alpha": 0.01, "max_examples": 12},
    "runtime": {"certify_batch_size": 100},
    "evaluate": {"max_examples": 8, "predict_n": 40, "attack_examples": 4, "attack_steps": 2, "attack_samples": 4},
    "gate": {"min_certified_accuracy_lower": 0.0, "min_malignant_recall_lower": 0.0, "max_abstention_rate": 1.0,
             "min_clean_accuracy": 0.0},
}

pytestmark = pytest.mark.slow


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def _source_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO_ROOT,
                            capture_output=True, text=True, check=True).stdout.split("\n")
    skip = ("data/", "models/", "metrics/", "results/", "plots/", "dossier/", "dvc.lock")
    return [f for f in listed if f and not f.startswith(skip) and (REPO_ROOT / f).is_file()]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("clone") / "repo"
    for rel in _source_files():
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / rel, dest)
    params = yaml.safe_load((root / "params.yaml").read_text())
    for section, values in TINY.items():
        params[section].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    store = root.parent / "mlflow-store"
    env = dict(os.environ)
    env.update({
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}",
        "DVC_NO_ANALYTICS": "1", "SMOOTHCERT_TRACKING": "on",
        "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
    })
    env.pop("PYTHONPATH", None)
    store.mkdir()
    for cmd in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"], ["git", "commit", "-q", "-m", "base"]):
        subprocess.run(cmd, cwd=root, env=env, check=True, capture_output=True)
    first = _run([str(BIN / "dvc"), "repro"], root, env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    return root, env


def test_every_stage_wrote_its_outputs(project: tuple[Path, dict[str, str]]) -> None:
    root, _ = project
    for rel in ["data/train.npz", "data/val.npz", "data/test.npz", "data/datasheet.json", "models/model.pt",
                "metrics/train.json", "plots/train_history.csv", "models/model.onnx", "models/model.json",
                "results/certify.jsonl", "results/certify.tsv", "metrics/certify.json", "metrics/evaluate.json",
                "metrics/gate.json", "dossier/evidence.json", "dossier/dossier.pdf", "models/smoothed.onnx",
                "models/model.onnx.p7s", "models/smoothed.onnx.p7s", "models/smoothed.json"]:
        assert (root / rel).is_file(), rel
    model = json.loads((root / "models/model.json").read_text())
    rows = [json.loads(line) for line in (root / "results/certify.jsonl").read_text().splitlines()]
    assert len(rows) == TINY["certify"]["max_examples"]
    assert all(r["n"] == TINY["certify"]["n"] and r["sigma"] == 0.25 for r in rows)
    gate = json.loads((root / "metrics/gate.json").read_text())
    assert gate["verdict"] == "ACCEPT" and gate["model_sha256"] == model["sha256"]
    assert (root / "dossier/dossier.pdf").read_bytes().startswith(b"%PDF")


def test_second_repro_does_nothing(project: tuple[Path, dict[str, str]]) -> None:
    root, env = project
    again = _run([str(BIN / "dvc"), "repro"], root, env)
    assert again.returncode == 0, again.stderr
    assert "Data and pipelines are up to date" in again.stdout + again.stderr
    status = _run([str(BIN / "dvc"), "status", "-q"], root, env)
    assert status.returncode == 0, status.stdout


def test_release_then_fresh_clone_pulls_the_certified_artifacts(project: tuple[Path, dict[str, str]]) -> None:
    """The documented release step (`make release`: dvc push to the default remote beside the repository) lets a
    fresh clone `dvc pull` exactly the model and data the dossier names by hash, and audit them."""
    from certification.fileio import sha256_file

    root, env = project
    commit = _run(["git", "add", "-A"], root, env), _run(["git", "commit", "-q", "-m", "run"], root, env)
    assert all(c.returncode == 0 for c in commit), [c.stderr for c in commit]
    release = _run(["make", "--no-print-directory", "release", f"BIN={BIN}"], root, env)
    assert release.returncode == 0, release.stdout[-2000:] + release.stderr[-2000:]
    clone = root.parent / "auditor"
    assert _run(["git", "clone", "-q", str(root), str(clone)], root.parent, env).returncode == 0
    pulled = _run([str(BIN / "dvc"), "pull", "-q"], clone, env)
    assert pulled.returncode == 0, pulled.stderr[-2000:]
    evidence = json.loads((root / "dossier/evidence.json").read_text())
    assert sha256_file(clone / "models/model.onnx") == evidence["hashes"]["model_sha256"]
    for split in ("train", "val", "test"):
        assert sha256_file(clone / f"data/{split}.npz") == evidence["hashes"]["splits"][split]
    audit = _run([sys.executable, "-m", "certification.cli", "audit", str(root / "dossier/dossier.pdf"), "--model",
                  "models/model.onnx", "--data", "data/test.npz", "--examples", "4", "--trust-root",
                  str(root / ".smoothcert/dev-pki/ca.pem")], clone, env)
    assert audit.returncode == 0, audit.stdout[-2000:] + audit.stderr[-2000:]
    assert "all match exactly on a matching platform" in audit.stdout


def test_mlflow_run_exists_in_temporary_store(project: tuple[Path, dict[str, str]]) -> None:
    root, env = project
    import mlflow

    client = mlflow.tracking.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    experiments = client.search_experiments()
    runs = [r for e in experiments for r in client.search_runs([e.experiment_id])]
    assert len(runs) == 1, [r.info.run_id for r in runs]
    model = json.loads((root / "models/model.json").read_text())
    tags = runs[0].data.tags
    assert model["sha256"] in tags.values()
    assert any(k.startswith("certify") or "certified" in k for k in runs[0].data.metrics), runs[0].data.metrics


def test_changing_train_sigma_reruns_train_and_downstream_only(project: tuple[Path, dict[str, str]]) -> None:
    root, env = project
    run = _run([str(BIN / "dvc"), "exp", "run", "-S", "train.sigma=0.5"], root, env)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-3000:]
    assert "Stage 'data' didn't change, skipping" in out
    for stage in ("train", "export", "certify", "evaluate", "gate", "dossier"):
        assert f"Running stage '{stage}'" in out, stage
