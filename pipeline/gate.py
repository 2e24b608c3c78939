"""gate stage: judge the certified model against the pre-specified protocol (params ``gate``).

mode fixed: reads results/certify.jsonl and metrics/certify.json (the certify stage's full CERTIFY results).
mode sequential: runs the sequential decision at gate.radius on the same examples (certify.max_examples subset,
certify.seed) with certify's sigma, n0, alpha, batch_size and n_max = certify.n.

Writes metrics/gate.json (the verdict) and results/gate.jsonl (the per-example decision at r*, same schema in
both modes) and ALWAYS exits 0 once the verdict is written, so the dossier is produced for a rejected model too;
the verdict stage (after the dossier) fails `dvc repro` on REJECT. Bad input exits 2.
"""
from __future__ import annotations

import json
from pathlib import Path

from certification.certify_run import read_records
from certification.fileio import write_json_atomic, write_text_atomic
from certification.gate import Verdict, evaluate, failure_lines, render_table
from certification.gate_io import check_results_model, decision_rows_from_certify, load_model_description, load_protocol
from pipeline.certify import KEYS as CERTIFY_KEYS
from pipeline.certify import resolve_sigma
from pipeline.stage import PARAMS_FILE, load_section, run_stage
from pipeline.tracking import log_stage


MODEL = Path("models/model.onnx")
MODEL_CARD = Path("models/model.json")
DATA = Path("data/test.npz")
CERTIFY_RESULTS = Path("results/certify.jsonl")
CERTIFY_METRICS = Path("metrics/certify.json")
DECISIONS = Path("results/gate.jsonl")
METRICS = Path("metrics/gate.json")


def decide_rows(protocol_radius: float, model_sha256: str) -> list[dict]:
    """Mode sequential: decide every example at r* with the sequential test (n_max = certify.n)."""
    from certification.sequential_run import decide_files

    certify = load_section("certify", CERTIFY_KEYS)
    rows = decide_files(MODEL, DATA, None, radius=protocol_radius, sigma=resolve_sigma(certify), n0=certify["n0"],
                        n_max=certify["n"], alpha=certify["alpha"], seed=certify["seed"],
                        batch_size=certify["batch_size"], max_examples=certify["max_examples"])
    check_results_model(rows, model_sha256, "sequential decisions", None)
    return rows


def log_verdict(verdict: Verdict, evaluations: int) -> None:
    """MLflow: the protocol as params, each criterion's bound and pass/fail as metrics, the verdict as a tag."""
    metrics: dict[str, float] = {"accepted": float(verdict.accepted), "model_evaluations": float(evaluations)}
    for c in verdict.criteria:
        metrics[f"{c.name}_bound"] = c.bound
        metrics[f"{c.name}_passed"] = float(c.passed)
    log_stage("gate", params=verdict.protocol, metrics=metrics, artifacts=[METRICS, DECISIONS],
              tags={"smoothcert.gate_verdict": verdict.verdict, "smoothcert.protocol_sha256": verdict.protocol_sha256,
                    "smoothcert.model_sha256": verdict.model_sha256})


def main() -> int:
    protocol = load_protocol(PARAMS_FILE, "gate")
    model = load_model_description(MODEL_CARD)
    if protocol.mode == "fixed":
        certify_rows = read_records(CERTIFY_RESULTS)
        check_results_model(certify_rows, model["sha256"], str(CERTIFY_RESULTS), CERTIFY_METRICS)
        rows = decision_rows_from_certify(certify_rows, protocol.radius, model["sha256"])
    else:
        rows = decide_rows(protocol.radius, model["sha256"])
    alpha = rows[0]["alpha"]
    verdict = evaluate(rows, protocol, model["class_names"], model["malignant_classes"], alpha, model["sha256"])
    evaluations = sum(int(r["evaluations"]) for r in rows)
    document = verdict.to_dict()
    document["evaluations"] = {"total": evaluations, "per_example": evaluations / len(rows)}
    write_text_atomic(DECISIONS, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    write_json_atomic(METRICS, document)
    log_verdict(verdict, evaluations)
    print(render_table(verdict))
    for line in failure_lines(verdict):
        print(line)
    print(f"gate: wrote {METRICS} and {DECISIONS} ({evaluations:,} model evaluations); the verdict stage acts on it")
    return 0


if __name__ == "__main__":
    run_stage("gate", main)
