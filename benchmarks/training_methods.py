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
accuracy, melanoma and BCC certified recall at r* (with lower bounds), training seconds. Writes the record through
:mod:`certification.method_benchmark` (the one writer; the dossier reads it): settings, the data splits' SHA-256s,
params.yaml's hyper-parameters of every method, and per row the trained model's SHA-256. ``--out`` defaults to the
committed record, benchmarks/results/training_methods.json (``make bench``'s reduced run writes its own file); it is
replaced only when every row is done (the rows so far are in ``<out>.partial``). The target rule's decision at
params.yaml's train.sigma is printed after the table.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import yaml

from certification.platform_info import PORTABLE_TORCH_ENVIRONMENT

for _key, _value in PORTABLE_TORCH_ENVIRONMENT.items():  # before torch starts, as the train stage does
    os.environ.setdefault(_key, _value)

from certification.certify_run import RunOptions, open_run, record_from_result  # noqa: E402
from certification.dataset_io import load_split  # noqa: E402
from certification.errors import InputError  # noqa: E402
from certification.fileio import read_json, sha256_file  # noqa: E402
from certification.method_benchmark import (METHODS, RECALL_CLASSES, CleanAccuracy, MethodRecord, MethodRow,  # noqa: E402
                                            RadiusPoint, Settings, apply_target, write_method_record)
from certification.onnx_export import export_onnx  # noqa: E402
from certification.summary import summarize  # noqa: E402
from certification.training import TrainConfig, train_model  # noqa: E402
from certification.training_losses import ConsistencyParams, MacerParams, hyperparameters  # noqa: E402


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


def _point(summary: dict[str, Any], radius: float) -> RadiusPoint:
    point = next((p for p in summary["curve"] if abs(p["radius"] - radius) < 1e-12), None)
    if point is None:
        return RadiusPoint(radius, None, None, 0)
    return RadiusPoint(float(point["radius"]), point["certified_accuracy"], point["lower_bound"], int(point["count"]))


def run_one(args: argparse.Namespace, document: dict[str, Any], classes: list[str], method: str, sigma: float,
            work: Path) -> MethodRow:
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
    clean = summary["clean_accuracy"]
    return MethodRow(
        sigma=sigma, method=method, hyperparameters=config.hyperparameters(), epochs=config.epochs,
        best_epoch=int(result.best_epoch), train_seconds=round(result.seconds, 3),
        certify_seconds=round(certify_seconds, 3), n_examples=int(summary["n_examples"]),
        model_sha256=smoothed.base_classifier.sha256,
        certified_at_r_star=_point(summary, gate_radius), certified_at_0_5=_point(summary, 0.5),
        acr=float(summary["average_certified_radius"]),
        clean_accuracy=CleanAccuracy(clean["estimate"], clean["lower"], int(clean["successes"]), int(clean["trials"])),
        recall_at_r_star={name: _point(summary["per_class"][name], gate_radius) for name in RECALL_CLASSES
                          if name in summary["per_class"]},
    )


def _cell(point: RadiusPoint | None) -> str:
    if point is None or point.certified_accuracy is None:
        return "-"
    return f"{point.certified_accuracy:.3f} ({point.lower_bound:.3f})"


def table(rows: Sequence[MethodRow], gate_radius: float) -> str:
    header = (f"| sigma | method | hyperparameters | cert. acc. r*={gate_radius:g} (LB) | cert. acc. 0.5 (LB) | ACR | "
              f"clean acc. (LB) | melanoma recall r* (LB) | BCC recall r* (LB) | train s |")
    lines = [header, "|" + "|".join("---" for _ in range(10)) + "|"]
    for row in rows:
        hyper = ", ".join(f"{k}={v:g}" for k, v in row.hyperparameters.items()) or "-"
        recall, clean = row.recall_at_r_star, row.clean_accuracy
        lines.append(
            f"| {row.sigma:g} | {row.method} | {hyper} | {_cell(row.certified_at_r_star)} | "
            f"{_cell(row.certified_at_0_5)} | {row.acr:.3f} | {clean.estimate:.3f} ({clean.lower:.3f}) | "
            f"{_cell(recall.get('melanoma'))} | {_cell(recall.get('basal_cell_carcinoma'))} | {row.train_seconds:.0f} |")
    return "\n".join(lines)


def decision(record: MethodRecord, sigma: float) -> list[str]:
    """The target rule (certification.method_benchmark.apply_target) at ``sigma``: each candidate's criteria, the pick."""
    try:
        selection = apply_target(record, sigma)
    except InputError as exc:
        return [f"target rule: {exc}"]
    lines = []
    for candidate in (*selection.candidates, *selection.other_sigmas):
        parts = ", ".join(f"{c.name} {'n/a' if c.measured is None else f'{c.measured:.3f}'} {c.comparison} "
                          f"{c.threshold:g} {'ok' if c.passed else 'FAIL'}" for c in candidate.criteria)
        lines.append(f"sigma {candidate.sigma:g} {candidate.method}: {parts}")
    lines.append(f"target rule at the shipped sigma {sigma:g}: best candidate {selection.best or 'none'}, "
                 f"picks {selection.pick}")
    return lines


def _record(args: argparse.Namespace, document: dict[str, Any], datasheet: dict[str, Any], rows: Sequence[MethodRow],
            partial: bool, date_utc: str) -> MethodRecord:
    certify, train = document["certify"], document["train"]
    epochs = args.epochs if args.epochs is not None else int(train["epochs"])
    settings = Settings(epochs=epochs, n0=args.n0, n=args.n, alpha=float(certify["alpha"]),
                        confidence=float(certify["confidence"]), examples=args.examples, train_seed=int(train["seed"]),
                        certify_seed=int(certify["seed"]), threads=args.threads, gate_radius=float(document["gate"]["radius"]))
    consistency, macer = ConsistencyParams.from_mapping(train["consistency"]), MacerParams.from_mapping(train["macer"])
    hyper = {m: hyperparameters(m, consistency, macer) for m in METHODS}  # params.yaml's, before any flag overrides
    return MethodRecord(command=" ".join(sys.argv), date_utc=date_utc, settings=settings,
                        data_sha256={name: str(s["sha256"]) for name, s in sorted(datasheet["splits"].items())},
                        params_hyperparameters=hyper, rows=tuple(rows), partial=partial)


def _check_data(data: Path, datasheet: dict[str, Any]) -> None:
    """The splits on disk are those data/datasheet.json names (the record states the datasheet's hashes)."""
    for name in ("train", "val", "test"):
        recorded = datasheet["splits"][name]["sha256"]
        if sha256_file(data / f"{name}.npz") != recorded:
            raise InputError(f"{data / (name + '.npz')}: does not hash to {recorded[:12]}... of {data / 'datasheet.json'}; "
                             "rerun the data stage (dvc repro data)")


def main() -> int:
    args = _args()
    document = yaml.safe_load(args.params.read_text())
    datasheet = read_json(args.data / "datasheet.json")
    classes = list(datasheet["classes"])
    _check_data(args.data, datasheet)
    date_utc = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    sigmas = [float(s) for s in args.sigmas.split(",") if s.strip()]
    for method in methods:  # every config is checked before the first model trains
        for sigma in sigmas:
            TrainConfig.from_params(_train_params(document, args, method, sigma))
    rows: list[MethodRow] = []
    progress = args.out.with_name(args.out.name + ".partial")  # the rows so far; --out is replaced only when all are done
    with tempfile.TemporaryDirectory(prefix="training-methods-") as work:
        for sigma in sigmas:
            for method in methods:
                row = run_one(args, document, classes, method, sigma, Path(work))
                rows.append(row)
                write_method_record(progress, _record(args, document, datasheet, rows, True, date_utc))
                print(f"{method} sigma {sigma:g}: ACR {row.acr:.3f}, train {row.train_seconds:.0f} s, "
                      f"certify {row.certify_seconds:.0f} s", file=sys.stderr, flush=True)
    record = _record(args, document, datasheet, rows, False, date_utc)
    write_method_record(args.out, record)
    progress.unlink(missing_ok=True)
    s = record.settings
    print(f"{rows[0].n_examples} test images, n0 {s.n0}, n {s.n}, alpha {s.alpha:g}, "
          f"lower bounds at confidence {s.confidence:g}")
    print(table(rows, s.gate_radius))
    for line in decision(record, float(document["train"]["sigma"])):
        print(line)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
