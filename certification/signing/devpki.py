"""Development PKI: a root CA and a signer certificate for dossiers that are NOT for submission.

On first use :func:`ensure_dev_pki` creates, in a git-ignored folder (default ``.smoothcert/dev-pki/``):

- ``ca.pem``: the development root CA certificate (BasicConstraints ca=True, keyCertSign, cRLSign);
- ``ca-key.pem``: its private key (unencrypted; development only, file mode 0600);
- ``signer.p12``: PKCS#12 with the signer key, the signer certificate (digitalSignature and
  contentCommitment a.k.a. non-repudiation) and the CA certificate, without a passphrase.

Later calls reuse the folder. A dossier signed with this key must say so on every page.
"""
from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from certification.errors import InputError

DEFAULT_DEV_PKI_DIR = Path(".smoothcert") / "dev-pki"
CA_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"
SIGNER_FILE = "signer.p12"
DEV_ORGANIZATION = "smoothcert development PKI (NOT FOR SUBMISSION)"
DEV_SIGNER_CN = "smoothcert pipeline (development key)"


@dataclass(frozen=True)
class DevPki:
    """Paths of the development PKI files."""

    folder: Path
    ca_cert: Path
    signer_p12: Path

    def ca_certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.ca_cert.read_bytes())


def _name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, DEV_ORGANIZATION),
    ])


def _key_usage(**enabled: bool) -> x509.KeyUsage:
    flags = dict(digital_signature=False, content_commitment=False, key_encipherment=False,
                 data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                 encipher_only=False, decipher_only=False)
    flags.update(enabled)
    return x509.KeyUsage(**flags)


def _build(folder: Path, now: dt.datetime) -> None:
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = _name("smoothcert development root CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    signer_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signer_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(DEV_SIGNER_CN)).issuer_name(ca_name)
        .public_key(signer_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1825))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True, content_commitment=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(signer_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (folder / CA_FILE).write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    key_path = folder / CA_KEY_FILE
    key_path.write_bytes(ca_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    p12 = pkcs12.serialize_key_and_certificates(b"smoothcert-dev-signer", signer_key, signer_cert, [ca_cert],
                                                serialization.NoEncryption())
    (folder / SIGNER_FILE).write_bytes(p12)
    for path in (key_path, folder / SIGNER_FILE):
        os.chmod(path, 0o600)


def dev_pki_paths(folder: str | os.PathLike[str] = DEFAULT_DEV_PKI_DIR) -> DevPki:
    folder = Path(folder)
    return DevPki(folder=folder, ca_cert=folder / CA_FILE, signer_p12=folder / SIGNER_FILE)


def ensure_dev_pki(folder: str | os.PathLike[str] = DEFAULT_DEV_PKI_DIR,
                   now: dt.datetime | None = None) -> DevPki:
    """Return the development PKI in ``folder``, creating it (atomically, as a whole folder) if absent."""
    pki = dev_pki_paths(folder)
    if pki.ca_cert.is_file() and pki.signer_p12.is_file():
        return pki
    if pki.folder.exists() and any(pki.folder.iterdir()):
        raise InputError(f"{pki.folder}: incomplete development PKI (need {CA_FILE} and {SIGNER_FILE}); "
                         "delete the folder to recreate it")
    pki.folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".dev-pki.", dir=pki.folder.parent))
    try:
        os.chmod(staging, 0o700)
        _build(staging, now or dt.datetime.now(dt.timezone.utc))
        if pki.folder.exists():
            pki.folder.rmdir()
        os.replace(staging, pki.folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return pki


def is_dev_certificate(cert: x509.Certificate) -> bool:
    """True when ``cert`` was issued by a smoothcert development CA (checked by organization name)."""
    orgs = cert.issuer.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return any(attr.value == DEV_ORGANIZATION for attr in orgs)
