"""The dossier's failure-mode parts: the empirical attack, lighting and camera changes and quantization (section 8)
and the ISO 14971 risk management section with its matrix, subgroups below the threshold and labelling limits
(section 9). Every figure comes from the evidence dict (certification.dossier.evidence); words from the templates."""
from __future__ import annotations

from typing import Any, Mapping

from certification.dossier import claims
from certification.dossier.risk import assess, residual_statement
from certification.dossier.sections import bullets, flatten_scalars, image, keep, key_values, num, para, paragraphs, pct, table
from certification.dossier.templates import Texts


def attack_section(attack: Mapping[str, Any], st: Mapping[str, Any]) -> list:
    if not attack:
        return []
    out = [para("Empirical attack and certificate contradictions", st["h2"]),
           para(f"PGD attack ({attack.get('method', 'n/a')}) on {attack.get('n_examples', 'n/a')} images: "
                f"{attack.get('candidates', 'n/a')} contradiction candidates, {attack.get('confirmed_contradictions', 'n/a')} "
                "confirmed (expected 0 for valid certificates).", st["body"])]
    emp = {round(float(p["radius"]), 6): p for p in attack.get("empirical_robust_accuracy", []) if isinstance(p, Mapping)}
    cert = {round(float(p["radius"]), 6): p for p in attack.get("certified_accuracy", []) if isinstance(p, Mapping)}
    if emp:
        n = attack.get("n_examples", "n/a")
        rows = [["Radius", f"Empirical robust accuracy (upper bound; n = {n})", f"Certified accuracy (lower bound; n = {n})"]]
        for r in sorted(emp):
            cp = cert.get(r, {})
            rows.append([num(r), f"{pct(emp[r].get('accuracy'))} ({pct(emp[r].get('upper_bound'))})",
                         f"{pct(cp.get('certified_accuracy'))} ({pct(cp.get('lower_bound'))})"])
        out.append(table(rows, [0.6, 1.2, 1.2], st))
    return out


def corruptions_section(ev: Mapping[str, Any], st: Mapping[str, Any], figs: Mapping[str, bytes]) -> list:
    rows_in = [c for c in ev["evaluate"].get("corruptions") or [] if isinstance(c, Mapping)]
    if not rows_in:
        return [para("Lighting and camera changes", st["h2"]), para("No corruption study in metrics/evaluate.json.", st["body"])]
    std = claims.coverage_standard(ev)
    conf = ev["claims"]["coverage_confidence"]
    rows = [["Change", "Sev.", "n", "L2 mean", "Within own radius (lower, upper)", "Claim",
             "Smoothed acc. (lower, upper)", "Base acc. (lower, upper)"]]
    for c in ev["claims"]["coverage"]:
        cov, sm, ba = c["covered"], c["accuracy_smoothed"], c["accuracy_base"]
        rows.append([c["name"], num(c["severity"]), num(c["n"]), num(c["l2_mean"]),
                     f"{cov['successes']}/{c['n']} {pct(cov['estimate'])} ({pct(cov['lower'])}, {pct(cov['upper'])})",
                     claims.coverage_word(c, std), f"{pct(sm['estimate'])} ({pct(sm['lower'])}, {pct(sm['upper'])})",
                     f"{pct(ba['estimate'])} ({pct(ba['lower'])}, {pct(ba['upper'])})"])
    note = (f"Bounds: one-sided Clopper-Pearson at confidence {num(conf)} on n images per setting. 'covered' needs the "
            f"lower bound of the share within its own radius to reach {pct(std)}.")
    return [keep(para("Lighting and camera changes vs certified radius", st["h2"]), image(figs["corruptions"])),
            table(rows, [1.45, 0.45, 0.4, 0.55, 1.25, 0.75, 1.1, 1.1], st), para(note, st["small"])]


def quantization_section(quant: Any, st: Mapping[str, Any]) -> list:
    out = [para("Quantization", st["h2"])]
    if quant is None:
        return out + [para("Not applicable: the shipped model is not quantized.", st["body"])]
    return out + [key_values(flatten_scalars(quant), st)]


def fmea_section(ev: Mapping[str, Any], texts: Texts, st: Mapping[str, Any], figs: Mapping[str, bytes]) -> list:
    matrix = texts.risk_matrix
    assessed = assess(texts.fmea["rows"], ev["claims"]["risk_rates"], matrix)
    rows = [["ID", "Hazard / failure mode", "Effect", "S", "Probability: basis and level", "Evidence", "Control", "Risk"]]
    for r, a in zip(texts.fmea["rows"], assessed):
        rows.append([r["id"], r["failure_mode"], r["effect"], str(a.severity),
                     f"{a.basis} -> {a.probability.level} ({a.probability.name})",
                     " ".join(r["likelihood_evidence"].split()), r["control"], a.risk])
    out = [para("9  Risk management (ISO 14971) and failure modes", st["h1"]), *paragraphs(texts.fmea["scales"], st["small"]),
           table(rows, [0.62, 1.05, 0.9, 0.3, 1.55, 1.25, 1.05, 1.0], st),
           para(residual_statement(assessed), st["body"]), *_risk_matrix_table(matrix, st),
           *_subgroups_below(ev, st), *_labelling(ev, st)]
    lr = ev["least_robust"]
    if lr:
        out += [keep(para("Least robust correctly classified test images", st["h2"]), image(figs["least_robust"]),
                     para(f"Source: {lr[0]['source']}. Caption: test index, true class, certified radius.", st["small"]))]
    return out


def _risk_matrix_table(matrix: Any, st: Mapping[str, Any]) -> list:
    head = ["Severity \\ probability", *[f"{p.level} {p.name} (<= {p.max_rate:g})" for p in matrix.probabilities]]
    rows = [head] + [[f"{s} {matrix.severities[s]}", *matrix.cells[s]] for s in sorted(matrix.severities, reverse=True)]
    return [keep(para("Risk acceptability matrix (dossier_templates/risk_matrix.yaml)", st["h2"]),
                 table(rows, [1.6] + [1.0] * len(matrix.probabilities), st))]


def _subgroups_below(ev: Mapping[str, Any], st: Mapping[str, Any]) -> list:
    """Every subgroup below the gate threshold, across all fields, with n and its bound (FM-03)."""
    below = ev["claims"]["subgroups_below"]
    title = para(f"Subgroups below the gate threshold {pct(ev['claims']['subgroup_threshold'])} (FM-03; all fields: "
                 "class, skin type, blur, hair, illumination, vignette)", st["h2"])
    if not below:
        return [title, para("None: every subgroup's lower bound reaches the threshold.", st["body"])]
    rows = [["Field", "Group", "n", "Certified at r*", "Lower bound", "Underpowered"]]
    rows += [[b["field"], b["group"], num(b["n"]), f"{num(b['count'])}/{b['n']} {pct(b['estimate'])}", pct(b["lower"]),
              "yes" if b["underpowered"] else "no"] for b in below]
    return [keep(title, table(rows, [1, 1.4, 0.5, 1.1, 0.9, 0.8], st))]


def _labelling(ev: Mapping[str, Any], st: Mapping[str, Any]) -> list:
    """Limitations the labelling must state, generated from the measurements (referred to by the FMEA controls)."""
    items = [f"Lower certified performance for {b['field']} = {b['group']}: lower bound {pct(b['lower'])} "
             f"({b['count']}/{b['n']} certified at r*), below {pct(ev['claims']['subgroup_threshold'])}."
             for b in ev["claims"]["subgroups_below"]]
    std = claims.coverage_standard(ev)
    uncovered = list(dict.fromkeys(c["name"] for c in ev["claims"]["coverage"] if claims.coverage_word(c, std) != "covered"))
    if uncovered:
        items.append("No robustness certificate for these lighting and camera changes: " + ", ".join(uncovered) + ".")
    items.append("Abstention (\"refer\") is not a benign result; refer the patient.")
    items.append("Not for out-of-scope inputs (section 2); the device does not detect them.")
    return [para("Limitations to state in the labelling", st["h2"]), *bullets(items, st["bullet"])]
