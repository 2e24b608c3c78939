"""``smoothcert decide``: the fast sequential decision "is each example certified at radius R?".

Separate from ``smoothcert certify`` (which computes every example's radius with a fixed n): this command
draws noisy samples in growing installments and stops per example as soon as an anytime-valid test decides,
at the same per-example error level alpha (see :mod:`certification.sequential`). Each output row records the
model evaluations it used.
"""
from __future__ import annotations

import argparse
from typing import Any

from certification import defaults
from certification.commands._options import add_run_options, check_out, run_options


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "decide",
        help="sequential test per example: certified at one L2 radius or not, with early stopping",
        description="For each example, test whether the smoothed classifier's top-class probability is at least "
        "Phi(R/sigma) (certified at radius R) with an anytime-valid confidence sequence (beta-binomial mixture "
        "martingale, alpha/2), looking after 64 estimation samples and then every 25%% more, and stop as soon as "
        "the answer is known; an example still open at n-max gets CERTIFY's Clopper-Pearson rule at alpha/2. A "
        "false 'certified' has probability <= alpha per example, as with certify. Writes OUT (JSONL, one row per "
        "example, with the model evaluations it spent).",
    )
    add_run_options(parser)
    parser.add_argument("--radius", required=True, type=float, help="radius R to decide, L2 in [0,1]-pixel units")
    parser.add_argument("--n0", type=int, default=defaults.N0, help=f"selection samples per example (default {defaults.N0})")
    parser.add_argument("--n-max", type=int, default=defaults.N, help=f"most estimation samples per example (default {defaults.N})")
    parser.add_argument("--first-look", type=int, default=64, help="estimation samples at the first look (default 64)")
    parser.add_argument("--certified-only", action="store_true",
                        help="stop once 'certified at R' is decided, without settling abstention (fewer samples; "
                        "predictions then abstain unless already established, which is conservative)")
    parser.set_defaults(func=run_decide)


def run_decide(args: argparse.Namespace) -> int:
    from certification.sequential_run import decide_files

    check_out(args.out, ".jsonl")
    rows = decide_files(args.model, args.data, args.out, run_options(args), args.radius, args.n0, args.n_max,
                        first_look=args.first_look, resolve_abstention=not args.certified_only)
    certified = sum(r.certified for r in rows)
    correct = sum(r.certified and r.correct for r in rows)
    evaluations = sum(r.evaluations for r in rows)
    fixed = len(rows) * (args.n0 + args.n_max)
    print(f"decided {len(rows)} examples at radius {args.radius:g}: {certified} certified ({correct} certified and correct); "
          f"{evaluations:,} model evaluations ({evaluations / max(1, len(rows)):,.0f} per example, "
          f"{fixed / max(1, evaluations):.1f}x fewer than n0 + n-max each) -> {args.out}")
    return 0
