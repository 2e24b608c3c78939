"""Development PKI: a root CA and a signer certificate for dossiers that are NOT for submission.

On first use :func:`ensure_dev_pki` creates, in a git-ignored folder (default ``.smoothcert/dev-pki/``):

- ``ca.pem``: the development root CA certificate (BasicConstraints ca=True, keyCertSign, cRLSign);
- ``ca-key.pem``: its private key (unencrypted; development only, file mode 0600);
- ``signer.p12``: PKCS#12 with the signer key, the signer certificate (digitalSignature and
  contentCommitment a.k.a. non-repudiation) and the CA certificate, encrypted with a passphrase: the value of the
  environment variable ``passphrase_env`` (default SMOOTHCERT_KEY_PASSPHRASE) when set, otherwise a random one
  generated on first use and stored in ``signer.pass`` (file mode 0600) beside it.

Later calls reuse the folder; a PKCS#12 written unencrypted by an older version is re-encrypted in place. A dossier
signed with this key must say so on every page. :func:`issue_signer` issues further development certificates from
the same CA (distinct approvers for tests and rehearsals).
"""
from __future__ import annotations

import datetime as dt
import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from certification.errors import InputError

if TYPE_CHECKING:
    from pyhanko.sign.signers import SimpleSigner

DEFAULT_DEV_PKI_DIR = Path(".smoothcert") / "dev-pki"
CA_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"
SIGNER_FILE = "signer.p12"
PASSPHRASE_FILE = "signer.pass"
DEFAULT_PASSPHRASE_ENV = "SMOOTHCERT_KEY_PASSPHRASE"
DEV_ORGANIZATION = "smoothcert development PKI (NOT FOR SUBMISSION)"
DEV_SIGNER_CN = "smoothcert pipeline (development key)"


@dataclass(frozen=True)
class DevPki:
    """Paths of the development PKI files."""

    folder: Path
    ca_cert: Path
    signer_p12: Path
    passphrase_env: str = DEFAULT_PASSPHRASE_ENV

    def ca_certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.ca_cert.read_bytes())

    @property
    def passphrase_file(self) -> Path:
        return self.folder / PASSPHRASE_FILE

    def passphrase(self) -> bytes:
        """The signer's passphrase: the environment variable when set, else the stored one (InputError if neither)."""
        value = os.environ.get(self.passphrase_env) if self.passphrase_env else None
        if value:
            return value.encode("utf-8")
        if self.passphrase_file.is_file():
            return self.passphrase_file.read_bytes().strip()
        raise InputError(f"{self.passphrase_file}: development key passphrase not found; set {self.passphrase_env} "
                         "or delete the folder to recreate the development PKI")

    def signer(self) -> "SimpleSigner":
        """The development signer, decrypted with :meth:`passphrase`."""
        from certification.signing.keys import load_signer

        return load_signer(self.signer_p12, self.passphrase(), self.passphrase_env)


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


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` readable by its owner only (0600 from creation, then renamed into place)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _p12(name: bytes, key: rsa.RSAPrivateKey, cert: x509.Certificate, cas: list[x509.Certificate],
         passphrase: bytes) -> bytes:
    return pkcs12.serialize_key_and_certificates(name, key, cert, cas, serialization.BestAvailableEncryption(passphrase))


def _stored_or_new_passphrase(folder: Path, env: str) -> bytes:
    value = os.environ.get(env) if env else None
    if value:
        return value.encode("utf-8")
    path = folder / PASSPHRASE_FILE
    if path.is_file():
        return path.read_bytes().strip()
    generated = secrets.token_urlsafe(32).encode("ascii")
    _write_private(path, generated + b"\n")
    return generated


def _signer_certificate(common_name: str, ca_name: x509.Name, ca_key: rsa.RSAPrivateKey, now: dt.datetime,
                        days: int) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """A new RSA key and its signing certificate for ``common_name``, issued by the CA ``ca_name``/``ca_key``,
    valid from a day before ``now`` for ``days`` days (digital signature and non-repudiation only)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name)).issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True, content_commitment=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _build(folder: Path, now: dt.datetime, passphrase: bytes) -> None:
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
    signer_key, signer_cert = _signer_certificate(DEV_SIGNER_CN, ca_name, ca_key, now, days=1825)
    (folder / CA_FILE).write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    key_path = folder / CA_KEY_FILE
    key_path.write_bytes(ca_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    _write_private(folder / SIGNER_FILE, _p12(b"smoothcert-dev-signer", signer_key, signer_cert, [ca_cert], passphrase))
    os.chmod(key_path, 0o600)


def dev_pki_paths(folder: str | os.PathLike[str] = DEFAULT_DEV_PKI_DIR,
                  passphrase_env: str = DEFAULT_PASSPHRASE_ENV) -> DevPki:
    folder = Path(folder)
    return DevPki(folder=folder, ca_cert=folder / CA_FILE, signer_p12=folder / SIGNER_FILE,
                  passphrase_env=passphrase_env)


def _migrate(pki: DevPki) -> None:
    """Re-encrypt a signer PKCS#12 that an older version wrote without a passphrase."""
    data = pki.signer_p12.read_bytes()
    try:
        key, cert, cas = pkcs12.load_key_and_certificates(data, None)
    except (ValueError, TypeError):
        return  # already encrypted
    passphrase = _stored_or_new_passphrase(pki.folder, pki.passphrase_env)
    _write_private(pki.signer_p12, _p12(b"smoothcert-dev-signer", key, cert, list(cas), passphrase))  # type: ignore[arg-type]


def ensure_dev_pki(folder: str | os.PathLike[str] = DEFAULT_DEV_PKI_DIR,
                   now: dt.datetime | None = None, passphrase_env: str = DEFAULT_PASSPHRASE_ENV) -> DevPki:
    """Return the development PKI in ``folder``, creating it (atomically, as a whole folder) if absent, and
    encrypting an unencrypted signer PKCS#12 left by an older version."""
    pki = dev_pki_paths(folder, passphrase_env)
    if pki.ca_cert.is_file() and pki.signer_p12.is_file():
        _migrate(pki)
        return pki
    if pki.folder.exists() and any(pki.folder.iterdir()):
        raise InputError(f"{pki.folder}: incomplete development PKI (need {CA_FILE} and {SIGNER_FILE}); "
                         "delete the folder to recreate it")
    pki.folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".dev-pki.", dir=pki.folder.parent))
    try:
        os.chmod(staging, 0o700)
        _build(staging, now or dt.datetime.now(dt.timezone.utc), _stored_or_new_passphrase(staging, passphrase_env))
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


def issue_signer(pki: DevPki, common_name: str, out: str | os.PathLike[str], passphrase: bytes,
                 now: dt.datetime | None = None) -> Path:
    """Issue a development signer certificate for ``common_name`` from the CA of ``pki`` and write it, with its
    key and the CA certificate, as a PKCS#12 encrypted with ``passphrase`` (0600). Not for submission."""
    now = now or dt.datetime.now(dt.timezone.utc)
    ca_key = serialization.load_pem_private_key((pki.folder / CA_KEY_FILE).read_bytes(), None)
    ca_cert = pki.ca_certificate()
    key, cert = _signer_certificate(common_name, ca_cert.subject, ca_key, now, days=365)  # type: ignore[arg-type]
    path = Path(out)
    _write_private(path, _p12(common_name.encode("utf-8"), key, cert, [ca_cert], passphrase))
    return path
