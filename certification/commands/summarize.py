"""``smoothcert summarize``: the certified-accuracy table, with lower confidence bounds, of certify rows or of a
certify log of Cohen et al.'s reference code."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from certification.commands._options import add_summary_options


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "summarize",
        help="certified-accuracy table with lower confidence bounds (certify JSONL or Cohen et al.'s TSV log)",
        description="Print certified accuracy at each radius, its lower confidence bound (Clopper-Pearson, less the "
        "per-example failure probability alpha), clean accuracy and abstention rate. RESULTS is a certify JSONL "
        "(results/certify.jsonl, smoothcert certify) or a log of Cohen et al.'s code/certify.py (header "
        "'idx label predict radius correct time'; give --sigma, and --alpha when the run did not use 0.001).",
    )
    parser.add_argument("results", type=Path, help="certify JSONL or Cohen et al.'s tab-separated certify log")
    add_summary_options(parser)
    parser.add_argument("--sigma", type=float, default=None, help="noise sigma of an imported TSV log ([0,1]-pixel L2 units); required for a log")
    parser.add_argument("--alpha", type=float, default=None, help="per-example alpha of an imported TSV log (default 0.001, the reference code's)")
    parser.set_defaults(func=run_summarize)


def load_rows(path: Path, sigma: float | None, alpha: float | None) -> list:
    """Certify records of ``path``: a Cohen et al. log (needs ``sigma``) or certify JSONL."""
    from certification.errors import ParameterError
    from certification.cohen_log import COHEN_DEFAULTS, looks_like_cohen_log, read_cohen_log
    from certification.records import read_certify_records

    if looks_like_cohen_log(path):
        if sigma is None:
            raise ParameterError(f"{path} is a Cohen et al. certify log, which does not record sigma; pass --sigma")
        return read_cohen_log(path, sigma, alpha=COHEN_DEFAULTS["alpha"] if alpha is None else alpha)
    return read_certify_records(path)


def table(summary: dict[str, Any]) -> str:
    """The summary as aligned text: one row per radius, then clean accuracy, abstention and ACR."""
    lines = [f"{'radius':>8}  {'certified accuracy':>18}  {'lower bound':>11}  {'count':>7}"]
    for point in summary["curve"]:
        lines.append(f"{point['radius']:>8.3f}  {point['certified_accuracy']:>18.3f}  {point['lower_bound']:>11.3f}  "
                     f"{point['count']:>7d}")
    clean, abstain = summary["clean_accuracy"], summary["abstention_rate"]
    lines.append(f"examples {summary['n_examples']}; clean accuracy {clean['estimate']:.3f} (lower {clean['lower']:.3f}); "
                 f"abstention {abstain['estimate']:.3f} (upper {abstain['upper']:.3f}); "
                 f"ACR {summary['average_certified_radius']:.3f}; one-sided confidence {summary['confidence']:g}")
    return "\n".join(lines)


def run_summarize(args: argparse.Namespace) -> int:
    from certification.cohen_log import is_imported
    from certification.summary import summarize

    records = load_rows(args.results, args.sigma, args.alpha)
    print(table(summarize(records, args.radii, args.confidence)))
    if is_imported(records[0]):
        print(f"imported log: model and data not identified by hash; sigma {records[0].sigma:g} and alpha "
              f"{records[0].alpha:g} as given")
    return 0
