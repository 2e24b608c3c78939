"""verdict stage, the last one: fail `dvc repro` on a rejected model, after the dossier has been written.

Reads metrics/gate.json (checked against models/model.json: a verdict about another model is bad input), prints
the criteria table and, on REJECT, ends with one line per failed criterion
("REJECTED: <criterion>: lower bound 0.310 < threshold 0.450") and exits 1. Exits 0 on ACCEPT, 2 on bad input.
"""
from __future__ import annotations

from certification.errors import StaleArtifactError
from certification.gate import Verdict, failure_lines, render_table
from certification.gate_io import read_gate_metrics
from certification.model_card import load_model_description
from pipeline import layout
from pipeline.stage import run_stage
from pipeline.tracking import log_stage

GATE, MODEL_CARD = layout.GATE_METRICS, layout.MODEL_CARD


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
        return 0
    print(f"REJECTED: model {verdict.model_sha256[:12]} fails {len(verdict.failed)} of {len(verdict.criteria)} criteria "
          f"of protocol {verdict.protocol_sha256[:12]}:")
    for line in failure_lines(verdict):
        print(line)
    return 1


if __name__ == "__main__":
    run_stage("verdict", main)
