"""certify stage: CERTIFY the shipped ONNX model on the test split (or a seeded subset of it).

Reads params ``certify`` (sigma null = train.sigma), models/model.onnx, models/model.json (class names) and
data/test.npz. Writes results/certify.jsonl (+ results/certify.tsv), metrics/certify.json and
plots/certify_curve.csv. An interrupted run resumes from results/certify.jsonl.partial.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from certification.certify_run import certify_files
from certification.errors import InputError
from certification.fileio import read_json, sha256_file, write_json_atomic, write_text_atomic
from certification.noise_sampling import NOISE_SPEC, noise_kernels, tail_bound
from certification.summary import certify_metrics, curve_csv
from pipeline.stage import load_document, load_section, run_stage

from pipeline.tracking import log_stage

MODEL = Path("models/model.onnx")
MODEL_CARD = Path("models/model.json")
DATA = Path("data/test.npz")
RESULTS = Path("results/certify.jsonl")
METRICS = Path("metrics/certify.json")
CURVE = Path("plots/certify_curve.csv")

KEYS: dict[str, Any] = {
    "sigma": (float, type(None)),
    "n0": int,
    "n": int,
    "alpha": float,
    "batch_size": int,
    "max_examples": int,
    "seed": int,
    "confidence": float,
    "radii": list,
}


def resolve_sigma(params: dict[str, Any]) -> float:
    """certify.sigma, or train.sigma when it is null."""
    if params["sigma"] is not None:
        return float(params["sigma"])
    sigma = (load_document().get("train") or {}).get("sigma")
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or sigma <= 0:
        raise InputError(f"certify.sigma is null and train.sigma is {sigma!r}; set certify.sigma to a positive number")
    return float(sigma)


def main() -> int:
    params = load_section("certify", KEYS)
    sigma = resolve_sigma(params)
    radii = params["radii"]
    if not radii or not all(isinstance(r, (int, float)) and not isinstance(r, bool) and r >= 0 for r in radii):
        raise InputError(f"params.yaml: 'certify.radii' must be a non-empty list of non-negative numbers, got {radii!r}")
    card = read_json(MODEL_CARD)
    class_names = card.get("class_names")
    outcome, classifier, split = certify_files(
        MODEL, DATA, RESULTS, sigma=sigma, n0=params["n0"], n=params["n"], alpha=params["alpha"],
        batch_size=params["batch_size"], seed=params["seed"], max_examples=params["max_examples"],
    )
    if class_names is not None and len(class_names) != classifier.num_classes:
        raise InputError(f"{MODEL_CARD}: lists {len(class_names)} class names but the model has {classifier.num_classes} outputs; re-run export")
    run_params = {"sigma": sigma, "n0": params["n0"], "n": params["n"], "alpha": params["alpha"], "seed": params["seed"],
                  "batch_size": params["batch_size"], "max_examples": params["max_examples"]}
    metrics = certify_metrics(
        outcome.records,
        model={"path": str(MODEL), "sha256": classifier.base_classifier.sha256},
        data={"path": str(DATA), "sha256": sha256_file(DATA), "n_examples_total": len(split)},
        params=run_params, radii=radii, confidence=params["confidence"], class_names=class_names,
        throughput=outcome.throughput(),
    )
    metrics["runtime"] = {**classifier.base_classifier.session_config, "noise_threads": classifier.noise_threads}
    metrics["noise"] = {"spec": NOISE_SPEC, "kernels": noise_kernels(),
                        "tail_bound_per_certificate": tail_bound(int(params["n0"]) + int(params["n"]), split.image_shape_chw)}
    write_json_atomic(METRICS, metrics)
    write_text_atomic(CURVE, curve_csv(metrics["curve"]))
    log_stage(
        "certify",
        params=run_params,
        metrics={
            "clean_accuracy": metrics["clean_accuracy"]["estimate"],
            "abstention_rate": metrics["abstention_rate"]["estimate"],
            "average_certified_radius": metrics["average_certified_radius"],
            **{f"certified_accuracy_r{row['radius']:g}": row["certified_accuracy"] for row in metrics["curve"]},
            **{f"certified_lower_r{row['radius']:g}": row["lower_bound"] for row in metrics["curve"]},
        },
        artifacts=[METRICS, CURVE, RESULTS.with_suffix(".tsv")],
        tags={"smoothcert.model_sha256": classifier.base_classifier.sha256},
    )
    print(f"certify: {metrics['n_examples']} examples, clean accuracy {metrics['clean_accuracy']['estimate']:.3f}, "
          f"ACR {metrics['average_certified_radius']:.3f}; wrote {RESULTS}, {METRICS}, {CURVE}")
    return 0


if __name__ == "__main__":
    run_stage("certify", main)
