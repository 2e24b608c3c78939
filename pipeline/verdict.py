"""verdict stage, the last one: record the verdict as a metric, after the dossier has been written.

Reads metrics/gate.json and metrics/certify.json (both checked against models/model.json: a verdict about another
model is bad input), writes metrics/headline.json (:func:`headline`: the ten numbers `dvc metrics show` and
`dvc exp show` display, the verdict first), prints the criteria table and, on REJECT, one line per failed
criterion ("REJECTED: <criterion>: lower bound 0.310 < threshold 0.450").

Exit status: 0 on ACCEPT; on REJECT 0 as well, so that `dvc exp run` records a rejected experiment instead of
losing it, unless ``SMOOTHCERT_FAIL_ON_REJECT=1`` (what CI sets): then 1. Bad input exits 2.
With params dossier.require_approvals (submission profiles) an ACCEPT also needs dossier/dossier.pdf to verify as
VERIFIED with every approval signed (against dossier.trust_root); otherwise it prints the state and exits 1.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

from certification.errors import InputError, StaleArtifactError
from certification.fileio import write_json_atomic
from certification.gate import Verdict, failure_lines, render_table
from certification.gate_io import read_gate_metrics
from certification.model_card import load_model_description
from certification.summary import read_certify_metrics
from pipeline import layout
from pipeline.stage import load_document, run_stage
from pipeline.tracking import log_pipeline, log_stage

GATE, MODEL_CARD, CERTIFY, HEADLINE = layout.GATE_METRICS, layout.MODEL_CARD, layout.CERTIFY_METRICS, layout.HEADLINE
FAIL_ON_REJECT_ENV = "SMOOTHCERT_FAIL_ON_REJECT"
_ON, _OFF = {"1", "true", "yes", "on"}, {"", "0", "false", "no", "off"}


def fail_on_reject() -> bool:
    """True when ``SMOOTHCERT_FAIL_ON_REJECT`` is 1/true/yes/on; unset or 0/false/no/off is False; anything else is bad input."""
    value = os.environ.get(FAIL_ON_REJECT_ENV, "").strip().lower()
    if value not in _ON | _OFF:
        raise InputError(f"{FAIL_ON_REJECT_ENV} must be 1 or 0, got {value!r}")
    return value in _ON


def headline(verdict: Verdict, certify: Mapping[str, Any]) -> dict[str, Any]:
    """The headline metrics: the verdict, the gate's estimates and bounds at r* (the numbers the verdict judged) and
    the certify run's average certified radius (L2, [0,1]-pixel units). Keys are fixed whatever the data's classes;
    ``malignant_recall_lower`` is the smallest certified-recall lower bound over the malignant classes (null: none)."""
    by_name = {c.name: c for c in verdict.criteria}

    def pick(name: str, field: str) -> float | None:
        return getattr(by_name[name], field) if name in by_name else None

    recalls = [c.bound for c in verdict.criteria if c.name.startswith("certified_recall_")]
    return {
        "verdict": verdict.verdict,
        "radius": verdict.radius,
        "certified_accuracy": pick("certified_accuracy", "estimate"),
        "certified_accuracy_lower": pick("certified_accuracy", "bound"),
        "malignant_recall_lower": min(recalls) if recalls else None,
        "clean_accuracy": pick("clean_accuracy", "estimate"),
        "clean_accuracy_lower": pick("clean_accuracy", "bound"),
        "abstention_rate": pick("abstention_rate", "estimate"),
        "abstention_rate_upper": pick("abstention_rate", "bound"),
        "average_certified_radius": certify["average_certified_radius"],
    }


def approvals_exit() -> int:
    """0 unless params dossier.require_approvals is set and the signed dossier is not VERIFIED with every approval."""
    section = load_document().get("dossier") or {}
    if not section.get("require_approvals"):
        return 0
    from certification.dossier.verify import VERIFIED, verify_dossier

    report = verify_dossier(layout.DOSSIER_SIGNED, trust_root=section.get("trust_root") or None)
    print(f"approvals (dossier.require_approvals): {report.summary_line(require_approvals=True)}")
    return 0 if report.state(require_approvals=True) == VERIFIED else 1


def main() -> int:
    failing = fail_on_reject()
    verdict = Verdict.from_dict(read_gate_metrics(GATE), source=str(GATE))
    certify = read_certify_metrics(CERTIFY)
    model_sha256 = load_model_description(MODEL_CARD)["sha256"]
    for path, judged, stage in ((GATE, verdict.model_sha256, "gate"), (CERTIFY, certify["model"]["sha256"], "certify")):
        if judged != model_sha256:
            raise StaleArtifactError(f"{path} judges model {judged} but {MODEL_CARD} names {model_sha256}; "
                                     f"rerun the {stage} stage (dvc repro)")
    document = headline(verdict, certify)
    write_json_atomic(HEADLINE, document)
    log_stage("verdict", params={}, metrics={k: v for k, v in document.items() if k != "verdict"} | {"accepted": float(verdict.accepted)},
              artifacts=[HEADLINE],
              tags={"smoothcert.verdict": verdict.verdict, "smoothcert.failed": ",".join(verdict.failed) or "none"})
    log_pipeline(verdict)
    print(render_table(verdict))
    if verdict.accepted:
        print(f"ACCEPTED: every criterion of protocol {verdict.protocol_sha256[:12]} passed for model {verdict.model_sha256[:12]}")
        return approvals_exit()
    print(f"REJECTED: model {verdict.model_sha256[:12]} fails {len(verdict.failed)} of {len(verdict.criteria)} criteria "
          f"of protocol {verdict.protocol_sha256[:12]}:")
    for line in failure_lines(verdict):
        print(line)
    if failing:
        return 1
    print(f"verdict: REJECT recorded in {HEADLINE}; exit 0 (set {FAIL_ON_REJECT_ENV}=1 to fail the run, as CI does)")
    return 0


if __name__ == "__main__":
    run_stage("verdict", main)
