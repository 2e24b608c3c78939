"""Render the unsigned dossier PDF (reportlab platypus, invariant mode) and attach its evidence.

Deterministic: the same evidence, templates, records and images give the same bytes (reportlab's
invariant mode fixes dates and the /ID; every printed time comes from the evidence, never the clock;
figures are deterministic PNGs; attachments are added by pypdf without dates). The signing time is not
in this file: it is recorded in each signature.
"""
from __future__ import annotations

import json
from io import BytesIO
from typing import Any, Mapping, Sequence

import numpy as np
from reportlab.platypus import NextPageTemplate, PageBreak

from certification.dossier import claims, plots
from certification.dossier.clinical_sections import clinical_section, deployed_procedure_section
from certification.dossier.failure_sections import attack_section, corruptions_section, fmea_section, quantization_section
from certification.dossier.attachments import EVIDENCE_ATTACHMENT, EVIDENCE_INFO_KEY, RECORDS_ATTACHMENT, attach_files
from certification.dossier.model_selection import model_selection_section
from certification.dossier.layout import DEV_WARNING, document_template, numbered_canvas_class, signature_page_painter, styles
from certification.dossier.sections import (bound_text, bullets, criteria_table, flatten_scalars, image, keep, key_values, num, para,
                                            paragraphs, pct, spacer, table, verdict_banner)
from certification.dossier.templates import Texts
from certification.dataset_io import FITZPATRICK_NAMES
from certification.fileio import sha256_bytes
from certification.records import CertifyRecord
from certification.signing.layout import signature_boxes


def evidence_bytes(evidence: Mapping[str, Any]) -> bytes:
    """The canonical bytes of evidence.json (sorted keys, indented), as written to disk and attached."""
    return (json.dumps(evidence, indent=2, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")


def _cover(ev: Mapping[str, Any], texts: Texts, st: Mapping[str, Any], evidence_sha: str) -> list:
    doc, h, sig = ev["document"], ev["hashes"], ev["signing"]
    out = [spacer(30), para(doc["title"], st["title"]), para(doc["device"], st["subtitle"]),
           para(doc["manufacturer"], st["subtitle"]), spacer(20)]
    out += [verdict_banner(ev["verdict"]["word"], st), spacer(4),
            para(f"Verdict of the merge gate against the pre-specified acceptance criteria "
                 f"(radius {num(ev['verdict']['radius'])}, mode {ev['verdict']['mode']}); details in section 1.",
                 st["small"]), spacer(6)]
    c = ev["certify"]
    at_gate = ev["groups"]["radius"]
    cert = next((x for x in ev["verdict"]["criteria"] if x["name"] == "certified_accuracy"), None)
    headline = [("Certified test images", f"{c['n_examples']} (sigma {num(c['params']['sigma'])}, n {c['params']['n']}, "
                                          f"alpha {num(c['params']['alpha'])})"),
                ("Clean accuracy (smoothed)", bound_text(c["clean_accuracy"])),
                ("Abstention rate", bound_text(c["abstention_rate"]))]
    if cert is not None:
        headline.insert(1, (f"Certified accuracy at r = {num(at_gate)}",
                            f"{pct(cert['estimate'])} (lower bound {pct(cert['bound'])}; {cert['successes']}/{cert['trials']}; "
                            f"required >= {pct(cert['threshold'])})"))
    out += [para("Key results", st["h2"]), key_values(headline, st), spacer(6), para("Document control", st["h2"])]
    rows = [("Document id", doc["document_id"]), ("Revision / status", f"{doc['revision']} / {doc['status']}"),
            ("Evidence time (UTC)", f"{doc['time_utc']} (source: {doc['time_source']})"),
            ("Signing time", "recorded in each signature (signatures page and any PDF reader)"),
            ("Confidentiality", doc["confidentiality"])]
    out.append(key_values(rows, st))
    out.append(spacer(6))
    hashes = [("ONNX model SHA-256 (certified, shipped)", h["model_sha256"]),
              ("fp32 export SHA-256", h["model_fp32_sha256"])]
    hashes += [(f"data split '{name}' SHA-256", value) for name, value in sorted(h["splits"].items())]
    hashes += [("acceptance protocol SHA-256", h["protocol_sha256"]), ("params.yaml SHA-256 (canonical JSON)", h["params_sha256"]),
               ("results/certify.jsonl SHA-256 (attached)", h["certify_jsonl_sha256"]),
               ("evidence.json SHA-256 (attached)", evidence_sha), ("git commit", ev["git"]["commit"])]
    out.append(key_values(hashes, st, mono_values=True))
    out.append(spacer(6))
    key_text = (f"{DEV_WARNING}: signed with the development CA created by the pipeline; the dossier is for "
                "development only." if sig["development_key"] else "Production signing key.")
    out.append(key_values([("Signing key", key_text), ("Signer", sig["signer"]),
                           ("Trust anchor SHA-256", sig["trust_anchor_sha256"])], st))
    return out


def _verdict(ev: Mapping[str, Any], texts: Texts, st: Mapping[str, Any]) -> list:
    v = ev["verdict"]
    out = [PageBreak(), para("1  Verdict", st["h1"]), verdict_banner(v["word"], st), spacer(4),
           para(f"{v['word']}: {len(v['criteria']) - len(v['failed'])} of {len(v['criteria'])} criteria hold "
                f"on {v['n_examples']} certified test images. Every criterion is judged on a one-sided confidence "
                f"bound at {num(v['protocol'].get('confidence', ev['certify']['confidence']))}, never on the estimate."
                + (f" Failed: {', '.join(v['failed'])}." if v["failed"] else ""), st["body"]),
           criteria_table(v["criteria"], st), spacer(4), para("Acceptance rationale", st["h2"])]
    return out + paragraphs(texts.acceptance["rationale"], st["body"])


def _intended_use(ev: Mapping[str, Any], texts: Texts, st: Mapping[str, Any]) -> list:
    t = texts.intended_use
    out = [para("2  Intended use and population", st["h1"])]
    for key, title in (("intended_use", "Intended use"), ("indications", "Indications"), ("population", "Population"),
                       ("skin_types", "Skin types"), ("users", "Intended users"), ("environment", "Use environment"),
                       ("workflow", "Workflow")):
        out += [para(title, st["h2"]), *paragraphs(t[key], st["body"])]
    splits = ev["data"]["splits"]
    names = sorted(splits)
    types = FITZPATRICK_NAMES
    rows = [["Split", *[f"Type {k}" for k in types], "n"]]
    for name in names:
        counts = splits[name].get("fitzpatrick_counts", {})
        rows.append([name, *[num(counts.get(k)) for k in types], num(splits[name].get("n"))])
    out += [keep(para("Fitzpatrick skin types in the data", st["h2"]), table(rows, [1.3] + [1] * 6 + [1], st))]
    out += [para("Out of scope", st["h2"]), *bullets(t["out_of_scope"], st["bullet"])]
    return out


def _threat(ev: Mapping[str, Any], texts: Texts, st: Mapping[str, Any]) -> list:
    t = texts.threat_model
    spec = claims.specification(ev)
    out = [para("3  Robustness specification and threat model", st["h1"]), para("Specification", st["h2"]),
           *paragraphs(t["specification"], st["body"]), para(spec[0], st["body"]), *bullets(spec[1:-1], st["bullet"]),
           para(spec[-1], st["body"]), para("Threat model", st["h2"]),
           *paragraphs(t["threat_model"], st["body"]), para("What the certificate covers", st["h2"]),
           *bullets(t["covered"], st["bullet"]), para("Measured coverage of lighting and camera changes", st["h2"]),
           *[para(x, st["body"]) for x in claims.coverage_sentences(ev)],
           *_lighting(ev, t, st),
           para("What the certificate does NOT cover", st["h2"])]
    not_covered = [*t["not_covered"], *((t.get("lighting") or {}).get("not_covered") or [])]
    rows = [["Not covered", "Why"]] + [[row["item"], " ".join(row["why"].split())] for row in not_covered]
    return out + [table(rows, [0.3, 0.7], st)]


#: How the shipped int8 file was made, by model card ``quantization_method`` (cards before it: ptq).
QUANTIZATION_METHODS = {"none": "none", "ptq": "post-training static QDQ, calibrated on noisy inputs",
                        "qat": "quantization-aware fine-tuning under noise, then static QDQ"}


def _quantization_label(m: Mapping[str, Any]) -> str:
    """``int8 (qat: ...)``: the number format and the method of the certified file."""
    if m["quantization"] == "none":
        return "none (the certified file is the float export)"
    method = str(m.get("quantization_method", "ptq"))
    return f"{m['quantization']} ({method}: {QUANTIZATION_METHODS.get(method, method)}); the certified file is this int8 artifact"


def _lighting(ev: Mapping[str, Any], t: Mapping[str, Any], st: Mapping[str, Any]) -> list:
    """The lighting certificate's specification, threat model and measured coverage (lighting runs only)."""
    sentences = claims.lighting_sentences(ev)
    if not sentences:
        return []
    words = t["lighting"]
    return [para("Lighting certificate (anisotropic smoothing)", st["h2"]), *paragraphs(words["specification"], st["body"]),
            *paragraphs(words["threat_model"], st["body"]), *bullets(words["covered"], st["bullet"]),
            *[para(x, st["body"]) for x in sentences]]


def _model(ev: Mapping[str, Any], texts: Texts, st: Mapping[str, Any]) -> list:
    m = ev["model"]
    rows = [("Architecture", m["architecture"]), ("File", m.get("path", "")), ("SHA-256", ev["hashes"]["model_sha256"]),
            ("ONNX opset", m["opset"]), ("onnxruntime version", m["onnxruntime_version"]),
            ("torch version (export)", m.get("torch_version")), ("Quantization", _quantization_label(m)),
            ("Parameters", m["parameters"]), ("FLOPs per image", m["flops"]),
            ("Input", f"{m.get('input_name', 'input')} [{', '.join('batch' if d is None else str(d) for d in m['input_shape'])}] "
                      f"float32 in [{', '.join(num(v) for v in m.get('input_range', [0, 1]))}]"),
            ("Output", f"{m.get('output_name', 'logits')} (logits)"),
            ("Normalisation (inside the graph)", f"mean {m['normalization'].get('mean')}, std {m['normalization'].get('std')}"),
            ("Classes", ", ".join(m.get("class_names", ev["data"]["classes"])))]
    supplied = m.get("supplied")
    if supplied:
        rows.insert(1, ("Origin", f"SUPPLIED by the user, not trained or exported by this pipeline: {supplied['source']}, "
                                  f"SHA-256 {supplied['sha256']} (copied byte for byte to {m.get('path', '')})"))
        rows.insert(2, ("Input adaptation (in memory)", "; ".join(supplied.get("input_adaptation") or []) or "none"))
    sig = (ev.get("device") or {}).get("model_signature")
    if sig:
        kind = "DEVELOPMENT key, not for submission" if sig["development"] else "production key"
        rows += [("Detached model signature", f"{sig['path']} (CMS/PKCS#7 over the file's SHA-256), SHA-256 {sig['sha256']}"),
                 ("Model signed by", f"{sig['signer']} ({kind}), {sig['signing_time_utc'] or 'time not recorded'}; "
                                     f"certificate SHA-256 {sig['signer_cert_sha256']}")]
    if m["quantization"] != "none" and m.get("fp32_sha256"):
        rows.insert(3, ("Float export SHA-256 (not the certified file)", m["fp32_sha256"]))
    title = "Import checks (metrics/export.json)" if supplied else "Export checks (metrics/export.json)"
    return [para("4  Model identity and runtime", st["h1"]), key_values(rows, st), *_record_table(ev["export"], title, st)]


def _record_table(record: Mapping[str, Any], title: str, st: Mapping[str, Any]) -> list:
    """A stage's metrics file as a titled key-value table (nothing when it holds no scalar)."""
    scalars = flatten_scalars(record)
    note = ("Rates in this table are the stage's own descriptive figures (n as listed), without confidence bounds; "
            "acceptance uses only the bounded test-split figures of section 1.")
    return [para(title, st["h2"]), key_values(scalars, st), para(note, st["small"])] if scalars else []


def _data(ev: Mapping[str, Any], texts: Texts, st: Mapping[str, Any]) -> list:
    d = ev["data"]
    out = [para("5  Data provenance", st["h1"]),
           key_values([("Source", d.get("source")), ("Generator version", d.get("generator_version")),
                       ("Seed", d.get("seed")), ("Image size", d.get("image_size")),
                       ("Classes", ", ".join(d["classes"])), ("Malignant classes", ", ".join(d.get("malignant_classes", [])))], st),
           para("Splits", st["h2"])]
    rows = [["Split", "n", "SHA-256", *d["classes"]]]
    for name in sorted(d["splits"]):
        s = d["splits"][name]
        rows.append([name, num(s.get("n")), s.get("sha256", ""), *[num(s.get("class_counts", {}).get(c)) for c in d["classes"]]])
    out.append(table(rows, [0.8, 0.6, 3.6] + [1.0] * len(d["classes"]), st, mono_cols=(2,)))
    return out


def _development(ev: Mapping[str, Any], texts: Texts, st: Mapping[str, Any]) -> list:
    if ev["train"] is None:  # a supplied model: no training claims, only what the supplier declared
        return [para("6  Model development", st["h1"]), *paragraphs(texts.verification["development_supplied"], st["body"]),
                *model_selection_section(ev, texts, st)]
    return [para("6  Model development", st["h1"]), *paragraphs(texts.verification["development"], st["body"]),
            *_record_table(ev["train"], "Training record (metrics/train.json)", st), *model_selection_section(ev, texts, st)]


def _method(ev: Mapping[str, Any], texts: Texts, st: Mapping[str, Any]) -> list:
    c = ev["certify"]
    p = c["params"]
    rows = [("sigma (noise level, [0,1] pixel units)", p["sigma"]), ("n0 (selection samples)", p["n0"]),
            ("n (estimation samples)", p["n"]), ("alpha (per-image failure probability)", p["alpha"]),
            ("seed", p["seed"]), ("batch size", p.get("batch_size")), ("dataset-level confidence", c["confidence"]),
            ("dataset-level bound method", c["bound_method"]),
            ("examples certified / in test split", f"{c['n_examples']} / {c.get('data', {}).get('n_examples_total', 'n/a')}")]
    return [para("7  Verification method and statistical assumptions", st["h1"]),
            *paragraphs(texts.verification["method"], st["body"]), key_values(rows, st),
            para("Radius limit and pixel terms", st["h2"]), para(claims.radius_note(ev), st["body"]),
            para("Statistical assumptions and limits", st["h2"]), *bullets(texts.verification["assumptions"], st["bullet"]),
            *_reproducibility(ev, texts, st), *_prespecification(ev, texts, st)]


def _sequential_method(ev: Mapping[str, Any], texts: Texts, st: Mapping[str, Any]) -> list:
    """Gate mode sequential only: the sequential test, its guarantee, and the model evaluations the examples spent
    (metrics/gate.json ``evaluations``; per example in results/gate.jsonl)."""
    if ev["verdict"]["mode"] != "sequential" or "sequential" not in texts.verification:
        return []
    spent = ev["verdict"].get("evaluations") or {}
    labels = (("total", "model evaluations, all examples"), ("per_example", "per example, mean"),
              ("min", "per example, fewest"), ("median", "per example, median"), ("max", "per example, most"),
              ("at_most", "per example, at most (n0 + n_max)"))
    return [para("Sequential decision at the gate radius", st["h2"]),
            *paragraphs(texts.verification["sequential"], st["body"]),
            key_values([(label, spent[key]) for key, label in labels if key in spent], st)]


def _reproducibility(ev: Mapping[str, Any], texts: Texts, st: Mapping[str, Any]) -> list:
    """What a re-run elsewhere reproduces, chosen by how the weights were trained (model.json platform record)."""
    words = texts.verification["reproducibility"]
    if ev["model"].get("supplied"):
        weights = words["weights_supplied"]
    else:
        weights = words["weights_portable" if ev["model"]["platform"]["training"].get("portable_kernels") else "weights_platform_specific"]
    return [para("Reproducibility on another machine", st["h2"]), *paragraphs(words["data"], st["body"]),
            *paragraphs(weights, st["body"]),
            *paragraphs(words["certificates"], st["body"])]


def _prespecification(ev: Mapping[str, Any], texts: Texts, st: Mapping[str, Any]) -> list:
    """Protocol frozen before the test split was first opened, stated from the two records (or their absence)."""
    words = texts.verification["prespecification"]
    chrono = ev.get("prespecification")
    if chrono is None:
        return [para("Pre-specification and sequestration", st["h2"]), *paragraphs(words["not_recorded"], st["body"])]
    committed = {True: "yes", False: "NO (uncommitted change)", None: "not a git checkout"}[chrono["protocol_committed"]]
    rows = [("acceptance protocol sha256", chrono["protocol_sha256"]), ("protocol frozen (UTC)", chrono["frozen_utc"]),
            ("git commit at freeze", chrono["git_commit"]), ("params.yaml committed at freeze", committed),
            ("test split first opened (UTC)", f"{chrono['test_opened_utc']} by the {chrono['test_opened_by']} stage"),
            ("frozen before first test read", "yes" if chrono["frozen_before_opened"] else "NO"),
            ("gate applied the frozen protocol", "yes" if chrono["same_protocol"] else "NO"),
            ("opened split is the certified split", "yes" if chrono["same_split"] else "NO")]
    return [para("Pre-specification and sequestration", st["h2"]),
            *paragraphs(words["holds" if chrono["holds"] else "violated"], st["body"]), key_values(rows, st)]


def _group_table(groups: Mapping[str, Any], label: str, st: Mapping[str, Any]) -> Any:
    rows = [[label, "n", "clean acc.", "clean lower", "certified acc.", "certified lower", "abstained"]]
    for name, g in groups.items():
        if not g or not g["n_examples"]:
            rows.append([name, "0", "n/a", "n/a", "n/a", "n/a", "0"])
            continue
        rows.append([name, num(g["n_examples"]), pct(g["clean_accuracy"]["estimate"]), pct(g["clean_accuracy"]["lower"]),
                     pct(g["certified"]["estimate"]), pct(g["certified"]["lower"]), num(g["abstained"])])
    return table(rows, [1.8, 0.6, 1, 1, 1, 1, 0.8], st)


def _results(ev: Mapping[str, Any], texts: Texts, st: Mapping[str, Any], figs: Mapping[str, bytes]) -> list:
    c, g, e = ev["certify"], ev["groups"], ev["evaluate"]
    ca, ab = c["clean_accuracy"], c["abstention_rate"]
    conf = c["confidence"]
    out = [para("8  Results", st["h1"]),
           key_values([("Clean accuracy (smoothed)", bound_text(ca)), ("Abstention rate", bound_text(ab)),
                       ("Average certified radius (ACR)", f"{num(c['average_certified_radius'])} (descriptive, no confidence "
                                                          f"bound; n = {c['n_examples']}; wrong or abstained count as 0)"),
                       ("Median certified radius", f"{num(c['median_radius'])} (descriptive, no confidence bound; n = {c['n_examples']})"),
                       ("Throughput (examples/s, samples/s)", ", ".join(num(v, 1) for v in c.get("throughput", {}).values()) or "n/a")], st),
           para("Certified accuracy vs radius", st["h2"]), image(figs["curve"]),
           para(f"Certified accuracy at radius r: share of the {c['n_examples']} test images classified correctly "
                f"with a certified radius of at least r. Lower bound: one-sided, confidence {num(conf)}, method "
                f"{c['bound_method']}. " + claims.radius_note(ev), st["small"])]
    limit = ev["claims"]["radius"]["limit"]["radius"]
    rows = [["Radius r", "Certified accuracy", "Lower bound", "Count / n"]]
    rows += [[num(p["radius"]) + (" (beyond the limit)" if p["radius"] >= limit else ""), pct(p["certified_accuracy"]),
              pct(p["lower_bound"]), f"{num(p.get('count'))} / {c['n_examples']}"] for p in c["curve"]]
    out.append(keep(para("Certified accuracy at the tabulated radii", st["h2"]), table(rows, [1, 1, 1, 1], st)))
    radius = num(g["radius"])
    out += [keep(para(f"Per class (certified at the gate radius {radius})", st["h2"]), _group_table(g["per_class"], "Class", st),
                 spacer(3), image(figs["classes"], 420))]
    if g["per_skin_type"] is not None:
        out += [keep(para(f"Per Fitzpatrick skin type (certified at the gate radius {radius})", st["h2"]),
                     _group_table(g["per_skin_type"], "Skin type", st), spacer(3), image(figs["skin"], 420))]
    abst = e.get("abstentions") or {}
    over = ", ".join(f"{x.get('field')}={x.get('group')}" for x in abst.get("exceeds_limit", []) if isinstance(x, Mapping))
    out.append(para("Abstentions", st["h2"]))
    out.append(para(f"The smoothed classifier abstained on {ab['successes']} of {ab['trials']} images: "
                    f"{bound_text(ab)}. Groups shown to abstain above the limit "
                    f"{pct(abst.get('limit'))}: {over or 'none'}.",
                    st["body"]))
    out += attack_section(e.get("attack") or {}, st) + corruptions_section(ev, st, figs) + quantization_section(e.get("quantization"), st)
    return out


def _traceability(ev: Mapping[str, Any], texts: Texts, st: Mapping[str, Any]) -> list:
    rows = [["Requirement", "Source", "Evidence", "Section"]]
    rows += [[r["requirement"], r["source"], r["evidence"], r["section"]] for r in texts.acceptance["traceability"]]
    hist = [["Revision", "Date", "Author", "Change"]]
    hist += [[h["revision"], h["date"], h["author"], h["change"]] for h in texts.document["revision_history"]]
    return [para("10  Traceability", st["h1"]), table(rows, [1.6, 1.2, 1.9, 0.5], st),
            para("11  Revision history", st["h1"]), table(hist, [0.6, 1.0, 1.0, 2.6], st)]


def _signatures(ev: Mapping[str, Any], st: Mapping[str, Any]) -> list:
    sig = ev["signing"]
    text = ("The pipeline signs first, as author, with a PAdES certification signature (SHA-256) that permits only "
            "form filling and further signatures; each approval below is added later as an incremental update "
            "(smoothcert sign). Each signature shows the signer's printed name, role, meaning and the UTC signing "
            "time, which is recorded in the signature itself. Check all signatures with "
            "'smoothcert verify dossier.pdf --trust-root CA.pem' or any PAdES-capable reader; trust anchor SHA-256 "
            f"{sig['trust_anchor_sha256']}. The printed name is the common name of the signing certificate, the role "
            "and meaning of each field are fixed by this document, and one certificate signs one field only; verify "
            "reports the approvals signed (e.g. AUTHOR-SIGNED, 0/3 APPROVALS) and VERIFIED only against the root "
            "whose SHA-256 is printed here.")
    if sig["development_key"]:
        text += f" {DEV_WARNING}: the author signature uses the pipeline's development key."
    return [NextPageTemplate("signatures"), PageBreak(), para("12  Signatures", st["h1"]), para(text, st["body"])]


def _figures(ev: Mapping[str, Any], records: Sequence[CertifyRecord], images: Mapping[int, np.ndarray]) -> dict[str, bytes]:
    c, g = ev["certify"], ev["groups"]
    threshold = next((x["threshold"] for x in ev["verdict"]["criteria"] if x["name"] == "certified_accuracy"),
                     ev["verdict"]["criteria"][0]["threshold"])
    figs = {"curve": plots.certified_accuracy_curve(records, c["confidence"], g["radius"], threshold),
            "classes": plots.group_bars(g["per_class"], "Per class", threshold)}
    if g["per_skin_type"] is not None:
        figs["skin"] = plots.group_bars(g["per_skin_type"], "Per Fitzpatrick skin type", threshold)
    corr = [x for x in ev["evaluate"].get("corruptions") or [] if isinstance(x, Mapping)]
    if corr:
        figs["corruptions"] = plots.corruption_vs_radius(corr, [r.radius for r in records], g["radius"])
    lr = ev["least_robust"]
    if lr:
        figs["least_robust"] = plots.least_robust_images(
            [images[row["index"]] for row in lr],
            [f"#{row['index']}  r = {row['radius']:.3f}\n{row['label_name'].replace('_', ' ')}" for row in lr])
    return figs


def render_dossier(evidence: Mapping[str, Any], texts: Texts, records: Sequence[CertifyRecord], records_bytes: bytes,
                   images: Mapping[int, np.ndarray]) -> bytes:
    """The unsigned dossier: PDF bytes with evidence.json and certify.jsonl attached.

    ``images`` maps test index -> uint8 HxWx3 image for the least robust examples listed in the evidence.
    """
    ev_bytes = evidence_bytes(evidence)
    ev_sha = sha256_bytes(ev_bytes)
    st = styles()
    sig = evidence["signing"]
    boxes = signature_boxes([a for a in sig["approvals"] if a != "author"])
    doc_meta = evidence["document"]
    buffer = BytesIO()
    doc = document_template(buffer, f"{doc_meta['document_id']} {doc_meta['title']}", doc_meta["manufacturer"],
                            signature_page_painter(boxes, sig["approvals"]))
    figs = _figures(evidence, records, images)
    story: list[Any] = [NextPageTemplate("body")]
    story += _cover(evidence, texts, st, ev_sha)
    story += _verdict(evidence, texts, st)
    story += _intended_use(evidence, texts, st)
    story += _threat(evidence, texts, st)
    story += _model(evidence, texts, st)
    story += _data(evidence, texts, st)
    story += _development(evidence, texts, st)
    story += _method(evidence, texts, st)
    story += _sequential_method(evidence, texts, st)
    story += _results(evidence, texts, st, figs)
    story += clinical_section(evidence, texts, st)
    story += deployed_procedure_section(evidence, texts, st)
    story += fmea_section(evidence, texts, st, figs)
    story += _traceability(evidence, texts, st)
    story += _signatures(evidence, st)
    header = {"document_id": doc_meta["document_id"], "title": doc_meta["title"], "revision": doc_meta["revision"],
              "status": doc_meta["status"], "verdict_word": evidence["verdict"]["word"],
              "model_sha256": evidence["hashes"]["model_sha256"], "time_utc": doc_meta["time_utc"],
              "development_key": bool(sig["development_key"])}
    doc.build(story, canvasmaker=numbered_canvas_class(header))
    return attach_files(buffer.getvalue(), {EVIDENCE_ATTACHMENT: ev_bytes, RECORDS_ATTACHMENT: records_bytes},
                        {EVIDENCE_INFO_KEY: ev_sha})

