"""``smoothcert gate``: judge certification results against the pre-specified protocol.

Exit status: 0 ACCEPT, 1 REJECT, 2 bad input (missing or invalid files, unknown protocol key, zero examples,
results computed on another model than models/model.json names, rows that do not match the protocol's mode).

``--results`` may also be a certify log of Cohen et al.'s reference code (``idx label predict radius correct time``):
its rows are imported (:func:`certification.cohen_log.parse_cohen_log`), judged at the protocol radius, and the output
says that the model and data are not identified by hash.
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
    parser.add_argument("--results", required=True, type=Path, help="per-example results JSONL (certify rows or decision rows), or Cohen et al.'s TSV certify log")
    parser.add_argument("--protocol", required=True, type=Path, help="params.yaml (its --section) or a protocol .json file")
    parser.add_argument("--section", default="gate", help="section of the protocol file holding the protocol (default: gate)")
    parser.add_argument("--model-json", type=Path, default=None,
                        help="models/model.json: model SHA-256, class names, malignant classes (required, except for an "
                        "imported log: there it only names the classes)")
    parser.add_argument("--certify-json", type=Path, default=None,
                        help="certification summary naming the certified model and its example count (needed for certify rows; "
                        "checks that decision rows cover the run; default metrics/certify.json when it exists)")
    parser.add_argument("--data", type=Path, default=None,
                        help="the test split (data/test.npz): the rows must then be the run's examples, each once, with their true labels")
    parser.add_argument("--out", type=Path, default=None, help="also write the verdict JSON here (e.g. metrics/gate.json)")
    parser.add_argument("--sigma", type=float, default=None, help="noise sigma of an imported TSV log ([0,1]-pixel L2 units)")
    parser.add_argument("--alpha", type=float, default=None, help="per-example alpha of an imported TSV log (default 0.001)")
    parser.set_defaults(func=run_gate)


def _imported_verdict(args: argparse.Namespace, protocol: Any) -> tuple[Any, list]:
    """The verdict on an imported Cohen et al. log: decisions at the protocol radius; classes from --model-json
    when given (its hash cannot be checked against the log), else 0..K-1 with no malignant class, said aloud."""
    from certification.commands.summarize import load_rows
    from certification.gate import evaluate
    from certification.model_card import load_model_description
    from certification.cohen_log import IMPORTED_UNKNOWN
    from certification.records import DecisionRecord

    records = load_rows(args.results, args.sigma, args.alpha)
    rows = [DecisionRecord.from_certify(r, protocol.radius) for r in records]
    if args.model_json is not None:
        model = load_model_description(args.model_json)
        names, malignant = list(model["class_names"]), list(model["malignant_classes"])
    else:
        names, malignant = [str(k) for k in range(max(r.label for r in rows) + 1)], []
    print(f"imported log {args.results}: model and data not identified by hash (sigma {records[0].sigma:g}, "
          f"alpha {records[0].alpha:g} as given)")
    if not malignant:
        print("no malignant classes named (pass --model-json with 'malignant_classes'): the malignant-recall "
              "criterion is not judged")
    return evaluate(rows, protocol, names, malignant, records[0].alpha, IMPORTED_UNKNOWN), rows


def run_gate(args: argparse.Namespace) -> int:
    from certification.errors import ParameterError
    from certification.fileio import write_json_atomic
    from certification.gate import failure_lines, render_table
    from certification.gate_io import evaluate_files, gate_document, load_protocol
    from certification.cohen_log import looks_like_cohen_log

    protocol = load_protocol(args.protocol, args.section)
    if looks_like_cohen_log(args.results):
        verdict, rows = _imported_verdict(args, protocol)
    else:
        if args.model_json is None:
            raise ParameterError("--model-json is required (models/model.json names the certified model and its classes)")
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
