"""Signed delivery of an ONNX artifact: a detached CMS signature beside the model, and its verification.

``sign_model`` checks that the file is an ONNX model with one input and one output, then writes ``MODEL.p7s`` (a
detached CMS signature over the file's SHA-256, with the signer's certificate; see
:mod:`certification.signing.detached`) with the key the dossier would use (:func:`certification.signing.keys.
choose_signer`). ``verify_model`` checks the file against its signature and a trust root, with the states of
``smoothcert verify``: VERIFIED (exit 0) only against a production ``trust_root``; DEVELOPMENT (3) when every check
holds but a development CA issued the certificate or no trust root was given (then the chain is checked against the
development CA); NOT VERIFIED (1) when a check fails (another file, a tampered or foreign signature).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from certification.fileio import write_bytes_atomic
from certification.onnx_layout import load_onnx_artifact
from certification.signing.detached import (DetachedSignature, DetachedVerification, read_signature, sign_detached,
                                            signature_path, verify_detached)
from certification.signing.devpki import DEFAULT_DEV_PKI_DIR
from certification.signing.choice import ChosenSigner
from certification.signing.trust_root import resolve_trust_root
from certification.signing.verify import DEVELOPMENT, EXIT_DEVELOPMENT, EXIT_NOT_VERIFIED, EXIT_VERIFIED, NOT_VERIFIED, VERIFIED


def sign_model(model: str | os.PathLike[str], chosen: ChosenSigner,
               out: str | os.PathLike[str] | None = None) -> DetachedSignature:
    """Write the detached signature of the ONNX file ``model`` (default ``MODEL.p7s``) and return what it says.

    InputError (nothing written) when ``model`` is missing, not ONNX, or has other than one input and one output."""
    model = Path(model)
    load_onnx_artifact(model)
    data = model.read_bytes()
    target = Path(out) if out is not None else signature_path(model)
    write_bytes_atomic(target, sign_detached(data, chosen.signer))
    return read_signature(target)


@dataclass(frozen=True)
class ModelVerification:
    """The outcome of :func:`verify_model`: its state, exit code, the trust note and the checks' lines."""

    state: str
    trust_note: str
    report: DetachedVerification

    @property
    def exit_code(self) -> int:
        return {VERIFIED: EXIT_VERIFIED, DEVELOPMENT: EXIT_DEVELOPMENT}.get(self.state, EXIT_NOT_VERIFIED)

    def summary_line(self) -> str:
        sig = self.report.signature
        what = f"{sig.path.name} by {sig.signer}, model SHA-256 {self.report.file_sha256}"
        if self.state == NOT_VERIFIED:
            failed = [name for name, passed, _ in self.report.checks if not passed]
            return f"{NOT_VERIFIED}: {', '.join(failed)} check(s) failed; do not load this model ({what})"
        if self.state == DEVELOPMENT:
            return f"{DEVELOPMENT}: signature holds, but it is a development key or no --trust-root was given; NOT FOR SUBMISSION ({what})"
        return f"{VERIFIED}: {what}"


def verify_model(model: str | os.PathLike[str], signature: str | os.PathLike[str] | None = None,
                 trust_root: str | os.PathLike[str] | None = None,
                 dev_pki_dir: str | os.PathLike[str] = DEFAULT_DEV_PKI_DIR) -> ModelVerification:
    """Check the ONNX file ``model`` against its detached signature (default ``MODEL.p7s``) and a trust root.

    Bad input (a missing or non-ONNX model, a model with two inputs, a file that is not a CMS signature, a
    production signature without ``trust_root``) is an InputError; every other outcome is a state."""
    model = Path(model)
    load_onnx_artifact(model)
    signature = Path(signature) if signature is not None else signature_path(model)
    claimed = read_signature(signature)
    root, note = resolve_trust_root(trust_root, claimed.development, str(signature), dev_pki_dir,
                                    "not signed with the development key",
                                    "give the signer's CA with --trust-root, or run from the repository that signed the model")
    report = verify_detached(model.read_bytes(), signature, root)
    if not report.ok:
        state = NOT_VERIFIED
    elif claimed.development or trust_root is None:
        state = DEVELOPMENT
    else:
        state = VERIFIED
    return ModelVerification(state, note, report)
