"""``smoothcert merge``: join the JSONL files of certification shards into one run's results."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "merge",
        help="merge certification shards (smoothcert certify --shard K/N) into one JSONL, TSV and optional summary",
        description="Sort the shards' rows by example index, check they come from one run and cover it exactly once, "
        "and write OUT (JSONL) and OUT with .tsv, identical to a single-machine run apart from timing.",
    )
    parser.add_argument("shards", nargs="+", type=Path, help="shard JSONL files")
    parser.add_argument("--out", required=True, type=Path, help="merged JSONL")
    parser.add_argument("--data", type=Path, default=None, help="the data split the shards certified (checks coverage)")
    parser.add_argument("--max-examples", type=int, default=0, help="as given to certify (with --data: checks coverage)")
    parser.add_argument("--model", type=Path, default=None, help="the ONNX model, to name it in --summary")
    parser.add_argument("--summary", type=Path, default=None, help="also write the dataset-level summary JSON here")
    parser.add_argument("--confidence", type=float, default=0.95, help="confidence of the summary's bounds (default 0.95)")
    parser.set_defaults(func=run_merge)


def run_merge(args: argparse.Namespace) -> int:
    from certification.certify_run import json_line, select_indices, tsv_path_for, tsv_text
    from certification.commands.certify import DEFAULT_RADII
    from certification.dataset_io import load_split
    from certification.errors import InputError
    from certification.fileio import sha256_file, write_json_atomic, write_text_atomic
    from certification.shards import check_coverage, merge_shards
    from certification.summary import certify_metrics

    if args.out.suffix != ".jsonl":
        raise InputError(f"--out {args.out}: expected a .jsonl file name")
    if args.summary is not None and args.model is None:
        raise InputError("--summary needs --model (the summary names the certified model by its SHA-256)")
    rows = merge_shards(args.shards)
    first = rows[0]
    total = None
    if args.data is not None:
        total = len(load_split(args.data))
        check_coverage(rows, select_indices(total, args.max_examples, int(first["seed"])))
    write_text_atomic(tsv_path_for(args.out), tsv_text(rows))
    write_text_atomic(args.out, "".join(json_line(r) for r in rows))
    if args.summary is not None:
        metrics = certify_metrics(
            rows,
            model={"path": str(args.model), "sha256": sha256_file(args.model)},
            data={"path": str(args.data) if args.data else None,
                  "sha256": sha256_file(args.data) if args.data else None, "n_examples_total": total},
            params={key: first[key] for key in ("sigma", "n0", "n", "alpha", "seed")} | {"max_examples": args.max_examples},
            radii=list(DEFAULT_RADII), confidence=args.confidence, class_names=None, throughput=None,
        )
        write_json_atomic(args.summary, metrics)
    print(f"merged {len(args.shards)} shard(s), {len(rows)} examples; wrote {args.out} and {tsv_path_for(args.out)}")
    return 0

