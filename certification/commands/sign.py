"""``smoothcert sign``: add an approval signature to an empty field of a dossier (incremental update).

The printed name is the signing certificate's common name; role and meaning are the ones the template fixed for the
field and the author-signed evidence records (``--name``/``--role``/``--meaning`` may only repeat them). The dossier
must verify first (every check of ``smoothcert verify`` against ``--trust-root``, or the development CA for a
development dossier), and a certificate that already signed the dossier cannot sign another field.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from certification.errors import InputError

# The PDF and signing stack (pypdf, pyHanko) is imported in the handlers: building the command line, or running
# another subcommand such as certify, must not need it.

DEFAULT_PASSPHRASE_ENV = "SMOOTHCERT_KEY_PASSPHRASE"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("sign", help="sign an empty approval field of a dossier (PAdES, incremental)",
                              description="Fill an empty signature field of a dossier with a PAdES signature. The "
                                          "visible signature shows the certificate's common name, the field's role "
                                          "and meaning (fixed by the template) and the UTC signing time. Refused (exit "
                                          "2) when the dossier does not verify, the certificate already signed it, or "
                                          "--name/--role/--meaning disagree with the certificate or the template.")
    p.add_argument("pdf", type=Path, help="the dossier (e.g. dossier/dossier.pdf)")
    p.add_argument("--field", required=True, help="empty signature field to sign (e.g. quality)")
    p.add_argument("--key", required=True, type=Path, help="PKCS#12 file of the signer")
    p.add_argument("--passphrase-env", default=DEFAULT_PASSPHRASE_ENV,
                   help=f"environment variable holding the PKCS#12 passphrase (default {DEFAULT_PASSPHRASE_ENV})")
    p.add_argument("--trust-root", type=Path,
                   help="root CA the existing signatures must verify against (default for a development dossier: "
                        ".smoothcert/dev-pki/ca.pem)")
    p.add_argument("--tsa-url", default="", help="RFC 3161 time-stamping authority URL (PAdES B-T); default none (B-B)")
    p.add_argument("--validation-data", choices=("auto", "off", "required"), default="auto",
                   help="with --tsa-url: embed the chain's CRLs/OCSP responses, fetched from the URLs in the "
                        "certificates, after the signature (PAdES B-LT). auto (default): where the CA publishes them, "
                        "else B-T; required: refuse unless B-LT; off: never")
    p.add_argument("--name", help="printed name; must equal the certificate's common name (the default)")
    p.add_argument("--role", default=None, help="must equal the field's role recorded in the dossier (the default)")
    p.add_argument("--meaning", default=None, help="must equal the field's meaning recorded in the dossier (the default)")
    p.add_argument("--out", type=Path, help="output file (default: overwrite the input)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from certification.dossier.verify import verify_dossier
    from certification.errors import silence_library_warnings
    from certification.fileio import write_bytes_atomic
    from certification.signing.keys import common_name, load_signer, passphrase_from_env, signer_certificate
    from certification.signing.sign import LongTerm, Manifestation, sign_field, timestamper_for
    from certification.signing.trust_root import load_certificate

    silence_library_warnings()
    if not args.pdf.is_file():
        raise InputError(f"{args.pdf}: dossier not found")
    signer = load_signer(args.key, passphrase_from_env(args.passphrase_env), args.passphrase_env)
    name = common_name(signer_certificate(signer))
    if args.name is not None and args.name != name:
        raise InputError(f"--name {args.name!r} differs from the signing certificate's common name {name!r}; the "
                         "printed name is the certificate's: omit --name or use your own key")
    report = verify_dossier(args.pdf, trust_root=args.trust_root)
    if not report.ok:
        raise InputError(f"{args.pdf}: the dossier does not verify ({', '.join(c.name for c in report.failed())}); "
                         "refusing to add an approval: run 'smoothcert verify' and get the author-signed original")
    recorded = report.roles.get(args.field)
    if recorded is None or args.field == "author":
        raise InputError(f"no approval field '{args.field}' in the dossier's evidence; approval fields: "
                         f"{', '.join(report.approval_fields) or 'none'}")
    for option, given in (("role", args.role), ("meaning", args.meaning)):
        if given is not None and given != recorded[option]:
            raise InputError(f"--{option} {given!r} differs from the {option} the template fixes for field "
                             f"'{args.field}' ({recorded[option]!r}); omit --{option}")
    manifest = Manifestation(name=name, role=recorded["role"], meaning=recorded["meaning"])
    long_term = LongTerm(mode=args.validation_data,
                         trust_roots=(load_certificate(args.trust_root),) if args.trust_root is not None else ())
    signed = sign_field(args.pdf.read_bytes(), args.field, signer, manifest, timestamper=timestamper_for(args.tsa_url),
                        long_term=long_term)
    for note in long_term.notes:
        print(f"sign: {note}", file=sys.stderr)
    out = args.out or args.pdf
    write_bytes_atomic(out, signed)
    print(f"signed field '{args.field}' as {name} ({manifest.role}: {manifest.meaning}); wrote {out}", file=sys.stderr)
    return 0
