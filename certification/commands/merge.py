"""``smoothcert merge``: join the JSONL files of certification shards into one run's results and summary."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "merge",
        help="merge certification shards (smoothcert certify --shard K/N) into one JSONL, TSV and optional summary",
        description="Sort the shards' rows by example index, check they come from one run and cover it exactly once, "
        "and write OUT (JSONL) and OUT with .tsv, identical to a single-machine run apart from timing. With --summary, "
        "each shard's summary (SHARD.json beside SHARD.jsonl, written by certify --summary) names the model, data, "
        "radii and class names, and the merged summary is the one a single-machine run writes.",
    )
    parser.add_argument("shards", nargs="+", type=Path, help="shard JSONL files")
    parser.add_argument("--out", required=True, type=Path, help="merged JSONL")
    parser.add_argument("--data", type=Path, default=None,
                        help="the data split the shards certified (checks coverage; default with --summary: the split the shards' summaries name)")
    parser.add_argument("--max-examples", type=int, default=None, help="as given to certify (checks coverage; read from the shards' summaries with --summary)")
    parser.add_argument("--summary", type=Path, default=None, help="also write the dataset-level summary JSON here (metrics/certify.json)")
    parser.set_defaults(func=run_merge)


def run_merge(args: argparse.Namespace) -> int:
    from certification.certify_run import tsv_path_for
    from certification.commands._options import check_out
    from certification.merge_run import merge_files

    check_out(args.out, ".jsonl")
    if args.summary is not None:
        check_out(args.summary, ".json")
    outcome = merge_files(args.shards, args.out, summary_out=args.summary, data=args.data, max_examples=args.max_examples)
    written = f"{args.out} and {tsv_path_for(args.out)}" + (f" and {args.summary}" if args.summary else "")
    print(f"merged {len(args.shards)} shard(s), {len(outcome.records)} examples; wrote {written}")
    return 0
