"""``smoothcert certify`` (CERTIFY every example of a data split) and ``smoothcert predict`` (PREDICT).

Options are added by :func:`add_certify_options` / :func:`add_predict_options`; a module that extends
``certify`` (for example a sequential decision at one radius) can call :func:`add_certify_options` on its own
parser or add its options to the parser returned by :func:`register`.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from certification.errors import InputError

DEFAULT_RADII = (0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 1.0)


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, type=Path, help="ONNX model: float32 input [batch,C,H,W] in [0,1], output (N,K) class scores")
    parser.add_argument("--data", required=True, type=Path, help="data split .npz (images uint8 N,H,W,C or float32 N,C,H,W in [0,1]; labels)")
    parser.add_argument("--sigma", required=True, type=float, help="noise standard deviation, L2 in [0,1]-pixel units")
    parser.add_argument("--alpha", type=float, default=0.001, help="per-example failure probability, in (0, 0.5) (default 0.001)")
    parser.add_argument("--batch-size", type=int, default=250, help="noisy copies per inference call (default 250); does not change results")
    parser.add_argument("--seed", type=int, default=0, help="noise seed; noise of an example depends on (seed, example index) only")
    parser.add_argument("--max-examples", type=int, default=0, help="certify a seeded subset of this size (0 = all); original indices are kept")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads (default: half the cores, rounded up); does not change results")
    parser.add_argument("--noise-threads", type=int, default=None, help="threads drawing noise (default: the cores onnxruntime leaves, at least 1); does not change results")
    parser.add_argument("--provider", choices=("auto", "cpu", "cuda"), default="auto", help="execution provider (auto: CUDA when onnxruntime offers it, else CPU)")
    parser.add_argument("--out", required=True, type=Path, help="output JSONL, one object per example")


def add_certify_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``smoothcert certify``."""
    _common_options(parser)
    parser.add_argument("--n0", type=int, default=100, help="selection samples per example (default 100)")
    parser.add_argument("--n", type=int, default=100_000, help="estimation samples per example (default 100000)")
    parser.add_argument("--shard", default=None, metavar="K/N", help="certify only shard K of N (every N-th example from K); merge with `smoothcert merge`")
    parser.add_argument("--summary", type=Path, default=None, help="also write the dataset-level summary JSON here")
    parser.add_argument("--radii", type=float, nargs="+", default=list(DEFAULT_RADII), help="radii of the certified-accuracy curve in the summary")
    parser.add_argument("--confidence", type=float, default=0.95, help="confidence of the dataset-level bounds in the summary (default 0.95)")


def add_predict_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``smoothcert predict``."""
    _common_options(parser)
    parser.add_argument("--n", type=int, default=10_000, help="noisy samples per example (default 10000)")


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``certify`` and ``predict``; return the ``certify`` parser so other modules can extend it."""
    certify = subparsers.add_parser(
        "certify",
        help="certify L2 robustness of the smoothed ONNX classifier on a data split",
        description="CERTIFY (Cohen et al. 2019) every example: with probability >= 1-alpha over the noise, the smoothed "
        "classifier returns the certified class everywhere within the L2 radius. Writes OUT (JSONL) and OUT with .tsv; "
        "an interrupted run resumes from OUT.partial.",
    )
    add_certify_options(certify)
    certify.set_defaults(func=run_certify)
    predict = subparsers.add_parser("predict", help="PREDICT with the smoothed ONNX classifier on a data split (abstains when unsure)")
    add_predict_options(predict)
    predict.set_defaults(func=run_predict)
    return certify


def _check_out(out: Path, suffix: str) -> None:
    if out.suffix != suffix:
        raise InputError(f"--out {out}: expected a {suffix} file name")
    if out.exists() and out.is_dir():
        raise InputError(f"--out {out} is a directory; give a file name")


def run_certify(args: argparse.Namespace) -> int:
    from certification.certify_run import certify_files, parameter_checks, tsv_path_for
    from certification.fileio import write_json_atomic
    from certification.shards import parse_shard
    from certification.summary import certify_metrics

    _check_out(args.out, ".jsonl")
    shard = None if args.shard is None else parse_shard(args.shard)
    parameter_checks(args.sigma, args.n0, args.n, args.alpha, args.batch_size, args.seed, args.max_examples)
    if args.summary is not None and not 0.0 < args.confidence < 1.0:
        raise InputError(f"--confidence must lie in (0, 1), got {args.confidence}")
    outcome, classifier, split = certify_files(
        args.model, args.data, args.out, sigma=args.sigma, n0=args.n0, n=args.n, alpha=args.alpha,
        batch_size=args.batch_size, seed=args.seed, max_examples=args.max_examples, threads=args.threads, noise_threads=args.noise_threads, provider=args.provider,
        shard=shard,
    )
    if args.summary is not None:
        metrics = certify_metrics(
            outcome.records,
            model={"path": str(args.model), "sha256": classifier.base_classifier.sha256},
            data={"path": str(args.data), "sha256": _sha(args.data), "n_examples_total": len(split)},
            params={"sigma": classifier.sigma, "n0": args.n0, "n": args.n, "alpha": args.alpha, "seed": args.seed,
                    "batch_size": args.batch_size, "max_examples": args.max_examples},
            radii=args.radii, confidence=args.confidence, class_names=None, throughput=outcome.throughput(),
        )
        write_json_atomic(args.summary, metrics)
    certified = sum(1 for r in outcome.records if r["correct"])
    print(f"certified {len(outcome.records)} examples ({outcome.resumed} resumed): {certified} correct; "
          f"wrote {args.out} and {tsv_path_for(args.out)}")
    return 0


def _sha(path: Path) -> str:
    from certification.fileio import sha256_file

    return sha256_file(path)


def run_predict(args: argparse.Namespace) -> int:
    from certification.predict_run import predict_files

    _check_out(args.out, ".jsonl")
    records = predict_files(
        args.model, args.data, args.out, sigma=args.sigma, n=args.n, alpha=args.alpha, batch_size=args.batch_size,
        seed=args.seed, max_examples=args.max_examples, threads=args.threads, noise_threads=args.noise_threads, provider=args.provider,
    )
    correct = sum(1 for r in records if r["correct"])
    abstained = sum(1 for r in records if r["prediction"] == -1)
    print(f"predicted {len(records)} examples: {correct} correct, {abstained} abstained; wrote {args.out}")
    return 0
