"""Collect every number the dossier prints into one evidence dict (written to dossier/evidence.json).

Inputs are the pipeline's outputs under a root folder (see :data:`INPUT_FILES`). Required files and keys
are checked and a missing one is an :class:`InputError` naming the file and key; ``evaluate.quantization``
may be null. Hashes that several files record for the same artifact must agree with the file on disk, so
a stale output cannot slip into the document. Per-class and per-skin-type results at the gate radius are
recomputed from results/certify.jsonl joined with data/test.npz (by test index).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from certification.dataset_bounds import certified_rate_bound, proportion_bound
from certification.errors import InputError
from certification.fileio import read_json, sha256_bytes, sha256_file
from certification.dossier.records import CertifyRecord, certified_count, parse_records

SCHEMA = "smoothcert-dossier-evidence/1"
INPUT_FILES = {
    "model": "models/model.json",
    "datasheet": "data/datasheet.json",
    "train": "metrics/train.json",
    "export": "metrics/export.json",
    "certify": "metrics/certify.json",
    "records": "results/certify.jsonl",
    "evaluate": "metrics/evaluate.json",
    "gate": "metrics/gate.json",
    "test": "data/test.npz",
}
FITZPATRICK = ("I", "II", "III", "IV", "V", "VI")
VERDICT_WORDS = {"ACCEPT": "ACCEPTED", "REJECT": "REJECTED"}
LEAST_ROBUST_SHOWN = 6


def require(obj: Any, dotted: str, source: str) -> Any:
    """``obj[a][b]...`` for ``dotted`` = "a.b..."; InputError naming ``source`` and the key when absent."""
    value = obj
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise InputError(f"{source}: missing key '{dotted}'; rerun the stage that writes it")
        value = value[part]
    return value


def _same(expected: str, actual: str, what: str, source: str) -> None:
    if expected != actual:
        raise InputError(f"{source}: {what} is {expected[:12]}..., but the file on disk hashes to "
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


def _group_row(records: list[CertifyRecord], radius: float, alpha: float, confidence: float) -> dict[str, Any]:
    n = len(records)
    if n == 0:
        return {"n_examples": 0, "clean_accuracy": None, "certified": None, "abstained": 0}
    correct = sum(r.correct for r in records)
    return {
        "n_examples": n,
        "clean_accuracy": proportion_bound(correct, n, confidence).to_dict(),
        "certified": certified_rate_bound(certified_count(records, radius), n, alpha, confidence).to_dict(),
        "abstained": sum(r.prediction == -1 for r in records),
    }


def _groups(records: list[CertifyRecord], test_path: Path, class_names: list[str], radius: float,
            alpha: float, confidence: float) -> dict[str, Any]:
    try:
        with np.load(test_path) as npz:
            fitz = np.asarray(npz["fitzpatrick"]) if "fitzpatrick" in npz.files else None
            n_test = int(npz["labels"].shape[0])
    except FileNotFoundError:
        raise InputError(f"{test_path}: file not found; run the data stage") from None
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"{test_path}: not a readable split ({exc})") from None
    bad = [r.index for r in records if not 0 <= r.index < n_test]
    if bad:
        raise InputError(f"results/certify.jsonl: index {bad[0]} outside data/test.npz (n={n_test}); rerun certify")
    per_class = {name: _group_row([r for r in records if r.label == k], radius, alpha, confidence)
                 for k, name in enumerate(class_names)}
    per_skin = None
    if fitz is not None:
        per_skin = {roman: _group_row([r for r in records if int(fitz[r.index]) == k], radius, alpha, confidence)
                    for k, roman in enumerate(FITZPATRICK, start=1)}
    return {"radius": radius, "per_class": per_class, "per_skin_type": per_skin}


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


def collect_evidence(root: str | os.PathLike[str], params: Mapping[str, Any], documents: Mapping[str, Any],
                     signing: Mapping[str, Any]) -> dict[str, Any]:
    """Build the evidence dict from the pipeline outputs under ``root``.

    ``params`` is the params.yaml document (recorded whole, with its hash); ``documents`` the template
    metadata (document id, revision, ...); ``signing`` what the renderer must know about the key that will
    sign (``development_key``, ``signer``, ``trust_anchor_sha256``, ``approvals``).
    """
    root = Path(root)
    paths = {key: root / rel for key, rel in INPUT_FILES.items()}
    model = read_json(paths["model"])
    datasheet = read_json(paths["datasheet"])
    train = read_json(paths["train"])
    export = read_json(paths["export"])
    certify = read_json(paths["certify"])
    evaluate = read_json(paths["evaluate"])
    gate = read_json(paths["gate"])
    if not paths["records"].is_file():
        raise InputError(f"{paths['records']}: file not found; run the certify stage")
    records_bytes = paths["records"].read_bytes()
    records = parse_records(records_bytes, INPUT_FILES["records"])

    src = INPUT_FILES
    model_rel = require(model, "path", src["model"])
    model_file = root / model_rel
    if not model_file.is_file():
        raise InputError(f"{model_file}: model file named in {src['model']} not found; run the export stage")
    model_sha = sha256_file(model_file)
    _same(require(model, "sha256", src["model"]), model_sha, "the model hash", src["model"])
    _same(require(certify, "model.sha256", src["certify"]), model_sha, "the certified model's hash", src["certify"])
    _same(require(gate, "model_sha256", src["gate"]), model_sha, "the judged model's hash", src["gate"])
    splits = require(datasheet, "splits", src["datasheet"])
    test_sha = sha256_file(paths["test"]) if paths["test"].is_file() else ""
    if not test_sha:
        raise InputError(f"{paths['test']}: file not found; run the data stage")
    _same(require(splits, "test.sha256", src["datasheet"]), test_sha, "the test split hash", src["datasheet"])
    _same(require(certify, "data.sha256", src["certify"]), test_sha, "the test split hash", src["certify"])
    for key in ("params.n", "params.n0", "params.alpha", "params.sigma", "params.seed", "noise.spec", "noise.kernels.numpy",
                "noise.kernels.log", "noise.kernels.cos", "noise.kernels.sin", "noise.tail_bound_per_certificate"):
        require(certify, key, src["certify"])
    for key in ("n_examples", "confidence", "bound_method", "clean_accuracy", "abstention_rate", "curve",
                "average_certified_radius", "median_radius", "per_class"):
        require(certify, key, src["certify"])
    for key in ("verdict", "radius", "criteria", "protocol", "protocol_sha256", "mode"):
        require(gate, key, src["gate"])
    if gate["verdict"] not in VERDICT_WORDS:
        raise InputError(f"{src['gate']}: 'verdict' must be ACCEPT or REJECT, got {gate['verdict']!r}")
    for key in ("subgroups", "abstentions", "least_robust", "corruptions", "attack", "quantization"):
        require(evaluate, key, src["evaluate"])
    class_names = list(require(datasheet, "classes", src["datasheet"]))
    for key in ("opset", "onnxruntime_version", "quantization", "parameters", "flops", "architecture",
                "train_sigma", "input_shape", "normalization"):
        require(model, key, src["model"])

    commit, commit_time = git_commit(root)
    time_utc, time_source = evidence_time(gate, commit_time)
    alpha, confidence = float(certify["params"]["alpha"]), float(certify["confidence"])
    groups = _groups(records, paths["test"], class_names, float(gate["radius"]), alpha, confidence)
    params_canonical = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return {
        "schema": SCHEMA,
        "document": {**dict(documents), "time_utc": time_utc, "time_source": time_source},
        "verdict": {
            "verdict": gate["verdict"], "word": VERDICT_WORDS[gate["verdict"]], "mode": gate["mode"],
            "radius": float(gate["radius"]), "criteria": gate["criteria"], "failed": gate.get("failed", []),
            "protocol": gate["protocol"], "n_examples": gate.get("n_examples", certify["n_examples"]),
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
        "least_robust": _least_robust(evaluate, records, class_names),
        "evaluate": evaluate,
        "signing": dict(signing),
        "params": json.loads(params_canonical),
    }
