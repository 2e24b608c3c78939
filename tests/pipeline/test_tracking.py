"""MLflow tracking against a real sqlite store in tmp_path: one run per execution, stages append to it."""
from __future__ import annotations

import shutil
import subprocess

import pytest
import torch

from certification.edge_cnn import build_model
from certification.fileio import sha256_file
from certification.onnx_export import export_onnx
from pipeline import tracking


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
    experiment = client.get_experiment_by_name(tracking.EXPERIMENT)
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
    experiment = store.get_experiment_by_name(tracking.EXPERIMENT)
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
