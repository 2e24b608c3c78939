"""The MLflow store the pipeline tracks to: where it is, how a moved checkout's store is rebased, how MLflow's global
URIs are set for one block, and how the ONNX model is logged. No network: telemetry is disabled by
:mod:`pipeline.tracking` before anything imports mlflow (this module imports mlflow only inside its functions)."""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any, Iterator

from certification.errors import InputError

EXPERIMENT = "smoothcert"


def is_local_store(uri: str) -> bool:
    """True for a store on this machine (sqlite, file or a path), whose artifacts go to ``<root>/mlartifacts``."""
    return uri.startswith(("sqlite:", "file:", "/")) or "://" not in uri


def own_store(uri: str, root: Path) -> bool:
    """True when ``uri`` is the sqlite file ``<root>/mlflow.db`` (the repository's own store)."""
    if not uri.startswith("sqlite:///"):
        return False
    return Path(uri[len("sqlite:///"):]).resolve() == (root / "mlflow.db").resolve()


#: The columns of MLflow's sqlite schema that hold artifact locations.
LOCATION_COLUMNS = (("experiments", "artifact_location"), ("runs", "artifact_uri"), ("logged_models", "artifact_location"),
                     ("model_versions", "source"), ("model_versions", "storage_location"))


def rebase_store(db: Path, old: str, new: str) -> int:
    """Rewrite every artifact location in the sqlite store ``db`` that starts with ``old`` to start with ``new``
    (a moved checkout's ``mlartifacts``); returns the number of rows changed. One transaction: all or nothing."""
    import sqlite3

    changed = 0
    with sqlite3.connect(db) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        for table, column in LOCATION_COLUMNS:
            if table in tables:
                changed += connection.execute(
                    f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                    f"WHERE {column} = ? OR substr({column}, 1, ?) = ?",
                    (new, len(old) + 1, old, len(old) + 1, old + "/")).rowcount
    print(f"tracking: {db} named artifacts in {old}; moved them to {new} ({changed} locations)", file=sys.stderr)
    return changed


@contextlib.contextmanager
def global_store(uri: str) -> Iterator[None]:
    """MLflow's global tracking and registry URIs set to ``uri`` for the block, then put back exactly, environment
    included (``mlflow.set_tracking_uri`` also writes ``MLFLOW_TRACKING_URI``, which would redirect later stages)."""
    import mlflow

    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    saved_env = {key: os.environ.get(key) for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    # the raw globals, not mlflow.get_*_uri(): those resolve an unset URI (e.g. to the environment's), and setting the
    # resolved value back would pin every later client of this process to it (seen: a later registry lookup in the
    # test process went to an earlier test's store)
    saved = tracking_utils._tracking_uri, registry_utils._registry_uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        tracking_utils._tracking_uri, registry_utils._registry_uri = saved
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def log_onnx_model(uri: str, run_id: str, path: Path) -> Any:
    """Log the ONNX file as an MLflow model named ``model`` (signature from its input/output shapes); its ModelInfo."""
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
    with global_store(uri):
        with mlflow.start_run(run_id=run_id):
            return mlflow.onnx.log_model(
                proto, name="model", signature=signature,
                pip_requirements=[f"onnx=={onnx.__version__}", f"onnxruntime=={onnxruntime.__version__}"],
                onnx_execution_providers=["CPUExecutionProvider"], save_as_external_data=False,
            )


def store_client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def open_experiment(client: Any, root: Path, uri: str) -> str:
    """The id of experiment :data:`EXPERIMENT`, created if missing; a local store's artifacts live in
    ``<root>/mlartifacts`` (the repository's own store, moved with its checkout, is rebased first)."""
    experiment = client.get_experiment_by_name(EXPERIMENT)
    location = (root / "mlartifacts").as_uri() if is_local_store(uri) else None
    if experiment is not None and location is not None and experiment.artifact_location != location \
            and own_store(uri, root) and experiment.artifact_location.endswith("/mlartifacts"):
        rebase_store(root / "mlflow.db", experiment.artifact_location, location)
        experiment = client.get_experiment_by_name(EXPERIMENT)
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
