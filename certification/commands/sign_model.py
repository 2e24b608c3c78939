"""``smoothcert sign-model``: a detached CMS signature of an ONNX file, with the dossier's key rules."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_PASSPHRASE_ENV = "SMOOTHCERT_KEY_PASSPHRASE"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("sign-model", help="write a detached CMS signature (MODEL.p7s) of an ONNX model",
                              description="Sign the ONNX file's SHA-256 (detached CMS/PKCS#7 signedData, with the "
                                          "signer's certificate) and write MODEL.p7s beside it. The key: the PKCS#12 "
                                          "named by $SMOOTHCERT_SIGNING_KEY, else --key; with neither, the development "
                                          "key (.smoothcert/dev-pki/, NOT FOR SUBMISSION), as for the dossier. Bad "
                                          "input (not an ONNX file, a model with two inputs, a wrong passphrase) exits "
                                          "2 and writes nothing.")
    p.add_argument("model", type=Path, help="the ONNX file (e.g. models/model.onnx)")
    p.add_argument("--key", default="", help="PKCS#12 file of the signer (default: $SMOOTHCERT_SIGNING_KEY, else the "
                                             "development key)")
    p.add_argument("--passphrase-env", default=DEFAULT_PASSPHRASE_ENV,
                   help=f"environment variable holding the PKCS#12 passphrase (default {DEFAULT_PASSPHRASE_ENV})")
    p.add_argument("--out", type=Path, help="signature file (default: MODEL.p7s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from certification.errors import silence_library_warnings
    from certification.model_signing import sign_model
    from certification.onnx_layout import load_onnx_artifact
    from certification.signing.choice import choose_signer

    silence_library_warnings()
    load_onnx_artifact(args.model)  # refuse a bad model before a development PKI is created
    chosen = choose_signer(args.key, args.passphrase_env)
    signature = sign_model(args.model, chosen, args.out)
    kind = "DEVELOPMENT KEY, not for submission" if chosen.development else "production key"
    print(f"signed {args.model} (SHA-256 {signature.signed_sha256}) as {signature.signer} ({kind}); wrote "
          f"{signature.path} (SHA-256 {signature.sha256})", file=sys.stderr)
    return 0
