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
from typing import Any, Sequence

import numpy as np

from certification.dataset_io import load_split
from certification.errors import InputError, StaleArtifactError
from certification.fileio import read_json
from certification.gate import Protocol, Verdict, evaluate, protocol_sha256
from certification.lighting import LightingCovariance, covariance_from_record
from certification.prespecification import GitState, ProtocolRecord, utc_now
from certification.model_card import load_model_description
from certification.records import CertifyRecord, DecisionRecord, read_result_rows
from certification.shards import check_coverage, select_indices
from certification.summary import read_certify_metrics
from certification.yaml_io import parse_yaml


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
    document = parse_yaml(text, str(path)) or {}
    if not isinstance(document, dict) or not isinstance(document.get(section), dict):
        raise InputError(f"{path}: missing section '{section}:'; name the protocol's section with --section")
    return Protocol.from_dict(document[section], source=f"{path} section '{section}'")


def freeze_protocol(protocol: Protocol, source: str, git: GitState, now: str | None = None) -> ProtocolRecord:
    """A new pre-specification record of ``protocol`` (read from ``source``), frozen at ``now`` (default: the
    current UTC time)."""
    return ProtocolRecord(protocol.to_dict(), protocol_sha256(protocol), now or utc_now(), git.commit,
                          git.path_committed, source)


def check_frozen(record: ProtocolRecord, protocol: Protocol, source: str) -> None:
    """Refuse to judge with a protocol other than the frozen one, or with a record whose protocol does not hash to
    its recorded SHA-256 (StaleArtifactError / InputError naming both)."""
    recorded = Protocol.from_dict(record.protocol, source="protocol record")
    if protocol_sha256(recorded) != record.protocol_sha256:
        raise InputError("the protocol record's protocol does not hash to its protocol_sha256: the record was edited; "
                         "rerun the pipeline (dvc repro)")
    actual = protocol_sha256(protocol)
    if actual != record.protocol_sha256:
        raise StaleArtifactError(f"{source}: the protocol (sha256 {actual[:12]}...) is not the one frozen before testing "
                                 f"({record.protocol_sha256[:12]}...); rerun the pipeline (dvc repro) so it is frozen "
                                 "again before the test split is read")


def results_alpha(rows: Sequence[CertifyRecord | DecisionRecord], source: str) -> float:
    """The per-example alpha shared by every row."""
    alphas = {row.alpha for row in rows}
    if len(alphas) != 1:
        raise InputError(f"{source}: every row must carry the same 'alpha' (found {sorted(alphas) or 'none'})")
    return alphas.pop()


def check_certify_summary(rows: Sequence[CertifyRecord], model_sha256: str, source: str,
                          certify_json: str | os.PathLike[str]) -> dict[str, Any]:
    """Refuse certify rows that metrics/certify.json (``certify_json``) does not describe: another model than
    ``model_sha256``, another example count or alpha. Returns the summary."""
    summary = read_certify_metrics(certify_json)
    certified_sha = summary["model"]["sha256"]
    if certified_sha != model_sha256:
        raise StaleArtifactError(f"model hash mismatch: {certify_json} certified {certified_sha} but model.json names "
                                 f"{model_sha256}; rerun certification on the current model")
    if int(summary["n_examples"]) != len(rows):
        raise StaleArtifactError(f"{source} has {len(rows)} rows but {certify_json} reports {summary['n_examples']} "
                                 "examples; rerun certification")
    if not math.isclose(float(summary["params"]["alpha"]), results_alpha(rows, source), rel_tol=1e-12):
        raise StaleArtifactError(f"{source}: alpha differs from {certify_json}; rerun certification")
    return summary


def decisions_from_certify(rows: Sequence[CertifyRecord], radius: float, model_sha256: str) -> list[DecisionRecord]:
    """Per-example decisions at ``radius`` read off fixed-n CERTIFY rows (mode "fixed"); every row must name the
    model ``model_sha256``."""
    other = next((r for r in rows if r.model_sha256 != model_sha256), None)
    if other is not None:
        raise StaleArtifactError(f"example {other.index} was certified on model {other.model_sha256[:12]}..., not on "
                                 f"{model_sha256[:12]}...; rerun certification on the current model")
    return [DecisionRecord.from_certify(row, radius) for row in rows]


def check_against_data(rows: Sequence[CertifyRecord | DecisionRecord], labels: np.ndarray, max_examples: int | None,
                       seed: int, source: str) -> None:
    """The rows must carry the split's labels and, when the run's ``max_examples`` is known, be the run's examples
    exactly (none missing or added), so a subset of rows or a forged label (with ``correct`` made to match) cannot
    pass the gate."""
    outside = next((r for r in rows if not 0 <= r.index < len(labels)), None)
    if outside is not None:
        raise StaleArtifactError(f"{source}: example {outside.index} is not in the test split of {len(labels)}")
    if max_examples is not None:
        try:
            check_coverage(rows, select_indices(len(labels), max_examples, seed))
        except InputError as exc:
            raise StaleArtifactError(f"{source}: {exc}") from None
    wrong = next((r for r in rows if int(labels[r.index]) != r.label), None)
    if wrong is not None:
        raise StaleArtifactError(f"{source}: example {wrong.index} has label {wrong.label} but the test split says "
                                 f"{int(labels[wrong.index])}; the rows do not belong to this data")


def load_decisions(results: str | os.PathLike[str], protocol: Protocol, model_sha256: str,
                   certify_json: str | os.PathLike[str] | None, labels: np.ndarray | None = None) -> list[DecisionRecord]:
    """The rows the gate judges: decision rows as they are, certify rows (checked against ``certify_json``)
    turned into decisions at the protocol radius. With ``certify_json`` decision rows must cover as many examples
    as the certification run; with the test split's ``labels`` every row must be one of the run's examples, each
    exactly once, with its true label."""
    rows = read_result_rows(results)
    if certify_json is None:
        if rows and isinstance(rows[0], CertifyRecord):
            raise InputError(f"{results}: certify rows do not name their model; pass --certify-json metrics/certify.json")
        summary = None
    elif rows and isinstance(rows[0], DecisionRecord):
        summary = read_certify_metrics(certify_json)
        if int(summary["n_examples"]) != len(rows):
            raise StaleArtifactError(f"{results} decides {len(rows)} examples but the certification run "
                                     f"({certify_json}) has {summary['n_examples']}; judge the rows of the whole run")
    else:
        summary = check_certify_summary(rows, model_sha256, str(results), certify_json)  # type: ignore[arg-type]
    if labels is not None:
        max_examples = int(summary["params"]["max_examples"]) if summary else None
        check_against_data(rows, labels, max_examples, rows[0].seed, str(results))
    if isinstance(rows[0], DecisionRecord):
        return list(rows)  # type: ignore[arg-type]
    return decisions_from_certify(rows, protocol.radius, model_sha256)  # type: ignore[arg-type]


def certify_lighting(certify_json: str | os.PathLike[str] | None) -> LightingCovariance | None:
    """The lighting covariance a certify run recorded (metrics/certify.json ``noise.covariance``); None when the run
    was isotropic or no summary is given."""
    if certify_json is None:
        return None
    summary = read_certify_metrics(certify_json)
    return covariance_from_record(summary["noise"].get("covariance"), float(summary["params"]["sigma"]),
                                  where=f"{certify_json} noise.covariance")


def evaluate_files(results: str | os.PathLike[str], protocol: Protocol, model_json: str | os.PathLike[str],
                   certify_json: str | os.PathLike[str] | None = None,
                   data: str | os.PathLike[str] | None = None) -> tuple[Verdict, list[DecisionRecord]]:
    """Read and cross-check the files, then :func:`certification.gate.evaluate`; returns the verdict and the rows.
    ``data`` (the test split) makes the rows prove they are the run's examples with their true labels."""
    model = load_model_description(model_json)
    labels = load_split(data).labels if data is not None else None
    rows = load_decisions(results, protocol, model["sha256"], certify_json, labels)
    verdict = evaluate(rows, protocol, model["class_names"], model["malignant_classes"], results_alpha(rows, str(results)),
                       model["sha256"], certify_lighting(certify_json))
    return verdict, rows


def gate_document(verdict: Verdict, rows: Sequence[DecisionRecord]) -> dict[str, Any]:
    """The ``metrics/gate.json`` document: the verdict and the model evaluations the decisions used."""
    evaluations = sum(r.evaluations for r in rows)
    document = verdict.to_dict()
    spent = sorted(r.evaluations for r in rows)
    document["evaluations"] = {"total": evaluations, "per_example": evaluations / len(rows), "min": spent[0],
                               "median": spent[len(spent) // 2], "max": spent[-1],
                               "at_most": max(r.n0 + int(r.details.get("n_max", r.n)) for r in rows)}
    return document


#: Columns of plots/gate_radius.csv (:func:`gate_marker_csv`).
GATE_MARKER_COLUMNS = ("radius", "threshold", "lower_bound_at_r_star", "estimate_at_r_star")


def gate_marker_csv(document: dict[str, Any]) -> str:
    """plots/gate_radius.csv, the r* marker of the certified-accuracy plot: one row at the gate radius r*
    (``radius``, [0,1]-pixel L2 units) with the certified-accuracy criterion's ``threshold``, its one-sided
    lower bound and the estimate at r*, read from a gate document (``metrics/gate.json``; see
    :func:`gate_document`). A protocol without that criterion gives the radius with empty other columns."""
    criterion = next((c for c in document["criteria"] if c["name"] == "certified_accuracy"), None)
    values = [float(document["radius"])]
    values += [float(criterion[key]) for key in ("threshold", "bound", "estimate")] if criterion else [None] * 3
    return ",".join(GATE_MARKER_COLUMNS) + "\n" + ",".join("" if v is None else repr(v) for v in values) + "\n"


def read_gate_metrics(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read ``metrics/gate.json``, checked to be a complete, self-consistent verdict (:meth:`Verdict.from_dict`)."""
    document = read_json(path)
    if not isinstance(document, dict):
        raise InputError(f"{path}: expected a JSON object (a gate verdict)")
    Verdict.from_dict(document, source=str(path))
    return document
