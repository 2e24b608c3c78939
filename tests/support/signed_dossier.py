"""Shared setup for dossier and signing tests: build and sign a dossier from fixture outputs."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from pipeline.dossier import evidence_inputs
from certification.dossier.build import BuiltDossier, SignerIdentity, build_dossier
from certification.fileio import sha256_bytes
from certification.signing.devpki import DevPki, ensure_dev_pki
from certification.signing.keys import common_name, load_signer, signer_certificate
from certification.signing.sign import Manifestation, sign_as_author
from support.dossier_outputs import make_outputs
from support import REPO


TEMPLATES = REPO / "dossier_templates"
APPROVALS = ["quality", "regulatory", "clinical"]
PARAMS = {"dossier": {"signing_key": "", "passphrase_env": "SMOOTHCERT_KEY_PASSPHRASE", "approval_fields": APPROVALS}}


@dataclass
class Signed:
    root: Path
    pki: DevPki
    built: BuiltDossier
    pdf: Path


def identity(pki: DevPki) -> SignerIdentity:
    signer = load_signer(pki.signer_p12, None)
    anchor = sha256_bytes(pki.ca_certificate().public_bytes(serialization.Encoding.DER))
    return SignerIdentity(True, common_name(signer_certificate(signer)), anchor)


def build_and_sign(root: Path, accepted: bool = True, templates: Path = TEMPLATES) -> Signed:
    """Fixture outputs under ``root``, a dev PKI in ``root/.smoothcert/dev-pki``, a signed dossier."""
    make_outputs(root, accepted=accepted)
    pki = ensure_dev_pki(root / ".smoothcert" / "dev-pki")
    built = build_dossier(evidence_inputs(root), PARAMS, templates, APPROVALS, identity(pki))
    signer = load_signer(pki.signer_p12, None)
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
