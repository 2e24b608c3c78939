"""Stage `dossier`: evidence JSON, deterministic unsigned PDF, and the author-signed dossier.

Reads the outputs of every earlier stage and params `dossier` (signing_key, passphrase_env,
approval_fields, tsa_url, trust_root, require_approvals). An empty signing_key signs with the development key
(created on first run under .smoothcert/dev-pki/, git-ignored; its PKCS#12 is encrypted with the passphrase in
passphrase_env, or a generated one stored there with mode 0600) and every page then says DEVELOPMENT KEY, NOT FOR
SUBMISSION. A production key is a PKCS#12 file (dossier.signing_key, or the environment variable
SMOOTHCERT_SIGNING_KEY, which wins: CI decodes the key from a secret) whose passphrase is read from the environment variable named by
passphrase_env; it is never logged or written anywhere. A non-empty tsa_url adds an RFC 3161 signature timestamp
(PAdES B-T); with it, validation_data auto (or required) embeds the chain's CRLs/OCSP responses, fetched from the
URLs in the certificates at signing time, after the signature (PAdES B-LT; auto stays B-T when the CA publishes
none, required fails). trust_root (a root CA file) is checked against the signed dossier here and by the verdict stage;
require_approvals (submission profiles) is honoured by the verdict stage. Works for REJECT verdicts too (the dossier says
REJECTED); the verdict stage fails the run afterwards.

Outputs: dossier/evidence.json, dossier/dossier_unsigned.pdf, dossier/dossier.pdf.
"""
from __future__ import annotations

import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from certification.dossier.build import SignerIdentity, build_dossier
from certification.dossier.evidence import EvidenceInputs
from certification.errors import InputError
from certification.fileio import sha256_bytes, write_bytes_atomic
from certification.signing.choice import choose_signer
from certification.signing.sign import LongTerm, Manifestation, sign_as_author, timestamper_for
from certification.signing.trust_root import load_certificate
from certification.dossier.verify import verify_dossier
from pipeline import layout
from pipeline.stage import load_document, load_section, run_stage
from pipeline.tracking import log_stage

KEYS = {"signing_key": str, "passphrase_env": str, "approval_fields": list, "tsa_url": str, "validation_data": str,
        "trust_root": str, "require_approvals": bool}


def _trust_anchor(signer: object) -> str:
    """SHA-256 (DER) of the self-signed root among the PKCS#12's certificates, if it carries one."""
    for cert in getattr(signer, "cert_registry", []):
        if cert.subject == cert.issuer:
            return sha256_bytes(cert.dump())
    return "not included in the PKCS#12 file; obtain the signer's root certificate from its CA"


def evidence_inputs(root: Path = Path(".")) -> EvidenceInputs:
    """The pipeline's files the dossier is built from, in the repository (or a copy of it) at ``root``."""
    return EvidenceInputs(
        root=root, model_card=root / layout.MODEL_CARD, datasheet=root / layout.DATASHEET,
        train_metrics=root / layout.TRAIN_METRICS if (root / layout.TRAIN_METRICS).is_file() else None,
        export_metrics=root / layout.EXPORT_METRICS,
        certify_metrics=root / layout.CERTIFY_METRICS, certify_records=root / layout.CERTIFY_RESULTS,
        evaluate_metrics=root / layout.EVALUATE_METRICS, gate_metrics=root / layout.GATE_METRICS,
        test_split=root / layout.TEST_SPLIT, protocol_record=root / layout.PROTOCOL_RECORD,
        test_access=root / layout.TEST_ACCESS, device_card=root / layout.DEVICE_CARD,
        device_latency=root / layout.DEVICE_LATENCY, method_benchmark=root / layout.METHOD_BENCHMARK,
    )


def main() -> int:
    cfg = load_section("dossier", KEYS)
    fields = cfg["approval_fields"]
    if not all(isinstance(f, str) for f in fields):
        raise InputError("params.yaml: 'dossier.approval_fields' must be a list of field names")
    trust_root = Path(cfg["trust_root"]) if cfg["trust_root"] else None
    chosen = choose_signer(cfg["signing_key"], cfg["passphrase_env"])
    signer = chosen.signer
    if chosen.dev_pki is None:
        # a development certificate named as the production key is still a development key, and says so
        identity = SignerIdentity(chosen.development, chosen.name, _trust_anchor(signer))
    else:
        pki = chosen.dev_pki
        trust_root = trust_root or pki.ca_cert
        anchor = sha256_bytes(pki.ca_certificate().public_bytes(serialization.Encoding.DER))
        identity = SignerIdentity(True, chosen.name, anchor)
        print(f"dossier: signing with the DEVELOPMENT KEY ({pki.folder}); not for submission", file=sys.stderr)
    built = build_dossier(evidence_inputs(), load_document(), layout.TEMPLATES, fields, identity)
    author = built.roles["author"]
    long_term = LongTerm(mode=cfg["validation_data"],
                         trust_roots=(load_certificate(trust_root),) if trust_root is not None else ())
    signed = sign_as_author(built.unsigned_pdf, signer, Manifestation(identity.signer, author["role"], author["meaning"]),
                            fields, timestamper=timestamper_for(cfg["tsa_url"]), long_term=long_term)
    for note in long_term.notes:
        print(f"dossier: {note}", file=sys.stderr)
    write_bytes_atomic(layout.EVIDENCE, built.evidence_json)
    write_bytes_atomic(layout.DOSSIER_UNSIGNED, built.unsigned_pdf)
    write_bytes_atomic(layout.DOSSIER_SIGNED, signed)
    if trust_root is not None:
        report = verify_dossier(layout.DOSSIER_SIGNED, trust_root=trust_root, model=Path(built.evidence["model"]["path"]))
        for check in report.failed():
            print(f"dossier: {check.line()}", file=sys.stderr)
        if not report.ok:
            raise InputError("the signed dossier failed its own verification (see above)")
        print(f"dossier: {report.summary_line()}", file=sys.stderr)
    print(f"dossier: {built.evidence['verdict']['word']}; wrote {layout.DOSSIER_SIGNED} "
          f"(unsigned sha256 {sha256_bytes(built.unsigned_pdf)[:16]}...)")
    log_stage("dossier", {"dossier.signing_key": "development" if identity.development_key else "production",
                          "dossier.approval_fields": ",".join(fields)},
              {"dossier.accepted": 1.0 if built.evidence["verdict"]["verdict"] == "ACCEPT" else 0.0},
              artifacts=[layout.EVIDENCE, layout.DOSSIER_SIGNED],
              tags={"dossier.development_key": str(identity.development_key).lower(),
                    "dossier.unsigned_sha256": sha256_bytes(built.unsigned_pdf)})
    return 0


if __name__ == "__main__":
    run_stage("dossier", main)
