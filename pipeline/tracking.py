"""MLflow tracking for pipeline stages: one MLflow run per pipeline execution, appended to by every stage.

Store
    ``MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<root>/mlflow.db``; artifacts of a local store go to
    ``<root>/mlartifacts``. ``<root>`` is ``$DVC_ROOT`` when DVC runs the stage (so ``dvc exp run --temp``,
    whose working directory is a temporary copy, writes to the real repository's store), else the current
    directory. Experiment ``smoothcert``. ``SMOOTHCERT_TRACKING=off`` disables tracking entirely.

Which run (the execution key)
    A pipeline execution is identified by the tag ``smoothcert.execution`` = SHA-256 of: the bytes of
    ``params.yaml`` in the working directory (or ``$SMOOTHCERT_PARAMS``), the git commit (``git rev-parse HEAD``, "none" outside git) and
    the uncommitted changes to the code and pipeline definition (``git diff HEAD -- certification pipeline
    dvc.yaml``). Stage outputs (``dvc.lock``, metrics) are deliberately not part of the key, so all stages of one
    ``dvc repro`` find the same run. Re-running the same configuration (same params, commit and code) appends
    to that run again; ``SMOOTHCERT_EXECUTION=<any text>`` overrides the key (for example a CI build id).

What a stage logs (:func:`log_stage`)
    params as ``<stage>.<key>`` (nested keys flattened with dots), numeric metrics as ``<stage>.<key>``, tags
    (``smoothcert.git_commit``, ``smoothcert.stage.<stage>`` = "done", caller tags such as
    ``smoothcert.model_sha256``), files as artifacts under ``<stage>/``, and optionally the ONNX model
    (``mlflow.onnx.log_model`` with explicit pip requirements, a single file, the CPU provider), which also sets
    ``smoothcert.model_sha256``. No network access is made: telemetry is disabled before MLflow is imported.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from certification.errors import InputError
from certification.fileio import sha256_file

# No network: MLflow's usage telemetry is read at import time, so opt out before anything imports mlflow.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
# An unreachable tracking server must fail a stage in seconds, not after MLflow's default ~4 minutes of retries.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")

EXPERIMENT = "smoothcert"
EXECUTION_TAG = "smoothcert.execution"
_OFF = {"off", "0", "false", "no", "disabled"}
_KEY_CHARS = re.compile(r"[^A-Za-z0-9_\-. /]")


def tracking_enabled() -> bool:
    """False when ``SMOOTHCERT_TRACKING`` is off/0/false/no."""
    return os.environ.get("SMOOTHCERT_TRACKING", "on").strip().lower() not in _OFF


def repo_root() -> Path:
    """``$DVC_ROOT`` if set (DVC sets it for stage commands), else the current directory."""
    return Path(os.environ.get("DVC_ROOT") or os.getcwd()).resolve()


def tracking_uri(root: Path | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the absolute ``sqlite:///<root>/mlflow.db``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(root or repo_root()) / 'mlflow.db'}"


def _is_local_store(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:", "/")) or "://" not in uri


def _git(*args: str) -> bytes | None:
    try:
        done = subprocess.run(["git", *args], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def git_commit() -> str:
    """The current git commit of the working directory, or "none" outside a git work tree."""
    out = _git("rev-parse", "HEAD")
    return out.decode().strip() if out else "none"


def execution_key(params_path: Path | None = None) -> str:
    """The tag value that ties all stages of one pipeline execution to one MLflow run (rule above)."""
    if os.environ.get("SMOOTHCERT_EXECUTION"):
        return os.environ["SMOOTHCERT_EXECUTION"]
    if params_path is None:
        from pipeline.stage import PARAMS_FILE as params_path
    digest = hashlib.sha256(b"smoothcert-execution-v1\0")
    digest.update(params_path.read_bytes() if params_path.is_file() else b"no-params")
    digest.update(b"\0" + git_commit().encode() + b"\0")
    digest.update(_git("diff", "HEAD", "--no-ext-diff", "--", "certification", "pipeline", "dvc.yaml") or b"")
    return digest.hexdigest()


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts and lists flattened to ``a.b.0.c`` keys."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, (list, tuple)) and any(isinstance(v, (Mapping, list, tuple)) for v in value):
            flat.update(flatten({str(i): v for i, v in enumerate(value)}, f"{name}."))
        else:
            flat[name] = value
    return flat


def _metric_items(stage: str, metrics: Mapping[str, Any]) -> dict[str, float]:
    items = {}
    for key, value in flatten(metrics, f"{stage}.").items():
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, (int, float)) and math.isfinite(value):
            items[_KEY_CHARS.sub("_", key)[:250]] = float(value)
    return items


def _param_items(stage: str, params: Mapping[str, Any]) -> dict[str, str]:
    items = {}
    for key, value in flatten(params, f"{stage}.").items():
        text = value if isinstance(value, str) else json.dumps(value)
        items[_KEY_CHARS.sub("_", key)[:250]] = text[:6000]
    return items


def _client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _experiment_id(client: Any, root: Path, uri: str) -> str:
    experiment = client.get_experiment_by_name(EXPERIMENT)
    location = (root / "mlartifacts").as_uri() if _is_local_store(uri) else None
    if experiment is not None:
        if location is not None and experiment.artifact_location != location:
            # a copied repository's mlflow.db still names the original checkout's artifact folder
            raise InputError(f"{uri} keeps artifacts in {experiment.artifact_location}, not in this repository "
                             f"({location}); this store belongs to another checkout: move it away (or delete it) "
                             "to start a fresh one here, or set MLFLOW_TRACKING_URI")
        return experiment.experiment_id
    try:
        return client.create_experiment(EXPERIMENT, artifact_location=location)
    except Exception:  # created meanwhile by another process
        experiment = client.get_experiment_by_name(EXPERIMENT)
        if experiment is None:
            raise
        return experiment.experiment_id


def find_or_create_run(client: Any, experiment_id: str, key: str, commit: str) -> str:
    """The run tagged ``smoothcert.execution = key``; created (with git tags) if there is none."""
    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.`{EXECUTION_TAG}` = '{key}'", max_results=1,
        order_by=["attributes.start_time DESC"],
    )
    if runs:
        return runs[0].info.run_id
    tags = {EXECUTION_TAG: key, "smoothcert.git_commit": commit, "mlflow.source.git.commit": commit}
    return client.create_run(experiment_id, run_name=f"smoothcert-{key[:8]}", tags=tags).info.run_id


def log_stage(
    stage: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, Any],
    artifacts: Iterable[str | os.PathLike[str]] = (),
    tags: Mapping[str, str] | None = None,
    onnx_path: str | os.PathLike[str] | None = None,
) -> str | None:
    """Append one stage's params, metrics, tags, artifacts (and ONNX model) to this execution's run.

    Returns the MLflow run id, or None when tracking is off. Non-numeric metric leaves are skipped. A param
    that this run already holds with a different value is not overwritten (MLflow forbids it): it is
    reported on stderr and recorded as tag ``smoothcert.param_conflict.<key>``.
    Raises :class:`InputError` if the store cannot be used.
    """
    if not tracking_enabled():
        return None
    root, uri = repo_root(), tracking_uri()
    try:
        return _log(stage, params, metrics, artifacts, dict(tags or {}), onnx_path, root, uri)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(
            f"MLflow tracking to {uri} failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            "fix MLFLOW_TRACKING_URI or set SMOOTHCERT_TRACKING=off"
        ) from exc


def _log(stage: str, params: Mapping[str, Any], metrics: Mapping[str, Any], artifacts: Iterable[Any],
         tags: dict[str, str], onnx_path: Any, root: Path, uri: str) -> str:
    from mlflow.entities import Metric, Param, RunTag

    client = _client(uri)
    experiment_id = _experiment_id(client, root, uri)
    run_id = find_or_create_run(client, experiment_id, execution_key(), git_commit())
    existing = client.get_run(run_id).data.params
    params_to_log = {}
    for key, value in _param_items(stage, params).items():
        if key in existing and existing[key] != value:
            print(f"tracking: param {key} already logged as {existing[key]!r}; keeping it (new {value!r})", file=sys.stderr)
            tags[f"smoothcert.param_conflict.{key}"] = value[:5000]
        elif key not in existing:
            params_to_log[key] = value
    if onnx_path is not None:
        tags.setdefault("smoothcert.model_sha256", sha256_file(onnx_path))
    tags[f"smoothcert.stage.{stage}"] = "done"
    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(k, v, now, 0) for k, v in _metric_items(stage, metrics).items()],
        params=[Param(k, v) for k, v in params_to_log.items()],
        tags=[RunTag(k, str(v)) for k, v in tags.items()],
    )
    for path in artifacts:
        if Path(path).is_file():
            client.log_artifact(run_id, str(path), artifact_path=stage)
    if onnx_path is not None:
        _log_onnx(uri, run_id, Path(onnx_path))
    client.set_terminated(run_id, "FINISHED")
    return run_id


def _log_onnx(uri: str, run_id: str, path: Path) -> None:
    """Log the ONNX file as an MLflow model named ``model`` (signature from its input/output shapes)."""
    import mlflow
    import mlflow.onnx
    import numpy as np
    import onnx
    import onnxruntime
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    proto = onnx.load(str(path))

    def spec(value: Any) -> TensorSpec:
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim]
        return TensorSpec(np.dtype(np.float32), tuple(dims), value.name)

    signature = ModelSignature(inputs=Schema([spec(proto.graph.input[0])]), outputs=Schema([spec(proto.graph.output[0])]))
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        with mlflow.start_run(run_id=run_id):
            mlflow.onnx.log_model(
                proto, name="model", signature=signature,
                pip_requirements=[f"onnx=={onnx.__version__}", f"onnxruntime=={onnxruntime.__version__}"],
                onnx_execution_providers=["CPUExecutionProvider"], save_as_external_data=False,
            )
    finally:
        mlflow.set_tracking_uri(previous)
