"""Shared setup for dossier and signing tests: build and sign a dossier from fixture outputs."""
from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pipeline.dossier import evidence_inputs
from certification.dossier.build import BuiltDossier, SignerIdentity, build_dossier
from certification.fileio import sha256_bytes
from certification.signing.devpki import DevPki, ensure_dev_pki
from certification.signing.keys import common_name, load_signer, signer_certificate
from certification.signing.sign import Manifestation, sign_as_author
from support.dossier_outputs import make_outputs
from support.local_revocation import RevocationService
from support import REPO


TEMPLATES = REPO / "dossier_templates"
APPROVALS = ["quality", "regulatory", "clinical"]
PARAMS = {"dossier": {"signing_key": "", "passphrase_env": "SMOOTHCERT_KEY_PASSPHRASE", "approval_fields": APPROVALS,
                      "tsa_url": "", "validation_data": "auto", "trust_root": "", "require_approvals": False}}


@dataclass
class Signed:
    root: Path
    pki: DevPki
    built: BuiltDossier
    pdf: Path


def identity(pki: DevPki) -> SignerIdentity:
    signer = pki.signer()
    anchor = sha256_bytes(pki.ca_certificate().public_bytes(serialization.Encoding.DER))
    return SignerIdentity(True, common_name(signer_certificate(signer)), anchor)


def build_and_sign(root: Path, accepted: bool = True, templates: Path = TEMPLATES) -> Signed:
    """Fixture outputs under ``root``, a dev PKI in ``root/.smoothcert/dev-pki``, a signed dossier."""
    make_outputs(root, accepted=accepted)
    pki = ensure_dev_pki(root / ".smoothcert" / "dev-pki")
    built = build_dossier(evidence_inputs(root), PARAMS, templates, APPROVALS, identity(pki))
    signer = pki.signer()
    signed = sign_as_author(built.unsigned_pdf, signer, Manifestation("smoothcert pipeline (development key)",
                                                                      "Pipeline (author)", "Authorship"), APPROVALS)
    out = root / "dossier" / "dossier.pdf"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(signed)
    (root / "dossier" / "evidence.json").write_bytes(built.evidence_json)
    return Signed(root, pki, built, out)


def copy_templates(dest: Path) -> Path:
    shutil.copytree(TEMPLATES, dest)
    return dest


@dataclass
class LocalCa:
    """A non-development root CA made in a test (stands in for a production CA): issues signer and TSA certificates."""

    folder: Path
    key: object
    cert: object

    @property
    def ca_pem(self) -> Path:
        return self.folder / "root.pem"

    def issue(self, common_name: str, passphrase: bytes = b"secret", tsa: bool = False,
              revocation: "RevocationService | None" = None, via: str = "crl") -> Path:
        """A PKCS#12 (key, certificate, this CA) for ``common_name``; ``tsa`` gives it the timeStamping usage;
        ``revocation`` points the certificate at a loopback CRL (``via="crl"``) or OCSP responder (``via="ocsp"``)."""
        key, cert = _issue(self, common_name, tsa, revocation, via)
        out = self.folder / f"{common_name.replace(' ', '_').replace('.', '')}.p12"
        out.write_bytes(pkcs12.serialize_key_and_certificates(common_name.encode(), key, cert, [self.cert],
                                                              serialization.BestAvailableEncryption(passphrase)))
        return out

    def issue_pair(self, common_name: str, tsa: bool = False, revocation: "RevocationService | None" = None,
                   via: str = "crl") -> tuple[object, object]:
        return _issue(self, common_name, tsa, revocation, via)


def _issue(ca: "LocalCa", common_name: str, tsa: bool, revocation: "RevocationService | None" = None,
           via: str = "crl") -> tuple[object, object]:
    now = dt.datetime.now(dt.timezone.utc)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048) if tsa else ec.generate_private_key(ec.SECP256R1())
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test Medical Devices Ltd")]))
               .issuer_name(ca.cert.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(True, True, False, False, False, False, False, False, False), critical=True))
    if tsa:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
    for extension in revocation.extensions(via) if revocation is not None else []:
        builder = builder.add_extension(extension, critical=False)
    cert = builder.sign(ca.key, hashes.SHA256())
    if revocation is not None:
        revocation.register(cert)
    return key, cert


def make_test_ca(folder: Path, name: str = "Test Medical Devices Root CA") -> LocalCa:
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test Medical Devices Ltd")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(key, hashes.SHA256()))
    ca = LocalCa(folder, key, cert)
    ca.ca_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return ca


def build_and_sign_with(root: Path, signer_p12: Path, passphrase: bytes, ca_cert_der: bytes,
                        timestamper: object = None, development: bool = False, long_term: object = None) -> Signed:
    """Like :func:`build_and_sign` but signed by ``signer_p12`` (a test CA's key); ``ca_cert_der`` is the anchor."""
    make_outputs(root, accepted=True)
    pki = ensure_dev_pki(root / ".smoothcert" / "dev-pki")
    signer = load_signer(signer_p12, passphrase)
    cn = common_name(signer_certificate(signer))
    built = build_dossier(evidence_inputs(root), PARAMS, TEMPLATES, APPROVALS,
                          SignerIdentity(development, cn, sha256_bytes(ca_cert_der)))
    author = built.roles["author"]
    signed = sign_as_author(built.unsigned_pdf, signer, Manifestation(cn, author["role"], author["meaning"]), APPROVALS,
                            timestamper=timestamper, long_term=long_term)
    out = root / "dossier" / "dossier.pdf"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(signed)
    return Signed(root, pki, built, out)
