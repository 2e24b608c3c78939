"""MLflow tracking against a real sqlite store in tmp_path: one run per execution, stages append to it."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from certification.edge_cnn import build_model
from certification.fileio import sha256_file
from certification.onnx_export import export_onnx
from pipeline import mlflow_store, tracking


@pytest.fixture(scope="module")
def migrated_db(tmp_path_factory):
    """An empty, migrated MLflow sqlite store, created once and copied per test (migrations take seconds)."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def store(tmp_path, monkeypatch, migrated_db):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    (tmp_path / "store").mkdir()
    shutil.copyfile(migrated_db, tmp_path / "store" / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("SMOOTHCERT_TRACKING", raising=False)
    monkeypatch.delenv("SMOOTHCERT_EXECUTION", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "params.yaml").write_text("train:\n  sigma: 0.25\n")
    subprocess.run(["git", "add", "params.yaml"], cwd=tmp_path, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base"], cwd=tmp_path, check=True)
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def runs_of(client):
    experiment = client.get_experiment_by_name(mlflow_store.EXPERIMENT)
    return client.search_runs([experiment.experiment_id]) if experiment else []


def test_stages_append_to_one_run_with_tags_and_model(store, tmp_path):
    (tmp_path / "datasheet.json").write_text("{}\n")
    first = tracking.log_stage("data", {"seed": 7, "source": "synthetic"}, {"n_train": 40, "seconds": 1.5},
                               artifacts=[tmp_path / "datasheet.json"])
    second = tracking.log_stage("train", {"sigma": 0.25}, {"test": {"accuracy_clean": 0.9, "note": "text"}, "ok": True})
    model_path = tmp_path / "model.onnx"
    export_onnx(build_model({"num_classes": 4, "width": 2, "mean": [0.5] * 3, "std": [0.2] * 3}), model_path, (3, 28, 28), 18)
    third = tracking.log_stage("export", {"opset": 18}, {"parity": {"agreement": 1.0}}, onnx_path=model_path)
    assert first == second == third
    (run,) = runs_of(store)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    assert run.data.tags["smoothcert.git_commit"] == commit
    assert run.data.tags[tracking.EXECUTION_TAG] == tracking.execution_key()
    assert run.data.tags["smoothcert.model_sha256"] == sha256_file(model_path)
    assert {"smoothcert.stage.data", "smoothcert.stage.train", "smoothcert.stage.export"} <= set(run.data.tags)
    assert run.data.params["data.seed"] == "7" and run.data.params["train.sigma"] == "0.25"
    assert run.data.metrics["train.test.accuracy_clean"] == 0.9 and run.data.metrics["train.ok"] == 1.0
    assert run.data.metrics["data.n_train"] == 40 and "train.test.note" not in run.data.metrics
    assert [a.path for a in store.list_artifacts(run.info.run_id, "data")] == ["data/datasheet.json"]
    experiment = store.get_experiment_by_name(mlflow_store.EXPERIMENT)
    assert experiment.artifact_location == (tmp_path / "mlartifacts").as_uri()
    import mlflow

    mlflow.set_tracking_uri(tracking.tracking_uri())
    models = mlflow.search_logged_models(experiment_ids=[experiment.experiment_id], output_format="list")
    assert len(models) == 1 and models[0].source_run_id == run.info.run_id


def test_new_params_start_a_new_run_and_conflicts_are_kept(store, tmp_path, capsys):
    run_a = tracking.log_stage("train", {"sigma": 0.25}, {"x": 1})
    assert tracking.log_stage("train", {"sigma": 0.5}, {"x": 2}) == run_a  # same execution: first value kept
    assert "already logged" in capsys.readouterr().err
    assert store.get_run(run_a).data.tags["smoothcert.param_conflict.train.sigma"] == "0.5"
    (tmp_path / "params.yaml").write_text("train:\n  sigma: 0.5\n")
    run_b = tracking.log_stage("train", {"sigma": 0.5}, {"x": 3})
    assert run_b != run_a and len(runs_of(store)) == 2
    assert store.get_run(run_b).data.params["train.sigma"] == "0.5"


def test_execution_override_and_tracking_off(store, tmp_path, monkeypatch):
    monkeypatch.setenv("SMOOTHCERT_EXECUTION", "ci-build-42")
    run_id = tracking.log_stage("data", {}, {"n": 1})
    assert store.get_run(run_id).data.tags[tracking.EXECUTION_TAG] == "ci-build-42"
    monkeypatch.setenv("SMOOTHCERT_TRACKING", "off")
    assert tracking.log_stage("data", {}, {"n": 2}) is None
    assert len(runs_of(store)) == 1


def test_default_store_is_absolute_under_dvc_root(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "repo"))
    assert tracking.tracking_uri() == f"sqlite:///{tmp_path / 'repo' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert tracking.tracking_uri() == "http://tracking.example:5000"


def test_broken_store_is_a_one_line_input_error(store, tmp_path, monkeypatch):
    from certification.errors import InputError

    (tmp_path / "not-a-dir").write_text("a file where the store's folder should be\n")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'not-a-dir' / 'mlflow.db'}")
    with pytest.raises(InputError, match="SMOOTHCERT_TRACKING=off"):
        tracking.log_stage("data", {}, {"n": 1})


def test_importing_tracking_opts_out_of_telemetry(monkeypatch):
    import importlib

    monkeypatch.delenv("MLFLOW_DISABLE_TELEMETRY", raising=False)
    monkeypatch.delenv("DO_NOT_TRACK", raising=False)
    importlib.reload(tracking)
    assert tracking.os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true" and tracking.os.environ["DO_NOT_TRACK"] == "true"


def test_unreachable_tracking_server_fails_in_seconds(tmp_path):
    """A server that does not answer (a closed loopback port) gives the one-line error quickly, not after
    MLflow's default minutes of retries."""
    import os
    import subprocess
    import sys

    from support import REPO

    code = "from pipeline import tracking; tracking.log_stage('data', {}, {'n': 1})"
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": "http://127.0.0.1:9", "SMOOTHCERT_TRACKING": "on"}
    for key in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"):
        env.pop(key, None)
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=90)
    assert done.returncode != 0 and "SMOOTHCERT_TRACKING=off" in done.stderr


def test_a_store_copied_from_another_checkout_is_refused(store, tmp_path, monkeypatch):
    """A repository copied with its mlflow.db must not write artifacts into the original checkout."""
    from certification.errors import InputError

    assert tracking.log_stage("data", {}, {"n": 1}) is not None  # creates the experiment for this checkout
    copy = tmp_path / "copy"
    copy.mkdir()
    monkeypatch.setenv("DVC_ROOT", str(copy))
    with pytest.raises(InputError, match="belongs to another checkout"):
        tracking.log_stage("data", {}, {"n": 1})


# --- the whole pipeline in one run, the model registry, a moved repository (real sqlite store) ---------------------

def _criterion(name: str, estimate: float, bound: float, threshold: float, kind: str = "lower"):
    from certification.gate import Criterion

    passed = bound >= threshold if kind == "lower" else bound <= threshold
    return Criterion(name=name, description=name, estimate=estimate, bound=bound, bound_kind=kind, threshold=threshold,
                     comparison=">=" if kind == "lower" else "<=", passed=passed, successes=1, trials=2,
                     bound_method="clopper-pearson")


def _verdict(model_sha256: str, threshold: float):
    from certification.gate import Verdict

    criteria = [_criterion("certified_accuracy", 0.8, 0.7, threshold), _criterion("certified_recall_melanoma", 0.7, 0.6, 0.3),
                _criterion("abstention_rate", 0.05, 0.1, 0.2, "upper"), _criterion("clean_accuracy", 0.9, 0.85, 0.75)]
    word = "ACCEPT" if all(c.passed for c in criteria) else "REJECT"
    return Verdict(verdict=word, mode="fixed", radius=0.25, protocol={"min_certified_accuracy_lower": threshold},
                   protocol_sha256=f"protocol-{threshold}", model_sha256=model_sha256, n_examples=2, alpha=0.001,
                   criteria=criteria)


def _pipeline_outputs(root, width: int = 2) -> str:
    """The files log_pipeline reads, written as the stages would (a real ONNX model); returns the model's sha256."""
    import json

    from pipeline import layout
    from pipeline.verdict import headline

    for folder in ("data", "models", "metrics", "plots", "dossier"):
        (root / folder).mkdir(exist_ok=True)
    export_onnx(build_model({"num_classes": 4, "width": width, "mean": [0.5] * 3, "std": [0.2] * 3}), root / layout.MODEL,
                (3, 28, 28), 18)
    splits = {}
    for name, path in tracking.SPLITS.items():
        (root / path).write_bytes(f"split {name}".encode())
        splits[name] = {"sha256": sha256_file(root / path), "n": 2}
    (root / layout.DATASHEET).write_text(json.dumps({"splits": splits}))
    (root / layout.TRAIN_HISTORY).write_text("epoch,train_loss,val_accuracy_clean,val_accuracy_noisy\n"
                                             "1,1.2,0.5,0.4\n2,0.9,0.7,0.6\n3,0.7,0.8,0.75\n")
    (root / layout.TRAIN_METRICS).write_text(json.dumps({"best": {"epoch": 3, "val_accuracy_noisy": 0.75}}))
    certify = {"params": {"sigma": 0.25, "n": 10000, "alpha": 0.001}, "average_certified_radius": 0.43,
               "model": {"sha256": sha256_file(root / layout.MODEL)}}
    (root / layout.CERTIFY_METRICS).write_text(json.dumps(certify))
    (root / layout.DOSSIER_SIGNED).write_bytes(b"%PDF-1.7 stand-in for the signed dossier\n")
    return sha256_file(root / layout.MODEL), certify, headline


def _write_headline(root, verdict, certify, headline) -> None:
    import json

    from pipeline import layout

    (root / layout.HEADLINE).write_text(json.dumps(headline(verdict, certify)))


def test_log_pipeline_completes_the_run_and_registers_one_version_per_model(store, tmp_path, monkeypatch):
    from pipeline import layout

    monkeypatch.setenv("DVC_EXP_NAME", "wide-sigma")
    model_sha, certify, headline = _pipeline_outputs(tmp_path)
    tracking.log_stage("certify", {"n": 10000}, {"clean_accuracy": 0.9})  # certify ran; data..export were cached
    accepted = _verdict(model_sha, 0.5)
    _write_headline(tmp_path, accepted, certify, headline)
    run_id = tracking.log_pipeline(accepted)
    run = store.get_run(run_id)
    assert run.info.run_name == "wide-sigma" and run.data.tags["smoothcert.dvc_experiment"] == "wide-sigma"
    assert run.data.tags["smoothcert.stage.certify"] == "done"
    assert all(run.data.tags[f"smoothcert.stage.{s}"] == "cached" for s in ("data", "train", "export", "evaluate", "gate"))
    assert run.data.metrics["train.best.val_accuracy_noisy"] == 0.75  # the cached train stage's numbers
    history = store.get_metric_history(run_id, "train.history.val_accuracy_noisy")
    assert [(m.step, m.value) for m in history] == [(1, 0.4), (2, 0.6), (3, 0.75)]
    datasets = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert set(datasets) == {"train.npz", "val.npz", "test.npz"}
    test_sha = sha256_file(tmp_path / layout.TEST_SPLIT)
    assert datasets["test.npz"].dataset.digest == test_sha[:32] and test_sha in datasets["test.npz"].dataset.source
    assert {t.key: t.value for t in datasets["test.npz"].tags}["mlflow.data.context"] == "test"
    assert {a.path for a in store.list_artifacts(run_id, "certificate")} >= {"certificate/dossier.pdf",
                                                                             "certificate/headline.json"}

    from mlflow.tracking import MlflowClient

    registry = MlflowClient(tracking_uri=tracking.tracking_uri(), registry_uri=tracking.tracking_uri())
    versions = registry.search_model_versions(f"name = '{tracking.REGISTERED_MODEL}'")
    assert len(versions) == 1
    version = versions[0]
    assert version.run_id == run_id and version.tags["smoothcert.model_sha256"] == model_sha
    assert version.tags["smoothcert.verdict"] == "ACCEPT" and version.tags["smoothcert.protocol_sha256"] == "protocol-0.5"
    assert version.tags["smoothcert.certificate.certified_accuracy_lower"] == "0.7"
    assert version.tags["smoothcert.artifact_role"] == "base-classifier"
    assert "base classifier" in version.description and "smoothed procedure" in version.description
    assert version.tags["smoothcert.dossier"] == f"runs:/{run_id}/certificate/dossier.pdf"
    assert registry.get_registered_model(tracking.REGISTERED_MODEL).aliases == {"certified": version.version}
    import onnx
    from urllib.parse import urlparse

    certified = registry.get_model_version_by_alias(tracking.REGISTERED_MODEL, "certified")
    folder = Path(urlparse(registry.get_model_version_download_uri(tracking.REGISTERED_MODEL, certified.version)).path)
    (onnx_file,) = folder.glob("*.onnx")
    assert sha256_file(onnx_file) == model_sha  # the registered artifact is the certified ONNX base classifier itself
    assert onnx.load(str(onnx_file)).graph.input[0].name

    # the same model judged again under a stricter protocol: same version, REJECT, no longer "certified"
    (tmp_path / "params.yaml").write_text("train:\n  sigma: 0.25\ngate:\n  strict: true\n")
    rejected = _verdict(model_sha, 0.9)
    _write_headline(tmp_path, rejected, certify, headline)
    tracking.log_pipeline(rejected)
    (again,) = registry.search_model_versions(f"name = '{tracking.REGISTERED_MODEL}'")
    assert again.version == version.version and again.tags["smoothcert.verdict"] == "REJECT"
    assert "certified" not in registry.get_registered_model(tracking.REGISTERED_MODEL).aliases

    # another model: a second version
    (tmp_path / "params.yaml").write_text("train:\n  sigma: 0.5\n")
    other_sha, certify, _ = _pipeline_outputs(tmp_path, width=3)
    other = _verdict(other_sha, 0.5)
    _write_headline(tmp_path, other, certify, headline)
    tracking.log_pipeline(other)
    versions = registry.search_model_versions(f"name = '{tracking.REGISTERED_MODEL}'")
    assert sorted(v.tags["smoothcert.model_sha256"] for v in versions) == sorted([model_sha, other_sha])


def test_the_repository_store_survives_moving_the_repository(tmp_path, monkeypatch, migrated_db):
    """mlflow.db inside the repository records absolute artifact locations; opened from the moved folder it points
    at the moved mlartifacts, and the run's artifacts are read from there."""
    from mlflow.tracking import MlflowClient

    original = tmp_path / "original"
    original.mkdir()
    shutil.copyfile(migrated_db, original / "mlflow.db")
    (original / "params.yaml").write_text("train:\n  sigma: 0.25\n")
    (original / "note.txt").write_text("artifact logged before the move\n")
    for key in ("MLFLOW_TRACKING_URI", "SMOOTHCERT_TRACKING", "SMOOTHCERT_EXECUTION"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("DVC_ROOT", str(original))
    monkeypatch.chdir(original)
    run_id = tracking.log_stage("data", {"seed": 1}, {"n": 1}, artifacts=[original / "note.txt"])
    moved = tmp_path / "elsewhere" / "repo"
    moved.parent.mkdir()
    shutil.copytree(original, moved)
    shutil.rmtree(original)
    monkeypatch.setenv("DVC_ROOT", str(moved))
    monkeypatch.chdir(moved)
    assert tracking.main() == 0  # `python -m pipeline.tracking`: opens the store, rebasing it
    client = MlflowClient(tracking_uri=f"sqlite:///{moved / 'mlflow.db'}")
    assert client.get_experiment_by_name(mlflow_store.EXPERIMENT).artifact_location == (moved / "mlartifacts").as_uri()
    local = client.download_artifacts(run_id, "data/note.txt", str(tmp_path / "download"))
    assert Path(local).read_text() == "artifact logged before the move\n"
    assert tracking.log_stage("data", {"seed": 1}, {"n": 2}) == run_id  # and it keeps appending there


def test_the_global_store_block_leaves_no_uri_pinned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After the block, a client made without a registry URI resolves it as before (from the environment): the
    block must not pin MLflow's globals to the URIs it resolved on entry."""
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    monkeypatch.setattr(tracking_utils, "_tracking_uri", None)  # unset, as in a fresh process
    monkeypatch.setattr(registry_utils, "_registry_uri", None)
    first, second = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", first)
    with mlflow_store.global_store(f"sqlite:///{tmp_path / 'stage.db'}"):
        pass
    monkeypatch.setenv("MLFLOW_TRACKING_URI", second)
    assert mlflow.get_tracking_uri() == second and mlflow.get_registry_uri() == second
