"""The human-edited words of the dossier (dossier_templates/*.yaml) with numbers filled from the evidence.

Each template is a YAML file a non-programmer can edit. Text may hold placeholders ``{{path}}`` or
``{{path|format}}`` where ``path`` is a dotted path into the evidence (``certify.params.n``,
``groups.per_skin_type.VI.certified.lower``) or into ``criteria.<criterion name>.<key>``; list items are
addressed by position (``certify.curve.0.radius``). Formats: ``pct`` (percent, 1 decimal), ``f2``, ``f3``,
``f4``, ``int``, ``short`` (first 12 characters of a hash); without a format floats print with 3 decimals
and lists as comma-separated items.
An unknown placeholder, an unknown format or a missing required field is an :class:`InputError` naming it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping


from certification.dossier.model_selection import WORD_KEYS as MODEL_SELECTION_KEYS
from certification.dossier.risk import RiskMatrix, check_rows, parse_matrix
from certification.errors import InputError, MissingInputError
from certification.yaml_io import read_yaml

PLACEHOLDER = re.compile(r"\{\{\s*([^{}|\s]+)\s*(?:\|\s*([a-z0-9]+)\s*)?\}\}")

#: template file -> required top-level fields (value type)
REQUIRED_FIELDS: dict[str, dict[str, type]] = {
    "document.yaml": {"document_id": str, "title": str, "device": str, "manufacturer": str, "revision": str,
                      "status": str, "confidentiality": str, "revision_history": list, "approvals": dict},
    "intended_use.yaml": {"intended_use": str, "indications": str, "population": str, "skin_types": str,
                          "users": str, "environment": str, "workflow": str, "out_of_scope": list},
    "threat_model.yaml": {"specification": str, "threat_model": str, "covered": list, "not_covered": list},
    "verification.yaml": {"method": str, "assumptions": list, "development": str, "reproducibility": dict,
                          "prespecification": dict, "model_selection": dict},
    "fmea.yaml": {"scales": str, "rows": list},
    "acceptance.yaml": {"rationale": str, "traceability": list, "criteria_rationale": list, "triage_intro": str},
    "deployed_procedure.yaml": {"acquisition": str, "resizing": str, "prediction": str, "abstention_rule": str,
                                "gate_abstention": str, "device_hardware": str},
    "risk_matrix.yaml": {"severity": dict, "probability": list, "matrix": dict},
}
FMEA_KEYS = ("id", "failure_mode", "effect", "severity", "probability", "likelihood_evidence", "control")
TRACE_KEYS = ("requirement", "source", "evidence", "section")
RATIONALE_KEYS = ("criterion", "threshold", "rationale")
NOT_COVERED_KEYS = ("item", "why")
HISTORY_KEYS = ("revision", "date", "author", "change")
REPRODUCIBILITY_KEYS = ("data", "weights_portable", "weights_platform_specific", "certificates")
APPROVAL_KEYS = ("role", "meaning")
PRESPECIFICATION_KEYS = ("holds", "violated", "not_recorded")
#: threat_model.yaml ``lighting``: the words of a lighting certificate, printed (and filled) only for lighting runs
LIGHTING_FIELDS: dict[str, type] = {"specification": str, "threat_model": str, "covered": list, "not_covered": list}


def format_value(value: Any, fmt: str | None, where: str) -> str:
    """Format one evidence value for print. Booleans print yes/no, None prints n/a."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list) and fmt is None:
        return ", ".join(format_value(v, None, where) for v in value)
    if isinstance(value, (dict, list)):
        raise InputError(f"{where}: placeholder names a whole section, not a value ({str(value)[:40]}...)")
    if fmt is None:
        return f"{value:.3f}" if isinstance(value, float) else str(value)
    if fmt == "short":
        return str(value)[:12]
    if not isinstance(value, (int, float)):
        raise InputError(f"{where}: format '{fmt}' needs a number, got {value!r}")
    formats = {"pct": lambda v: f"{100 * v:.1f}%", "f2": lambda v: f"{v:.2f}", "f3": lambda v: f"{v:.3f}",
               "f4": lambda v: f"{v:.4f}", "int": lambda v: f"{int(round(v))}",
               "sci": lambda v: f"{v:.1e}"}
    if fmt not in formats:
        raise InputError(f"{where}: unknown format '|{fmt}'; use one of {', '.join(sorted(formats))}, short")
    return formats[fmt](value)


def namespace(evidence: Mapping[str, Any]) -> dict[str, Any]:
    """What placeholders can address: the evidence, plus gate criteria by name under ``criteria`` and
    ``smoothing_noise``, the certified noise in words (:func:`smoothing_noise`)."""
    space = dict(evidence)
    space["criteria"] = {c["name"]: c for c in evidence.get("verdict", {}).get("criteria", [])}
    certify = evidence.get("certify") or {}
    if "sigma" in (certify.get("params") or {}):
        space["smoothing_noise"] = smoothing_noise(certify["params"]["sigma"], (certify.get("noise") or {}).get("covariance"))
    return space


def smoothing_noise(sigma: Any, covariance: Mapping[str, Any] | None) -> str:
    """The certified noise of metrics/certify.json in words: "sigma = S" (isotropic), or with the recorded lighting
    covariance (``noise.covariance``) the covariance, its directions and tau."""
    text = f"sigma = {format_value(sigma, None, 'smoothing_noise')}"
    if not covariance:
        return text
    return (f"{text}, plus lighting noise along {covariance['k']} fixed lighting directions ({covariance['directions']}, "
            f"tau = {format_value(covariance['tau'], None, 'smoothing_noise')} per pixel, "
            f"tau_norm = {format_value(covariance['tau_norm'], None, 'smoothing_noise')}): covariance "
            "sigma^2 I + tau_norm^2 sum_k v_k v_k^T, the covariance the certificates were computed for")


def lookup(space: Mapping[str, Any], path: str, where: str) -> Any:
    value: Any = space
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise InputError(f"{where}: unknown placeholder '{{{{{path}}}}}' (no '{part}'); "
                             "fix the template or see dossier/evidence.json for the names")
    return value


def fill(text: str, space: Mapping[str, Any], where: str) -> str:
    """Replace every placeholder in ``text``; a stray '{{' or '}}' is an error too."""
    def replace(match: re.Match[str]) -> str:
        return format_value(lookup(space, match.group(1), where), match.group(2), where)

    filled = PLACEHOLDER.sub(replace, text)
    if "{{" in filled or "}}" in filled:
        raise InputError(f"{where}: malformed placeholder near '{filled[max(0, filled.find('{{')):][:40]}'")
    return filled


def _fill_tree(node: Any, space: Mapping[str, Any], where: str) -> Any:
    if isinstance(node, str):
        return fill(node, space, where)
    if isinstance(node, list):
        return [_fill_tree(item, space, f"{where}[{i}]") for i, item in enumerate(node)]
    if isinstance(node, dict):
        return {key: _fill_tree(value, space, f"{where}.{key}") for key, value in node.items()}
    return "" if node is None else str(node)


def _check_items(items: list, keys: tuple[str, ...], where: str) -> None:
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise InputError(f"{where}[{i}]: must be a mapping with keys {', '.join(keys)}")
        for key in keys:
            if key not in item or item[key] in (None, ""):
                raise InputError(f"{where}[{i}]: missing required field '{key}'")


def read_raw(folder: str | Path) -> dict[str, dict[str, Any]]:
    """Read and structurally check every template file (no placeholder filling)."""
    folder = Path(folder)
    raw: dict[str, dict[str, Any]] = {}
    for name, fields in REQUIRED_FIELDS.items():
        path = folder / name
        if not path.is_file():
            raise MissingInputError(f"{path}: template not found")
        data = read_yaml(path)
        if not isinstance(data, dict):
            raise InputError(f"{path}: must be a mapping of fields")
        for key, kind in fields.items():
            if key not in data or data[key] in (None, "", [], {}):
                raise InputError(f"{path}: missing required field '{key}'")
            if not isinstance(data[key], kind):
                raise InputError(f"{path}: field '{key}' must be a {'list' if kind is list else 'text' if kind is str else 'mapping'}")
        raw[name] = data
    _check_items(raw["fmea.yaml"]["rows"], FMEA_KEYS, str(folder / "fmea.yaml") + ": rows")
    check_rows(raw["fmea.yaml"]["rows"], risk_matrix(raw, folder), str(folder / "fmea.yaml"))
    _check_items(raw["acceptance.yaml"]["traceability"], TRACE_KEYS, str(folder / "acceptance.yaml") + ": traceability")
    _check_items(raw["acceptance.yaml"]["criteria_rationale"], RATIONALE_KEYS, str(folder / "acceptance.yaml") + ": criteria_rationale")
    _check_items(raw["threat_model.yaml"]["not_covered"], NOT_COVERED_KEYS, str(folder / "threat_model.yaml") + ": not_covered")
    lighting = raw["threat_model.yaml"].get("lighting")
    if lighting is not None:
        where = f"{folder / 'threat_model.yaml'}: lighting"
        if not isinstance(lighting, dict):
            raise InputError(f"{where} must be a mapping of {', '.join(LIGHTING_FIELDS)}")
        for key, kind in LIGHTING_FIELDS.items():
            if not isinstance(lighting.get(key), kind) or not lighting[key]:
                raise InputError(f"{where}: missing required field '{key}'")
        _check_items(lighting["not_covered"], NOT_COVERED_KEYS, f"{where}.not_covered")
    _check_items(raw["document.yaml"]["revision_history"], HISTORY_KEYS, str(folder / "document.yaml") + ": revision_history")
    for role, spec in raw["document.yaml"]["approvals"].items():
        _check_items([spec], APPROVAL_KEYS, f"{folder / 'document.yaml'}: approvals.{role}")
    _check_items([raw["verification.yaml"]["reproducibility"]], REPRODUCIBILITY_KEYS,
                 f"{folder / 'verification.yaml'}: reproducibility")
    _check_items([raw["verification.yaml"]["prespecification"]], PRESPECIFICATION_KEYS,
                 f"{folder / 'verification.yaml'}: prespecification")
    _check_items([raw["verification.yaml"]["model_selection"]], MODEL_SELECTION_KEYS,
                 f"{folder / 'verification.yaml'}: model_selection")
    return raw


def risk_matrix(raw: Mapping[str, Mapping[str, Any]], folder: str | Path) -> RiskMatrix:
    """The acceptability matrix of risk_matrix.yaml, strictly checked (InputError naming the file)."""
    return parse_matrix(raw["risk_matrix.yaml"], str(Path(folder) / "risk_matrix.yaml"))


def document_metadata(raw: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The document-control fields recorded in the evidence (before any number is known)."""
    doc = raw["document.yaml"]
    return {key: doc[key] for key in ("document_id", "title", "device", "manufacturer", "revision", "status",
                                      "confidentiality")}


def approval_roles(raw: Mapping[str, Mapping[str, Any]], fields: list[str]) -> dict[str, dict[str, str]]:
    """Role and meaning of the author field and of each approval field (each must be in document.yaml)."""
    approvals = raw["document.yaml"]["approvals"]
    out = {}
    for name in ["author", *fields]:
        if name not in approvals:
            raise InputError(f"document.yaml: missing required field 'approvals.{name}' (role and meaning of "
                             f"signature field '{name}')")
        out[name] = {"role": str(approvals[name]["role"]), "meaning": str(approvals[name]["meaning"])}
    return out


@dataclass(frozen=True)
class Texts:
    """All template words with placeholders filled, keyed by file stem (``texts.fmea["rows"]``)."""

    document: dict[str, Any]
    intended_use: dict[str, Any]
    threat_model: dict[str, Any]
    verification: dict[str, Any]
    fmea: dict[str, Any]
    acceptance: dict[str, Any]
    deployed_procedure: dict[str, Any]
    risk_matrix: RiskMatrix


#: verification.yaml texts that describe a model the pipeline trained, and those for a supplied model (each set is
#: filled only for its kind: the other's placeholders name fields that evidence does not have).
TRAINED_ONLY = {"development": (), "weights_portable": ("reproducibility",), "weights_platform_specific": ("reproducibility",)}
SUPPLIED_ONLY = {"development_supplied": (), "weights_supplied": ("reproducibility",)}


def _for_model_origin(raw: dict[str, dict[str, Any]], supplied: bool) -> dict[str, dict[str, Any]]:
    """``raw`` without the verification texts of the other model origin (trained by the pipeline or supplied)."""
    verification = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw["verification.yaml"].items()}
    if supplied:
        missing = [k for k, under in SUPPLIED_ONLY.items() if k not in (verification[under[0]] if under else verification)]
        if missing:
            raise InputError(f"verification.yaml: missing required field '{missing[0]}' (the words for a supplied model)")
    for key, under in (TRAINED_ONLY if supplied else SUPPLIED_ONLY).items():
        (verification[under[0]] if under else verification).pop(key, None)
    return {**raw, "verification.yaml": verification}


def load_texts(folder: str | Path, evidence: Mapping[str, Any]) -> Texts:
    """Read every template and fill its placeholders from ``evidence``."""
    raw = _for_model_origin(read_raw(folder), bool((evidence.get("model") or {}).get("supplied")))
    if not (evidence.get("claims") or {}).get("lighting"):  # the lighting words speak of a covariance this run lacks
        raw["threat_model.yaml"] = {k: v for k, v in raw["threat_model.yaml"].items() if k != "lighting"}
    elif "lighting" not in raw["threat_model.yaml"]:
        raise InputError(f"{Path(folder) / 'threat_model.yaml'}: the certificates are lighting certificates but the "
                         "template has no 'lighting' section (specification, threat_model, covered, not_covered); add it")
    space = namespace(evidence)
    filled = {name: _fill_tree(data, space, str(Path(folder) / name)) for name, data in raw.items()
              if name != "risk_matrix.yaml"}
    for row, raw_row in zip(filled["fmea.yaml"]["rows"], raw["fmea.yaml"]["rows"]):
        row["severity"] = int(raw_row["severity"])  # numbers, as checked against the matrix
    return Texts(**{name.removesuffix(".yaml"): value for name, value in filled.items()},
                 risk_matrix=risk_matrix(raw, folder))


#: The words of the dossier for an externally certified model (``smoothcert dossier``), and their required fields.
EXTERNAL_TEMPLATE = "external.yaml"
EXTERNAL_FIELDS: dict[str, type] = {"title_note": str, "introduction": str, "verdict_note": str,
                                    "not_part_of_this_evidence": list}


def load_external_texts(folder: str | Path, evidence: Mapping[str, Any]) -> dict[str, Any]:
    """external.yaml with its placeholders filled from the external evidence (strings, and lists of strings)."""
    path = Path(folder) / EXTERNAL_TEMPLATE
    if not path.is_file():
        raise MissingInputError(f"{path}: template not found")
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise InputError(f"{path}: must be a mapping of fields")
    space = namespace(evidence)
    out: dict[str, Any] = {}
    for key, kind in EXTERNAL_FIELDS.items():
        if key not in data or data[key] in (None, "", []):
            raise InputError(f"{path}: missing required field '{key}'")
        if not isinstance(data[key], kind):
            raise InputError(f"{path}: field '{key}' must be a {'list' if kind is list else 'text'}")
        out[key] = _fill_tree(data[key], space, f"{path.name}: {key}")
    return out
