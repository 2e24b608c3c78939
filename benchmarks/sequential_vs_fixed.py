"""Model evaluations of the sequential decision vs fixed-n CERTIFY at the gate radius, and whether they agree.

Run from the repository root after `dvc repro` has produced data/test.npz and models/model.onnx:

    python benchmarks/sequential_vs_fixed.py [--max-examples 200] [--certify-results results/certify.jsonl]

Fixed-n CERTIFY uses n0 = 100 and n = 10,000 (every example costs 10,100 evaluations); the sequential decision
uses the same n0, n_max = n, alpha and seed (so the same noise streams), on the same examples (certify's seeded
subset), through the same noise threads and batches. With ``--certify-results`` the fixed-n answers are read from an
existing results file with those parameters instead of being recomputed (its time is then the certify run's).
Reports evaluations, wall time, agreement of the certified / not-certified answers (with, for each disagreement,
how far CERTIFY's own bound is from Phi(r*/sigma) in its standard errors) and the gate verdict of each, with
every criterion resolved and, separately, with ``--certified-only``; writes a JSON report.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from scipy.stats import norm

from certification.certify_run import RunOptions, open_run, record_from_result
from certification.fileio import read_json, sha256_file, write_json_atomic
from certification.gate import Protocol, evaluate
from certification.gate_io import decisions_from_certify
from certification.records import CertifyRecord, read_certify_records
from certification.sequential import iter_decide
from certification.smoothing import SmoothedClassifier


def _params(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    certify, gate = document["certify"], document["gate"]
    sigma = certify["sigma"] if certify["sigma"] is not None else document["train"]["sigma"]
    return {"sigma": float(sigma), "alpha": float(certify["alpha"]), "seed": int(certify["seed"]),
            "max_examples": int(certify["max_examples"]), "batch_size": int(certify["batch_size"]), "gate": gate}


def _fixed_rows(args: argparse.Namespace, smoothed: SmoothedClassifier, images, labels, indices,
                p: dict) -> tuple[list[CertifyRecord], float]:
    """Fixed-n CERTIFY rows and their time in seconds (summed per-example times when read from a results file)."""
    if args.certify_results is not None:
        rows = {r.index: r for r in read_certify_records(args.certify_results)}
        chosen = [rows[int(i)] for i in indices if int(i) in rows]
        if len(chosen) != len(indices) or any(r.n0 != args.n0 or r.n != args.n or r.seed != p["seed"] for r in chosen):
            sys.exit(f"{args.certify_results}: does not hold n0={args.n0}, n={args.n}, seed={p['seed']} results for these examples")
        return chosen, sum(r.seconds for r in chosen)
    start = time.perf_counter()
    results = smoothed.certify_many(images, labels, args.n0, args.n, p["alpha"], p["seed"], indices=indices)
    seconds = time.perf_counter() - start
    return [record_from_result(r, p["alpha"], p["sigma"], p["seed"], model_sha256=smoothed.base_classifier.sha256,
                               data_sha256=sha256_file(args.data)) for r in results], seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/model.onnx"))
    parser.add_argument("--model-json", type=Path, default=Path("models/model.json"))
    parser.add_argument("--data", type=Path, default=Path("data/test.npz"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--n0", type=int, default=100)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--max-examples", type=int, default=None, help="default: certify.max_examples of params.yaml")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: the certify stage's)")
    parser.add_argument("--certify-results", type=Path, default=None, help="reuse fixed-n results (same n0, n, seed)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/sequential_vs_fixed.json"))
    args = parser.parse_args()

    p = _params(args.params)
    radius = float(p["gate"]["radius"])
    model = read_json(args.model_json)
    max_examples = p["max_examples"] if args.max_examples is None else args.max_examples
    options = RunOptions(sigma=p["sigma"], alpha=p["alpha"], seed=p["seed"], batch_size=p["batch_size"],
                         max_examples=max_examples, threads=args.threads)
    smoothed, split, indices = open_run(args.model, args.data, options)
    images, labels = split.model_input(indices), split.labels[indices]

    fixed_rows, fixed_seconds = _fixed_rows(args, smoothed, images, labels, indices, p)
    fixed = decisions_from_certify(fixed_rows, radius, smoothed.base_classifier.sha256)
    report: dict[str, Any] = {
        "model_sha256": smoothed.base_classifier.sha256, "data": str(args.data), "n_examples": len(indices),
        "radius": radius, "sigma": p["sigma"], "alpha": p["alpha"], "n0": args.n0, "n": args.n, "seed": p["seed"],
        "fixed": {"evaluations": sum(r.evaluations for r in fixed), "seconds": fixed_seconds,
                  "certified": sum(r.certified for r in fixed)},
    }
    protocol = {k: v for k, v in p["gate"].items() if k != "mode"}
    fixed_verdict = evaluate(fixed, Protocol.from_dict({**protocol, "mode": "fixed"}), model["class_names"],
                             model["malignant_classes"], p["alpha"], report["model_sha256"])
    for name, resolve in (("sequential", True), ("sequential_certified_only", False)):
        start = time.perf_counter()
        decisions = list(iter_decide(smoothed, images, labels, radius, args.n0, args.n, p["alpha"], p["seed"],
                                     indices=indices, resolve_abstention=resolve))
        seconds = time.perf_counter() - start
        evaluations = sum(d.evaluations for d in decisions)
        disagree = [f.index for f, d in zip(fixed, decisions) if f.certified != d.certified]
        threshold = float(norm.cdf(radius / p["sigma"]))
        by_index = {r.index: r for r in fixed_rows}
        distance = {str(i): (by_index[i].p_lower - threshold) / math.sqrt(threshold * (1 - threshold) / args.n)
                    for i in disagree}
        entry = {
            "evaluations": evaluations, "seconds": seconds, "certified": sum(d.certified for d in decisions),
            "ratio": report["fixed"]["evaluations"] / evaluations,
            "certified_agreement": 1 - len(disagree) / len(decisions), "disagreeing_indices": disagree,
            "disagreement_certify_bound_minus_threshold_in_standard_errors": distance,
            "decided_by": {k: sum(d.details["decided_by"] == k for d in decisions) for k in ("sequence", "fixed_at_n_max")},
            "wall_ratio": report["fixed"]["seconds"] / seconds,
            "prediction_agreement": sum(f.prediction == d.prediction for f, d in zip(fixed, decisions)) / len(decisions),
            "stopped_at": {str(n): sum(d.n == n for d in decisions) for n in sorted({d.n for d in decisions})},
        }
        if resolve:
            verdict = evaluate(decisions, Protocol.from_dict({**protocol, "mode": "sequential"}), model["class_names"],
                               model["malignant_classes"], p["alpha"], report["model_sha256"])
            entry["gate_verdict"] = verdict.verdict
            entry["gate_failed"] = verdict.failed
            entry["gate_bounds"] = {c.name: c.bound for c in verdict.criteria}
        report[name] = entry
    report["fixed"]["gate_verdict"] = fixed_verdict.verdict
    report["fixed"]["gate_failed"] = fixed_verdict.failed
    report["fixed"]["gate_bounds"] = {c.name: c.bound for c in fixed_verdict.criteria}
    write_json_atomic(args.out, report)

    seq = report["sequential"]
    print(f"{len(indices)} examples at radius {radius:g} (sigma {p['sigma']:g}, alpha {p['alpha']:g})")
    print(f"fixed-n CERTIFY : {report['fixed']['evaluations']:>12,} evaluations, {report['fixed']['certified']} certified, "
          f"gate {fixed_verdict.verdict}")
    print(f"fixed-n time    : {report['fixed']['seconds']:.1f} s")
    print(f"sequential      : {seq['evaluations']:>12,} evaluations, {seq['certified']} certified, gate {seq['gate_verdict']}; "
          f"{seq['ratio']:.1f}x fewer; {seq['seconds']:.1f} s ({seq['wall_ratio']:.1f}x less wall time); per-example "
          f"agreement {seq['certified_agreement']:.3f} (disagreements: {seq['disagreement_certify_bound_minus_threshold_in_standard_errors']})")
    other = report["sequential_certified_only"]
    print(f"certified only  : {other['evaluations']:>12,} evaluations ({other['ratio']:.1f}x fewer, {other['wall_ratio']:.1f}x "
          f"less wall time; agreement {other['certified_agreement']:.3f})")
    print(f"gate bounds     : fixed {report['fixed']['gate_bounds']}\n                  sequential {seq['gate_bounds']}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
