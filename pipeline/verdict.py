"""verdict stage, the last one: fail `dvc repro` on a rejected model, after the dossier has been written.

Reads metrics/gate.json (checked against models/model.json: a verdict about another model is bad input), prints
the criteria table and, on REJECT, ends with one line per failed criterion
("REJECTED: <criterion>: lower bound 0.310 < threshold 0.450") and exits 1. Exits 0 on ACCEPT, 2 on bad input.
With params dossier.require_approvals (submission profiles) an ACCEPT also needs dossier/dossier.pdf to verify as
VERIFIED with every approval signed (against dossier.trust_root); otherwise it prints the state and exits 1.
"""
from __future__ import annotations

from certification.errors import StaleArtifactError
from certification.gate import Verdict, failure_lines, render_table
from certification.gate_io import read_gate_metrics
from certification.model_card import load_model_description
from pipeline import layout
from pipeline.stage import load_document, run_stage
from pipeline.tracking import log_stage

GATE, MODEL_CARD = layout.GATE_METRICS, layout.MODEL_CARD


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
    verdict = Verdict.from_dict(read_gate_metrics(GATE), source=str(GATE))
    model_sha256 = load_model_description(MODEL_CARD)["sha256"]
    if verdict.model_sha256 != model_sha256:
        raise StaleArtifactError(f"{GATE} judges model {verdict.model_sha256} but {MODEL_CARD} names {model_sha256}; rerun the gate stage")
    log_stage("verdict", params={}, metrics={"accepted": float(verdict.accepted)},
              tags={"smoothcert.verdict": verdict.verdict, "smoothcert.failed": ",".join(verdict.failed) or "none"})
    print(render_table(verdict))
    if verdict.accepted:
        print(f"ACCEPTED: every criterion of protocol {verdict.protocol_sha256[:12]} passed for model {verdict.model_sha256[:12]}")
        return approvals_exit()
    print(f"REJECTED: model {verdict.model_sha256[:12]} fails {len(verdict.failed)} of {len(verdict.criteria)} criteria "
          f"of protocol {verdict.protocol_sha256[:12]}:")
    for line in failure_lines(verdict):
        print(line)
    return 1


if __name__ == "__main__":
    run_stage("verdict", main)
