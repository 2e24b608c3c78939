"""``smoothcert certify`` (CERTIFY every example of a data split) and ``smoothcert predict`` (PREDICT).

Options are added by :func:`add_certify_options` / :func:`add_predict_options`; a module that extends
``certify`` (for example a sequential decision at one radius) can call :func:`add_certify_options` on its own
parser or add its options to the parser returned by :func:`register`.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from certification import defaults
from certification.commands._options import add_run_options, add_summary_options, check_out, run_options
from certification.errors import InputError, ParameterError

if TYPE_CHECKING:
    from certification.ray_backend import RaySettings


def add_certify_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``smoothcert certify``."""
    add_run_options(parser)
    parser.add_argument("--n0", type=int, default=defaults.N0, help=f"selection samples per example (default {defaults.N0})")
    parser.add_argument("--n", type=int, default=defaults.N, help=f"estimation samples per example (default {defaults.N})")
    parser.add_argument("--shard", default=None, metavar="K/N", help="certify only shard K of N (every N-th example from K); merge with `smoothcert merge`")
    parser.add_argument("--backend", default="local", metavar="{local,ray}",
                        help="local: this process (default); ray: Ray workers, byte-identical certificates (needs the ray extra)")
    parser.add_argument("--ray-address", default=None, metavar="ADDRESS",
                        help="with --backend ray: HOST:PORT (ray://HOST:10001, auto) of an existing cluster; default: start a local Ray on this machine's cores")
    parser.add_argument("--workers", type=int, default=None,
                        help="with --backend ray: worker actors (default: one per CPU of the cluster); --threads/--noise-threads are then per worker")
    parser.add_argument("--summary", type=Path, default=None, help="also write the dataset-level summary JSON here (the metrics/certify.json format)")
    parser.add_argument("--model-card", type=Path, default=None,
                        help="JSON naming the classes ('class_names'), for the summary's per-class figures (default: MODEL with .json, when it exists)")
    parser.add_argument("--incremental-from", type=Path, default=None, metavar="CERTIFY_JSONL",
                        help="incremental randomized smoothing (Ugare et al. 2024): certify MODEL (an approximation, e.g. int8) from these "
                        "full certificates of --original-model, sampling only the disagreement of the two; --alpha is then the "
                        "disagreement bound's level and each row's alpha the original's plus it")
    parser.add_argument("--original-model", type=Path, default=None, help="with --incremental-from: the ONNX model the certificates were computed on")
    parser.add_argument("--n-p", type=int, default=defaults.INCREMENTAL_N_P,
                        help=f"with --incremental-from: disagreement samples per example (default {defaults.INCREMENTAL_N_P})")
    add_summary_options(parser)


def add_predict_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``smoothcert predict``."""
    add_run_options(parser)
    parser.add_argument("--n", type=int, default=defaults.N, help=f"noisy samples per example (default {defaults.N})")


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
    predict = subparsers.add_parser(
        "predict", help="PREDICT with the smoothed ONNX classifier on a data split (abstains when unsure)",
        description="PREDICT (Cohen et al. 2019) every example: the top class of n noisy copies, or abstain when a "
        "two-sided binomial test of the top two counts has p > alpha. Writes OUT (JSONL, one row per example).")
    add_predict_options(predict)
    predict.set_defaults(func=run_predict)
    return certify


def _class_names(args: argparse.Namespace) -> list[str] | None:
    """Class names from --model-card, or from the model card beside the model when there is one."""
    from certification.fileio import read_json

    card = args.model_card if args.model_card is not None else args.model.with_suffix(".json")
    if args.model_card is None and not card.is_file():
        return None
    document = read_json(card)
    names = document.get("class_names") if isinstance(document, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InputError(f"{card}: expected 'class_names', a list of strings")
    return names


def ray_settings(backend: str, address: str | None, workers: int | None) -> "RaySettings | None":
    """The Ray settings of ``--backend ray`` (None for local); --ray-address and --workers need --backend ray."""
    from certification.ray_backend import RaySettings, check_backend

    if check_backend(backend) == "local":
        if address is not None or workers is not None:
            raise ParameterError("--ray-address and --workers apply to --backend ray only; add --backend ray")
        return None
    return RaySettings(address=address or None, workers=workers)


def run_certify(args: argparse.Namespace) -> int:
    from certification.certify_run import certify_files, run_metrics, tsv_path_for
    from certification.shards import parse_shard
    from certification.summary import check_summary_options, write_certify_metrics

    check_out(args.out, ".jsonl")
    if args.incremental_from is None and args.original_model is not None:
        raise ParameterError("--original-model is used only with --incremental-from")
    if args.incremental_from is not None and (args.original_model is None or args.shard is not None):
        raise ParameterError("--incremental-from needs --original-model (the model of the certificates) and takes no --shard")
    shard = None if args.shard is None else parse_shard(args.shard)
    ray = ray_settings(args.backend, args.ray_address, args.workers)
    if ray is not None and args.incremental_from is not None:
        raise ParameterError("--incremental-from runs in this process; drop --backend ray")
    options = run_options(args)
    options.check(args.n0, args.n)
    class_names = None
    if args.summary is not None:
        check_out(args.summary, ".json")
        check_summary_options(args.radii, args.confidence)
        class_names = _class_names(args)
    if args.incremental_from is not None:
        from certification.incremental_run import incremental_files

        outcome, classifier, split = incremental_files(args.incremental_from, args.original_model, args.model, args.data,
                                                       args.out, options, args.n_p)
    else:
        outcome, classifier, split = certify_files(args.model, args.data, args.out, options, args.n0, args.n, shard=shard,
                                                   num_classes=len(class_names) if class_names else None, ray=ray)
    if args.summary is not None:
        write_certify_metrics(args.summary, run_metrics(
            outcome, classifier, split, model_path=args.model, data_path=args.data, max_examples=args.max_examples,
            radii=args.radii, confidence=args.confidence, class_names=class_names, batch_size=args.batch_size))
    certified = sum(1 for r in outcome.records if r.correct)
    print(f"certified {len(outcome.records)} examples ({outcome.resumed} resumed): {certified} correct; "
          f"wrote {args.out} and {tsv_path_for(args.out)}" + (f" and {args.summary}" if args.summary else ""))
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from certification.predict_run import predict_files
    from certification.records import ABSTAIN

    check_out(args.out, ".jsonl")
    records = predict_files(args.model, args.data, args.out, run_options(args), args.n)
    correct = sum(1 for r in records if r["correct"])
    abstained = sum(1 for r in records if r["prediction"] == ABSTAIN)
    print(f"predicted {len(records)} examples: {correct} correct, {abstained} abstained; wrote {args.out}")
    return 0
