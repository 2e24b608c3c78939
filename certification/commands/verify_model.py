"""``smoothcert verify-model``: check an ONNX file against its detached signature (exit codes as ``verify``)."""
from __future__ import annotations

import argparse
from pathlib import Path

EXIT_CODES = ("exit codes: 0 VERIFIED (the signature holds and chains to the production --trust-root); 3 DEVELOPMENT "
              "(it holds, but a development key signed it or no --trust-root was given); 1 NOT VERIFIED (another file, "
              "a tampered or foreign signature); 2 bad input (missing file, not ONNX, a model with two inputs, not a "
              "CMS signature)")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("verify-model", help="check an ONNX model against its detached signature (MODEL.p7s)",
                              description="Check that the model file's SHA-256 is the signed one, that the CMS "
                                          "signature verifies with the certificate it carries, and that the "
                                          "certificate chains to the trust root. The last line states the result.",
                              epilog=EXIT_CODES)
    p.add_argument("model", type=Path, help="the ONNX file (e.g. models/model.onnx)")
    p.add_argument("--signature", type=Path, help="the detached signature (default: MODEL.p7s)")
    p.add_argument("--trust-root", type=Path, help="root CA certificate (PEM or DER) the signer must chain to; "
                                                    "without it only a development signature is checked, against "
                                                    ".smoothcert/dev-pki/ca.pem, and the result is at best DEVELOPMENT")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from certification.errors import silence_library_warnings
    from certification.model_signing import verify_model

    silence_library_warnings()
    outcome = verify_model(args.model, args.signature, args.trust_root)
    print(f"{args.model}: {outcome.trust_note}")
    for line in outcome.report.lines():
        print(line)
    print(outcome.summary_line())
    return outcome.exit_code
