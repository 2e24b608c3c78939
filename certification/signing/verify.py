"""Checks a reviewer runs on a signed dossier (``smoothcert verify``).

Signature checks (pyHanko, explicit trust root, no network): every signature is intact (the signed bytes
hash to the signed digest), valid (the CMS signature verifies with the signer's key), trusted (its chain
ends at the given root) and covers the whole file or is followed only by changes its DocMDP level allows
(form filling and further signatures). Evidence checks read the *author-signed revision*: the attached
evidence.json hashes to the SHA-256 printed in the document and recorded in its metadata; the attached
certify.jsonl hashes to the value in the evidence, and the certified accuracy at every tabulated radius,
the clean accuracy and the abstention count recomputed from it equal the evidence; the printed text
carries the model hash and the verdict. Optionally the model file's SHA-256 equals the evidence's.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any, Callable

from asn1crypto import pem
from asn1crypto import x509 as asn1_x509
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.diff_analysis import ModificationLevel
from pyhanko.sign.validation.status import SignatureCoverageLevel
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

from certification.errors import InputError
from certification.fileio import sha256_bytes, sha256_file
from certification.signing.devpki import DEFAULT_DEV_PKI_DIR, dev_pki_paths
from certification.signing.layout import AUTHOR_FIELD
from certification.dossier.attachments import (EVIDENCE_ATTACHMENT, EVIDENCE_INFO_KEY, RECORDS_ATTACHMENT,
                                               RevisionContent, read_revision)
from certification.dossier.records import recompute_from_records

PADES_SUBFILTER = "/ETSI.CAdES.detached"


@dataclass(frozen=True)
class Check:
    """One verification check: what was checked, whether it held, and the evidence for it."""

    name: str
    passed: bool
    detail: str

    def line(self) -> str:
        return f"[{'PASS' if self.passed else 'FAIL'}] {self.name}: {self.detail}"


@dataclass
class VerificationReport:
    """All checks run on one dossier. ``ok`` is True only when there is at least one check and all hold."""

    path: Path
    trust_root_note: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def add(self, name: str, passed: bool, detail: str) -> None:
        self.checks.append(Check(name, bool(passed), detail))

    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]


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
    return cert


def _guarded(report: VerificationReport, name: str, fn: Callable[[], tuple[bool, str]]) -> None:
    try:
        passed, detail = fn()
    except Exception as exc:  # a tampered file can break parsing anywhere; that is a failed check
        passed, detail = False, f"could not be checked ({type(exc).__name__}: {exc})"
    report.add(name, passed, detail)


def _coverage_ok(status: Any) -> tuple[bool, str]:
    if status.coverage == SignatureCoverageLevel.ENTIRE_FILE:
        return True, "covers the whole file"
    level = status.modification_level
    if (status.coverage == SignatureCoverageLevel.ENTIRE_REVISION and level is not None
            and level <= ModificationLevel.FORM_FILLING and status.docmdp_ok):
        return True, f"covers its revision; later changes are {level.name.lower()} only (allowed)"
    level_name = level.name if level is not None else "unknown"
    return False, (f"the file was changed after signing beyond what is allowed "
                   f"(coverage {status.coverage.name}, modifications {level_name})")


def _check_signatures(report: VerificationReport, reader: PdfFileReader, root: asn1_x509.Certificate) -> None:
    signatures = reader.embedded_signatures
    report.add("signatures present", bool(signatures),
               f"{len(signatures)} signature(s): {', '.join(s.field_name for s in signatures) or 'none'}")
    for index, sig in enumerate(signatures):
        label = f"signature '{sig.field_name}'"
        try:
            status = validate_pdf_signature(sig, ValidationContext(trust_roots=[root], allow_fetching=False))
        except Exception as exc:
            report.add(f"{label} validation", False, f"could not be validated ({type(exc).__name__}: {exc})")
            continue
        signer = status.signing_cert.subject.human_friendly if status.signing_cert is not None else "unknown"
        when = status.signer_reported_dt.isoformat() if status.signer_reported_dt else "no signing time"
        report.add(f"{label} intact", status.intact,
                   "signed bytes unchanged" if status.intact else "the signed bytes were modified (hash mismatch)")
        report.add(f"{label} valid", status.valid,
                   f"cryptographically valid, signer {signer}, signed {when}" if status.valid
                   else "the CMS signature does not verify")
        if status.trusted:
            trust_detail = "chain ends at the trust root"
        elif not (status.intact and status.valid):
            trust_detail = "not established: the signature is not intact and valid"
        else:
            trust_detail = f"signer {signer} does not chain to the trust root"
        report.add(f"{label} trusted", status.trusted, trust_detail)
        report.add(f"{label} coverage", *_coverage_ok(status))
        subfilter = str(sig.sig_object.get("/SubFilter"))
        report.add(f"{label} format", subfilter == PADES_SUBFILTER and status.md_algorithm == "sha256",
                   f"subfilter {subfilter}, digest {status.md_algorithm}")
        if index == 0:
            report.add("author certification signature", sig.field_name == AUTHOR_FIELD and sig.docmdp_level is not None,
                       f"first signature is '{sig.field_name}' with DocMDP "
                       f"{sig.docmdp_level.name if sig.docmdp_level is not None else 'none'}")


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
        _guarded(report, "per-example results", lambda: recompute_from_records(records_bytes, evidence))
    if model is not None:
        actual = sha256_file(model)
        report.add("model file", actual == model_hash,
                   f"sha256({model}) = {actual} {'equals' if actual == model_hash else 'differs from'} "
                   f"the certified model {model_hash}")


def verify_dossier(pdf_path: str | os.PathLike[str], trust_root: str | os.PathLike[str] | None = None,
                   model: str | os.PathLike[str] | None = None,
                   dev_pki_dir: str | os.PathLike[str] = DEFAULT_DEV_PKI_DIR) -> VerificationReport:
    """Run every check on a signed dossier. Bad input (missing file, not a PDF, no trust root) -> InputError."""
    path = Path(pdf_path)
    if not path.is_file():
        raise InputError(f"{path}: dossier not found")
    if model is not None and not Path(model).is_file():
        raise InputError(f"{model}: model file not found")
    data = path.read_bytes()
    if not data.startswith(b"%PDF-"):
        raise InputError(f"{path}: not a PDF file")
    try:
        reader = PdfFileReader(BytesIO(data), strict=False)
        signatures = reader.embedded_signatures
    except Exception as exc:
        raise InputError(f"{path}: unreadable PDF ({exc})") from None
    content = None
    if signatures:
        try:
            content = read_revision(data, signatures[0])
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
            raise InputError(f"{pki.ca_cert}: development CA not found; this dossier is dev-signed: give its CA "
                             "with --trust-root, or run from the repository that signed it")
        root = load_certificate(pki.ca_cert)
        note = (f"trust root: development CA {pki.ca_cert} (the dossier is signed with the DEVELOPMENT KEY, "
                "NOT FOR SUBMISSION)")
    report = VerificationReport(path=path, trust_root_note=note)
    _check_signatures(report, reader, root)
    if content is None:
        report.add("author-signed revision", False, "could not read the revision covered by the first signature")
    else:
        try:
            _check_evidence(report, content, Path(model) if model is not None else None)
        except Exception as exc:
            report.add("evidence", False, f"could not be checked ({type(exc).__name__}: {exc})")
    return report


def _dev_signed(content: RevisionContent) -> bool:
    raw = content.attachments.get(EVIDENCE_ATTACHMENT)
    if raw is None:
        return False
    return bool(json.loads(raw).get("signing", {}).get("development_key"))
