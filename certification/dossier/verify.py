"""Checks a reviewer runs on a signed dossier (``smoothcert verify``).

Signature checks come from :mod:`certification.signing.verify` (explicit trust root, no network). Evidence checks
read the *author-signed revision*: the attached evidence.json hashes to the SHA-256 printed in the document and
recorded in its metadata; the attached certify.jsonl hashes to the value in the evidence, and the dataset summary
recomputed from it (the same :func:`certification.summary.summarize` that wrote metrics/certify.json) equals the
evidence; the printed text carries the model hash and the verdict. Optionally the model file's SHA-256 equals the
evidence's.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from certification.dossier.attachments import (EVIDENCE_ATTACHMENT, EVIDENCE_INFO_KEY, RECORDS_ATTACHMENT,
                                               RevisionContent, read_pdf_content)
from certification.dossier.records import recompute_from_records
from certification.errors import InputError, MissingInputError
from certification.fileio import sha256_bytes, sha256_file
from certification.signing.devpki import DEFAULT_DEV_PKI_DIR, dev_pki_paths
from certification.signing.verify import (VerificationReport, check_signatures, guarded, load_certificate,
                                          open_signed_pdf, signed_revision)


def _check_evidence(report: VerificationReport, content: RevisionContent, model: Path | None) -> None:
    evidence_bytes = content.attachments.get(EVIDENCE_ATTACHMENT)
    records_bytes = content.attachments.get(RECORDS_ATTACHMENT)
    report.add("attachments present", evidence_bytes is not None and records_bytes is not None,
               f"found {', '.join(sorted(content.attachments)) or 'none'} in the author-signed revision")
    if evidence_bytes is None:
        return
    digest = sha256_bytes(evidence_bytes)
    recorded = content.info.get(EVIDENCE_INFO_KEY)
    printed = digest in content.text_compact
    report.add("evidence hash", recorded == digest and printed,
               f"sha256(evidence.json) = {digest}; metadata {'matches' if recorded == digest else f'says {recorded}'}; "
               f"{'printed in the document' if printed else 'NOT printed in the document'}")
    evidence = json.loads(evidence_bytes)
    model_hash = evidence["hashes"]["model_sha256"]
    word = evidence["verdict"]["word"]
    report.add("printed model hash", model_hash in content.text_compact,
               f"{model_hash} {'appears' if model_hash in content.text_compact else 'does NOT appear'} in the text")
    report.add("printed verdict", word in content.text, f"verdict {word} "
               f"{'appears' if word in content.text else 'does NOT appear'} in the text")
    if records_bytes is not None:
        guarded(report, "per-example results", lambda: recompute_from_records(records_bytes, evidence))
    if model is not None:
        actual = sha256_file(model)
        report.add("model file", actual == model_hash,
                   f"sha256({model}) = {actual} {'equals' if actual == model_hash else 'differs from'} "
                   f"the certified model {model_hash}")


def _dev_signed(content: RevisionContent) -> bool:
    raw = content.attachments.get(EVIDENCE_ATTACHMENT)
    if raw is None:
        return False
    return bool(json.loads(raw).get("signing", {}).get("development_key"))


def verify_dossier(pdf_path: str | os.PathLike[str], trust_root: str | os.PathLike[str] | None = None,
                   model: str | os.PathLike[str] | None = None,
                   dev_pki_dir: str | os.PathLike[str] = DEFAULT_DEV_PKI_DIR) -> VerificationReport:
    """Run every check on a signed dossier. Bad input (missing file, not a PDF, no trust root) -> InputError."""
    path = Path(pdf_path)
    if not path.is_file():
        raise MissingInputError(f"{path}: dossier not found")
    if model is not None and not Path(model).is_file():
        raise MissingInputError(f"{model}: model file not found")
    data, reader = open_signed_pdf(path)
    signatures = reader.embedded_signatures
    content = None
    if signatures:
        try:
            content = read_pdf_content(signed_revision(data, signatures[0]))
        except Exception:
            content = None
    if trust_root is not None:
        root = load_certificate(trust_root)
        note = f"trust root: {trust_root}"
    else:
        dev = bool(content and _dev_signed(content))
        if not dev:
            raise InputError(f"{path}: not signed with the development key (or unreadable); "
                             "give the signer's root certificate with --trust-root CA.pem")
        pki = dev_pki_paths(dev_pki_dir)
        if not pki.ca_cert.is_file():
            raise MissingInputError(f"{pki.ca_cert}: development CA not found; this dossier is dev-signed: give its CA "
                                    "with --trust-root, or run from the repository that signed it")
        root = load_certificate(pki.ca_cert)
        note = (f"trust root: development CA {pki.ca_cert} (the dossier is signed with the DEVELOPMENT KEY, "
                "NOT FOR SUBMISSION)")
    report = VerificationReport(path=path, trust_root_note=note)
    try:
        check_signatures(report, reader, root, data)
    except Exception as exc:  # noqa: BLE001 - a damaged file can break parsing anywhere: a failed check, not a crash
        report.add("signatures", False, f"could not be checked ({type(exc).__name__}: {str(exc)[:200]})")
    if content is None:
        report.add("author-signed revision", False, "could not read the revision covered by the first signature")
    else:
        try:
            _check_evidence(report, content, Path(model) if model is not None else None)
        except Exception as exc:
            report.add("evidence", False, f"could not be checked ({type(exc).__name__}: {exc})")
    return report
