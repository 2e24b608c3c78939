"""Why the shipped training method was chosen (dossier section 6): the training-method benchmark record
(benchmarks/results/training_methods.json, read by :func:`certification.method_benchmark.read_method_record`), the
issue's target rule applied to it (:func:`certification.method_benchmark.apply_target`), and what the record says
about the shipped model: whether params.yaml's train.method is the rule's pick, and whether the benchmark row of the
shipped method and sigma is the shipped model itself (same SHA-256) or a retraining.

Every number printed here is in the evidence's ``model_selection`` block, which holds the record's rows as read and
the rule's outcome; nothing is recomputed at render time. The words are verification.yaml ``model_selection``; their
``{name}`` fields are filled here (``{{...}}`` evidence placeholders are not used: most fields exist only for one
outcome). No record, or a supplied model, is one generated sentence.
"""
from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping

from certification.dossier.sections import keep, num, para, pct, table
from certification.errors import InputError
from certification.fileio import sha256_file
from certification.method_benchmark import BASELINE, MethodRecord, MethodRow, apply_target, read_method_record

#: verification.yaml ``model_selection`` keys (templates.py checks them) and the criteria labels among them.
WORD_KEYS = ("intro", "record", "same_data", "other_data", "target_met", "target_missed", "no_candidate",
             "params_equal", "params_differ", "same_model", "same_float_model", "retrained", "retrained_other",
             "no_row", "absent", "supplied", "no_baseline", "table_note",
             "acr_ratio", "clean_accuracy_change_points", "melanoma_recall_change", "basal_cell_carcinoma_recall_change",
             "train_time_ratio")


def _g(value: Any) -> str:
    """Sigma, radius, alpha: shortest form (0.25, 0.001); None as n/a."""
    return "n/a" if value is None else str(value) if isinstance(value, int) else f"{value:g}"


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _settings_differences(row: MethodRow, model: Mapping[str, Any], train: Mapping[str, Any] | None) -> list[str]:
    """How the benchmark row's training differs from the shipped model's (epochs, hyper-parameters), as phrases."""
    out = []
    epochs = (train or {}).get("epochs")
    if isinstance(epochs, int) and epochs != row.epochs:
        out.append(f"{row.epochs} epochs, shipped {epochs}")
    shipped = (model.get("training") or {}).get("hyperparameters")
    if isinstance(shipped, Mapping) and dict(shipped) != row.hyperparameters:
        out.append(f"hyper-parameters {row.hyperparameters or '{}'}, shipped {dict(shipped) or '{}'}")
    return out


def _identity(record: MethodRecord, method: str, sigma: float, model: Mapping[str, Any],
              train: Mapping[str, Any] | None) -> dict[str, Any]:
    row = record.row(sigma, method)
    if row is None:
        return {"kind": "no_row", "row_sha256": None, "differences": []}
    if row.model_sha256 == model.get("sha256"):
        kind, differences = "same_model", []
    elif row.model_sha256 == model.get("fp32_sha256"):
        kind, differences = "same_float_model", []
    else:
        differences = _settings_differences(row, model, train)
        kind = "retrained_other" if differences else "retrained"
    return {"kind": kind, "row_sha256": row.model_sha256, "differences": differences}


def collect_model_selection(path: Path | None, root: Path, model: Mapping[str, Any], train: Mapping[str, Any] | None,
                            params: Mapping[str, Any], datasheet: Mapping[str, Any]) -> dict[str, Any]:
    """The evidence's ``model_selection`` block. ``status``: supplied (a SUPPLIED model: no method was chosen here),
    absent (no record), no_baseline (the record has no gaussian row at the shipped sigma) or present. A malformed or
    unfinished record is an InputError (the reader's one line)."""
    source = "none" if path is None else _relative(Path(path), Path(root))
    if model.get("supplied"):
        return {"status": "supplied", "source": source}
    if path is None or not Path(path).is_file():
        return {"status": "absent", "source": source}
    record = read_method_record(path)
    sigma = float(model["train_sigma"])
    base = {"source": source, "record_sha256": sha256_file(path), "shipped_sigma": sigma}
    if record.row(sigma, BASELINE) is None:
        return {**base, "status": "no_baseline", "sigmas": record.sigmas()}
    selection = apply_target(record, sigma)
    shipped_method = str((model.get("training") or {}).get("method", BASELINE))
    configured = (params.get("train") or {}).get("method", shipped_method)
    splits = {name: s.get("sha256") for name, s in (datasheet.get("splits") or {}).items()}
    other_data = sorted(name for name, sha in record.data_sha256.items() if splits.get(name) != sha)
    return {**base, "status": "present", "command": record.command, "date_utc": record.date_utc,
            "settings": asdict(record.settings), "data": {"same": not other_data, "differs": other_data},
            "params_hyperparameters": record.params_hyperparameters,
            "rows": [asdict(r) for r in record.rows], "selection": selection.to_dict(),
            "shipped": {"method": shipped_method, "configured_method": str(configured), "sigma": sigma,
                        "model_sha256": model.get("sha256"), "fp32_sha256": model.get("fp32_sha256"),
                        "configured_is_pick": configured == selection.pick},
            "identity": _identity(record, shipped_method, sigma, model, train)}


def _words(texts: Any, key: str, **values: Any) -> str:
    text = texts.verification["model_selection"][key]
    try:
        return " ".join(str(text).format(**values).split())
    except (KeyError, IndexError, ValueError) as exc:
        raise InputError(f"verification.yaml: model_selection.{key}: unknown or malformed field {exc} (fields here: "
                         f"{', '.join(sorted(values)) or 'none'})") from None


def _cell(point: Mapping[str, Any] | None) -> str:
    if point is None or point["certified_accuracy"] is None:
        return "n/a"
    return f"{pct(point['certified_accuracy'])} ({pct(point['lower_bound'])})"


def _value(name: str, value: float) -> str:
    """A criterion's value in its unit: ratios as 1.20x, clean-accuracy changes (already points) and recall changes
    (fractions) as signed percentage points."""
    if name.endswith("_ratio"):
        return f"{value:.2f}x"
    return f"{value if name.endswith('_points') else 100 * value:+.1f} points"


def _measured(criterion: Mapping[str, Any]) -> str:
    value = criterion["measured"]
    return "not measured" if value is None else _value(criterion["name"], value)


def _required(criterion: Mapping[str, Any]) -> str:
    return f"{criterion['comparison']} {_value(criterion['name'], criterion['threshold'])}"


def _rows_table(block: Mapping[str, Any], st: Mapping[str, Any]) -> Any:
    r_star = _g(block["settings"]["gate_radius"])
    head = ["Sigma", "Method", "Hyper-parameters", f"Cert. acc. r = {r_star} (LB)", "Cert. acc. r = 0.5 (LB)", "ACR",
            "Clean acc. (LB)", f"Melanoma recall r = {r_star} (LB)", f"BCC recall r = {r_star} (LB)", "Train s",
            "Model SHA-256"]
    rows = [head]
    for r in block["rows"]:
        hyper = ", ".join(f"{k} {v:g}" for k, v in r["hyperparameters"].items()) or "-"
        clean = r["clean_accuracy"]
        rows.append([_g(r["sigma"]), r["method"], hyper, _cell(r["certified_at_r_star"]), _cell(r["certified_at_0_5"]),
                     num(r["acr"]), f"{pct(clean['estimate'])} ({pct(clean['lower'])})",
                     _cell(r["recall_at_r_star"].get("melanoma")), _cell(r["recall_at_r_star"].get("basal_cell_carcinoma")),
                     num(r["train_seconds"], 0), r["model_sha256"][:12]])
    return table(rows, [0.6, 0.95, 0.85, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.55, 1.05], st, mono_cols=(10,))


def _criteria_table(block: Mapping[str, Any], texts: Any, st: Mapping[str, Any]) -> Any:
    selection = block["selection"]
    rows = [["Sigma", "Candidate", "Criterion (against gaussian, same sigma)", "Required", "Measured", "Holds"]]
    for candidate in [*selection["candidates"], *selection["other_sigmas"]]:
        shipped = math.isclose(candidate["sigma"], selection["sigma"], abs_tol=1e-12)
        for c in candidate["criteria"]:
            rows.append([f"{_g(candidate['sigma'])}{' (shipped)' if shipped else ''}", candidate["method"],
                         _words(texts, c["name"]), _required(c), _measured(c), "yes" if c["passed"] else "NO"])
    return table(rows, [0.7, 0.8, 1.9, 0.8, 0.9, 0.5], st)


def _decision(block: Mapping[str, Any], texts: Any) -> list[str]:
    selection, shipped, settings = block["selection"], block["shipped"], block["settings"]
    limits = selection["thresholds"]  # as the evidence recorded them
    out = [_words(texts, "intro", min_acr_ratio=f"{limits['min_acr_ratio']:g}",
                  max_clean_drop_points=f"{limits['max_clean_drop_points']:g}",
                  max_train_time_ratio=f"{limits['max_train_time_ratio']:g}", sigma=_g(selection["sigma"])),
           _words(texts, "record", source=block["source"], record_sha256=block["record_sha256"], date_utc=block["date_utc"],
                  command=block["command"], **{k: _g(v) for k, v in settings.items()}),
           _words(texts, "same_data") if block["data"]["same"] else
           _words(texts, "other_data", splits=", ".join(block["data"]["differs"]))]
    best = next((c for c in selection["candidates"] if c["method"] == selection["best"]), None)
    if best is None:
        out.append(_words(texts, "no_candidate", sigma=_g(selection["sigma"]), pick=selection["pick"]))
    elif best["meets_target"]:
        out.append(_words(texts, "target_met", sigma=_g(selection["sigma"]), best=best["method"], pick=selection["pick"]))
    else:
        failed = ", ".join(_words(texts, c["name"]) for c in best["criteria"] if not c["passed"])
        out.append(_words(texts, "target_missed", sigma=_g(selection["sigma"]), best=best["method"],
                          failed=failed, pick=selection["pick"]))
    key = "params_equal" if shipped["configured_is_pick"] else "params_differ"
    out.append(_words(texts, key, configured=shipped["configured_method"], pick=selection["pick"]))
    identity = block["identity"]
    out.append(_words(texts, identity["kind"], method=shipped["method"], sigma=_g(shipped["sigma"]),
                      shipped_sha256=shipped["model_sha256"], fp32_sha256=shipped["fp32_sha256"],
                      row_sha256=identity["row_sha256"] or "n/a", differences="; ".join(identity["differences"])))
    return out


def model_selection_section(ev: Mapping[str, Any], texts: Any, st: Mapping[str, Any]) -> list:
    """Section 6's "Choice of training method": the rule, the record's table and criteria, the decision, or the one
    sentence for a supplied model or a missing record."""
    block = ev.get("model_selection") or {"status": "absent", "source": "none"}
    title = para("Choice of training method", st["h2"])
    status = block["status"]
    if status in ("supplied", "absent"):
        return [title, para(_words(texts, status, source=block["source"]), st["body"])]
    if status == "no_baseline":
        return [title, para(_words(texts, "no_baseline", source=block["source"], sigma=_g(block["shipped_sigma"]),
                                   sigmas=", ".join(_g(s) for s in block["sigmas"])), st["body"])]
    s = block["settings"]
    note = _words(texts, "table_note", confidence=_g(s["confidence"]), examples=s["examples"], alpha=_g(s["alpha"]))
    sentences = _decision(block, texts)
    return [title, *[para(x, st["body"]) for x in sentences[:3]], keep(_rows_table(block, st)), para(note, st["small"]),
            keep(_criteria_table(block, texts, st)), *[para(x, st["body"]) for x in sentences[3:]]]


__all__ = ["WORD_KEYS", "collect_model_selection", "model_selection_section"]
