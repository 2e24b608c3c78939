"""Checks a reviewer runs on a signed dossier (``smoothcert verify``), and the state they add up to.

Signature checks come from :mod:`certification.signing.verify` (explicit trust root, no network). Evidence checks
read the *author-signed revision*: the attached evidence.json hashes to the SHA-256 printed in the document and
recorded in its metadata; the attached certify.jsonl hashes to the value in the evidence, and the dataset summary
recomputed from it (the same :func:`certification.summary.summarize` that wrote metrics/certify.json) equals the
evidence; the printed text carries the model hash and the verdict; the trust anchor SHA-256 the document prints is
the root actually used; each approval carries the role and meaning the template fixed for its field. Optionally the
model file's SHA-256 equals the evidence's.

States (and ``smoothcert verify`` exit codes): VERIFIED (0) every check holds against a production trust root given
with ``--trust-root``; DEVELOPMENT (3) every check holds but the dossier, a signature or the root is development
PKI; NOT VERIFIED (1) a check failed, or approvals are required and not all signed. Bad input exits 2.
Without ``--trust-root`` only a development dossier is checked, against the development CA found in the working
directory, and never reaches VERIFIED: a CA lying beside the file is not a trust anchor.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asn1crypto import x509 as asn1_x509

from certification.dossier.attachments import (EVIDENCE_ATTACHMENT, EVIDENCE_INFO_KEY, RECORDS_ATTACHMENT,
                                               RevisionContent, read_pdf_content)
from certification.dossier.records import recompute_from_records
from certification.errors import InputError, MissingInputError
from certification.fileio import sha256_bytes, sha256_file
from certification.signing.devpki import DEFAULT_DEV_PKI_DIR, DEV_ORGANIZATION
from certification.signing.layout import AUTHOR_FIELD
from certification.signing.trust_root import certificate_sha256, load_certificate, resolve_trust_root
from certification.signing.verify import (DEVELOPMENT, EXIT_DEVELOPMENT, EXIT_NOT_VERIFIED, EXIT_VERIFIED, NOT_VERIFIED,
                                          VERIFIED, VerificationReport, check_signatures, guarded, open_signed_pdf,
                                          signed_revision)


@dataclass
class DossierReport(VerificationReport):
    """The checks plus what the state needs: the configured roles (from the author-signed evidence) and whether
    development PKI is involved. ``ok`` still means: every check holds."""

    roles: dict[str, dict[str, str]] = field(default_factory=dict)
    development: bool = False

    @property
    def approval_fields(self) -> list[str]:
        return [name for name in self.roles if name != AUTHOR_FIELD]

    def approvals_signed(self) -> list[str]:
        """Approval fields holding a signature on which every check held."""
        good = {s.field_name for s in self.signatures if s.ok}
        return [name for name in self.approval_fields if name in good]

    def state(self, require_approvals: bool = False) -> str:
        if not self.ok or (require_approvals and len(self.approvals_signed()) < len(self.approval_fields)):
            return NOT_VERIFIED
        return DEVELOPMENT if self.development else VERIFIED

    def exit_code(self, require_approvals: bool = False) -> int:
        return {VERIFIED: EXIT_VERIFIED, DEVELOPMENT: EXIT_DEVELOPMENT}.get(self.state(require_approvals),
                                                                            EXIT_NOT_VERIFIED)

    def summary_line(self, require_approvals: bool = False) -> str:
        """E.g. ``VERIFIED: AUTHOR-SIGNED, 0/3 APPROVALS``; never a bare VERIFIED."""
        signed, total = self.approvals_signed(), self.approval_fields
        author = next((sig for sig in self.signatures if sig.field_name == AUTHOR_FIELD), None)
        author_state = ("AUTHOR-SIGNED" if author is not None and author.ok
                        else "AUTHOR SIGNATURE FAILED" if author is not None else "NO AUTHOR SIGNATURE")
        approvals = f"{author_state}, {len(signed)}/{len(total)} APPROVALS"
        failed = self.failed()
        if failed:
            return f"{NOT_VERIFIED}: {len(failed)} check(s) failed; {approvals}"
        if require_approvals and len(signed) < len(total):
            missing = ", ".join(name for name in total if name not in signed)
            return f"{NOT_VERIFIED}: {approvals}; approvals required, unsigned: {missing}"
        if self.development:
            return f"{DEVELOPMENT}: {approvals} (development PKI: not trusted, not for submission)"
        return f"{VERIFIED}: {approvals}"


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


def _check_trust_anchor(report: VerificationReport, signing: dict[str, Any], content: RevisionContent,
                        root: asn1_x509.Certificate) -> None:
    """The anchor the author-signed document names (evidence and printed text) is the root this run trusts."""
    used = certificate_sha256(root)
    named = str(signing.get("trust_anchor_sha256", ""))
    printed = named in content.text_compact
    report.add("trust anchor", named == used and printed,
               f"the document names {named} ({'printed' if printed else 'NOT printed'}); the root used is {used}"
               + ("" if named == used else ": a different root (re-signed, or the wrong --trust-root)"))


def _check_roles(report: DossierReport) -> None:
    """Every approval signature sits in a configured field and carries the template's role and meaning."""
    for sig in report.signatures:
        if sig.field_name == AUTHOR_FIELD:
            continue
        role = report.roles.get(sig.field_name)
        if role is None:
            report.add(f"signature '{sig.field_name}' role", False, "not an approval field the author-signed evidence "
                       f"configures ({', '.join(report.approval_fields) or 'none'})")
            continue
        expected = f"{role['meaning']} ({role['role']})"
        report.add(f"signature '{sig.field_name}' role", sig.reason == expected,
                   f"meaning {sig.reason!r}" + (" as the template fixes it" if sig.reason == expected
                                                else f" differs from the template's {expected!r}"))


def _evidence(content: RevisionContent | None) -> dict[str, Any]:
    raw = content.attachments.get(EVIDENCE_ATTACHMENT) if content is not None else None
    try:
        return json.loads(raw) if raw is not None else {}
    except ValueError:
        return {}


def _is_dev_root(root: asn1_x509.Certificate) -> bool:
    return root.subject.native.get("organization_name") == DEV_ORGANIZATION


def verify_dossier(pdf_path: str | os.PathLike[str], trust_root: str | os.PathLike[str] | None = None,
                   model: str | os.PathLike[str] | None = None,
                   dev_pki_dir: str | os.PathLike[str] = DEFAULT_DEV_PKI_DIR,
                   tsa_roots: list[str | os.PathLike[str]] | None = None) -> DossierReport:
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
    evidence = _evidence(content)
    signing = evidence.get("signing") or {}
    dev_dossier = bool(signing.get("development_key"))
    root, note = resolve_trust_root(trust_root, dev_dossier, str(path), dev_pki_dir,
                                    "not signed with the development key (or unreadable)",
                                    "this dossier is dev-signed: give its CA with --trust-root, or run from the repository "
                                    "that signed it",
                                    ": the dossier is signed with the DEVELOPMENT KEY, NOT FOR SUBMISSION")
    report = DossierReport(path=path, trust_root_note=note)
    try:
        check_signatures(report, reader, root, data,
                         tsa_roots=[load_certificate(r) for r in tsa_roots or []])
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged file can break parsing anywhere: a failed check, not a crash
        report.add("signatures", False, f"could not be checked ({type(exc).__name__}: {str(exc)[:200]})")
    if content is None:
        report.add("author-signed revision", False, "could not read the revision covered by the first signature")
    else:
        try:
            _check_evidence(report, content, Path(model) if model is not None else None)
            _check_trust_anchor(report, signing, content, root)
            report.roles = {str(k): dict(v) for k, v in (signing.get("approvals") or {}).items()}
            _check_roles(report)
        except Exception as exc:
            report.add("evidence", False, f"could not be checked ({type(exc).__name__}: {exc})")
    report.development = (dev_dossier or trust_root is None or _is_dev_root(root)
                          or any(s.development for s in report.signatures))
    return report
