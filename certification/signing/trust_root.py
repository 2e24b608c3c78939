"""Trust anchors: reading a root CA certificate, its fingerprint, and which root a signature is checked against
(a given ``--trust-root``, or for development signatures only the pipeline's own development CA)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from asn1crypto import pem
from asn1crypto import x509 as asn1_x509

from certification.errors import InputError, MissingInputError


def load_certificate(path: str | os.PathLike[str]) -> asn1_x509.Certificate:
    """A certificate from a PEM or DER file (InputError when missing or unreadable)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: trust root certificate not found")
    data = path.read_bytes()
    try:
        if pem.detect(data):
            data = pem.unarmor(data)[2]
        cert = asn1_x509.Certificate.load(data)
        cert.native  # force parsing
    except Exception:  # asn1crypto raises several types for garbage
        raise InputError(f"{path}: not a PEM or DER X.509 certificate") from None
    if not cert.ca:
        raise InputError(f"{path}: not a CA certificate (BasicConstraints ca is false); give the root CA that issued "
                         "the signer's certificate")
    return cert


def certificate_sha256(cert: asn1_x509.Certificate) -> str:
    """SHA-256 of the certificate's DER encoding (the trust anchor fingerprint the dossier prints)."""
    return hashlib.sha256(cert.dump()).hexdigest()


def resolve_trust_root(trust_root: str | os.PathLike[str] | None, development: bool, subject: str,
                       dev_pki_dir: str | os.PathLike[str], not_dev: str, dev_ca_missing: str,
                       dev_note: str = "") -> tuple[asn1_x509.Certificate, str]:
    """(root, note): the root a signature is checked against, and a line saying which. With ``trust_root`` that file;
    without it only a ``development`` signature may be checked, against the development CA in ``dev_pki_dir`` (never
    a CA found elsewhere). ``subject`` (the file) starts the InputError/MissingInputError lines; ``not_dev`` and
    ``dev_ca_missing`` complete them; ``dev_note`` is appended to the note of a development check."""
    if trust_root is not None:
        root = load_certificate(trust_root)
        return root, f"trust root: {trust_root} (SHA-256 {certificate_sha256(root)})"
    if not development:
        raise InputError(f"{subject}: {not_dev}; give the signer's root certificate with --trust-root CA.pem")
    from certification.signing.devpki import dev_pki_paths

    pki = dev_pki_paths(dev_pki_dir)
    if not pki.ca_cert.is_file():
        raise MissingInputError(f"{pki.ca_cert}: development CA not found; {dev_ca_missing}")
    root = load_certificate(pki.ca_cert)
    return root, (f"chain checked against the development CA {pki.ca_cert} (SHA-256 {certificate_sha256(root)}); "
                  f"without --trust-root nothing is trusted{dev_note}")


def common_name(cert: asn1_x509.Certificate) -> str:
    """The subject's common name (else its readable form)."""
    return str(cert.subject.native.get("common_name", cert.subject.human_friendly))


def issued_by_development_ca(cert: asn1_x509.Certificate) -> bool:
    """True when the issuer is the pipeline's development CA (:data:`certification.signing.devpki.DEV_ORGANIZATION`)."""
    from certification.signing.devpki import DEV_ORGANIZATION

    return cert.issuer.native.get("organization_name") == DEV_ORGANIZATION
