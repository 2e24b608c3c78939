"""``smoothcert verify``: check a signed dossier's signatures, evidence and (optionally) the model file."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("verify", help="verify a signed dossier (signatures, evidence, model hash)",
                              description="Check every signature (intact, valid, trusted, coverage), that the attached "
                                          "evidence matches the document, and optionally the model file's SHA-256. "
                                          "Exit 0 only if every check holds, 1 if one fails, 2 on bad input.")
    p.add_argument("pdf", type=Path, help="the signed dossier")
    p.add_argument("--trust-root", type=Path, help="root CA certificate (PEM or DER); default for a dossier signed "
                                                    "with the development key: .smoothcert/dev-pki/ca.pem")
    p.add_argument("--model", type=Path, help="model file whose SHA-256 must equal the certified model's")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from certification.dossier.verify import verify_dossier  # here: other subcommands must not need pyHanko

    report = verify_dossier(args.pdf, trust_root=args.trust_root, model=args.model)
    print(f"{report.path}: {report.trust_root_note}")
    for check in report.checks:
        print(check.line())
    failed = report.failed()
    print("VERIFIED: all checks hold" if report.ok else f"NOT VERIFIED: {len(failed)} check(s) failed")
    return 0 if report.ok else 1
