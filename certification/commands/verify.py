"""``smoothcert verify``: check a signed dossier's signatures, evidence and (optionally) the model file."""
from __future__ import annotations

import argparse
from pathlib import Path

EXIT_CODES = ("exit codes: 0 VERIFIED (every check holds against the production --trust-root); 3 DEVELOPMENT (every "
              "check holds but development PKI signed it, or no --trust-root was given: not for submission); "
              "1 NOT VERIFIED (a check failed, or --require-approvals and an approval field is unsigned); "
              "2 bad input (missing or unreadable file, not a PDF, a trust root that is not a CA certificate)")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("verify", help="verify a signed dossier (signatures, approvals, evidence, model hash)",
                              description="Check every signature (intact, valid, trusted, coverage, printed name, one "
                                          "role per certificate, PAdES level), that no update changed the visible "
                                          "metadata and revisions no signature made hold validation data only, that the attached evidence matches the document and the printed "
                                          "trust anchor is the root used, and optionally the model file's SHA-256. "
                                          "The last line states the result and the approvals, e.g. 'VERIFIED: "
                                          "AUTHOR-SIGNED, 0/3 APPROVALS'.",
                              epilog=EXIT_CODES)
    p.add_argument("pdf", type=Path, help="the signed dossier")
    p.add_argument("--trust-root", type=Path, help="root CA certificate (PEM or DER) the signers must chain to. "
                                                    "Without it only a development-signed dossier is checked, against "
                                                    ".smoothcert/dev-pki/ca.pem, and the result is at best DEVELOPMENT")
    p.add_argument("--tsa-root", type=Path, action="append", default=[],
                   help="root CA of the time-stamping authority, if not the --trust-root (repeatable)")
    p.add_argument("--require-approvals", action="store_true",
                   help="exit 1 unless every approval field the dossier configures is signed and verifies")
    p.add_argument("--model", type=Path, help="model file whose SHA-256 must equal the certified model's")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from certification.dossier.verify import verify_dossier  # here: other subcommands must not need pyHanko
    from certification.errors import silence_library_warnings

    silence_library_warnings()
    report = verify_dossier(args.pdf, trust_root=args.trust_root, model=args.model, tsa_roots=args.tsa_root)
    print(f"{report.path}: {report.trust_root_note}")
    for check in report.checks:
        print(check.line())
    for sig in report.signatures:
        print(f"signature '{sig.field_name}': {sig.signer}, PAdES {sig.pades_level}"
              f"{', development certificate' if sig.development else ''}{'' if sig.ok else ', FAILED'}")
    print(report.summary_line(args.require_approvals))
    return report.exit_code(args.require_approvals)
