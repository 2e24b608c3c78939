"""Collect every number the dossier prints into one evidence dict (written to dossier/evidence.json).

Inputs are the pipeline's outputs, named by an :class:`EvidenceInputs` (the pipeline passes its layout). Required
files and keys are checked and a missing one is an :class:`InputError` naming the file and key;
``evaluate.quantization`` may be null. Hashes that several files record for the same artifact must agree with
the file on disk, so a stale output cannot slip into the document. Nothing is recomputed here: the per-class and
per-skin-type results at the gate radius are the evaluate stage's subgroups (metrics/evaluate.json), read as
written, and the headline figures are metrics/certify.json's.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from certification.dataset_bounds import proportion_bound
from certification.dossier.model_selection import collect_model_selection
from certification.dataset_io import FITZPATRICK_NAMES
from certification.dossier.risk_evidence import count_of_share, coverage_claims, risk_rates, subgroups_below
from certification.errors import InputError, MissingInputError, StaleArtifactError
from certification.fileio import read_json, require_key, sha256_bytes, sha256_file
from certification.gate_io import read_gate_metrics
from certification.prespecification import chronology, read_protocol_record, read_test_access
from certification.records import CertifyRecord, certify_jsonl_text, parse_certify_records
from certification.radius_units import in_pixels, input_values
from certification.summary import read_certify_metrics

SCHEMA = "smoothcert-dossier-evidence/1"


@dataclass(frozen=True)
class EvidenceInputs:
    """The files the dossier is built from; relative paths inside the cards resolve against ``root``."""

    root: Path
    model_card: Path
    datasheet: Path
    train_metrics: Path | None  # None (or ignored) for a supplied model (models/model.json ``supplied``)
    export_metrics: Path
    certify_metrics: Path
    certify_records: Path
    evaluate_metrics: Path
    gate_metrics: Path
    test_split: Path
    protocol_record: Path | None = None  # the pipeline's results/protocol.json (None: built outside the pipeline)
    test_access: Path | None = None  # results/test_access.json, written when certify first opened the test split
    device_card: Path | None = None  # models/smoothed.json, the device stage's card (None or absent: not listed)
    device_latency: Path | None = None  # benchmarks/device_latency.json (None or absent: not listed)
    method_benchmark: Path | None = None  # benchmarks/results/training_methods.json (None or absent: said so)


VERDICT_WORDS = {"ACCEPT": "ACCEPTED", "REJECT": "REJECTED"}
LEAST_ROBUST_SHOWN = 6


def require(obj: Any, dotted: str, source: str) -> Any:
    """``obj[a][b]...`` for ``dotted`` = "a.b..."; InputError naming ``source`` and the key when absent."""
    return require_key(obj, dotted, source)


def _same(expected: str, actual: str, what: str, source: str) -> None:
    if expected != actual:
        raise StaleArtifactError(f"{source}: {what} is {expected[:12]}..., but the file on disk hashes to "
                         f"{actual[:12]}...; outputs are stale, rerun the pipeline (dvc repro)")


def git_commit(root: Path) -> tuple[str, int | None]:
    """(HEAD commit, its committer time in epoch seconds) or ("unknown (not a git checkout)", None)."""
    try:
        out = subprocess.run(["git", "-C", str(root), "log", "-1", "--format=%H %ct"], capture_output=True,
                             text=True, check=True, timeout=20).stdout.split()
        return out[0], int(out[1])
    except (OSError, subprocess.SubprocessError, IndexError, ValueError):
        return "unknown (not a git checkout)", None


def evidence_time(gate: Mapping[str, Any], commit_time: int | None) -> tuple[str, str]:
    """The UTC time printed on the document, from the inputs (never the wall clock), and where it came from.

    Order: a time recorded in gate.json, SOURCE_DATE_EPOCH, the git commit time.
    """
    for key in ("time_utc", "created_utc", "timestamp"):
        if isinstance(gate.get(key), str) and gate[key]:
            return gate[key], f"metrics/gate.json {key}"
    epoch, source = None, ""
    if os.environ.get("SOURCE_DATE_EPOCH", "").isdigit():
        epoch, source = int(os.environ["SOURCE_DATE_EPOCH"]), "SOURCE_DATE_EPOCH"
    elif commit_time is not None:
        epoch, source = commit_time, "git commit time"
    if epoch is None:
        return "not recorded", "no gate time, SOURCE_DATE_EPOCH or git commit"
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"), source


def _group_row(group: Mapping[str, Any]) -> dict[str, Any]:
    """One row of the dossier's group tables, read off an evaluate subgroup as written."""
    at_gate = group["at_gate"]
    if not group["n_examples"]:
        return {"n_examples": 0, "clean_accuracy": None, "certified": None, "abstained": 0}
    return {
        "n_examples": group["n_examples"],
        "clean_accuracy": group["clean_accuracy"],
        "certified": {"estimate": at_gate["certified_accuracy"], "lower": at_gate["lower_bound"], "count": at_gate["count"]},
        "abstained": group["abstention_rate"]["successes"],
    }


def _groups(evaluate: Mapping[str, Any], class_names: list[str], radius: float, source: str) -> dict[str, Any]:
    """Per-class and per-skin-type rows at the gate radius from metrics/evaluate.json ``subgroups``."""
    subgroups = require(evaluate, "subgroups", source)
    gate_radius = require(subgroups, "gate_radius", source)
    if not math.isclose(float(gate_radius), radius, rel_tol=1e-12, abs_tol=1e-12):
        raise StaleArtifactError(f"{source}: subgroups are evaluated at radius {gate_radius}, the gate at {radius}; rerun the evaluate stage")
    by_field: dict[str, dict[str, Any]] = {}
    for group in require(subgroups, "groups", source):
        for key in ("field", "group", "n_examples", "at_gate", "clean_accuracy", "abstention_rate"):
            require(group, key, source)
        by_field.setdefault(group["field"], {})[group["group"]] = _group_row(group)
    classes = by_field.get("class", {})
    if list(classes) != class_names:
        raise StaleArtifactError(f"{source}: subgroup classes {list(classes)} differ from the datasheet's {class_names}; rerun the evaluate stage")
    skin = by_field.get("fitzpatrick")
    return {"radius": radius, "per_class": classes,
            "per_skin_type": {name: skin[name] for name in FITZPATRICK_NAMES if name in skin} if skin else None}


def _least_robust(evaluate: Mapping[str, Any], records: list[CertifyRecord], class_names: list[str]) -> list[dict]:
    rows = evaluate.get("least_robust") or []
    chosen = [{"index": int(r["index"]), "label": int(r["label"]), "prediction": int(r["prediction"]),
               "radius": float(r["radius"])} for r in rows[:LEAST_ROBUST_SHOWN]
              if isinstance(r, Mapping) and {"index", "label", "prediction", "radius"} <= set(r)]
    source = "metrics/evaluate.json least_robust"
    if not chosen:
        ranked = sorted((r for r in records if r.correct), key=lambda r: (r.radius, r.index))
        chosen = [{"index": r.index, "label": r.label, "prediction": r.prediction, "radius": r.radius}
                  for r in ranked[:LEAST_ROBUST_SHOWN]]
        source = "results/certify.jsonl (correct examples with the smallest radius)"
    for row in chosen:
        row["label_name"] = class_names[row["label"]] if 0 <= row["label"] < len(class_names) else str(row["label"])
        row["source"] = source
    return chosen


def _worst(groups: Mapping[str, Any] | None) -> tuple[str | None, float | None, int | None]:
    """The group with the lowest certified lower bound (ties: first in order), ignoring empty groups."""
    best: tuple[str | None, float | None, int | None] = (None, None, None)
    for name, row in (groups or {}).items():
        if row.get("certified") is None:
            continue
        lower = row["certified"]["lower"]
        if best[1] is None or lower < best[1]:
            best = (name, lower, row["n_examples"])
    return best


def _summary(groups: Mapping[str, Any], evaluate: Mapping[str, Any], certify: Mapping[str, Any]) -> dict[str, Any]:
    """Headline facts the templates cite (each may be None when its source section is empty)."""
    skin, skin_lower, skin_n = _worst(groups.get("per_skin_type"))
    cls, cls_lower, cls_n = _worst(groups.get("per_class"))
    corruptions = [c for c in evaluate.get("corruptions") or [] if isinstance(c, Mapping)]
    l2 = [float(c["l2_mean"]) for c in corruptions if isinstance(c.get("l2_mean"), (int, float))]
    acc = [float(c["accuracy_smoothed"]) for c in corruptions if isinstance(c.get("accuracy_smoothed"), (int, float))]
    attack = evaluate.get("attack") or {}
    subgroups = evaluate.get("subgroups") or {}
    abst = evaluate.get("abstentions") or {}
    return {
        "worst_skin_type": skin, "worst_skin_type_lower": skin_lower, "worst_skin_type_n": skin_n,
        "worst_class": cls, "worst_class_lower": cls_lower, "worst_class_n": cls_n,
        "corruption_conditions": len(corruptions),
        "corruptions_not_covered": sum(1 for c in corruptions if c.get("coverage") == "not covered"),
        "corruption_l2_max": max(l2) if l2 else None,
        "corruption_accuracy_min": min(acc) if acc else None,
        "median_certified_radius": certify.get("median_radius"),
        "attack_candidates": attack.get("candidates"),
        "attack_confirmed": attack.get("confirmed_contradictions"),
        "subgroups_flagged": len(subgroups.get("flagged") or []) if isinstance(subgroups, Mapping) else None,
        "abstention_groups_over_limit": len(abst.get("exceeds_limit") or []) if isinstance(abst, Mapping) else None,
        "quantized": evaluate.get("quantization") is not None,
    }


def _prespecification(inputs: EvidenceInputs, gate: Mapping[str, Any], test_sha: str) -> dict[str, Any] | None:
    """The chronology of protocol freeze and first test read (None when the inputs carry no such records)."""
    if inputs.protocol_record is None or inputs.test_access is None:
        return None
    record = read_protocol_record(inputs.protocol_record)
    access = read_test_access(inputs.test_access)
    return chronology(record, access, gate["protocol_sha256"], test_sha).to_dict()


TRIAGE_PROCEDURES = ("deployed", "clean", "certified")


def _clinical(evaluate: Mapping[str, Any], model: Mapping[str, Any], certify: Mapping[str, Any], radius: float,
              class_names: list[str], source: str) -> dict[str, Any]:
    """The clinical triage reports and the deployed procedure's measurement, read as the evaluate stage wrote them
    (metrics/evaluate.json ``triage`` and ``deployed``), checked to belong to this model, data and gate; plus the
    model's input size (models/model.json ``input_shape``) that the device resizes to."""
    triage = require(evaluate, "triage", source)
    deployed = require(evaluate, "deployed", source)
    for key in ("n", "alpha", "n_examples", "abstention_rate", "agreement_with_certify", "latency", "platform",
                "gate_limit", "upper_within_gate_limit"):
        require(deployed, key, source)
    for name in TRIAGE_PROCEDURES:
        for key in ("procedure", "level", "abstention_rule", "malignant_classes", "class_names", "n_examples", "rates",
                    "counts", "confusion", "per_skin_type"):
            require(triage, f"{name}.{key}", source)
        report = triage[name]
        if report["class_names"] != class_names or report["malignant_classes"] != list(model["malignant_classes"]):
            raise StaleArtifactError(f"{source}: triage '{name}' uses classes {report['class_names']} (malignant "
                                     f"{report['malignant_classes']}), not those of the datasheet and model card; rerun the evaluate stage")
        if report["n_examples"] != certify["n_examples"]:
            raise StaleArtifactError(f"{source}: triage '{name}' counts {report['n_examples']} images, the certification "
                                     f"{certify['n_examples']}; rerun the evaluate stage")
    certified_radius = triage["certified"].get("radius")
    if certified_radius is None or not math.isclose(float(certified_radius), radius, rel_tol=1e-12, abs_tol=1e-12):
        raise StaleArtifactError(f"{source}: triage 'certified' is at radius {certified_radius}, the gate at {radius}; rerun the evaluate stage")
    shape = require(model, "input_shape", "models/model.json")
    if not isinstance(shape, list) or len(shape) != 4:
        raise InputError(f"models/model.json: 'input_shape' must be [batch, C, H, W], got {shape!r}; rerun the export stage")
    return {"triage": {name: triage[name] for name in TRIAGE_PROCEDURES}, "deployed": dict(deployed),
            "input": {"channels": shape[1], "height": shape[2], "width": shape[3],
                      "range": list(model.get("input_range", [0, 1]))}}


def _lighting(certify: Mapping[str, Any], evaluate: Mapping[str, Any], confidence: float, source: str) -> dict[str, Any] | None:
    """A lighting run's covariance (metrics/certify.json ``noise.covariance``) and, per lighting/camera change and
    severity, how many of the n evaluated images' actual changes pass the exact ellipsoid test (the evaluate stage's
    lighting_certified_share of n_examples) with one-sided Clopper-Pearson bounds; None for an isotropic run."""
    covariance = certify["noise"].get("covariance")
    if covariance is None:
        return None
    rows = []
    for c in evaluate.get("corruptions") or []:
        if not isinstance(c, Mapping) or not c.get("n_examples"):
            continue
        if "lighting_certified_share" not in c:
            raise StaleArtifactError(f"{source}: the certificates are lighting certificates but the corruption study has "
                                     "no lighting_certified_share; rerun the evaluate stage")
        n = int(c["n_examples"])
        certified = proportion_bound(count_of_share(c["lighting_certified_share"], n), n, confidence)
        rows.append({"name": str(c["name"]), "severity": c.get("severity"), "parameter": c.get("parameter"),
                     "level": c.get("level"), "n": n, "covered": certified.to_dict(),
                     "share_of_certified": c.get("lighting_certified_share_of_certified"),
                     "contradictions": c.get("lighting_contradictions")})
    return {"covariance": dict(covariance), "coverage": rows,
            "covered_extents": (evaluate.get("lighting") or {}).get("covered_extents")}


def _claims(model: Mapping[str, Any], gate: Mapping[str, Any], certify: Mapping[str, Any], evaluate: Mapping[str, Any],
            export: Mapping[str, Any], source: str) -> dict[str, Any]:
    """What the generated sentences of the dossier say, as numbers: radius in pixel terms and its limit,
    measured coverage of lighting/camera changes, subgroups below the gate threshold, measured failure rates;
    ``lighting`` (lighting runs only): the covariance and the ellipsoid coverage of each change."""
    values = input_values(require(model, "input_shape", source))
    confidence = float((evaluate.get("subgroups") or {}).get("confidence", gate["protocol"].get("confidence", 0.95)))
    coverage = coverage_claims(evaluate, confidence)
    lighting = _lighting(certify, evaluate, confidence, "metrics/evaluate.json")
    return {"radius": {"values": values, "gate": in_pixels(float(gate["radius"]), values).to_dict(),
                       "limit": dict(certify["radius_limit"])},
            "coverage_confidence": confidence, "coverage": coverage,
            "subgroups_below": subgroups_below(evaluate),
            "subgroup_threshold": (evaluate.get("subgroups") or {}).get("threshold"),
            "risk_rates": risk_rates(gate, certify, evaluate, export, coverage),
            "noise_loops": _noise_loops(certify["noise"]["kernels"]),
            **({} if lighting is None else {"lighting": lighting})}


def _noise_loops(kernels: Mapping[str, Any]) -> str:
    """'X86_V4 (log, cos, sin)': each numpy loop named once with the functions that ran on it."""
    by_loop: dict[str, list[str]] = {}
    for fn in ("log", "cos", "sin"):
        by_loop.setdefault(str(kernels[fn]), []).append(fn)
    return "; ".join(f"{loop} ({', '.join(fns)})" for loop, fns in by_loop.items())


def _device(inputs: EvidenceInputs, model_file: Path, model_sha: str, model_path: str) -> dict[str, Any]:
    """What ships to the device, where the files exist: the model's detached signature (``MODEL.p7s``: its own
    SHA-256, signer, time; it must sign the certified model), the smoothed predictor's card and the single-core
    latency record. Absent files give None; a signature or card of another model is a StaleArtifactError."""
    from certification.device_latency import read_device_latency
    from certification.device_card import read_device_card
    from certification.signing.detached import read_signature, signature_path

    out: dict[str, Any] = {"model_signature": None, "smoothed": None, "latency": None}
    sig_file = signature_path(model_file)
    if sig_file.is_file():
        sig = read_signature(sig_file)
        if sig.signed_sha256 != model_sha:
            raise StaleArtifactError(f"{sig_file}: signs {sig.signed_sha256[:12]}..., not the certified model "
                                     f"{model_sha[:12]}...; sign the model again (dvc repro, or smoothcert sign-model)")
        out["model_signature"] = {**sig.to_dict(), "path": signature_path(Path(model_path)).as_posix()}
    if inputs.device_card is not None and inputs.device_card.is_file():
        out["smoothed"] = read_device_card(inputs.device_card, model_sha, root=inputs.root)["smoothed"]
    if inputs.device_latency is not None and inputs.device_latency.is_file():
        out["latency"] = read_device_latency(inputs.device_latency)
    return out


def collect_evidence(inputs: EvidenceInputs, params: Mapping[str, Any], documents: Mapping[str, Any],
                     signing: Mapping[str, Any]) -> dict[str, Any]:
    """Build the evidence dict from the pipeline outputs named by ``inputs``.

    ``params`` is the params.yaml document (recorded whole, with its hash); ``documents`` the template
    metadata (document id, revision, ...); ``signing`` what the renderer must know about the key that will
    sign (``development_key``, ``signer``, ``trust_anchor_sha256``, ``approvals``).
    """
    root = Path(inputs.root)
    src = {"model": str(inputs.model_card), "datasheet": str(inputs.datasheet), "certify": str(inputs.certify_metrics),
           "gate": str(inputs.gate_metrics), "evaluate": str(inputs.evaluate_metrics)}
    model = read_json(inputs.model_card)
    datasheet = read_json(inputs.datasheet)
    supplied = isinstance(model, dict) and bool(model.get("supplied"))
    if not supplied and inputs.train_metrics is None:
        raise MissingInputError(f"{src['model']} describes a model trained by the pipeline, but no training record was "
                                "given; run the train stage")
    train = None if supplied else read_json(inputs.train_metrics)  # a supplied model has no training record
    export = read_json(inputs.export_metrics)
    certify = read_certify_metrics(inputs.certify_metrics)
    evaluate = read_json(inputs.evaluate_metrics)
    gate = read_gate_metrics(inputs.gate_metrics)
    if not inputs.certify_records.is_file():
        raise MissingInputError(f"{inputs.certify_records}: file not found; run the certify stage")
    records_bytes = inputs.certify_records.read_bytes()
    records = parse_certify_records(records_bytes, str(inputs.certify_records))

    model_file = root / require(model, "path", src["model"])
    if not model_file.is_file():
        raise MissingInputError(f"{model_file}: model file named in {src['model']} not found; run the export stage")
    model_sha = sha256_file(model_file)
    _same(require(model, "sha256", src["model"]), model_sha, "the model hash", src["model"])
    _same(certify["model"]["sha256"], model_sha, "the certified model's hash", src["certify"])
    _same(gate["model_sha256"], model_sha, "the judged model's hash", src["gate"])
    splits = require(datasheet, "splits", src["datasheet"])
    if not inputs.test_split.is_file():
        raise MissingInputError(f"{inputs.test_split}: file not found; run the data stage")
    test_sha = sha256_file(inputs.test_split)
    _same(require(splits, "test.sha256", src["datasheet"]), test_sha, "the test split hash", src["datasheet"])
    _same(certify["data"]["sha256"], test_sha, "the test split hash", src["certify"])
    if records_bytes != certify_jsonl_text(records).encode("utf-8"):
        raise StaleArtifactError(f"{inputs.certify_records}: not in the certify stage's own format; rerun the certify stage")
    stale = next((r for r in records if (r.model_sha256, r.data_sha256) != (model_sha, test_sha)), None)
    if stale is not None:
        raise StaleArtifactError(f"{inputs.certify_records}: example {stale.index} names model {stale.model_sha256[:12]}... "
                                 f"and data {stale.data_sha256[:12]}..., not the files on disk; rerun the certify stage")
    if len(records) != certify["n_examples"]:
        raise StaleArtifactError(f"{inputs.certify_records} has {len(records)} rows but {src['certify']} summarises "
                                 f"{certify['n_examples']}; rerun the certify stage")
    for key in ("subgroups", "abstentions", "least_robust", "corruptions", "attack", "quantization"):
        require(evaluate, key, src["evaluate"])
    class_names = list(require(datasheet, "classes", src["datasheet"]))
    for key in ("opset", "onnxruntime_version", "quantization", "parameters", "flops", "architecture",
                "train_sigma", "input_shape", "normalization"):
        require(model, key, src["model"])

    commit, commit_time = git_commit(root)
    time_utc, time_source = evidence_time(gate, commit_time)
    groups = _groups(evaluate, class_names, float(gate["radius"]), src["evaluate"])
    params_canonical = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return {
        "schema": SCHEMA,
        "document": {**dict(documents), "time_utc": time_utc, "time_source": time_source},
        "verdict": {
            "verdict": gate["verdict"], "word": VERDICT_WORDS[gate["verdict"]], "mode": gate["mode"],
            "radius": float(gate["radius"]), "criteria": gate["criteria"], "failed": gate.get("failed", []),
            "protocol": gate["protocol"], "n_examples": gate.get("n_examples", certify["n_examples"]),
            "evaluations": gate.get("evaluations"),
        },
        "hashes": {
            "model_sha256": model_sha,
            "model_fp32_sha256": model.get("fp32_sha256", model_sha),
            "protocol_sha256": gate["protocol_sha256"],
            "splits": {name: require(splits, f"{name}.sha256", src["datasheet"]) for name in sorted(splits)},
            "certify_jsonl_sha256": sha256_bytes(records_bytes),
            "params_sha256": sha256_bytes(params_canonical.encode("utf-8")),
        },
        "git": {"commit": commit},
        "model": {k: model[k] for k in sorted(model)},
        "train": train,
        "export": export,
        "data": datasheet,
        "certify": certify,
        "groups": groups,
        "summary": _summary(groups, evaluate, certify),
        "claims": _claims(model, gate, certify, evaluate, export, src["model"]),
        "least_robust": _least_robust(evaluate, records, class_names),
        "prespecification": _prespecification(inputs, gate, test_sha),
        "evaluate": evaluate,
        "clinical": _clinical(evaluate, model, certify, float(gate["radius"]), class_names, src["evaluate"]),
        "device": _device(inputs, model_file, model_sha, model.get("path", "")),
        "model_selection": collect_model_selection(inputs.method_benchmark, root, model, train, params, datasheet),
        "signing": dict(signing),
        "params": json.loads(params_canonical),
    }
