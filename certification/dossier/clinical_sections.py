"""The dossier's clinical sections: triage performance of the smoothed classifier as deployed (rates with their
Clopper-Pearson intervals, confusion matrix, per skin type, the rationale of each threshold) and the deployed
procedure. Every number is read from the evidence (metrics/evaluate.json ``triage`` and ``deployed``)."""
from __future__ import annotations

from typing import Any, Mapping

from certification.dossier.sections import bound_text, keep, key_values, num, para, paragraphs, pct, table
from certification.dossier.templates import Texts
from certification.errors import InputError

#: Subsections of the results section (8) that these sections are printed as.
CLINICAL_SECTION, PROCEDURE_SECTION = "8.1", "8.2"


TRIAGE_ROWS = (("sensitivity", "Sensitivity (malignant flagged)"), ("specificity", "Specificity (benign cleared)"),
               ("ppv", "PPV (flagged that are malignant)"), ("npv", "NPV (cleared that are benign)"),
               ("referral_inclusive_sensitivity", "Malignant flagged or referred"),
               ("referral_rate", "Referral (abstention) rate, all images"))


def _rate_cell(rate: Mapping[str, Any]) -> str:
    """'90.6% (82.3-95.8%) 77/85'; 'n/a (0 images)' when the rate has no trials."""
    if rate.get("estimate") is None:
        return f"n/a ({rate.get('trials', 0)} images)"
    return (f"{pct(rate['estimate'])} ({100 * rate['lower']:.1f}-{100 * rate['upper']:.1f}%) "
            f"{rate['successes']}/{rate['trials']}")


def _words(name: str) -> str:
    """An identifier (class or criterion name) as words, so that table cells wrap between words."""
    return name.replace("_", " ")


def _rationale_rows(ev: Mapping[str, Any], texts: Texts) -> list[list[str]]:
    """One row per rationale entry with the gate criteria it covers; a criterion without an entry is an error."""
    entries = texts.acceptance["criteria_rationale"]
    covered: dict[int, list[str]] = {}
    for c in ev["verdict"]["criteria"]:
        match = next((i for i, e in enumerate(entries) if c["name"] == e["criterion"] or c["name"].startswith(f"{e['criterion']}_")), None)
        if match is None:
            raise InputError(f"dossier_templates/acceptance.yaml: criteria_rationale has no entry for gate criterion "
                             f"'{c['name']}'; add one (criterion, threshold, rationale)")
        covered.setdefault(match, []).append(c["name"])
    rows = [["Gate criterion", "Threshold", "Why it is clinically acceptable"]]
    for i, entry in enumerate(entries):
        if i in covered:
            rows.append([", ".join(_words(name) for name in covered[i]), " ".join(entry["threshold"].split()),
                         " ".join(entry["rationale"].split())])
    return rows


def clinical_section(ev: Mapping[str, Any], texts: Texts, st: Mapping[str, Any]) -> list:
    """Clinical triage performance: rates with intervals and n, confusion matrix, per skin type, rationale."""
    clin = ev["clinical"]
    triage = clin["triage"]
    deployed, clean, certified = triage["deployed"], triage["clean"], triage["certified"]
    out = [para(f"{CLINICAL_SECTION}  Clinical triage performance", st["h1"]),
           *paragraphs(texts.acceptance["triage_intro"], st["body"]),
           para(f"Abstention rule: {deployed['abstention_rule']}.", st["body"])]
    rows = [["Rate", f"Deployed: {deployed['procedure']}", clean["procedure"], certified["procedure"]]]
    rows += [[label, *(_rate_cell(t["rates"][key]) for t in (deployed, clean, certified))] for key, label in TRIAGE_ROWS]
    out += [keep(para(f"Malignant vs benign: estimate (two-sided {pct(deployed['level'])} interval) successes/n", st["h2"]),
                 table(rows, [1.3, 1.2, 1.2, 1.2], st),
                 para("In the certified column an answer that is not certified at r* counts as an abstention (referred): "
                      "the rates are those of a device that answers only where the answer is certified.", st["small"]))]
    conf = deployed["confusion"]
    matrix = [["True class / answer", *(_words(c) for c in conf["columns"]), "n"]]
    matrix += [[_words(name), *(num(int(v)) for v in counts), num(int(sum(counts)))] for name, counts in zip(conf["rows"], conf["counts"])]
    out += [keep(para(f"Confusion matrix of the deployed procedure, {deployed['procedure']}", st["h2"]),
                 table(matrix, [1.5] + [1.0] * len(conf["columns"]) + [0.5], st),
                 para("Rows: true class; columns: the answer shown to the user, abstentions in their own column.", st["small"]))]
    skin = deployed["per_skin_type"]
    if skin:
        rows = [["Skin type", "n", "Sensitivity", "Specificity", "PPV", "NPV"]]
        rows += [[g["group"], num(g["n_examples"]), *(_rate_cell(g["rates"][k]) for k in ("sensitivity", "specificity", "ppv", "npv"))]
                 for g in skin]
        out += [keep(para(f"Per Fitzpatrick skin type, deployed procedure, {deployed['procedure']}", st["h2"]),
                     table(rows, [0.42, 0.3, 1.3, 1.3, 1.3, 1.3], st),
                     para("Small groups give wide intervals; a rate with no images is n/a.", st["small"]))]
    out += [keep(para("Acceptance rationale per criterion", st["h2"]), table(_rationale_rows(ev, texts), [1.0, 0.9, 2.6], st))]
    return out


def deployed_procedure_section(ev: Mapping[str, Any], texts: Texts, st: Mapping[str, Any]) -> list:
    """What runs on the device, its measured abstention rate at the deployed n, latency and hardware."""
    t, clin = texts.deployed_procedure, ev["clinical"]
    d = clin["deployed"]
    ab, lat, plat = d["abstention_rate"], d["latency"], d["platform"]
    within = "within" if d["upper_within_gate_limit"] else "ABOVE"
    out = [para(f"{PROCEDURE_SECTION}  The deployed procedure", st["h1"]),
           para("Image acquisition and resizing", st["h2"]), *paragraphs(t["acquisition"], st["body"]),
           *paragraphs(t["resizing"], st["body"]), para("Prediction and abstention", st["h2"]),
           *paragraphs(t["prediction"], st["body"]), *paragraphs(t["abstention_rule"], st["body"])]
    rows = [("Model input", f"float32 NCHW [1, {clin['input']['channels']}, {clin['input']['height']}, {clin['input']['width']}], "
                            f"range [{', '.join(num(v) for v in clin['input']['range'])}]"),
            ("PREDICT n (noisy copies per image)", d["n"]), ("PREDICT alpha (binomial test level)", d["alpha"]),
            ("Noise sigma ([0,1] pixel units)", ev["certify"]["params"]["sigma"]),
            ("Measured abstention rate at this n", f"{bound_text(ab)}; one-sided bounds at {num(ab['confidence'])}, "
                                                   f"{ab['trials']} certified test images"),
            ("Against the gate's abstention limit", f"upper bound {pct(ab['upper'])} {within} the limit {pct(d['gate_limit'])} "
                                                    "(reported, not part of the gate verdict)"),
            ("Agreement with CERTIFY's answer", f"{pct(d['agreement_with_certify'])} of {d['n_examples']} images"),
            ("Single-image PREDICT latency", f"median {num(1000 * lat['median_s'], 1)} ms, 95th percentile "
                                             f"{num(1000 * lat['p95_s'], 1)} ms ({lat['repeats']} calls; up to {d['batch_size']} noisy copies "
                                             "per onnxruntime call)"),
            ("Measured on", f"{plat.get('cpu_model')} ({plat.get('machine')}, {plat.get('system')}), onnxruntime "
                            f"{plat.get('versions', {}).get('onnxruntime')}, numpy SIMD {plat.get('numpy_simd', {}).get('highest')}")]
    device = ev.get("device") or {}
    smoothed, latency = device.get("smoothed"), device.get("latency")
    if smoothed:
        rows.append(("Smoothed predictor for the device", f"{smoothed['path']} (SHA-256 {smoothed['sha256']}): k = "
                                                          f"{smoothed['k']} noisy copies in one graph, sigma {num(smoothed['sigma'])}, "
                                                          f"alpha {num(smoothed['alpha'])}; noise: {smoothed['metadata'].get('noise', '')}"))
        light = smoothed.get("lighting")
        if light:
            rows.append(("Lighting noise of the device graph",
                         f"covariance sigma^2 I + tau_norm^2 sum_k v_k v_k^T: directions {light['directions']} "
                         f"(k = {light['k']}), tau {num(light['tau'])} per pixel, tau_norm {num(light['tau_norm'])}, "
                         f"sigma {num(light['sigma'])} (recorded in the device card)"))
    if latency:
        shipped = latency["model_sha256"].get("fp32") == ev["hashes"].get("model_fp32_sha256")
        for row in latency["rows"]:
            rows.append((f"Single-core latency, smoothed graph, {row['precision']}, k = {row['k']}",
                         f"median {num(row['median_ms'], 1)} ms, p99 {num(row['p99_ms'], 1)} ms ({row['calls']} calls), "
                         f"peak resident memory {num(row['peak_rss_mib'], 0)} MiB"))
        for row in latency.get("agreement", []):
            rows.append((f"Smoothed graph + rule vs the library's PREDICT, k = {row['k']}",
                         f"same answer on {pct(row['agreement'])} of {row['examples']} test images (abstentions "
                         f"{row['graph_abstentions']} vs {row['library_abstentions']}; independent noise, so equal only "
                         "in distribution)"))
        plat = latency["platform"]
        rows.append(("Latency measured on", f"{plat.get('cpu_model')}, one core (onnxruntime 1 intra-op, 1 inter-op thread), "
                                            f"{latency['date_utc']}, {'this model' if shipped else 'a model of the same architecture, not this file'}; "
                                            f"{latency['command']}"))
    out += [key_values(rows, st), para("The gate's abstention criterion and this procedure", st["h2"]),
            *paragraphs(t["gate_abstention"], st["body"]), para("Hardware", st["h2"]), *paragraphs(t["device_hardware"], st["body"])]
    return out
