"""Files around the gate: the protocol file, the model description, the results, and their cross-checks.

Used by ``smoothcert gate`` and the pipeline's gate stage. Every inconsistency between the files (a model hash
that differs between the results and models/model.json, a results file with zero examples, an unknown protocol
key) is an :class:`~certification.errors.InputError`, never a verdict.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from certification.certify_run import read_records
from certification.errors import InputError
from certification.fileio import read_json
from certification.gate import Protocol, Verdict, evaluate


def load_protocol(path: str | os.PathLike[str], section: str = "gate") -> Protocol:
    """The protocol from a params.yaml-style YAML file (its ``section``) or a JSON file (the protocol object
    itself, or the object under ``section`` when the file has that key, e.g. ``--section protocol`` on a
    metrics/gate.json)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: protocol file not found; pass params.yaml or a protocol .json file")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        if isinstance(document, dict) and isinstance(document.get(section), dict):
            document = document[section]
        return Protocol.from_dict(document, source=str(path))
    try:
        document = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(document, dict) or not isinstance(document.get(section), dict):
        raise InputError(f"{path}: missing section '{section}:'; name the protocol's section with --section")
    return Protocol.from_dict(document[section], source=f"{path} section '{section}'")


def load_model_description(path: str | os.PathLike[str]) -> dict[str, Any]:
    """models/model.json, checked for the fields the gate needs (sha256, class_names, malignant_classes)."""
    model = read_json(path)
    if not isinstance(model, dict):
        raise InputError(f"{path}: expected a JSON object describing the model")
    for key in ("sha256", "class_names", "malignant_classes"):
        if key not in model:
            raise InputError(f"{path}: missing key '{key}'; rerun the export stage")
    if not isinstance(model["class_names"], list) or len(model["class_names"]) < 2:
        raise InputError(f"{path}: 'class_names' must list at least two classes")
    if not isinstance(model["malignant_classes"], list):
        raise InputError(f"{path}: 'malignant_classes' must be a list of class names")
    return model


def results_alpha(rows: Sequence[Mapping[str, Any]], source: str) -> float:
    """The per-example alpha shared by every row."""
    alphas = {float(row["alpha"]) for row in rows if "alpha" in row}
    if len(alphas) != 1 or any("alpha" not in row for row in rows):
        raise InputError(f"{source}: every row must carry the same 'alpha' (found {sorted(alphas) or 'none'})")
    return alphas.pop()


def check_results_model(rows: Sequence[Mapping[str, Any]], model_sha256: str, source: str,
                        certify_json: str | os.PathLike[str] | None) -> None:
    """Refuse results computed on another model than the one models/model.json names.

    Decision rows carry ``model_sha256`` themselves; certify rows are named by metrics/certify.json
    (``certify_json``), whose example count and alpha must also match the rows.
    """
    if rows and "radius" not in rows[0]:
        hashes = {row.get("model_sha256") for row in rows}
        if hashes != {model_sha256}:
            found = ", ".join(sorted(str(h) for h in hashes))
            raise InputError(f"{source}: decisions were made on model {found}, but model.json names {model_sha256}; rerun the gate stage")
        return
    if certify_json is None:
        raise InputError(f"{source}: certify rows do not name their model; pass --certify-json metrics/certify.json")
    summary = read_json(certify_json)
    try:
        certified_sha = summary["model"]["sha256"]
        n_examples = int(summary["n_examples"])
        alpha = float(summary["params"]["alpha"])
    except (KeyError, TypeError, ValueError):
        raise InputError(f"{certify_json}: not a certification summary (needs model.sha256, n_examples, params.alpha)") from None
    if certified_sha != model_sha256:
        raise InputError(f"model hash mismatch: {certify_json} certified {certified_sha} but model.json names {model_sha256}; rerun certification on the current model")
    if n_examples != len(rows):
        raise InputError(f"{source} has {len(rows)} rows but {certify_json} reports {n_examples} examples; rerun certification")
    if not math.isclose(alpha, results_alpha(rows, source), rel_tol=1e-12):
        raise InputError(f"{source}: alpha differs from {certify_json}; rerun certification")


def decision_rows_from_certify(rows: Sequence[Mapping[str, Any]], radius: float, model_sha256: str) -> list[dict[str, Any]]:
    """Per-example decisions at ``radius`` read off fixed-n CERTIFY rows (mode "fixed"): certified iff not
    abstaining and radius >= r*; evaluations = n0 + n. Same schema as the sequential decisions."""
    decisions = []
    for row in rows:
        certified = row["prediction"] != -1 and float(row["radius"]) >= radius
        decisions.append({
            "index": row["index"], "label": row["label"], "prediction": row["prediction"], "certified": bool(certified),
            "correct": bool(row["correct"]), "evaluations": int(row["n0"]) + int(row["n"]),
            "radius_threshold": float(radius), "alpha": float(row["alpha"]), "sigma": float(row["sigma"]),
            "n0": int(row["n0"]), "n": int(row["n"]), "n_a": int(row["n_a"]), "seed": int(row["seed"]),
            "certified_radius": float(row["radius"]), "mode": "fixed", "model_sha256": model_sha256,
        })
    return decisions


def evaluate_files(results: str | os.PathLike[str], protocol: Protocol, model_json: str | os.PathLike[str],
                   certify_json: str | os.PathLike[str] | None = None) -> Verdict:
    """Read and cross-check the files, then :func:`certification.gate.evaluate`."""
    model = load_model_description(model_json)
    rows = read_records(results)
    check_results_model(rows, model["sha256"], str(results), certify_json)
    return evaluate(rows, protocol, model["class_names"], model["malignant_classes"], results_alpha(rows, str(results)),
                    model["sha256"])
