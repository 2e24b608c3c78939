"""``smoothcert gate``: judge certification results against the pre-specified protocol.

Exit status: 0 ACCEPT, 1 REJECT, 2 bad input (missing or invalid files, unknown protocol key, zero examples,
results computed on another model than models/model.json names, rows that do not match the protocol's mode).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

EXIT_ACCEPT, EXIT_REJECT = 0, 1


DEFAULT_CERTIFY_JSON = Path("metrics/certify.json")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "gate",
        help="judge certification results against the acceptance protocol (exit 0 ACCEPT, 1 REJECT, 2 bad input)",
        description="Evaluate per-example results (results/certify.jsonl for mode fixed, or decision rows such as "
        "results/gate.jsonl / smoothcert decide output) against the protocol: every criterion is judged on a "
        "confidence bound, never a point estimate. Prints the criteria table; exit 0 ACCEPT, 1 REJECT, 2 bad input.",
    )
    parser.add_argument("--results", required=True, type=Path, help="per-example results JSONL (certify rows or decision rows)")
    parser.add_argument("--protocol", required=True, type=Path, help="params.yaml (its --section) or a protocol .json file")
    parser.add_argument("--section", default="gate", help="section of the protocol file holding the protocol (default: gate)")
    parser.add_argument("--model-json", required=True, type=Path, help="models/model.json: model SHA-256, class names, malignant classes")
    parser.add_argument("--certify-json", type=Path, default=None,
                        help="certification summary naming the certified model and its example count (needed for certify rows; "
                        "checks that decision rows cover the run; default metrics/certify.json when it exists)")
    parser.add_argument("--data", type=Path, default=None,
                        help="the test split (data/test.npz): the rows must then be the run's examples, each once, with their true labels")
    parser.add_argument("--out", type=Path, default=None, help="also write the verdict JSON here (e.g. metrics/gate.json)")
    parser.set_defaults(func=run_gate)


def run_gate(args: argparse.Namespace) -> int:
    from certification.fileio import write_json_atomic
    from certification.gate import failure_lines, render_table
    from certification.gate_io import evaluate_files, gate_document, load_protocol

    protocol = load_protocol(args.protocol, args.section)
    certify_json = args.certify_json
    if certify_json is None and DEFAULT_CERTIFY_JSON.is_file():
        certify_json = DEFAULT_CERTIFY_JSON
    verdict, rows = evaluate_files(args.results, protocol, args.model_json, certify_json, args.data)
    if args.out is not None:
        write_json_atomic(args.out, gate_document(verdict, rows))
    print(render_table(verdict))
    for line in failure_lines(verdict):
        print(line)
    return EXIT_ACCEPT if verdict.accepted else EXIT_REJECT
