"""fp32 vs PTQ vs QAT int8, certified as they ship; and incremental certification of the int8 file vs a full one.

Run from the repository root after `dvc repro` (or `dvc checkout`) has produced models/model.pt and data/:

    python benchmarks/quantization.py [--examples 200] [--n 10000] [--n-p 1000] [--out benchmarks/quantization.json]

One run, same data and examples for every row: the three artifacts are made by the export stage's own function
(:func:`certification.export_run.export_files`, params.yaml's ``export`` section with ``quantize`` none, ptq and qat,
in a temporary folder), each is certified in full (CERTIFY, certify's seeded subset of the test split, n0, n, alpha
and seed of params.yaml) and reported with: prediction agreement with fp32 on clean and noisy validation images
(export's check), certified accuracy at every radius with its Clopper-Pearson-minus-alpha lower bound, ACR, file
size, single-core latency (one image per call, onnxruntime ``intra_op_num_threads=1``, median and p99 of
``--latency-repeats`` calls), and certification time. Then the better int8 file (higher minimum over radii of its
certified accuracy minus fp32's) is certified incrementally from fp32's certificates
(:mod:`certification.incremental`, ``--n-p`` disagreement samples at alpha) on the same examples, and its time is
compared with that int8 file's full certification. Ratios are within this run; timings depend on the machine's load.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from certification.certify_run import RunOptions, certify_files
from certification.dataset_io import load_split
from certification.export_run import ExportSettings, export_files
from certification.fileio import read_json, write_json_atomic
from certification.incremental_run import incremental_files
from certification.onnx_model import open_session
from certification.qat import QatSettings
from certification.summary import summarize


def _latency(path: Path, image: np.ndarray, repeats: int) -> dict[str, float]:
    """Single-image onnxruntime latency on one thread, in milliseconds."""
    session = open_session(path, 1, "cpu")
    name = session.get_inputs()[0].name
    x = image[None].astype(np.float32)
    for _ in range(10):
        session.run(None, {name: x})
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, {name: x})
        times.append((time.perf_counter() - start) * 1000)
    return {"median_ms": float(np.median(times)), "p99_ms": float(np.percentile(times, 99))}


def _summary(records: list, radii: list[float], confidence: float) -> dict[str, Any]:
    s = summarize(records, radii, confidence)
    return {"curve": s["curve"], "acr": s["average_certified_radius"], "clean_accuracy": s["clean_accuracy"],
            "abstention_rate": s["abstention_rate"]["estimate"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--examples", type=int, default=None, help="certified test examples (default certify.max_examples)")
    parser.add_argument("--n", type=int, default=None, help="CERTIFY estimation samples (default certify.n)")
    parser.add_argument("--n-p", type=int, default=1000, help="disagreement samples of the incremental certification")
    parser.add_argument("--qat-epochs", type=int, default=None, help="QAT epochs (default export.qat.epochs)")
    parser.add_argument("--latency-repeats", type=int, default=300)
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads for certification (default: half the cores)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/quantization.json"))
    args = parser.parse_args()

    params = yaml.safe_load(args.params.read_text())
    certify, export = params["certify"], dict(params["export"])
    sigma = certify["sigma"] if certify["sigma"] is not None else params["train"]["sigma"]
    qat = QatSettings(**{**export.pop("qat", {}), **({"epochs": args.qat_epochs} if args.qat_epochs else {})})
    export.pop("quantize")
    n = args.n or certify["n"]
    options = RunOptions(sigma=sigma, alpha=certify["alpha"], seed=certify["seed"], batch_size=params["runtime"]["certify_batch_size"],
                         max_examples=args.examples if args.examples is not None else certify["max_examples"], threads=args.threads)
    datasheet = read_json("data/datasheet.json")
    classes = list(datasheet["classes"])
    val, train = load_split("data/val.npz", len(classes)), load_split("data/train.npz", len(classes))
    platform = read_json("metrics/train.json")["platform"]
    test = load_split("data/test.npz", len(classes))
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="quantization-bench-") as work:
        folder = Path(work)
        paths: dict[str, Path] = {}
        for method in ("none", "ptq", "qat"):
            start = time.perf_counter()
            shipped = folder / method / "model.onnx"
            outcome = export_files(Path("models/model.pt"), val, classes, list(datasheet.get("malignant_classes", [])),
                                   ExportSettings(**export, quantize=method, qat=qat), shipped, folder / method / "model_fp32.onnx",
                                   platform, None, train)
            export_seconds = time.perf_counter() - start
            name = {"none": "fp32"}.get(method, method)
            paths[name] = shipped
            start = time.perf_counter()
            run, _, _ = certify_files(shipped, "data/test.npz", folder / method / "certify.jsonl", options, certify["n0"], n,
                                      show_progress=False)
            seconds = time.perf_counter() - start
            quantized = outcome.metrics["quantized_agreement"] or {}
            rows[name] = {
                "sha256": outcome.card["sha256"], "bytes": shipped.stat().st_size, "export_seconds": round(export_seconds, 1),
                "agreement_clean": quantized.get("agreement_clean", 1.0), "agreement_noisy": quantized.get("agreement_noisy", 1.0),
                "int8_vs_fake_quant_agreement_noisy": (quantized.get("qat") or {}).get("int8_vs_fake_quant_agreement_noisy"),
                "val_accuracy_noisy": outcome.metrics["onnxruntime"]["accuracy_noisy"],
                "latency": _latency(shipped, test.model_input(np.array([0]))[0], args.latency_repeats),
                "certify_seconds": round(seconds, 2), **_summary(run.records, certify["radii"], certify["confidence"]),
            }
            print(f"{name}: {rows[name]['bytes']} bytes, ACR {rows[name]['acr']:.3f}, certify {seconds:.1f} s", file=sys.stderr)
        fp32_curve = [p["certified_accuracy"] for p in rows["fp32"]["curve"]]
        gaps = {name: min(p["certified_accuracy"] - f for p, f in zip(rows[name]["curve"], fp32_curve)) for name in ("ptq", "qat")}
        best = max(gaps, key=lambda k: gaps[k])
        start = time.perf_counter()
        inc, _, _ = incremental_files(folder / "none" / "certify.jsonl", paths["fp32"], paths[best], "data/test.npz",
                                      folder / "incremental.jsonl", dataclasses.replace(options, max_examples=0), args.n_p,
                                      show_progress=False)
        inc_seconds = time.perf_counter() - start
        incremental = {"model": best, "n_p": args.n_p, "seconds": round(inc_seconds, 2),
                       "full_seconds": rows[best]["certify_seconds"], "speedup": round(rows[best]["certify_seconds"] / inc_seconds, 2),
                       "alpha_total": inc.records[0].alpha,
                       "mean_disagreement": float(np.mean([r.incremental["disagreements"] / r.incremental["n_p"]
                                                           for r in inc.records if r.incremental["n_p"]])),
                       **_summary(inc.records, certify["radii"], certify["confidence"])}
    report = {"date": time.strftime("%Y-%m-%d"), "examples": len(inc.records), "n0": certify["n0"], "n": n, "sigma": sigma,
              "alpha": certify["alpha"], "qat": qat.__dict__, "rows": rows, "worst_gap_vs_fp32": gaps, "better_int8": best,
              "incremental": incremental,
              "target_met": bool(gaps[best] >= -0.02 and rows["fp32"]["bytes"] / rows[best]["bytes"] >= 3)}
    write_json_atomic(args.out, report)
    radii = certify["radii"]
    print(f"{report['examples']} test examples, n0 {certify['n0']}, n {n}, alpha {certify['alpha']}, sigma {sigma}")
    print("| model | bytes (fp32/x) | agree clean / noisy | " + " | ".join(f"r={r:g}" for r in radii) + " | ACR | latency ms median/p99 | certify s |")
    print("|---" * (len(radii) + 6) + "|")
    for name, row in rows.items():
        curve = " | ".join(f"{p['certified_accuracy']:.3f} ({p['lower_bound']:.3f})" for p in row["curve"])
        print(f"| {name} | {row['bytes']} ({rows['fp32']['bytes'] / row['bytes']:.2f}x) | {row['agreement_clean']:.3f} / "
              f"{row['agreement_noisy']:.3f} | {curve} | {row['acr']:.3f} | {row['latency']['median_ms']:.3f} / "
              f"{row['latency']['p99_ms']:.3f} | {row['certify_seconds']:.1f} |")
    curve = " | ".join(f"{p['certified_accuracy']:.3f} ({p['lower_bound']:.3f})" for p in incremental["curve"])
    print(f"| {best} incremental (n_p {args.n_p}, alpha {incremental['alpha_total']:g}) | | | {curve} | {incremental['acr']:.3f} | | "
          f"{incremental['seconds']:.1f} |")
    print("worst certified-accuracy gap vs fp32 over radii: " + ", ".join(f"{k} {v:+.3f}" for k, v in gaps.items()))
    print(f"incremental / full certification time of {best}: {inc_seconds:.1f} s / {rows[best]['certify_seconds']:.1f} s "
          f"({incremental['speedup']:.2f}x faster); mean disagreement {incremental['mean_disagreement']:.4f}")
    print(f"target (better int8 within 2 points at every radius, >= 3x smaller): {'met' if report['target_met'] else 'not met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
