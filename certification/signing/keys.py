"""Loading a signer from a PKCS#12 file, with errors that say what to fix. Passphrases are never logged."""
from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from pyhanko.sign.signers import SimpleSigner

from certification.errors import InputError


def passphrase_from_env(variable: str | None) -> bytes | None:
    """The passphrase held in environment variable ``variable`` (None when the name is empty or unset)."""
    if not variable:
        return None
    value = os.environ.get(variable)
    return None if value is None else value.encode("utf-8")


def load_signer(p12_path: str | os.PathLike[str], passphrase: bytes | None,
                passphrase_env: str | None = None) -> SimpleSigner:
    """A pyHanko signer from a PKCS#12 file (key, certificate and any chain certificates).

    Raises :class:`InputError` for a missing file, a wrong or missing passphrase, or a file without a key
    and certificate. ``passphrase_env`` only names the variable in messages.
    """
    path = Path(p12_path)
    if not path.is_file():
        raise InputError(f"{path}: signing key file not found; give the path of a PKCS#12 (.p12) file")
    data = path.read_bytes()
    if data.lstrip().startswith(b"-----BEGIN"):
        raise InputError(f"{path}: a PEM file, not a PKCS#12 (.p12) file; bundle key and certificate chain with "
                         "'openssl pkcs12 -export -inkey key.pem -in cert.pem -certfile chain.pem -out signer.p12'")
    hint = f" (read from environment variable {passphrase_env})" if passphrase_env else ""
    try:
        key, cert, extra = pkcs12.load_key_and_certificates(data, passphrase)
    except (ValueError, TypeError):
        if passphrase is None:
            raise InputError(f"{path}: the PKCS#12 file is encrypted and no passphrase was given; "
                             f"set the passphrase{hint}") from None
        raise InputError(f"{path}: wrong passphrase{hint}, or not a PKCS#12 file") from None
    if key is None or cert is None:
        raise InputError(f"{path}: the PKCS#12 file holds no private key and certificate")
    check_validity_period(cert, str(path))
    others = [asn1_x509.Certificate.load(c.public_bytes(serialization.Encoding.DER)) for c in extra]
    signer = SimpleSigner.load_pkcs12_data(data, other_certs=others, passphrase=passphrase)
    if signer is None:  # pyHanko returns None instead of raising on some failures
        raise InputError(f"{path}: pyHanko could not load the PKCS#12 file{hint}")
    return signer


def check_validity_period(cert: x509.Certificate, where: str, now: dt.datetime | None = None) -> None:
    """InputError unless ``now`` (default: the current UTC time) lies in the certificate's validity period: a
    signature made with an expired (or not yet valid) certificate does not validate for a reviewer."""
    now = now or dt.datetime.now(dt.timezone.utc)
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now > end:
        raise InputError(f"{where}: the signing certificate expired on {end:%Y-%m-%d %H:%M} UTC; renew the key with its CA")
    if now < start:
        raise InputError(f"{where}: the signing certificate is valid only from {start:%Y-%m-%d %H:%M} UTC; check the clock or the key")


def signer_certificate(signer: SimpleSigner) -> x509.Certificate:
    """The signer's certificate as a ``cryptography`` object."""
    return x509.load_der_x509_certificate(signer.signing_cert.dump())


def common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.subject.rfc4514_string()

