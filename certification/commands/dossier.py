"""``smoothcert dossier``: a signed dossier for an externally certified model.

``--results`` is a certify log of Cohen et al.'s reference code (``idx label predict radius correct time``; give
``--sigma``, and ``--alpha`` unless 0.001) or a smoothcert certify JSONL computed elsewhere. The rows are judged
against ``--protocol`` (mode fixed) and written into the same PAdES-signed PDF/A-3b dossier the pipeline makes,
through :func:`certification.dossier.build.build_external_dossier`; the dossier states what the input records and
what it does not (counts, sigma/alpha as given, model and data identity, that certification was not performed by
this tool). Exit 0 once the dossier is written (ACCEPT or REJECT: the verdict is in it and printed), 2 on bad input
(nothing is written).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from certification.commands._options import add_summary_options

DEFAULT_APPROVALS = ["quality", "regulatory", "clinical"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "dossier", help="signed dossier for externally certified results (Cohen et al.'s TSV log or certify JSONL)",
        description="Judge imported per-example certification results against the protocol and write the signed "
        "dossier (PDF/A-3b, PAdES). The dossier says that certification was not performed by smoothcert and lists, "
        "from the input, what it records and what it does not (per-example counts, sigma and alpha, the model and data "
        "hashes). Without --key it is signed with the development key (.smoothcert/dev-pki/), as in the pipeline.")
    parser.add_argument("--results", required=True, type=Path, help="Cohen et al.'s TSV certify log or a certify JSONL")
    parser.add_argument("--protocol", required=True, type=Path, help="params.yaml (its --section) or a protocol .json file")
    parser.add_argument("--section", default="gate", help="section of the protocol file (default: gate)")
    parser.add_argument("--out", required=True, type=Path, help="the signed dossier to write (.pdf)")
    parser.add_argument("--evidence", type=Path, default=None, help="also write the evidence JSON here")
    parser.add_argument("--sigma", type=float, default=None, help="noise sigma of a TSV log ([0,1]-pixel L2 units; a log does not record it)")
    parser.add_argument("--alpha", type=float, default=None, help="per-example alpha of a TSV log (default 0.001, the reference code's)")
    parser.add_argument("--model", type=Path, default=None,
                        help="the ONNX file the results belong to: its SHA-256 is printed (checked against JSONL rows; "
                        "a TSV log names no model, so the dossier says the link is the submitter's statement)")
    parser.add_argument("--model-json", type=Path, default=None, help="a model card (models/model.json) naming class_names and malignant_classes")
    parser.add_argument("--templates", type=Path, default=Path("dossier_templates"), help="the dossier's words (default dossier_templates)")
    parser.add_argument("--key", type=Path, default=None, help="production signer's PKCS#12 (default: the development key)")
    parser.add_argument("--passphrase-env", default="SMOOTHCERT_KEY_PASSPHRASE", help="environment variable holding the PKCS#12 passphrase")
    parser.add_argument("--approval-fields", nargs="+", default=DEFAULT_APPROVALS, help="empty approval signature fields to add")
    add_summary_options(parser)
    parser.set_defaults(func=run_dossier)


def run_dossier(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives import serialization

    from certification.commands._options import check_out
    from certification.dossier.build import SignerIdentity, build_external_dossier
    from certification.dossier.external import ExternalInputs, read_external_records
    from certification.fileio import sha256_bytes, write_bytes_atomic
    from certification.gate_io import load_protocol
    from certification.signing.devpki import ensure_dev_pki, is_dev_certificate
    from certification.signing.keys import common_name, load_signer, passphrase_from_env, signer_certificate
    from certification.signing.sign import Manifestation, sign_as_author

    check_out(args.out, ".pdf")
    inputs = ExternalInputs(results=args.results, protocol=load_protocol(args.protocol, args.section), radii=args.radii,
                            confidence=args.confidence, sigma=args.sigma, alpha=args.alpha, model=args.model,
                            model_card=args.model_json)
    read_external_records(inputs)  # bad input fails here, before any key (or development PKI) is touched
    if args.key is not None:
        signer = load_signer(args.key, passphrase_from_env(args.passphrase_env), args.passphrase_env)
        cert = signer_certificate(signer)
        roots = [c for c in getattr(signer, "cert_registry", []) if c.subject == c.issuer]
        anchor = sha256_bytes(roots[0].dump()) if roots else "not included in the PKCS#12 file; obtain the signer's root from its CA"
        identity = SignerIdentity(is_dev_certificate(cert), common_name(cert), anchor)
    else:
        pki = ensure_dev_pki(passphrase_env=args.passphrase_env)
        signer = pki.signer()
        anchor = sha256_bytes(pki.ca_certificate().public_bytes(serialization.Encoding.DER))
        identity = SignerIdentity(True, common_name(signer_certificate(signer)), anchor)
        print(f"dossier: signing with the DEVELOPMENT KEY ({pki.folder}); not for submission", file=sys.stderr)
    built = build_external_dossier(inputs, None, args.templates, args.approval_fields, identity)
    author = built.roles["author"]
    signed = sign_as_author(built.unsigned_pdf, signer, Manifestation(identity.signer, author["role"], author["meaning"]),
                            args.approval_fields)
    if args.evidence is not None:
        write_bytes_atomic(args.evidence, built.evidence_json)
    write_bytes_atomic(args.out, signed)
    ev = built.evidence
    for s in ev["statements"]:
        print(f"{s['item']}: {s['statement']}")
    print(f"dossier: {ev['verdict']['word']} ({ev['certify']['n_examples']} imported rows); wrote {args.out}")
    return 0
