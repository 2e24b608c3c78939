"""The Ray backend on a real local Ray (2 CPUs, started once: ``ray_cluster`` in conftest): 1 worker writes the
single-process run's files byte for byte (timing fields aside; 2 workers: tests/pipeline/test_certify_stage.py), a worker killed mid-run is restarted and its
task retried with nothing lost or duplicated, a task that keeps failing and an unreachable address stop with one
line, bad settings are refused in one line before anything starts, and neither starting Ray nor a run prints
Ray's logs on the terminal."""
from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from certification.certify_run import RunOptions, _run_header, certify_files
from certification.dataset_io import load_split
from certification.errors import InputError, ParameterError
from certification.records import json_line
from certification.ray_backend import ClusterError, RayPool, RaySettings, check_backend
from certification.smoothing import SmoothedClassifier
from support import REPO
from support.oracle import conv_onnx, write_split
from support.ray_cluster import LocalRay

N0, N, ALPHA, SEED, SIGMA = 20, 300, 0.01, 3, 0.25
OPTIONS = RunOptions(sigma=SIGMA, alpha=ALPHA, seed=SEED, batch_size=100, threads=1, noise_threads=1)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small CNN (3x8x8, 4 classes), a 12-example split and the single-process run's files (local.jsonl/.tsv)."""
    root = tmp_path_factory.mktemp("ray_project")
    conv_onnx(root / "model.onnx", (3, 8, 8), num_classes=4, seed=5)
    rng = np.random.default_rng(2)
    write_split(root / "test.npz", rng.integers(0, 256, size=(12, 8, 8, 3), dtype=np.uint8), rng.integers(0, 4, size=12))
    certify_files(root / "model.onnx", root / "test.npz", root / "local.jsonl", OPTIONS, N0, N, show_progress=False)
    return root


def _untimed_jsonl(path: Path) -> list[dict]:
    return [{**json.loads(line), "seconds": None} for line in path.read_text().splitlines()]


def _untimed_tsv(path: Path) -> list[list[str]]:
    return [line.split("\t")[:-1] for line in path.read_text().splitlines()]  # the last column is the time


def _check_ray_run(out: Path, project: Path, runtime: dict, workers: int) -> None:
    assert _untimed_jsonl(out) == _untimed_jsonl(project / "local.jsonl")
    assert _untimed_tsv(out.with_suffix(".tsv")) == _untimed_tsv(project / "local.tsv")
    assert not out.with_name(out.name + ".partial").exists()
    assert runtime["backend"] == "ray" and runtime["workers"] == workers and runtime["worker_restarts"] == 0
    assert runtime["cpus_per_worker"] == 2 // workers and runtime["provider"] == "CPUExecutionProvider"


def test_one_worker_writes_the_local_files(ray_cluster: LocalRay, project: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """One worker writes the local run's files, continuing the partial file of an interrupted local run (its first
    5 examples): the two backends share the resumable file."""
    assert ray_cluster.start_stderr == ""  # starting Ray printed nothing
    out = project / "ray_1.jsonl"
    classifier, split = SmoothedClassifier.from_onnx(project / "model.onnx", SIGMA), load_split(project / "test.npz")
    header = _run_header(classifier, split, np.arange(12), N0, N, ALPHA, SEED)
    local = (project / "local.jsonl").read_text().splitlines(keepends=True)
    out.with_name(out.name + ".partial").write_text(json_line({"header": header}) + "".join(local[:5]))
    outcome, _, _ = certify_files(project / "model.onnx", project / "test.npz", out, OPTIONS, N0, N, show_progress=False,
                                  ray=RaySettings(workers=1, examples_per_task=2))
    assert outcome.resumed == 5 and outcome.runtime is not None and outcome.runtime["tasks"] == 4
    assert outcome.runtime["intra_op_num_threads"] == 1
    _check_ray_run(out, project, outcome.runtime, 1)
    assert capfd.readouterr().err == ""  # nor did the run: Ray's and the workers' logs stay off the terminal


def test_lighting_certificates_on_ray_are_the_local_ones(ray_cluster: LocalRay, project: Path) -> None:
    """A lighting run (dc+ramps) on 2 Ray workers writes the local backend's rows (same noise streams, same
    covariance rebuilt in each worker), Mahalanobis radii included, and they differ from the isotropic rows."""
    from dataclasses import replace

    options = replace(OPTIONS, lighting_directions="dc+ramps", lighting_tau=0.05, max_examples=6)
    local, _, _ = certify_files(project / "model.onnx", project / "test.npz", project / "lit_local.jsonl", options, N0,
                                N, show_progress=False)
    ray_run, _, _ = certify_files(project / "model.onnx", project / "test.npz", project / "lit_ray.jsonl", options, N0,
                                  N, show_progress=False, ray=RaySettings(workers=2, examples_per_task=1))
    rows = _untimed_jsonl(project / "lit_ray.jsonl")
    assert rows == _untimed_jsonl(project / "lit_local.jsonl") and len(rows) == 6
    assert _untimed_tsv(project / "lit_ray.tsv") == _untimed_tsv(project / "lit_local.tsv")
    assert all("mahalanobis_radius" in row for row in rows) and ray_run.runtime["workers"] == 2
    isotropic = {row["index"]: row for row in _untimed_jsonl(project / "local.jsonl")}
    assert any(row["counts_estimation"] != isotropic[row["index"]]["counts_estimation"] for row in rows)


def test_the_command_line_builds_the_ray_settings() -> None:
    """``--backend ray [--ray-address A] [--workers W]`` (runs with 2 workers: the stage test, which uses the default)."""
    from certification.commands.certify import ray_settings

    assert ray_settings("local", None, None) is None
    assert ray_settings("ray", None, None) == RaySettings()
    assert ray_settings("ray", "10.0.0.5:6379", 4) == RaySettings(address="10.0.0.5:6379", workers=4)


def _project_inputs(project: Path) -> tuple[SmoothedClassifier, np.ndarray, np.ndarray]:
    classifier = SmoothedClassifier.from_onnx(project / "model.onnx", SIGMA, batch_size=100, threads=1, noise_threads=1)
    split = np.load(project / "test.npz")
    return classifier, split["images"].transpose(0, 3, 1, 2).astype(np.float32) / 255.0, split["labels"]


def test_a_killed_worker_is_restarted_and_its_task_retried(ray_cluster: LocalRay, project: Path) -> None:
    """SIGKILL of a worker's process while it holds a task: Ray restarts it and retries the task; every example
    comes back exactly once with the counts, prediction and radius of the single-process run."""
    classifier, images, labels = _project_inputs(project)
    expected = {row["index"]: row for row in _untimed_jsonl(project / "local.jsonl")}
    todo, seen, killed = np.arange(12, dtype=np.int64), [], None
    with RayPool(RaySettings(workers=1, examples_per_task=1, retries=1), classifier) as pool:
        for task in pool.certify(lambda part: images[part], labels, todo, N0, N, ALPHA, SEED):
            for result in task.results:
                seen.append(result.index)
                row = expected[result.index]
                assert (result.prediction, result.radius, result.n_a, result.p_lower, result.counts_selection,
                        result.counts_estimation) == (row["prediction"], row["radius"], row["n_a"], row["p_lower"],
                                                      row["counts_selection"], row["counts_estimation"])
            if killed is None:  # the worker was handed its next task before this result was passed on: kill it now
                killed = task.pid
                os.kill(killed, signal.SIGKILL)
        assert pool.restarts == 1
    assert sorted(seen) == todo.tolist()


def test_failed_tasks_stop_the_run_naming_their_examples(ray_cluster: LocalRay, project: Path) -> None:
    """A refusal by the engine (pixels outside [0, 1]) is reported with its task's examples and not retried; a task
    whose worker dies more often than ``retries`` allows stops the run in one line naming its examples."""
    classifier, images, labels = _project_inputs(project)
    todo, finished = np.arange(12, dtype=np.int64), []
    with RayPool(RaySettings(workers=1, examples_per_task=1, retries=0), classifier) as pool:
        bad = images.copy()
        bad[3] = 2.0
        with pytest.raises(InputError, match=r"^example 3: images must lie in \[0, 1\]"):
            list(pool.certify(lambda part: bad[part], labels, todo[:4], N0, N, ALPHA, SEED))
        with pytest.raises(ClusterError) as error:
            for task in pool.certify(lambda part: images[part], labels, todo, N0, N, ALPHA, SEED):
                finished.extend(r.index for r in task.results)
                os.kill(task.pid, signal.SIGKILL)  # holding the next task, which then has no retry left
    message = str(error.value)
    assert "\n" not in message and "their Ray worker died 1 time(s)" in message and "rerun to resume" in message
    assert message.startswith("example 1 failed") and finished == [0]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_address_fails_fast_in_one_line(ray_cluster: LocalRay, project: Path) -> None:
    address = f"127.0.0.1:{_free_port()}"
    started = time.monotonic()
    with pytest.raises(ClusterError, match=rf"^Ray cluster at {address} is unreachable \(Connection refused, 1 s timeout\)"):
        certify_files(project / "model.onnx", project / "test.npz", project / "unreachable.jsonl", OPTIONS, N0, N,
                      ray=RaySettings(address=address, connect_timeout_s=1.0), show_progress=False)
    assert time.monotonic() - started < 10
    assert not (project / "unreachable.jsonl").exists() and not (project / "unreachable.tsv").exists()


def test_bad_settings_are_one_line_errors(ray_cluster: LocalRay, project: Path) -> None:
    with pytest.raises(ParameterError, match="number of Ray workers .* must be a positive integer .*, got 0$"):
        RaySettings(workers=0)
    with pytest.raises(ParameterError, match=r"^unknown certification backend 'spark'; use one of local, ray$"):
        check_backend("spark")
    with pytest.raises(ParameterError, match="^Ray address 'headnode': expected HOST:PORT"):
        RaySettings(address="headnode")
    with pytest.raises(ParameterError, match="^3 Ray workers need at least 3 CPUs, but the cluster has 2; use at most 2"):
        certify_files(project / "model.onnx", project / "test.npz", project / "three.jsonl", OPTIONS, N0, N,
                      ray=RaySettings(workers=3), show_progress=False)


@pytest.mark.parametrize("argv, expected", [
    (["--backend", "spark"], "unknown certification backend 'spark'; use one of local, ray"),
    (["--backend", "ray", "--workers", "0"], "must be a positive integer"),
    (["--workers", "2"], "--ray-address and --workers apply to --backend ray only; add --backend ray"),
])
def test_the_cli_refuses_bad_ray_options_in_one_line(project: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                                                     expected: str) -> None:
    from certification.cli import main

    out = project / "cli_bad.jsonl"
    code = main(["certify", "--model", str(project / "model.onnx"), "--data", str(project / "test.npz"), "--sigma", "0.25",
                 "--out", str(out), *argv])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and expected in err
    assert not out.exists()


def test_the_ray_extra_is_the_locked_and_installed_ray() -> None:
    """`pip install .[ray]`, requirements.lock (what `make test` installs) and the tests' Ray are one version."""
    import tomllib

    import ray

    (extra,) = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["ray"]
    locked = [line for line in (REPO / "requirements.lock").read_text().splitlines() if line.startswith("ray==")]
    assert locked == [extra] == [f"ray=={ray.__version__}"]
