"""Train and certify each training method on the same data, seeds and test images; print one table.

Run from the repository root after the data stage has produced data/{train,val,test}.npz and data/datasheet.json:

    python benchmarks/training_methods.py [--methods gaussian,consistency,macer] [--sigmas 0.25,0.5]
        [--epochs 12] [--n 2000] [--n0 100] [--examples 200] [--consistency-m 2] [--consistency-lambda 5]
        [--consistency-eta 0.5] [--macer-k 2] [--macer-lambda 12]

Every method starts from params.yaml's ``train`` section (its own hyper-parameters included; ``--epochs``,
``--consistency-m``, ``--consistency-lambda``, ``--consistency-eta``, ``--macer-k`` and ``--macer-lambda``
override them), with the same seed, on the same training and validation
splits, with portable kernels as the train stage. Each model is exported to ONNX and certified by the product's
CERTIFY (:class:`certification.smoothing.SmoothedClassifier`) on the same seeded test subset, with n0, n, alpha and
seed from the flags and params ``certify``. Columns: certified accuracy at the gate radius r* and at 0.5 (with the
Clopper-Pearson-minus-alpha lower bound), the average certified radius (ACR), the smoothed classifier's clean
accuracy, melanoma and BCC certified recall at r* (with lower bounds), training seconds. Also writes a JSON report.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from certification.platform_info import PORTABLE_TORCH_ENVIRONMENT

for _key, _value in PORTABLE_TORCH_ENVIRONMENT.items():  # before torch starts, as the train stage does
    os.environ.setdefault(_key, _value)

from certification.certify_run import RunOptions, open_run, record_from_result  # noqa: E402
from certification.dataset_io import load_split  # noqa: E402
from certification.fileio import read_json, sha256_file, write_json_atomic  # noqa: E402
from certification.onnx_export import export_onnx  # noqa: E402
from certification.summary import summarize  # noqa: E402
from certification.training import TrainConfig, train_model  # noqa: E402

TARGET_CLASSES = ("melanoma", "basal_cell_carcinoma")


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--data", type=Path, default=Path("data"))
    parser.add_argument("--methods", default="gaussian,consistency,macer")
    parser.add_argument("--sigmas", default="0.25,0.5")
    parser.add_argument("--epochs", type=int, default=None, help="default: train.epochs of params.yaml")
    parser.add_argument("--consistency-m", type=int, default=None)
    parser.add_argument("--macer-k", type=int, default=None)
    parser.add_argument("--consistency-lambda", type=float, default=None)
    parser.add_argument("--consistency-eta", type=float, default=None)
    parser.add_argument("--macer-lambda", type=float, default=None)
    parser.add_argument("--n0", type=int, default=100)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--examples", type=int, default=200, help="seeded test subset (certify's selection)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/training_methods.json"))
    return parser.parse_args()


def _train_params(document: dict[str, Any], args: argparse.Namespace, method: str, sigma: float) -> dict[str, Any]:
    params = {**document["train"], "method": method, "sigma": sigma}
    if args.epochs is not None:
        params["epochs"] = args.epochs
    if args.consistency_m is not None:
        params["consistency"] = {**params["consistency"], "m": args.consistency_m}
    if args.macer_k is not None:
        params["macer"] = {**params["macer"], "k": args.macer_k}
    if args.consistency_lambda is not None:
        params["consistency"] = {**params["consistency"], "lambda": args.consistency_lambda}
    if args.consistency_eta is not None:
        params["consistency"] = {**params["consistency"], "eta": args.consistency_eta}
    if args.macer_lambda is not None:
        params["macer"] = {**params["macer"], "lambda": args.macer_lambda}
    return params


def _point(summary: dict[str, Any], radius: float) -> dict[str, Any]:
    empty = {"radius": radius, "certified_accuracy": None, "lower_bound": None, "count": 0}
    return next((p for p in summary["curve"] if abs(p["radius"] - radius) < 1e-12), empty)


def run_one(args: argparse.Namespace, document: dict[str, Any], classes: list[str], method: str, sigma: float,
            work: Path) -> dict[str, Any]:
    """Train ``method`` at ``sigma``, export, certify the test subset; the row of the table."""
    certify, gate_radius = document["certify"], float(document["gate"]["radius"])
    config = TrainConfig.from_params(_train_params(document, args, method, sigma))
    train, val = (load_split(args.data / f"{name}.npz", len(classes)) for name in ("train", "val"))
    print(f"{method} sigma {sigma:g}: training", file=sys.stderr, flush=True)
    result = train_model(train.images, train.labels, val.images, val.labels, len(classes), config,
                         threads=args.threads, extra_config={"class_names": classes})
    path = work / f"{method}-{sigma:g}.onnx"
    shape = (int(result.config["in_channels"]), int(result.config["image_size"]), int(result.config["image_size"]))
    export_onnx(result.model, path, shape, int(document["export"]["opset"]))
    options = RunOptions(sigma=sigma, alpha=float(certify["alpha"]), seed=int(certify["seed"]),
                         batch_size=int(document["runtime"]["certify_batch_size"]), max_examples=args.examples, threads=args.threads)
    options.check(args.n0, args.n)
    test_path = args.data / "test.npz"
    print(f"{method} sigma {sigma:g}: trained in {result.seconds:.0f} s; certifying", file=sys.stderr, flush=True)
    smoothed, split, indices = open_run(path, test_path, options, num_classes=len(classes))
    start = time.perf_counter()
    results = smoothed.certify_many(split.model_input(indices), split.labels[indices], args.n0, args.n, options.alpha,
                                    options.seed, indices=indices)
    certify_seconds = time.perf_counter() - start
    data_sha = sha256_file(test_path)
    records = [record_from_result(r, options.alpha, sigma, options.seed, model_sha256=smoothed.base_classifier.sha256,
                                  data_sha256=data_sha) for r in results]
    radii = sorted({0.0, gate_radius, 0.5})
    summary = summarize(records, radii, float(certify["confidence"]), classes)
    return {
        "method": method, "sigma": sigma, "hyperparameters": config.hyperparameters(), "epochs": config.epochs,
        "best_epoch": result.best_epoch, "train_seconds": round(result.seconds, 1),
        "certify_seconds": round(certify_seconds, 1), "n_examples": summary["n_examples"],
        "certified_at_r_star": _point(summary, gate_radius), "certified_at_0.5": _point(summary, 0.5),
        "acr": summary["average_certified_radius"], "clean_accuracy": summary["clean_accuracy"],
        "recall_at_r_star": {name: _point(summary["per_class"][name], gate_radius) for name in TARGET_CLASSES
                             if name in summary["per_class"]},
    }


def _cell(point: dict[str, Any]) -> str:
    if point["certified_accuracy"] is None:
        return "-"
    return f"{point['certified_accuracy']:.3f} ({point['lower_bound']:.3f})"


def table(rows: list[dict[str, Any]], gate_radius: float) -> str:
    header = (f"| sigma | method | hyperparameters | cert. acc. r*={gate_radius:g} (LB) | cert. acc. 0.5 (LB) | ACR | "
              f"clean acc. (LB) | melanoma recall r* (LB) | BCC recall r* (LB) | train s |")
    lines = [header, "|" + "|".join("---" for _ in range(10)) + "|"]
    for row in rows:
        hyper = ", ".join(f"{k}={v:g}" for k, v in row["hyperparameters"].items()) or "-"
        recall = row["recall_at_r_star"]
        clean = row["clean_accuracy"]
        lines.append(
            f"| {row['sigma']:g} | {row['method']} | {hyper} | {_cell(row['certified_at_r_star'])} | "
            f"{_cell(row['certified_at_0.5'])} | {row['acr']:.3f} | {clean['estimate']:.3f} ({clean['lower']:.3f}) | "
            f"{_cell(recall['melanoma']) if 'melanoma' in recall else '-'} | "
            f"{_cell(recall['basal_cell_carcinoma']) if 'basal_cell_carcinoma' in recall else '-'} | "
            f"{row['train_seconds']:.0f} |")
    return "\n".join(lines)


def ratios(rows: list[dict[str, Any]]) -> list[str]:
    """Each method against the gaussian row of the same sigma (same run): ACR ratio, clean-accuracy change in points."""
    lines = []
    for row in rows:
        base = next((b for b in rows if b["method"] == "gaussian" and b["sigma"] == row["sigma"]), None)
        if base is None or row is base or not base["acr"]:
            continue
        clean = 100 * (row["clean_accuracy"]["estimate"] - base["clean_accuracy"]["estimate"])
        lines.append(f"sigma {row['sigma']:g} {row['method']}: ACR {row['acr'] / base['acr']:.2f}x gaussian, "
                     f"clean accuracy {clean:+.1f} points, training {row['train_seconds'] / base['train_seconds']:.2f}x")
    return lines


def main() -> int:
    args = _args()
    document = yaml.safe_load(args.params.read_text())
    classes = list(read_json(args.data / "datasheet.json")["classes"])
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    sigmas = [float(s) for s in args.sigmas.split(",") if s.strip()]
    for method in methods:  # every config is checked before the first model trains
        for sigma in sigmas:
            TrainConfig.from_params(_train_params(document, args, method, sigma))
    rows = []
    with tempfile.TemporaryDirectory(prefix="training-methods-") as work:
        for sigma in sigmas:
            for method in methods:
                row = run_one(args, document, classes, method, sigma, Path(work))
                rows.append(row)
                write_json_atomic(args.out, {"command": " ".join(sys.argv), "partial": True, "rows": rows})
                print(f"{method} sigma {sigma:g}: ACR {row['acr']:.3f}, train {row['train_seconds']:.0f} s, "
                      f"certify {row['certify_seconds']:.0f} s", file=sys.stderr, flush=True)
    gate_radius = float(document["gate"]["radius"])
    report = {"command": " ".join(sys.argv), "n0": args.n0, "n": args.n, "examples": args.examples,
              "alpha": float(document["certify"]["alpha"]), "seed": int(document["certify"]["seed"]),
              "confidence": float(document["certify"]["confidence"]), "rows": rows}
    write_json_atomic(args.out, report)
    print(f"{rows[0]['n_examples']} test images, n0 {args.n0}, n {args.n}, alpha {report['alpha']:g}, "
          f"lower bounds at confidence {report['confidence']:g}")
    print(table(rows, gate_radius))
    for line in ratios(rows):
        print(line)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
