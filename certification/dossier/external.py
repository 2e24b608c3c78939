"""Evidence of an externally certified model: a dossier whose certificates were computed elsewhere.

The input is a results file that another tool (or another run) wrote: a certify log of Cohen et al.'s reference code
(``idx label predict radius correct time``, read by :func:`certification.cohen_log.parse_cohen_log`) or smoothcert's
own certify JSONL. Nothing is re-certified: the dataset summary (:func:`certification.summary.summarize`) and the
verdict (:func:`certification.gate.evaluate`) are recomputed from the rows, and every statement about what the
evidence holds is generated from the input: what it records (counts per example, sigma, alpha, n0/n, model and data
hashes) and what it does not. The evidence never claims more than the rows carry: a model hash appears only when a
model file was given (and, for JSONL rows, equals the hash the rows name), and a Cohen log's rows are never tied to
a model by this tool.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from certification.dossier.evidence import evidence_time, git_commit
from certification.errors import InputError, StaleArtifactError
from certification.fileio import sha256_bytes, sha256_file
from certification.gate import Protocol, evaluate
from certification.model_card import load_model_description
from certification.cohen_log import COHEN_DEFAULTS, IMPORTED_UNKNOWN, is_imported, parse_cohen_log
from certification.records import TSV_HEADER, CertifyRecord, DecisionRecord, certify_jsonl_text, parse_certify_records
from certification.summary import summarize

SCHEMA = "smoothcert-external-evidence/1"
COHEN_FORMAT = "Cohen et al. (2019) reference-code certify log (code/certify.py)"
JSONL_FORMAT = "smoothcert certify JSONL"
VERDICT_WORDS = {"ACCEPT": "ACCEPTED", "REJECT": "REJECTED"}


@dataclass(frozen=True)
class ExternalInputs:
    """What the submitter supplies. ``sigma``/``alpha`` are needed for a Cohen log (it records neither);
    ``model`` is the ONNX file the results are said to belong to (optional); ``model_card`` a models/model.json
    naming the classes (and malignant classes) in index order (optional)."""

    results: Path
    protocol: Protocol
    radii: Sequence[float]
    confidence: float
    sigma: float | None = None
    alpha: float | None = None
    model: Path | None = None
    model_card: Path | None = None


@dataclass(frozen=True)
class ExternalRecords:
    """The imported rows, the bytes of the original file and the rows in smoothcert's certify JSONL form (the file
    attached to the dossier as certify.jsonl, from which ``smoothcert verify`` recomputes the summary)."""

    records: list[CertifyRecord]
    original: bytes
    jsonl: bytes
    format: str


def read_external_records(inputs: ExternalInputs) -> ExternalRecords:
    """Read ``inputs.results``: a Cohen log (``sigma`` required, ``alpha`` default 0.001) or certify JSONL (``sigma``
    and ``alpha`` must not be given: the rows record them)."""
    path = Path(inputs.results)
    if not path.is_file():
        raise InputError(f"{path}: results file not found")
    original = path.read_bytes()
    first = original.split(b"\n", 1)[0].decode("utf-8", "replace").split()
    if first == TSV_HEADER.split("\t"):
        if inputs.sigma is None:
            raise InputError(f"{path} is a Cohen et al. certify log, which does not record sigma; pass --sigma")
        alpha = COHEN_DEFAULTS["alpha"] if inputs.alpha is None else inputs.alpha
        records, kind = parse_cohen_log(original, inputs.sigma, str(path), alpha=alpha), COHEN_FORMAT
    else:
        if inputs.sigma is not None or inputs.alpha is not None:
            raise InputError(f"{path}: certify JSONL rows record sigma and alpha; drop --sigma/--alpha")
        records, kind = parse_certify_records(original, str(path)), JSONL_FORMAT
    return ExternalRecords(records, original, certify_jsonl_text(records).encode("utf-8"), kind)


def _classes(inputs: ExternalInputs, records: Sequence[CertifyRecord]) -> tuple[list[str], list[str], str]:
    if inputs.model_card is not None:
        card = load_model_description(inputs.model_card)
        return list(card["class_names"]), list(card["malignant_classes"]), f"{inputs.model_card} class_names"
    top = max(max(r.label for r in records), max(r.prediction for r in records))
    return [str(k) for k in range(top + 1)], [], "not given: classes are the label indices 0..K-1"


def _model(inputs: ExternalInputs, records: Sequence[CertifyRecord]) -> tuple[str, str]:
    """(model hash the evidence names, statement): the given file's hash, checked against the rows' hash where the
    rows name one; IMPORTED_UNKNOWN when nothing identifies the model."""
    named = sorted({r.model_sha256 for r in records})
    imported = is_imported(records[0])
    if len(named) > 1:
        raise InputError(f"{inputs.results}: rows name {len(named)} different models; certify one model per file")
    if inputs.model is None:
        if imported:
            return IMPORTED_UNKNOWN, ("not identified: the log names no model and no model file was given; the verdict "
                                      "applies to whatever model produced the log")
        return named[0], (f"named by the rows (SHA-256 {named[0]}); no model file was given, so this tool did not "
                          "hash the file")
    if not Path(inputs.model).is_file():
        raise InputError(f"{inputs.model}: model file not found")
    actual = sha256_file(inputs.model)
    if imported:
        return actual, (f"file {Path(inputs.model).name} given by the submitter hashes to {actual}; the log names no "
                        "model, so that these results belong to it is the submitter's statement, not checked here")
    if named[0] != actual:
        raise StaleArtifactError(f"{inputs.results}: the rows were certified on model {named[0][:12]}..., but "
                                 f"{inputs.model} hashes to {actual[:12]}...; give the certified model file")
    return actual, f"named by the rows and equal to the SHA-256 of the given file {Path(inputs.model).name}"


def _unique(records: Sequence[CertifyRecord], key: str) -> list[Any]:
    return sorted({getattr(r, key) for r in records})


def _statements(inputs: ExternalInputs, records: Sequence[CertifyRecord], kind: str, model_statement: str,
                classes_source: str) -> list[dict[str, str]]:
    """One row per fact: what the evidence knows (and from where) or that it does not know it."""
    cohen = kind == COHEN_FORMAT
    counted = all(r.counts_estimation for r in records)
    n0, n = _unique(records, "n0"), _unique(records, "n")
    data = _unique(records, "data_sha256")
    rows = [
        {"item": "certification performed by", "known": "no",
         "statement": f"not by smoothcert: the certificates were computed elsewhere and imported from {Path(inputs.results).name} "
                      f"({kind}); this tool recomputed only the dataset summary and the verdict from its rows"},
        {"item": "per-example counts", "known": "yes" if counted else "no",
         "statement": "recorded per example (selection and estimation counts)" if counted else
         ("not recorded: the log holds only idx, label, prediction, radius, correct and time; each certified row's "
          "p_lower is re-derived as Phi(radius / sigma) from the rounded radius, and no count can be audited")},
        {"item": "noise sigma", "known": "given" if cohen else "yes",
         "statement": f"{', '.join(f'{s:g}' for s in _unique(records, 'sigma'))} "
                      + ("as given by the submitter (--sigma); the log does not record it" if cohen else "as recorded by every row")},
        {"item": "per-example alpha", "known": "given" if cohen else "yes",
         "statement": f"{', '.join(f'{a:g}' for a in _unique(records, 'alpha'))} "
                      + ("as given by the submitter (--alpha, default 0.001 as in the reference code); the log does not record it"
                         if cohen else "as recorded by every row")},
        {"item": "samples n0 / n", "known": "no" if cohen else "yes",
         "statement": "not recorded in the log (the certificates' radii are taken as computed)" if cohen else
         f"n0 {', '.join(map(str, n0))}; n {', '.join(map(str, n))} as recorded by the rows"},
        {"item": "noise seeds", "known": "no" if cohen else "yes",
         "statement": "not recorded: the certificates cannot be re-run" if cohen else
         f"seed {', '.join(map(str, _unique(records, 'seed')))} as recorded (re-run with smoothcert audit needs the model and data)"},
        {"item": "model identity", "known": "no" if model_statement.startswith("not identified") else "yes",
         "statement": model_statement},
        {"item": "test data identity", "known": "no" if data == [IMPORTED_UNKNOWN] else "yes",
         "statement": "not identified: the log names no data set and no hash" if data == [IMPORTED_UNKNOWN] else
         f"named by the rows: SHA-256 {', '.join(data)} (the file itself was not given to this tool)"},
        {"item": "class names", "known": "yes" if inputs.model_card is not None else "no", "statement": classes_source},
    ]
    return rows


def collect_external_evidence(inputs: ExternalInputs, imported: ExternalRecords, documents: Mapping[str, Any],
                              signing: Mapping[str, Any], params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The evidence dict of an externally certified model (written as evidence.json and attached to the PDF).

    Keys shared with the pipeline's evidence (``verdict``, ``hashes.model_sha256``, ``hashes.certify_jsonl_sha256``,
    ``certify``, ``signing``) mean the same, so ``smoothcert verify`` checks this dossier as it checks the pipeline's.
    """
    protocol = inputs.protocol
    if protocol.mode != "fixed":
        raise InputError(f"gate.mode is '{protocol.mode}': imported results can only be judged in mode fixed (a "
                         "sequential decision needs the model and data); set gate.mode: fixed")
    records = imported.records
    names, malignant, classes_source = _classes(inputs, records)
    model_sha, model_statement = _model(inputs, records)
    rows = [DecisionRecord.from_certify(r, protocol.radius) for r in records]
    verdict = evaluate(rows, protocol, names, malignant, records[0].alpha, records[0].model_sha256).to_dict()
    summary = summarize(records, inputs.radii, inputs.confidence, names)
    summary["params"] = {"sigma": records[0].sigma, "alpha": records[0].alpha}
    commit, commit_time = git_commit(Path("."))
    time_utc, time_source = evidence_time({}, commit_time)
    return {
        "schema": SCHEMA,
        "document": {**dict(documents), "time_utc": time_utc, "time_source": time_source},
        "evidence_kind": "external",
        "source": {"path": Path(inputs.results).name, "format": imported.format, "rows": len(records),
                   "sha256": sha256_bytes(imported.original)},
        "statements": _statements(inputs, records, imported.format, model_statement, classes_source),
        "malignant_classes": malignant,
        "verdict": {**{k: verdict[k] for k in ("verdict", "mode", "criteria", "failed", "protocol", "n_examples")},
                    "word": VERDICT_WORDS[verdict["verdict"]], "radius": float(verdict["radius"])},
        "hashes": {"model_sha256": model_sha, "protocol_sha256": verdict["protocol_sha256"],
                   "results_sha256": sha256_bytes(imported.original),
                   "certify_jsonl_sha256": sha256_bytes(imported.jsonl),
                   **({"params_sha256": sha256_bytes(json.dumps(params, sort_keys=True, separators=(",", ":"),
                                                                default=str).encode("utf-8"))} if params else {})},
        "git": {"commit": commit},
        "certify": summary,
        "signing": dict(signing),
    }


def external_records_name(imported: ExternalRecords, results: str | os.PathLike[str]) -> str | None:
    """The attachment name of the original file when it is not already the attached certify.jsonl (a Cohen log)."""
    return f"imported_{Path(results).name}" if imported.format == COHEN_FORMAT else None
