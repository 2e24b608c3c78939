"""Lighting certificates (issue 19): isotropic smoothing against ``dc`` and ``dc+ramps`` lighting noise, one table.

Run from the repository root after the data stage has produced data/{train,val,test}.npz and data/datasheet.json:

    python benchmarks/lighting.py [--taus 0.05,0.1] [--epochs 4] [--n 2000] [--n0 100] [--examples 200]
    python benchmarks/lighting.py --onnx models/model.onnx [...]   # certification only, no training

Every configuration trains the edge CNN from params.yaml's ``train`` section with the same seed, sigma and data,
with its own noise (training and certification use the same covariance), for ``--epochs`` epochs (the default run
trains 12; the reduced settings are printed with the table), exports it to ONNX and certifies the same seeded test
subset by the product's CERTIFY. Columns: certified L2 accuracy at r* (gate.radius) with its lower bound and the
difference to isotropic in points, the average certified radius (ACR), the smoothed clean accuracy, and for
brightness, illumination gradient and colour temperature at each severity the share of certified (non-abstaining)
test images whose actual change (varied - clean, :mod:`certification.failure_modes.camera_variations`) passes the
exact ellipsoid test delta^T Sigma^-1 delta < R^2 (isotropic: ||delta|| < sigma R, the L2 certificate). Also writes a
JSON report. With ``--onnx`` nothing is trained: every configuration certifies that one model (e.g. the shipped,
isotropically trained models/model.onnx), which shows what the lighting noise costs a model not trained for it (a
lower bound on what training with the same noise gives). The issue's target: brightness and illumination gradient covered for >= 50% of certified images at
their two lowest severities, certified L2 accuracy at r* at most 3 points below isotropic.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from certification.platform_info import PORTABLE_TORCH_ENVIRONMENT

for _key, _value in PORTABLE_TORCH_ENVIRONMENT.items():  # before torch starts, as the train stage does
    os.environ.setdefault(_key, _value)

from certification.certify_run import RunOptions, open_run, record_from_result  # noqa: E402
from certification.dataset_io import load_split  # noqa: E402
from certification.failure_modes.camera_variations import apply_variation, variation  # noqa: E402
from certification.fileio import read_json, sha256_file, write_json_atomic  # noqa: E402
from certification.lighting import LightingCovariance  # noqa: E402
from certification.onnx_export import export_onnx  # noqa: E402
from certification.summary import summarize  # noqa: E402
from certification.training import TrainConfig, train_model  # noqa: E402

VARIATIONS = ("brightness", "illumination_gradient", "color_temperature")
TARGETS = ("brightness", "illumination_gradient")


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--data", type=Path, default=Path("data"))
    parser.add_argument("--taus", default="0.05,0.1", help="tau values for each direction set (RMS per-pixel std)")
    parser.add_argument("--directions", default="dc,dc+ramps")
    parser.add_argument("--epochs", type=int, default=4, help="training epochs of every configuration (default run: 12)")
    parser.add_argument("--onnx", type=Path, default=None, help="certify this model in every configuration (no training)")
    parser.add_argument("--n0", type=int, default=100)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--examples", type=int, default=200, help="seeded test subset (certify's selection)")
    parser.add_argument("--variation-seed", type=int, default=4, help="seed of the variations' random choices")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/lighting.json"))
    return parser.parse_args()


def _point(summary: dict[str, Any], radius: float) -> dict[str, Any]:
    return next(p for p in summary["curve"] if abs(p["radius"] - radius) < 1e-12)


def coverage(covariance: LightingCovariance, images: np.ndarray, indices: np.ndarray, mahalanobis: np.ndarray,
             certified: np.ndarray, seed: int) -> dict[str, list[float]]:
    """Per variation, per severity: share of the certified images whose actual change passes the ellipsoid test."""
    shares: dict[str, list[float]] = {}
    for name in VARIATIONS:
        shares[name] = []
        for severity in range(1, len(variation(name).levels) + 1):
            delta = apply_variation(images, indices, name, severity, seed).astype(np.float64) - images
            inside = np.asarray(covariance.certifies(delta, mahalanobis), dtype=bool) & certified
            shares[name].append(float(inside.sum() / max(1, certified.sum())))
    return shares


def run_one(args: argparse.Namespace, document: dict[str, Any], classes: list[str], directions: str, tau: float,
            work: Path) -> dict[str, Any]:
    """Train with the configuration's noise, export, certify the test subset, put each lighting change to the test."""
    certify, gate_radius, sigma = document["certify"], float(document["gate"]["radius"]), float(document["train"]["sigma"])
    label = f"{directions} tau {tau:g}"
    trained: dict[str, Any] = {"epochs": 0, "best_epoch": None, "train_seconds": 0.0, "val_accuracy_noisy": None}
    if args.onnx is not None:
        path = args.onnx
    else:
        lighting = None if directions == "none" else {"directions": directions, "tau": tau}
        config = TrainConfig.from_params({**{k: v for k, v in document["train"].items() if k != "lighting"},
                                          "epochs": args.epochs, "lighting": lighting})
        train, val = (load_split(args.data / f"{name}.npz", len(classes)) for name in ("train", "val"))
        print(f"{label}: training", file=sys.stderr, flush=True)
        result = train_model(train.images, train.labels, val.images, val.labels, len(classes), config,
                             threads=args.threads, extra_config={"class_names": classes})
        path = work / f"{directions}-{tau:g}.onnx"
        shape = (int(result.config["in_channels"]), int(result.config["image_size"]), int(result.config["image_size"]))
        export_onnx(result.model, path, shape, int(document["export"]["opset"]))
        trained = {"epochs": config.epochs, "best_epoch": result.best_epoch, "train_seconds": round(result.seconds, 1),
                   "val_accuracy_noisy": result.best.val_accuracy_noisy}
    options = RunOptions(sigma=sigma, alpha=float(certify["alpha"]), seed=int(certify["seed"]),
                         batch_size=int((document.get("runtime") or {}).get("certify_batch_size", 250)),
                         max_examples=args.examples, threads=args.threads, lighting_directions=directions,
                         lighting_tau=tau)
    options.check(args.n0, args.n)
    test_path = args.data / "test.npz"
    print(f"{label}: trained in {trained['train_seconds']:.0f} s; certifying", file=sys.stderr, flush=True)
    smoothed, split, indices = open_run(path, test_path, options, num_classes=len(classes))
    images = split.model_input(indices)
    start = time.perf_counter()
    results = smoothed.certify_many(images, split.labels[indices], args.n0, args.n, options.alpha, options.seed,
                                    indices=indices)
    certify_seconds = time.perf_counter() - start
    data_sha = sha256_file(test_path)
    records = [record_from_result(r, options.alpha, sigma, options.seed, model_sha256=smoothed.base_classifier.sha256,
                                  data_sha256=data_sha) for r in results]
    summary = summarize(records, sorted({0.0, gate_radius}), float(certify["confidence"]), classes)
    covariance = options.covariance(split.image_shape_chw) or LightingCovariance.build("none", 0.0, sigma, split.image_shape_chw)
    mahalanobis = np.array([r.mahalanobis_radius for r in results])
    certified = np.array([r.prediction != -1 for r in results])
    extents = [covariance.covered_extents(x, m).brightness_offset for x, m, c in zip(images, mahalanobis, certified) if c]
    return {
        "directions": directions, "tau": tau, "sigma": sigma, **trained, "model_sha256": smoothed.base_classifier.sha256,
        "certify_seconds": round(certify_seconds, 1), "n_examples": summary["n_examples"],
        "n_certified": int(certified.sum()), "certified_at_r_star": _point(summary, gate_radius),
        "acr": summary["average_certified_radius"], "clean_accuracy": summary["clean_accuracy"],
        "median_brightness_offset_covered": float(np.median(extents)) if extents else 0.0,
        "coverage": coverage(covariance, images, indices, mahalanobis, certified, args.variation_seed),
    }


def table(rows: list[dict[str, Any]], gate_radius: float) -> str:
    base = rows[0]["certified_at_r_star"]["certified_accuracy"]
    levels = {name: variation(name).levels for name in VARIATIONS}
    header = ["noise", f"cert. acc. r*={gate_radius:g} (LB)", "vs isotropic", "ACR", "clean acc.", "median b covered",
              *(f"{name} {' / '.join(f'{v:g}' for v in levels[name])}" for name in VARIATIONS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in rows:
        point = row["certified_at_r_star"]
        name = "isotropic" if row["directions"] == "none" else f"{row['directions']}, tau {row['tau']:g}"
        lines.append("| " + " | ".join([
            name, f"{point['certified_accuracy']:.3f} ({point['lower_bound']:.3f})",
            f"{100 * (point['certified_accuracy'] - base):+.1f} pts", f"{row['acr']:.3f}",
            f"{row['clean_accuracy']['estimate']:.3f}", f"{row['median_brightness_offset_covered']:.3f}",
            *(" / ".join(f"{s:.2f}" for s in row["coverage"][v]) for v in VARIATIONS)]) + " |")
    return "\n".join(lines)


def verdict_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Which configurations meet the issue's target."""
    base = rows[0]["certified_at_r_star"]["certified_accuracy"]
    lines = []
    for row in rows[1:]:
        covered = all(share >= 0.5 for name in TARGETS for share in row["coverage"][name][:2])
        drop = 100 * (base - row["certified_at_r_star"]["certified_accuracy"])
        lines.append(f"{row['directions']} tau {row['tau']:g}: brightness and illumination gradient >= 50% at severities "
                     f"1-2: {'yes' if covered else 'no'}; certified accuracy at r* {drop:.1f} points below isotropic "
                     f"({'within' if drop <= 3.0 else 'beyond'} 3): target {'MET' if covered and drop <= 3.0 else 'not met'}")
    return lines


def main() -> int:
    args = _args()
    document = yaml.safe_load(args.params.read_text())
    classes = list(read_json(args.data / "datasheet.json")["classes"])
    taus = [float(t) for t in args.taus.split(",") if t.strip()]
    configs = [("none", 0.0)] + [(d.strip(), t) for d in args.directions.split(",") if d.strip() for t in taus]
    sigma = float(document["train"]["sigma"])
    for directions, tau in configs:  # every configuration is checked before the first model trains
        RunOptions(sigma=sigma, alpha=0.001, seed=0, batch_size=1, lighting_directions=directions, lighting_tau=tau).check(1, 1)
    rows = []
    with tempfile.TemporaryDirectory(prefix="lighting-") as work:
        for directions, tau in configs:
            rows.append(run_one(args, document, classes, directions, tau, Path(work)))
            write_json_atomic(args.out, {"command": " ".join(sys.argv), "partial": True, "rows": rows})
    gate_radius = float(document["gate"]["radius"])
    report = {"command": " ".join(sys.argv), "epochs": 0 if args.onnx else args.epochs,
              "model": None if args.onnx is None else {"path": str(args.onnx), "sha256": rows[0]["model_sha256"]}, "n0": args.n0, "n": args.n, "examples": args.examples,
              "alpha": float(document["certify"]["alpha"]), "sigma": sigma, "rows": rows, "verdict": verdict_lines(rows)}
    write_json_atomic(args.out, report)
    trained = (f"no training: every configuration certifies {args.onnx} (sha256 {rows[0]['model_sha256'][:12]}...)"
               if args.onnx else f"{args.epochs} training epochs each (default run 12)")
    print(f"reduced settings: {trained}, {rows[0]['n_examples']} test images, "
          f"n0 {args.n0}, n {args.n}, alpha {report['alpha']:g}, sigma {sigma:g}; coverage = share of certified images "
          "whose actual change passes the exact ellipsoid test, per severity")
    print(table(rows, gate_radius))
    for line in verdict_lines(rows):
        print(line)
    print(f"train s: {', '.join(str(r['train_seconds']) for r in rows)}; certify s: "
          f"{', '.join(str(r['certify_seconds']) for r in rows)}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
