"""Render the unsigned dossier of an externally certified model (evidence of :mod:`certification.dossier.external`).

Same document machinery as the pipeline's dossier (:mod:`certification.dossier.render`: reportlab invariant mode,
header and footer on every page, signature boxes, attachments), with the sections such evidence supports: cover,
verdict, what the evidence holds and does not, results, what is not part of it, signatures. Deterministic.
"""
from __future__ import annotations

from io import BytesIO
from typing import Any, Mapping, Sequence

from reportlab.platypus import NextPageTemplate, PageBreak

from certification.dossier import plots
from certification.dossier.attachments import EVIDENCE_ATTACHMENT, EVIDENCE_INFO_KEY, RECORDS_ATTACHMENT, attach_files
from certification.dossier.layout import DEV_WARNING, document_template, numbered_canvas_class, signature_page_painter, styles
from certification.dossier.render import evidence_bytes
from certification.dossier.sections import (bound_text, bullets, criteria_table, image, keep, key_values, num, para,
                                            paragraphs, pct, spacer, table, verdict_banner)
from certification.fileio import sha256_bytes
from certification.records import CertifyRecord
from certification.signing.layout import signature_boxes


def _cover(ev: Mapping[str, Any], texts: Mapping[str, Any], st: Mapping[str, Any], evidence_sha: str) -> list:
    doc, h, sig, c, v = ev["document"], ev["hashes"], ev["signing"], ev["certify"], ev["verdict"]
    out = [spacer(30), para(doc["title"], st["title"]), para(doc["device"], st["subtitle"]),
           para(doc["manufacturer"], st["subtitle"]), para(texts["title_note"], st["subtitle"]), spacer(16),
           verdict_banner(v["word"], st), spacer(4),
           para(f"Verdict against the pre-specified acceptance criteria (radius {num(v['radius'])}, mode {v['mode']}) on "
                "results imported from an external certification run; details in sections 1 and 2.", st["small"]),
           spacer(6)]
    cert = next((x for x in v["criteria"] if x["name"] == "certified_accuracy"), None)
    rows = [("Imported test images", f"{c['n_examples']} (sigma {num(c['params']['sigma'])}, alpha {num(c['params']['alpha'])})"),
            ("Clean accuracy (smoothed)", bound_text(c["clean_accuracy"])), ("Abstention rate", bound_text(c["abstention_rate"]))]
    if cert is not None:
        rows.insert(1, (f"Certified accuracy at r = {num(v['radius'])}",
                        f"{pct(cert['estimate'])} (lower bound {pct(cert['bound'])}; {cert['successes']}/{cert['trials']}; "
                        f"required >= {pct(cert['threshold'])})"))
    out += [para("Key results", st["h2"]), key_values(rows, st), spacer(6), para("Document control", st["h2"]),
            key_values([("Document id", doc["document_id"]), ("Revision / status", f"{doc['revision']} / {doc['status']}"),
                        ("Evidence time (UTC)", f"{doc['time_utc']} (source: {doc['time_source']})"),
                        ("Signing time", "recorded in each signature"), ("Confidentiality", doc["confidentiality"])], st),
            spacer(6)]
    hashes = [("model SHA-256", h["model_sha256"]), ("imported results file SHA-256", h["results_sha256"]),
              ("certify.jsonl SHA-256 (attached)", h["certify_jsonl_sha256"]),
              ("acceptance protocol SHA-256", h["protocol_sha256"]), ("evidence.json SHA-256 (attached)", evidence_sha),
              ("git commit of the working folder", ev["git"]["commit"])]
    out.append(key_values(hashes, st, mono_values=True))
    key_text = (f"{DEV_WARNING}: signed with the development CA; the dossier is for development only."
                if sig["development_key"] else "Production signing key.")
    out += [spacer(6), key_values([("Signing key", key_text), ("Signer", sig["signer"]),
                                   ("Trust anchor SHA-256", sig["trust_anchor_sha256"])], st)]
    return out


def _verdict(ev: Mapping[str, Any], texts: Mapping[str, Any], st: Mapping[str, Any]) -> list:
    v = ev["verdict"]
    out = [PageBreak(), para("1  Verdict", st["h1"]), verdict_banner(v["word"], st), spacer(4),
           para(f"{v['word']}: {len(v['criteria']) - len(v['failed'])} of {len(v['criteria'])} criteria hold on "
                f"{v['n_examples']} imported test images." + (f" Failed: {', '.join(v['failed'])}." if v["failed"] else ""),
                st["body"]), criteria_table(v["criteria"], st), spacer(4), *paragraphs(texts["verdict_note"], st["body"])]
    if not ev["malignant_classes"]:
        out.append(para("No malignant classes were named (no model card with 'malignant_classes' was given): the "
                        "per-class malignant-recall criterion is not judged.", st["body"]))
    return out


def _statements(ev: Mapping[str, Any], texts: Mapping[str, Any], st: Mapping[str, Any]) -> list:
    rows = [["Fact", "Recorded", "What this evidence holds"]]
    rows += [[s["item"], s["known"], s["statement"]] for s in ev["statements"]]
    return [para("2  What this evidence is, and what it does not hold", st["h1"]),
            *paragraphs(texts["introduction"], st["body"]), table(rows, [1.1, 0.6, 3.5], st)]


def _results(ev: Mapping[str, Any], st: Mapping[str, Any], curve_png: bytes) -> list:
    c = ev["certify"]
    rows = [["Radius r", "Certified accuracy", "Lower bound", "Count / n"]]
    rows += [[num(p["radius"]), pct(p["certified_accuracy"]), pct(p["lower_bound"]), f"{num(p.get('count'))} / {c['n_examples']}"]
             for p in c["curve"]]
    return [para("3  Results (recomputed from the imported rows)", st["h1"]),
            key_values([("Clean accuracy (smoothed)", bound_text(c["clean_accuracy"])),
                        ("Abstention rate", bound_text(c["abstention_rate"])),
                        ("Average certified radius (ACR)", f"{num(c['average_certified_radius'])} (descriptive; n = {c['n_examples']})")], st),
            para("Certified accuracy vs radius", st["h2"]), image(curve_png),
            para(f"Lower bound: one-sided, confidence {num(c['confidence'])}, method {c['bound_method']}.", st["small"]),
            keep(para("Certified accuracy at the tabulated radii", st["h2"]), table(rows, [1, 1, 1, 1], st))]


def _not_included(texts: Mapping[str, Any], st: Mapping[str, Any]) -> list:
    return [para("4  Not part of this evidence", st["h1"]), *bullets(texts["not_part_of_this_evidence"], st["bullet"])]


def _signatures(ev: Mapping[str, Any], st: Mapping[str, Any]) -> list:
    sig = ev["signing"]
    text = ("The author signature is a PAdES certification signature (SHA-256) that permits only form filling and "
            "further signatures; approvals are added later with 'smoothcert sign'. Check with 'smoothcert verify "
            f"dossier.pdf --trust-root CA.pem'; trust anchor SHA-256 {sig['trust_anchor_sha256']}.")
    if sig["development_key"]:
        text += f" {DEV_WARNING}: the author signature uses the development key."
    return [NextPageTemplate("signatures"), PageBreak(), para("5  Signatures", st["h1"]), para(text, st["body"])]


def render_external_dossier(evidence: Mapping[str, Any], texts: Mapping[str, Any], records: Sequence[CertifyRecord],
                            records_bytes: bytes, extra_attachments: Mapping[str, bytes]) -> bytes:
    """The unsigned PDF with evidence.json, certify.jsonl (``records_bytes``) and ``extra_attachments`` attached."""
    ev_bytes = evidence_bytes(evidence)
    ev_sha = sha256_bytes(ev_bytes)
    st = styles()
    sig, doc_meta, v = evidence["signing"], evidence["document"], evidence["verdict"]
    boxes = signature_boxes([a for a in sig["approvals"] if a != "author"])
    buffer = BytesIO()
    doc = document_template(buffer, f"{doc_meta['document_id']} {doc_meta['title']}", doc_meta["manufacturer"],
                            signature_page_painter(boxes, sig["approvals"]))
    threshold = next((x["threshold"] for x in v["criteria"] if x["name"] == "certified_accuracy"), 0.0)
    curve = plots.certified_accuracy_curve(records, evidence["certify"]["confidence"], v["radius"], threshold)
    story: list[Any] = [NextPageTemplate("body"), *_cover(evidence, texts, st, ev_sha), *_verdict(evidence, texts, st),
                        *_statements(evidence, texts, st), *_results(evidence, st, curve), *_not_included(texts, st),
                        *_signatures(evidence, st)]
    header = {"document_id": doc_meta["document_id"], "title": doc_meta["title"], "revision": doc_meta["revision"],
              "status": doc_meta["status"], "verdict_word": v["word"], "model_sha256": evidence["hashes"]["model_sha256"],
              "time_utc": doc_meta["time_utc"], "development_key": bool(sig["development_key"])}
    doc.build(story, canvasmaker=numbered_canvas_class(header))
    files = {EVIDENCE_ATTACHMENT: ev_bytes, RECORDS_ATTACHMENT: records_bytes, **extra_attachments}
    return attach_files(buffer.getvalue(), files, {EVIDENCE_INFO_KEY: ev_sha})
