"""``smoothcert sign``: add an approval signature to an empty field of a dossier (incremental update)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from certification.errors import InputError

# The PDF and signing stack (pypdf, pyHanko) is imported in the handlers: building the command line, or running
# another subcommand such as certify, must not need it.

DEFAULT_PASSPHRASE_ENV = "SMOOTHCERT_KEY_PASSPHRASE"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("sign", help="sign an empty approval field of a dossier (PAdES, incremental)",
                              description="Fill an empty signature field of a dossier with a PAdES signature. The "
                                          "visible signature shows name, role, meaning and the UTC signing time.")
    p.add_argument("pdf", type=Path, help="the dossier (e.g. dossier/dossier.pdf)")
    p.add_argument("--field", required=True, help="empty signature field to sign (e.g. quality)")
    p.add_argument("--key", required=True, type=Path, help="PKCS#12 file of the signer")
    p.add_argument("--passphrase-env", default=DEFAULT_PASSPHRASE_ENV,
                   help=f"environment variable holding the PKCS#12 passphrase (default {DEFAULT_PASSPHRASE_ENV})")
    p.add_argument("--name", help="printed name of the signer (default: the certificate's common name)")
    p.add_argument("--role", default=None,
                   help="role of the signer (default: the field's role recorded in the dossier's evidence)")
    p.add_argument("--meaning", default=None,
                   help="meaning of the signature (default: the field's meaning recorded in the dossier's evidence)")
    p.add_argument("--out", type=Path, help="output file (default: overwrite the input)")
    p.set_defaults(func=run)


def _recorded_role(pdf: bytes, field: str) -> dict[str, str]:
    """Role and meaning the dossier's attached evidence gives for ``field`` (empty when not recorded)."""
    from certification.dossier.attachments import EVIDENCE_ATTACHMENT, read_pdf_content

    try:
        evidence = json.loads(read_pdf_content(pdf).attachments[EVIDENCE_ATTACHMENT])
        return dict(evidence["signing"]["approvals"][field])
    except Exception:  # not a smoothcert dossier, or no such field: the caller's defaults apply
        return {}


def run(args: argparse.Namespace) -> int:
    from certification.fileio import write_bytes_atomic
    from certification.signing.keys import common_name, load_signer, passphrase_from_env, signer_certificate
    from certification.signing.sign import Manifestation, sign_field

    if not args.pdf.is_file():
        raise InputError(f"{args.pdf}: dossier not found")
    signer = load_signer(args.key, passphrase_from_env(args.passphrase_env), args.passphrase_env)
    name = args.name or common_name(signer_certificate(signer))
    data = args.pdf.read_bytes()
    recorded = _recorded_role(data, args.field)
    manifest = Manifestation(name=name, role=args.role or recorded.get("role", args.field),
                             meaning=args.meaning or recorded.get("meaning", "Approval"))
    signed = sign_field(data, args.field, signer, manifest)
    out = args.out or args.pdf
    write_bytes_atomic(out, signed)
    print(f"signed field '{args.field}' as {name} ({manifest.role}: {manifest.meaning}); wrote {out}", file=sys.stderr)
    return 0
