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
from typing import Any, Callable, Iterable, Mapping

from certification.errors import InputError
from certification.fileio import sha256_file
from pipeline import layout
from pipeline.mlflow_store import global_store, log_onnx_model, open_experiment, store_client

# No network: MLflow's usage telemetry is read at import time, so opt out before anything imports mlflow.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
# An unreachable tracking server must fail a stage in seconds, not after MLflow's default ~4 minutes of retries.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")

EXECUTION_TAG = "smoothcert.execution"
REGISTERED_MODEL = "smoothcert-base-classifier"
CERTIFIED_ALIAS = "certified"
ARTIFACT_ROLE = ("base classifier (ONNX) of a randomized-smoothing certificate: the certificate holds only for the "
                 "smoothed classifier, so the device must run the smoothed procedure (PREDICT with Gaussian noise of the "
                 "certified sigma, n samples, alpha), never this ONNX's argmax alone")
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


def find_or_create_run(client: Any, experiment_id: str, key: str, commit: str) -> str:
    """The run tagged ``smoothcert.execution = key``; created (with git tags) if there is none."""
    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.`{EXECUTION_TAG}` = '{key}'", max_results=1,
        order_by=["attributes.start_time DESC"],
    )
    if runs:
        return runs[0].info.run_id
    tags = {EXECUTION_TAG: key, "smoothcert.git_commit": commit, "mlflow.source.git.commit": commit}
    return client.create_run(experiment_id, run_name=os.environ.get("DVC_EXP_NAME") or f"smoothcert-{key[:8]}",
                             tags=tags).info.run_id


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
    return _store_call(uri, lambda: _log(stage, params, metrics, artifacts, dict(tags or {}), onnx_path, root, uri))


def _store_call(uri: str, call: Callable[[], str]) -> str:
    """Run ``call`` against the store at ``uri``; any failure but bad input becomes one InputError naming the store."""
    try:
        return call()
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

    client = store_client(uri)
    experiment_id = open_experiment(client, root, uri)
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
    tags.setdefault(f"smoothcert.stage.{stage}", "done")
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
        log_onnx_model(uri, run_id, Path(onnx_path))
    client.set_terminated(run_id, "FINISHED")
    return run_id


#: Backfilled for a stage the execution did not run (restored from the DVC cache): params sections of params.yaml,
#: metrics files whose numbers the stage itself logs as they are, and output files attached as artifacts.
_RESTORE: dict[str, tuple[tuple[str, ...], tuple[Path, ...], tuple[Path, ...]]] = {
    "data": (("data",), (), (layout.DATASHEET,)),
    "train": (("train",), (layout.TRAIN_METRICS,), (layout.TRAIN_HISTORY,)),
    "export": (("export",), (layout.EXPORT_METRICS,), (layout.MODEL_CARD,)),
    "validate": (("validate",), (), (layout.VALIDATION_METRICS,)),
    "device": (("deploy",), (), (layout.DEVICE_CARD,)),
    "protocol": (("gate",), (), (layout.PROTOCOL_RECORD,)),
    "certify": (("certify",), (), (layout.CERTIFY_METRICS, layout.CERTIFY_CURVE, layout.CERTIFY_TSV, layout.TEST_ACCESS)),
    "evaluate": (("evaluate",), (), (layout.EVALUATE_METRICS, layout.EVALUATE_ATTACK_CURVE)),  # + the figures
    "gate": (("gate",), (), (layout.GATE_METRICS, layout.GATE_DECISIONS)),
    "dossier": ((), (), (layout.EVIDENCE, layout.DOSSIER_SIGNED)),
}
SPLITS = {"train": layout.TRAIN_SPLIT, "val": layout.VAL_SPLIT, "test": layout.TEST_SPLIT}


def log_pipeline(verdict: Any) -> str | None:
    """Complete this execution's run with every stage and register the judged model (rules in the module docstring);
    ``verdict`` is the :class:`certification.gate.Verdict` of metrics/gate.json.

    Returns the run id, or None when tracking is off. Raises :class:`InputError` if the store cannot be used."""
    if not tracking_enabled():
        return None
    root, uri = repo_root(), tracking_uri()
    return _store_call(uri, lambda: _log_pipeline(verdict, root, uri))


def _log_pipeline(verdict: Any, root: Path, uri: str) -> str:
    from pipeline.stage import load_document

    client = store_client(uri)
    experiment_id = open_experiment(client, root, uri)
    run_id = find_or_create_run(client, experiment_id, execution_key(), git_commit())
    exp_name = os.environ.get("DVC_EXP_NAME")
    if exp_name:
        client.update_run(run_id, name=exp_name)
        client.set_tag(run_id, "smoothcert.dvc_experiment", exp_name)
    document = load_document()
    for stage, (sections, metric_files, files) in _RESTORE.items():
        if client.get_run(run_id).data.tags.get(f"smoothcert.stage.{stage}"):
            continue
        params = {k: v for section in sections for k, v in (document.get(section) or {}).items()}
        metrics: dict[str, Any] = {}
        for path in metric_files:
            if path.is_file():
                metrics.update(json.loads(path.read_text(encoding="utf-8")))
        if stage == "evaluate":
            files = (*files, *sorted(layout.EVALUATE_DIR.glob(layout.EVALUATE_FIGURES_GLOB)))
        log_stage(stage, params, metrics, artifacts=files, tags={f"smoothcert.stage.{stage}": "cached"})
    _log_history(client, run_id)
    _log_datasets(client, run_id)
    model_info = _logged_model(uri, run_id) or log_onnx_model(uri, run_id, layout.MODEL)
    with global_store(uri):  # the registry resolves models:/ sources through MLflow's global store
        _register(store_client(uri), run_id, verdict, model_info.model_id)
    client.set_terminated(run_id, "FINISHED")
    return run_id


def _log_history(client: Any, run_id: str) -> None:
    """plots/train_history.csv as step metrics ``train.history.<column>`` (step = epoch), once per run."""
    import csv

    from mlflow.entities import Metric

    if not layout.TRAIN_HISTORY.is_file() or client.get_metric_history(run_id, "train.history.train_loss"):
        return
    now = int(time.time() * 1000)
    with layout.TRAIN_HISTORY.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    metrics = [Metric(f"train.history.{key}", float(value), now, int(row["epoch"]))
               for row in rows for key, value in row.items() if key != "epoch"]
    for start in range(0, len(metrics), 900):  # MLflow's batch limit is 1000 metrics
        client.log_batch(run_id, metrics=metrics[start:start + 900])


def _log_datasets(client: Any, run_id: str) -> None:
    """The splits as dataset inputs (context = split name), digests from data/datasheet.json, once per run (nothing
    without a datasheet)."""
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.data.http_dataset_source import HTTPDatasetSource

    if not layout.DATASHEET.is_file():  # a model certified on data this pipeline did not build
        return
    logged = {d.dataset.name for d in client.get_run(run_id).inputs.dataset_inputs}
    splits = json.loads(layout.DATASHEET.read_text(encoding="utf-8"))["splits"]
    inputs = []
    for name, path in SPLITS.items():
        sha = splits[name]["sha256"]
        if f"{name}.npz" in logged:
            continue
        source = HTTPDatasetSource(url=f"{path.as_posix()}#sha256={sha}")  # a repository path, named with its hash
        dataset = MetaDataset(source, name=f"{name}.npz", digest=sha[:32])
        inputs.append(DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", name)]))
    if inputs:
        client.log_inputs(run_id, datasets=inputs)


def _logged_model(uri: str, run_id: str) -> Any:
    """The ``model`` this run logged for models/model.onnx (its sha256 tag matching the file), or None."""
    import mlflow

    with global_store(uri):
        models = mlflow.search_logged_models(filter_string=f"source_run_id = '{run_id}'", output_format="list",
                                             experiment_ids=[mlflow.get_run(run_id).info.experiment_id])
    return models[0] if models else None


def _register(client: Any, run_id: str, verdict: Any, model_id: str) -> Any:
    """One registry version per model SHA-256, with the certificate's summary, verdict and protocol; alias
    ``certified`` on ACCEPT (removed from that version on a later REJECT)."""
    from mlflow.exceptions import MlflowException

    headline = json.loads(layout.HEADLINE.read_text(encoding="utf-8"))
    certify = json.loads(layout.CERTIFY_METRICS.read_text(encoding="utf-8"))["params"]
    for path in (layout.HEADLINE, layout.GATE_METRICS, layout.CERTIFY_METRICS, layout.EVIDENCE, layout.DOSSIER_SIGNED):
        if path.is_file():
            client.log_artifact(run_id, str(path), artifact_path="certificate")
    tags = {
        "smoothcert.model_sha256": verdict.model_sha256,
        "smoothcert.verdict": verdict.verdict,
        "smoothcert.protocol_sha256": verdict.protocol_sha256,
        "smoothcert.artifact_role": "base-classifier",
        "smoothcert.deployment": "randomized-smoothing",
        "smoothcert.sigma": str(certify["sigma"]), "smoothcert.n": str(certify["n"]),
        "smoothcert.alpha": str(certify["alpha"]),
        "smoothcert.dossier": f"runs:/{run_id}/certificate/{layout.DOSSIER_SIGNED.name}",
        "smoothcert.run_id": run_id,
        **{f"smoothcert.certificate.{k}": json.dumps(v) for k, v in headline.items() if k != "verdict"},
    }
    description = (f"{ARTIFACT_ROLE}. Certified at sigma={certify['sigma']} (L2, [0,1]-pixel units), n={certify['n']}, "
                   f"alpha={certify['alpha']}: verdict {verdict.verdict} under protocol {verdict.protocol_sha256[:12]}; "
                   f"certified accuracy at r*={headline['radius']} is {headline['certified_accuracy']} (lower bound "
                   f"{headline['certified_accuracy_lower']}). Dossier: {tags['smoothcert.dossier']}.")
    try:
        client.get_registered_model(REGISTERED_MODEL)
    except MlflowException:
        client.create_registered_model(REGISTERED_MODEL, description=ARTIFACT_ROLE)
    existing = [v for v in client.search_model_versions(f"name = '{REGISTERED_MODEL}'")
                if v.tags.get("smoothcert.model_sha256") == verdict.model_sha256]
    if existing:
        version = existing[0]
        for key, value in tags.items():
            client.set_model_version_tag(REGISTERED_MODEL, version.version, key, value)
        client.update_model_version(REGISTERED_MODEL, version.version, description=description)
    else:
        version = client.create_model_version(REGISTERED_MODEL, source=f"models:/{model_id}", run_id=run_id, tags=tags,
                                              description=description, model_id=model_id)
    client.set_tag(run_id, "smoothcert.registered_version", str(version.version))
    aliases = client.get_registered_model(REGISTERED_MODEL).aliases
    if verdict.accepted:
        client.set_registered_model_alias(REGISTERED_MODEL, CERTIFIED_ALIAS, version.version)
    elif str(aliases.get(CERTIFIED_ALIAS)) == str(version.version):
        client.delete_registered_model_alias(REGISTERED_MODEL, CERTIFIED_ALIAS)
    return client.get_model_version(REGISTERED_MODEL, version.version)


def main() -> int:
    """`python -m pipeline.tracking`: open the repository's store (moving its artifact locations to this folder if the
    repository was moved) and print where it is, e.g. before `mlflow ui`."""
    root, uri = repo_root(), tracking_uri()
    open_experiment(store_client(uri), root, uri)
    print(f"tracking: {uri} (artifacts {root / 'mlartifacts'}); mlflow ui --backend-store-uri {uri}")
    return 0


if __name__ == "__main__":
    from pipeline.stage import run_stage

    run_stage("tracking", main)
