"""Detached CMS (PKCS#7) signatures of files, e.g. the shipped ONNX model (the signing layer: bytes and PKI only).

A signature is a DER ``ContentInfo`` of type signedData without the content (``FILE.p7s`` beside ``FILE``): the
signed attributes hold the file's SHA-256 (``messageDigest``), the content type and the signing time, and the
signer's certificate (with the chain the PKCS#12 carried) travels inside it. :func:`sign_detached` makes one with a
pyHanko signer (the dossier's key rules: :mod:`certification.signing.keys`, :mod:`certification.signing.devpki`);
:func:`verify_detached` checks it with pyHanko against an explicit trust root, without network access: intact (the
file hashes to the signed digest), valid (the signature verifies with the certificate's key) and trusted (the
certificate chains to the root). :func:`read_signature` is the one reader of the format.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from asn1crypto import cms
from asn1crypto import x509 as asn1_x509

from certification.errors import InputError, MissingInputError

SIGNATURE_SUFFIX = ".p7s"


def signature_path(path: str | os.PathLike[str]) -> Path:
    """Where the detached signature of ``path`` lives: the same name with ``.p7s`` appended."""
    path = Path(path)
    return path.with_name(path.name + SIGNATURE_SUFFIX)


@dataclass(frozen=True)
class DetachedSignature:
    """What a signature file says about itself (nothing here is verified: see :func:`verify_detached`).

    ``sha256`` is the signature file's own SHA-256 (what the dossier lists); ``signed_sha256`` the file digest it
    signs; ``signer`` the certificate's common name; ``development`` whether a development CA issued it."""

    path: Path
    sha256: str
    signed_sha256: str
    signer: str
    signing_time_utc: str
    development: bool
    signer_cert_sha256: str

    def to_dict(self) -> dict[str, object]:
        return {"path": self.path.as_posix(), "sha256": self.sha256, "signed_sha256": self.signed_sha256,
                "signer": self.signer, "signing_time_utc": self.signing_time_utc, "development": self.development,
                "signer_cert_sha256": self.signer_cert_sha256}


@dataclass
class DetachedVerification:
    """The checks of one detached signature; ``ok`` only when there is at least one check and all hold."""

    file_sha256: str
    signature: DetachedSignature
    checks: list[tuple[str, bool, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(passed for _, passed, _ in self.checks)

    def lines(self) -> list[str]:
        return [f"[{'PASS' if passed else 'FAIL'}] {name}: {detail}" for name, passed, detail in self.checks]


def sign_detached(data: bytes, signer: object) -> bytes:
    """DER of a detached CMS signedData over ``data`` (SHA-256) by ``signer`` (a pyHanko SimpleSigner)."""
    from pyhanko.sign.signers.pdf_cms import PdfCMSSignedAttributes

    attributes = PdfCMSSignedAttributes(signing_time=dt.datetime.now(dt.timezone.utc).replace(microsecond=0))
    content = asyncio.run(signer.async_sign_general_data(  # type: ignore[attr-defined]
        data, "sha256", detached=True, signed_attr_settings=attributes))
    return content.dump()


def _signed_data(blob: bytes, where: str) -> cms.SignedData:
    try:
        info = cms.ContentInfo.load(blob)
        if info["content_type"].native != "signed_data":
            raise ValueError(info["content_type"].native)
        signed = info["content"]
        signed.native  # force parsing of every field
        if len(signed["signer_infos"]) != 1:
            raise ValueError("not one signer")
    except Exception:  # asn1crypto raises several types for garbage
        raise InputError(f"{where}: not a detached CMS (PKCS#7) signature with one signer; sign the file again "
                         "with 'smoothcert sign-model'") from None
    return signed


def _signer_certificate(signed: cms.SignedData, where: str) -> asn1_x509.Certificate:
    sid = signed["signer_infos"][0]["sid"]
    if sid.name != "issuer_and_serial_number":
        raise InputError(f"{where}: the signer is named by key identifier, not issuer and serial; sign it again "
                         "with 'smoothcert sign-model'")
    wanted = sid.chosen
    for choice in signed["certificates"] or []:
        cert = choice.chosen
        if isinstance(cert, asn1_x509.Certificate) and cert.issuer == wanted["issuer"] \
                and cert.serial_number == wanted["serial_number"].native:
            return cert
    raise InputError(f"{where}: the signature does not carry its signer's certificate; sign it again with "
                     "'smoothcert sign-model'")


def read_signature(path: str | os.PathLike[str]) -> DetachedSignature:
    """Parse the detached signature at ``path`` (InputError when missing or not one).

    The signed digest and time are the signer's own claims until :func:`verify_detached` checks them."""
    from certification.signing.devpki import DEV_ORGANIZATION

    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path}: signature file not found; run 'smoothcert sign-model' on the model first")
    blob = path.read_bytes()
    signed = _signed_data(blob, str(path))
    cert = _signer_certificate(signed, str(path))
    attrs = {a["type"].native: a["values"][0].native for a in signed["signer_infos"][0]["signed_attrs"] or []}
    digest = attrs.get("message_digest")
    algorithm = signed["signer_infos"][0]["digest_algorithm"]["algorithm"].native
    if not isinstance(digest, bytes) or algorithm != "sha256":
        raise InputError(f"{path}: the signature holds no SHA-256 message digest; sign it again with 'smoothcert sign-model'")
    when = attrs.get("signing_time")
    return DetachedSignature(
        path=path, sha256=hashlib.sha256(blob).hexdigest(), signed_sha256=digest.hex(),
        signer=str(cert.subject.native.get("common_name", cert.subject.human_friendly)),
        signing_time_utc=when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if isinstance(when, dt.datetime) else "",
        development=cert.issuer.native.get("organization_name") == DEV_ORGANIZATION,
        signer_cert_sha256=hashlib.sha256(cert.dump()).hexdigest(),
    )


def verify_detached(data: bytes, signature_file: str | os.PathLike[str],
                    root: asn1_x509.Certificate) -> DetachedVerification:
    """Check the detached signature in ``signature_file`` over ``data`` against trust root ``root``.

    InputError when the signature file is missing or not a CMS signature; otherwise a report whose checks say
    whether the file's SHA-256 is the signed one, the signature verifies and the signer chains to ``root``."""
    from pyhanko.sign.validation.generic_cms import async_validate_detached_cms
    from pyhanko_certvalidator import ValidationContext

    info = read_signature(signature_file)
    signed = _signed_data(Path(signature_file).read_bytes(), str(signature_file))
    file_sha = hashlib.sha256(data).hexdigest()
    report = DetachedVerification(file_sha256=file_sha, signature=info)
    report.checks.append(("hash", file_sha == info.signed_sha256,
                          f"file SHA-256 {file_sha[:16]}..., signed {info.signed_sha256[:16]}..."))
    context = ValidationContext(trust_roots=[root], allow_fetching=False)
    try:
        status = asyncio.run(async_validate_detached_cms(data, signed, signer_validation_context=context))
        intact, valid, trusted = bool(status.intact), bool(status.valid), bool(status.trusted)
        detail = f"signer {info.signer}, chain to {root.subject.native.get('common_name', '?')}"
    except Exception as exc:  # noqa: BLE001 - a damaged signature can fail anywhere in validation: a failed check
        intact = valid = trusted = False
        detail = f"could not be validated ({type(exc).__name__}: {str(exc)[:160]})"
    report.checks.append(("signature", intact and valid, f"intact {intact}, valid {valid}; {detail}"))
    report.checks.append(("trust", trusted, f"certificate SHA-256 {info.signer_cert_sha256[:16]}... " + (
        "chains to the trust root" if trusted else "not trusted (no valid chain to the trust root, or the signature "
                                                   "itself failed)")))
    return report
