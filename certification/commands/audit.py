"""``smoothcert audit``: re-run CERTIFY on a seeded sample of a signed dossier's attached results.

Exit codes: 0 every audited example matches exactly; 3 differences only within tolerance
(per-class counts within max(3, ceil(1e-3 * samples)), same prediction, recorded radius consistent with the
recorded n_a) on a platform that differs from the recorded one; 1 anything else (failed signature/evidence
check, model or data hash differs, a mismatch); 2 unusable input. See :mod:`certification.audit`.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from certification.errors import InputError

EXIT_CODES = ("Exit codes: 0 = every audited example matches exactly; 3 = differences only within tolerance "
              "(each count within max(3, ceil(1e-3*samples)), same prediction, recorded radius = CERTIFY's radius "
              "for the recorded n_a) and the platform (onnxruntime provider/version, numpy and its float32 "
              "log/cos/sin loops) differs from the recorded one; 1 = any other difference (failed signature or "
              "evidence check, model/data hash differs, doctored count, wrong prediction); 2 = unusable input")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "audit", help="re-certify a seeded sample of a signed dossier's examples and compare with its attached results",
        description="Verify the dossier's signatures, check that MODEL and DATA hash to the certified model and test "
                    "split, then re-run CERTIFY with the recorded parameters and noise streams on a seeded random "
                    "sample of the attached per-example results and compare counts, prediction and radius. "
                    + EXIT_CODES + ".")
    p.add_argument("pdf", type=Path, help="the signed dossier")
    p.add_argument("--model", required=True, type=Path, help="the ONNX model file the dossier certifies")
    p.add_argument("--data", required=True, type=Path, help="the test split .npz the dossier certifies")
    p.add_argument("--examples", type=int, default=20, help="examples to re-certify (default 20; 0 = all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the audit sample (default 0); not the noise seed")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads; does not change results")
    p.add_argument("--trust-root", type=Path, help="root CA certificate (PEM or DER); default for a dev-signed "
                                                    "dossier: .smoothcert/dev-pki/ca.pem")
    p.add_argument("--report", type=Path, default=None, help="also write the findings as JSON here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from certification.audit import audit_dossier
    from certification.fileio import write_json_atomic

    if args.threads is not None and args.threads < 1:
        raise InputError(f"--threads must be a positive integer, got {args.threads}")
    if args.report is not None and args.report.is_dir():
        raise InputError(f"--report {args.report} is a directory; give a file name")
    report = audit_dossier(args.pdf, args.model, args.data, examples=args.examples, seed=args.seed,
                           threads=args.threads, trust_root=args.trust_root)
    print(f"{report.pdf}:")
    for note in report.notes:
        print(f"  note: {note}")
    for failure in report.failures:
        print(f"  FAIL {failure}")
    if report.examples:
        print(f"{'index':>6}  {'pred':>4} {'re':>4}  {'n_a':>8} {'re':>8}  {'radius':>9} {'re':>9}  outcome")
        for example in report.examples:
            print(example.row())
    print(report.status_line())
    if args.report is not None:
        write_json_atomic(args.report, json.loads(json.dumps(report.to_dict(), default=str)))
    return report.exit_code
