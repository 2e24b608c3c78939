"""gate stage: judge the certified model against the pre-specified protocol (params ``gate``).

mode fixed: reads results/certify.jsonl and metrics/certify.json (the certify stage's full CERTIFY results).
mode sequential: runs the sequential decision at gate.radius on the examples certify would choose (params
``certify``: max_examples, seed) with certify's sigma, n0, alpha, batch_size and n_max = certify.n.

Writes metrics/gate.json (the verdict), plots/gate_radius.csv (r* for the certified-accuracy plot) and results/gate.jsonl (the per-example decision at r*, same schema in
both modes) and ALWAYS exits 0 once the verdict is written, so the dossier is produced for a rejected model too;
the verdict stage (after the dossier) records it and, with SMOOTHCERT_FAIL_ON_REJECT=1, fails on REJECT. Bad input
exits 2.
"""
from __future__ import annotations

from certification.dataset_io import load_split
from certification.errors import StaleArtifactError
from certification.fileio import sha256_file, write_json_atomic, write_text_atomic
from certification.gate import Verdict, evaluate, failure_lines, render_table
from certification.gate_io import (certify_lighting, check_frozen, gate_document, gate_marker_csv, load_decisions,
                                     load_protocol)
from certification.prespecification import read_protocol_record
from certification.model_card import load_model_description
from certification.records import DecisionRecord, decision_jsonl_text
from pipeline import layout
from pipeline.params import certify_params, run_options
from pipeline.stage import PARAMS_FILE, run_stage
from pipeline.tracking import log_stage


def decide_rows(protocol_radius: float, model_sha256: str) -> list[DecisionRecord]:
    """Mode sequential: decide every example of the certify run at r* with the sequential test (n_max = its n)."""
    from certification.sequential_run import decide_files

    run = certify_params(load_model_description(layout.MODEL_CARD))
    return decide_files(layout.MODEL, layout.TEST_SPLIT, None, run_options(run), protocol_radius, run["n0"], run["n"])


def log_verdict(verdict: Verdict, evaluations: int) -> None:
    """MLflow: the protocol as params, each criterion's bound and pass/fail as metrics, the verdict as a tag."""
    metrics: dict[str, float] = {"accepted": float(verdict.accepted), "model_evaluations": float(evaluations)}
    for c in verdict.criteria:
        metrics[f"{c.name}_bound"] = c.bound
        metrics[f"{c.name}_passed"] = float(c.passed)
    log_stage("gate", params=verdict.protocol, metrics=metrics, artifacts=[layout.GATE_METRICS, layout.GATE_DECISIONS],
              tags={"smoothcert.gate_verdict": verdict.verdict, "smoothcert.protocol_sha256": verdict.protocol_sha256,
                    "smoothcert.model_sha256": verdict.model_sha256})


def main() -> int:
    protocol = load_protocol(PARAMS_FILE, "gate")
    check_frozen(read_protocol_record(layout.PROTOCOL_RECORD), protocol, f"{PARAMS_FILE} section 'gate'")
    model = load_model_description(layout.MODEL_CARD)
    judged = sha256_file(layout.MODEL)  # the file being judged, not only what the card says about it
    if judged != model["sha256"]:
        raise StaleArtifactError(f"{layout.MODEL} hashes to {judged[:12]}... but {layout.MODEL_CARD} names "
                                 f"{model['sha256'][:12]}...; the model was swapped or re-exported: rerun the pipeline (dvc repro)")
    if protocol.mode == "fixed":
        rows = load_decisions(layout.CERTIFY_RESULTS, protocol, model["sha256"], layout.CERTIFY_METRICS,
                              load_split(layout.TEST_SPLIT).labels)
    else:
        rows = decide_rows(protocol.radius, model["sha256"])
    lighting = certify_lighting(layout.CERTIFY_METRICS) if protocol.has_lighting_criterion else None
    verdict = evaluate(rows, protocol, model["class_names"], model["malignant_classes"], rows[0].alpha, model["sha256"],
                       lighting)
    document = gate_document(verdict, rows)
    write_text_atomic(layout.GATE_DECISIONS, decision_jsonl_text(rows))
    write_json_atomic(layout.GATE_METRICS, document)
    write_text_atomic(layout.GATE_MARKER, gate_marker_csv(document))
    log_verdict(verdict, document["evaluations"]["total"])
    print(render_table(verdict))
    for line in failure_lines(verdict):
        print(line)
    print(f"gate: wrote {layout.GATE_METRICS} and {layout.GATE_DECISIONS} ({document['evaluations']['total']:,} model "
          "evaluations); the verdict stage acts on it")
    return 0


if __name__ == "__main__":
    run_stage("gate", main)
