"""The measured figures behind the dossier's coverage claims and its ISO 14971 risk table, taken from what the
stages wrote (metrics/gate.json, certify.json, evaluate.json, export.json): lighting/camera coverage per change and
severity with one-sided Clopper-Pearson bounds, the subgroups below the gate threshold, and the failure rates the
FMEA maps to probability levels (each the complement of a bound a stage wrote, or a plain count)."""
from __future__ import annotations

from typing import Any, Mapping

from certification.dataset_bounds import proportion_bound


def _rate(estimate: float | None, upper: float | None, failures: int | None, trials: int | None, what: str,
          source: str) -> dict[str, Any]:
    return {"estimate": estimate, "upper": upper, "failures": failures, "trials": trials, "what": what, "source": source}


def count_of_share(share: float, n: int) -> int:
    """The count behind a share of ``n`` that a metrics file records as a fraction."""
    return int(round(float(share) * int(n)))


def coverage_claims(evaluate: Mapping[str, Any], confidence: float) -> list[dict[str, Any]]:
    """Per lighting/camera change and severity: how many of the n evaluated images' changes lie within their own
    certified radius (the evaluate stage's covered_share of n_examples), with one-sided Clopper-Pearson bounds."""
    out = []
    for c in evaluate.get("corruptions") or []:
        if not isinstance(c, Mapping) or not c.get("n_examples"):
            continue
        n = int(c["n_examples"])
        covered = proportion_bound(count_of_share(c["covered_share"], n), n, confidence)
        out.append({"name": str(c["name"]), "severity": c.get("severity"), "parameter": c.get("parameter"),
                    "level": c.get("level"), "n": n, "l2_mean": c.get("l2_mean"), "covered": covered.to_dict(),
                    "covered_contradictions": c.get("covered_contradictions"),
                    "accuracy_smoothed": {"estimate": c.get("accuracy_smoothed"), "lower": c.get("accuracy_smoothed_lower"),
                                          "upper": c.get("accuracy_smoothed_upper")},
                    "accuracy_base": {"estimate": c.get("accuracy_base"), "lower": c.get("accuracy_base_lower"),
                                      "upper": c.get("accuracy_base_upper")},
                    "abstention_smoothed": c.get("abstention_smoothed")})
    return out


def subgroups_below(evaluate: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every subgroup the evaluate stage flagged below the gate threshold (all fields), with n, count and bound."""
    subgroups = evaluate.get("subgroups") or {}
    by_key = {(g["field"], g["group"]): g for g in subgroups.get("groups") or [] if isinstance(g, Mapping)}
    out = []
    for f in subgroups.get("flagged") or []:
        group = by_key.get((f["field"], f["group"]), {})
        at_gate = group.get("at_gate") or {}
        out.append({"field": f["field"], "group": f["group"], "n": f["n_examples"], "count": at_gate.get("count"),
                    "estimate": at_gate.get("certified_accuracy"), "lower": f["lower_bound"],
                    "underpowered": bool(f.get("underpowered"))})
    return out


def risk_rates(gate: Mapping[str, Any], certify: Mapping[str, Any], evaluate: Mapping[str, Any],
                export: Mapping[str, Any], coverage: list[dict[str, Any]]) -> dict[str, dict[str, Any] | None]:
    """Measured failure rates the FMEA maps to probability levels: estimate, one-sided upper bound, failures/n.

    Each is the complement of a bound a stage wrote (1 - lower bound of a success rate is the upper bound of the
    failure rate), or a plain count; None where the pipeline did not measure it."""
    criteria = {c["name"]: c for c in gate["criteria"]}
    rates: dict[str, dict[str, Any] | None] = {}
    cert = criteria.get("certified_accuracy")
    rates["uncertified_at_radius"] = None if cert is None else _rate(
        1 - cert["estimate"], 1 - cert["bound"], cert["trials"] - cert["successes"], cert["trials"],
        f"test images not certified correct at r = {gate['radius']}", "metrics/gate.json certified_accuracy")
    ab = certify["abstention_rate"]
    rates["abstention"] = _rate(ab["estimate"], ab["upper"], ab["successes"], ab["trials"], "abstentions",
                                "metrics/certify.json abstention_rate")
    groups = [g for g in (evaluate.get("subgroups") or {}).get("groups") or []
              if isinstance(g, Mapping) and g.get("n_examples") and (g.get("at_gate") or {}).get("lower_bound") is not None]
    worst = min(groups, key=lambda g: g["at_gate"]["lower_bound"], default=None)
    rates["worst_subgroup_uncertified"] = None if worst is None else _rate(
        1 - worst["at_gate"]["certified_accuracy"], 1 - worst["at_gate"]["lower_bound"],
        worst["n_examples"] - worst["at_gate"]["count"], worst["n_examples"],
        f"images of subgroup {worst['field']} = {worst['group']} not certified correct at the gate radius",
        "metrics/evaluate.json subgroups")
    measured = [c for c in coverage if c["accuracy_smoothed"]["lower"] is not None and c["accuracy_smoothed"]["estimate"] is not None]
    bad = min(measured, key=lambda c: c["accuracy_smoothed"]["lower"], default=None)
    rates["worst_variation_error"] = None if bad is None else _rate(
        1 - bad["accuracy_smoothed"]["estimate"], 1 - bad["accuracy_smoothed"]["lower"],
        bad["n"] - count_of_share(bad["accuracy_smoothed"]["estimate"], bad["n"]), bad["n"],
        f"wrong or abstained smoothed predictions under {bad['name']} severity {bad['severity']}",
        "metrics/evaluate.json corruptions")
    parity = export.get("parity") or {}
    if isinstance(parity.get("agreement"), (int, float)) and isinstance(parity.get("samples"), int) and parity["samples"] > 0:
        n = parity["samples"]
        b = proportion_bound(n - count_of_share(parity["agreement"], n), n, float(gate["protocol"].get("confidence", 0.95)))
        rates["export_disagreement"] = _rate(b.estimate, b.upper, b.successes, n,
                                             "exported-model predictions that differ from the trained network",
                                             "metrics/export.json parity")
    else:
        rates["export_disagreement"] = None
    alpha = certify["params"]["alpha"]
    rates["certificate_error"] = _rate(None, alpha, None, None, "wrong certificates per image (guaranteed at most alpha)",
                                       "CERTIFY's level alpha")
    return rates
