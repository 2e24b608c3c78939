"""Signature checks of a signed PDF (the signing layer: it knows PDFs and PKI, nothing of dossiers).

Every signature is checked with pyHanko against an explicit trust root, without network access: intact (the
signed bytes hash to the signed digest), valid (the CMS signature verifies with the signer's key), trusted (its
chain ends at the given root), covering the whole file or followed only by changes its DocMDP level allows (form
filling and further signatures), and in PAdES format; the printed name of each is its certificate's common name, no
certificate signs two fields, and no later revision changes what a reader sees outside the signature fields (the
document information dictionary, the XMP metadata, the language), whatever a DocMDP diff policy allows. A revision no
signature made (after the last signature, or between two) is accepted only when it adds validation data and changes
nothing else (:mod:`certification.signing.ltv`). Each signature's PAdES baseline level is reported: B-B, B-T (a valid
RFC 3161 signature timestamp) or B-LT (B-T and a document security store that alone validates the signer's and the
TSA's chains with CRLs or OCSP responses). The dossier's own checks (attached evidence, printed
hashes) are in :mod:`certification.dossier.verify`, which builds on this module.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any, Callable

from asn1crypto import x509 as asn1_x509
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.diff_analysis import ModificationLevel
from pyhanko.sign.validation.status import SignatureCoverageLevel
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

from certification.errors import InputError, MissingInputError
from certification.signing.layout import AUTHOR_FIELD
from certification.signing.trust_root import certificate_sha256, common_name, issued_by_development_ca

PADES_SUBFILTER = "/ETSI.CAdES.detached"
#: The states of a verification and their exit codes, shared by ``smoothcert verify`` and ``verify-model``.
EXIT_VERIFIED, EXIT_NOT_VERIFIED, EXIT_DEVELOPMENT = 0, 1, 3
VERIFIED, DEVELOPMENT, NOT_VERIFIED = "VERIFIED", "DEVELOPMENT", "NOT VERIFIED"


@dataclass(frozen=True)
class Check:
    """One verification check: what was checked, whether it held, and the evidence for it."""

    name: str
    passed: bool
    detail: str

    def line(self) -> str:
        return f"[{'PASS' if self.passed else 'FAIL'}] {self.name}: {self.detail}"


@dataclass(frozen=True)
class SignatureSummary:
    """One signature as verify reports it: field, signer (certificate common name), certificate SHA-256, whether
    every check on it held, its PAdES level, and whether a development CA issued its certificate."""

    field_name: str
    signer: str
    cert_sha256: str
    ok: bool
    pades_level: str
    development: bool
    reason: str = ""


@dataclass
class VerificationReport:
    """All checks run on one dossier. ``ok`` is True only when there is at least one check and all hold."""

    path: Path
    trust_root_note: str
    checks: list[Check] = field(default_factory=list)
    signatures: list[SignatureSummary] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def add(self, name: str, passed: bool, detail: str) -> None:
        self.checks.append(Check(name, bool(passed), detail))

    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]


def pades_level(status: Any, reader: PdfFileReader, embedded_signature: Any = None,
                roots: list[asn1_x509.Certificate] | None = None) -> tuple[str, str]:
    """(level, detail): B-T needs a valid, trusted signature timestamp; B-LT additionally that the document security
    store alone (no network) holds the certificates and a CRL or OCSP response for every certificate of the signer's
    and of the timestamp's chain below ``roots``, valid at the timestamp's time."""
    ts = getattr(status, "timestamp_validity", None)
    if ts is None:
        return "B-B", "no signature timestamp"
    if not (ts.intact and ts.valid and ts.trusted):
        return "B-B", "the signature timestamp does not validate against the trust roots (TSA untrusted or damaged)"
    when = ts.timestamp.isoformat() if getattr(ts, "timestamp", None) else "unknown time"
    by = common_name(ts.signing_cert) if ts.signing_cert else "unknown TSA"
    if "/DSS" not in reader.root:
        return "B-T", f"timestamped {when} by {by}; no validation data embedded (/DSS), so not B-LT"
    if embedded_signature is None or not roots:
        return "B-T", f"timestamped {when} by {by}; /DSS present but not checked against a trust root"
    from certification.signing.ltv import chain_covered, dss_validation_context
    from pyhanko.sign.validation.generic_cms import extract_tst_data_iter

    try:
        context = dss_validation_context(reader, roots, getattr(ts, "timestamp", None))
        gaps = [("signer", chain_covered(context, embedded_signature.signed_data))]  # type: ignore[arg-type]
        gaps += [("timestamp", chain_covered(context, tst))  # type: ignore[arg-type]
                 for tst in extract_tst_data_iter(embedded_signature.signer_info, signed=False)]
    except Exception as exc:  # noqa: BLE001 - a damaged store is no validation data, not a crash
        return "B-T", f"timestamped {when} by {by}; the /DSS cannot be read ({type(exc).__name__}), so not B-LT"
    missing = [f"{what}: {why}" for what, why in gaps if why]
    if missing:
        return "B-T", (f"timestamped {when} by {by}; the /DSS does not hold validation data for every certificate "
                       f"({'; '.join(missing)}), so not B-LT")
    return "B-LT", (f"timestamped {when} by {by}; the /DSS holds certificates and CRL/OCSP revocation information for "
                    f"the signer's and the TSA's chains")


def visible_metadata(revision: bytes) -> dict[str, str]:
    """What a reader sees of a revision outside its pages: document information entries, XMP metadata, language."""
    reader = PdfFileReader(BytesIO(revision), strict=False)
    out: dict[str, str] = {}
    try:
        info = reader.trailer["/Info"]
    except KeyError:
        info = None
    if info is not None:
        for key, value in info.get_object().items():
            out[f"info {key}"] = str(value.get_object())
    metadata = reader.root.get("/Metadata")
    if metadata is not None:
        out["XMP metadata"] = hashlib.sha256(metadata.get_object().data).hexdigest()
    if "/Lang" in reader.root:
        out["/Lang"] = str(reader.root["/Lang"])
    return out


def _metadata_unchanged(pdf: bytes, signatures: list[Any]) -> tuple[bool, str]:
    base = visible_metadata(signed_revision(pdf, signatures[0]))
    ends = [signed_revision(pdf, sig) for sig in signatures[1:]] + [pdf]
    for index, revision in enumerate(ends, start=1):
        now = visible_metadata(revision)
        changed = sorted(k for k in set(base) | set(now) if base.get(k) != now.get(k))
        if changed:
            where = f"before signature '{signatures[index].field_name}'" if index < len(signatures) else "after the last signature"
            return False, f"{', '.join(changed)} changed by an incremental update {where} (the author signed other values)"
    return True, f"document information, XMP metadata and language as the author signed them ({len(base)} entries)"


def guarded(report: VerificationReport, name: str, fn: Callable[[], tuple[bool, str]]) -> None:
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


def der_length(blob: bytes) -> int:
    """Length of the DER element at the start of ``blob`` (tag, length octets and content); 0 when unparsable."""
    if len(blob) < 2:
        return 0
    first = blob[1]
    if first < 0x80:
        return 2 + first
    count = first & 0x7F
    if count == 0 or count > 4 or len(blob) < 2 + count:
        return 0
    return 2 + count + int.from_bytes(blob[2:2 + count], "big")


def contents_padding_clean(embedded_signature: Any) -> bool:
    """The signature's /Contents holds the CMS object followed only by zero padding. The padding lies outside the
    signed byte range, so without this check a changed padding byte would leave the file verified."""
    contents = bytes(embedded_signature.sig_object["/Contents"])
    end = der_length(contents)
    return 0 < end <= len(contents) and not contents[end:].strip(b"\x00")


def _embedded_certificates_on_path(embedded_signature: Any, status: Any) -> tuple[bool, str]:
    """Every certificate carried in the CMS object is, byte for byte, one of the validated chain's. The certificate
    bag is not covered by the signature, so an altered copy of a chain certificate would otherwise pass unnoticed."""
    try:
        path = list(status.validation_path) if getattr(status, "validation_path", None) is not None else []
        known = {cert.dump() for cert in path} | ({status.signing_cert.dump()} if status.signing_cert is not None else set())
        embedded = [choice.chosen for choice in embedded_signature.signed_data["certificates"] or []]
        strangers = sum(cert.dump() not in known for cert in embedded)
    except Exception as exc:  # noqa: BLE001 - a certificate that no longer parses was changed
        return False, f"an embedded certificate cannot be parsed ({type(exc).__name__}): changed after signing"
    if not strangers:
        return True, f"{len(embedded)} embedded certificate(s), each on the validated chain"
    return False, (f"{strangers} embedded certificate(s) differ from the validated chain (changed after signing, or "
                   "unrelated certificates)")


def unsigned_tail(pdf: bytes, embedded_signature: Any) -> int:
    """How many bytes follow the revision ``embedded_signature`` signed, not counting trailing white space."""
    return len(pdf.rstrip(b" \t\r\n\x00")) - len(signed_revision(pdf, embedded_signature).rstrip(b" \t\r\n\x00"))


def unsigned_revisions(pdf: bytes, reader: PdfFileReader, signatures: list[Any]) -> dict[str, tuple[bool, str]]:
    """Checks on the revisions no signature made (after the first signature): ``nothing after the last signature``
    (the file ends with the last signed revision, or is followed only by validation-data revisions ending the file)
    and, with several signatures, ``updates between signatures`` (any unsigned revision between two signatures holds
    validation data only). See :func:`certification.signing.ltv.validation_data_problem` for what validation data
    may change."""
    from certification.signing.ltv import validation_data_problem

    out: dict[str, tuple[bool, str]] = {}
    if not signatures:
        return out
    signed = {sig.signed_revision for sig in signatures}
    first, last = signatures[0].signed_revision, signatures[-1].signed_revision
    total = reader.xrefs.total_revisions

    def problems(revisions: range) -> list[str]:
        return [f"revision {rev}: {why}" for rev in revisions if rev not in signed
                for why in [validation_data_problem(reader, rev)] if why]

    if len(signatures) > 1:
        between = [rev for rev in range(first + 1, last) if rev not in signed]
        bad = problems(range(first + 1, last))
        out["updates between signatures"] = (not bad, "; ".join(bad) + " (only validation data may be added outside a "
                                             "signature)" if bad else f"{len(between)} unsigned revision(s) between "
                                             "signatures, validation data (/DSS) only")
    tail = unsigned_tail(pdf, signatures[-1])
    trailing = range(last + 1, total)
    if tail <= 0:
        out["nothing after the last signature"] = (True, "the file ends with the last signed revision")
    elif not trailing or _after_last_eof(pdf):
        out["nothing after the last signature"] = (False, f"{tail} byte(s) follow the last signed revision and are "
                                                   "signed by nobody")
    else:
        bad = problems(trailing)
        out["nothing after the last signature"] = (
            not bad, f"{tail} byte(s) after the last signature change what a reader sees: " + "; ".join(bad)
            + " (only validation data may follow a signature)" if bad else
            f"followed only by {len(trailing)} validation-data revision(s) (/DSS), which change nothing a reader sees")
    return out


def _after_last_eof(pdf: bytes) -> bool:
    """True when bytes other than white space follow the last %%EOF marker."""
    end = pdf.rfind(b"%%EOF")
    return end < 0 or bool(pdf[end + 5:].strip(b" \t\r\n\x00"))


def check_signatures(report: VerificationReport, reader: PdfFileReader, root: asn1_x509.Certificate,
                     pdf: bytes | None = None, tsa_roots: list[asn1_x509.Certificate] | None = None) -> None:
    """Every signature's checks (see the module docstring); with ``pdf`` (the file's bytes) also that nothing
    follows the last signed revision: bytes appended after it are signed by nobody, and that no revision changed
    the visible metadata. Signature timestamps validate against ``root`` and ``tsa_roots``."""
    signatures = reader.embedded_signatures
    report.add("signatures present", bool(signatures),
               f"{len(signatures)} signature(s): {', '.join(s.field_name for s in signatures) or 'none'}")
    seen: dict[str, str] = {}
    for index, sig in enumerate(signatures):
        label = f"signature '{sig.field_name}'"
        first_check = len(report.checks)
        try:
            status = validate_pdf_signature(
                sig, ValidationContext(trust_roots=[root], allow_fetching=False),
                ts_validation_context=ValidationContext(trust_roots=[root, *(tsa_roots or [])], allow_fetching=False))
        except Exception as exc:
            report.add(f"{label} validation", False, f"could not be validated ({type(exc).__name__}: {exc})")
            report.signatures.append(SignatureSummary(sig.field_name, "unknown", "", False, "none", False))
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
        report.add(f"{label} certificates", *_embedded_certificates_on_path(sig, status))
        report.add(f"{label} contents", contents_padding_clean(sig),
                   "the CMS object is followed only by zero padding" if contents_padding_clean(sig)
                   else "the signature's /Contents carries bytes beyond the CMS object (changed after signing)")
        subfilter = str(sig.sig_object.get("/SubFilter"))
        report.add(f"{label} format", subfilter == PADES_SUBFILTER and status.md_algorithm == "sha256",
                   f"subfilter {subfilter}, digest {status.md_algorithm}")
        cert = sig.signer_cert
        name, printed = common_name(cert), str(sig.sig_object.get("/Name", ""))
        report.add(f"{label} printed name", printed == name,
                   f"printed name {printed!r} is the certificate's common name" if printed == name
                   else f"printed name {printed!r} differs from the certificate's common name {name!r}")
        fingerprint = certificate_sha256(cert)
        key_id = hashlib.sha256(cert.public_key.dump()).hexdigest()
        again = seen.get(fingerprint) or seen.get(key_id)
        report.add(f"{label} distinct signer", again is None,
                   "its certificate and key sign no other field" if again is None
                   else f"the certificate (or key) of {name} also signed '{again}': one certificate may sign one role only")
        seen.setdefault(fingerprint, sig.field_name)
        seen.setdefault(key_id, sig.field_name)
        level, level_detail = pades_level(status, reader, sig, [root, *(tsa_roots or [])])
        report.add(f"{label} PAdES level", True, f"{level}: {level_detail}")
        if pdf is not None and index == len(signatures) - 1:
            try:
                for check_name, (passed, detail) in unsigned_revisions(pdf, reader, signatures).items():
                    report.add(check_name, passed, detail)
            except Exception as exc:  # noqa: BLE001 - a damaged update is a failed check
                report.add("nothing after the last signature", False,
                           f"the revisions after the signatures could not be checked ({type(exc).__name__}: {exc})")
        if index == 0:
            report.add("author certification signature", sig.field_name == AUTHOR_FIELD and sig.docmdp_level is not None,
                       f"first signature is '{sig.field_name}' with DocMDP "
                       f"{sig.docmdp_level.name if sig.docmdp_level is not None else 'none'}")
        ok = all(c.passed for c in report.checks[first_check:])
        report.signatures.append(SignatureSummary(sig.field_name, name, fingerprint, ok, level, issued_by_development_ca(cert),
                                                  str(sig.sig_object.get("/Reason", ""))))
    if pdf is not None and signatures:
        guarded(report, "visible metadata unchanged", lambda: _metadata_unchanged(pdf, signatures))


def open_signed_pdf(pdf_path: str | os.PathLike[str]) -> tuple[bytes, PdfFileReader]:
    """The bytes of a PDF and a pyHanko reader on them; InputError when missing, not a PDF or unreadable."""
    path = Path(pdf_path)
    if not path.is_file():
        raise MissingInputError(f"{path}: file not found")
    data = path.read_bytes()
    if not data.startswith(b"%PDF-"):
        raise InputError(f"{path}: not a PDF file")
    try:
        reader = PdfFileReader(BytesIO(data), strict=False)
        reader.embedded_signatures  # parses the signature fields
    except Exception as exc:
        raise InputError(f"{path}: unreadable PDF ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    return data, reader


def signed_revision(pdf: bytes, embedded_signature: Any) -> bytes:
    """The bytes of the revision a pyHanko ``EmbeddedPdfSignature`` signed (up to the end of its /ByteRange)."""
    byte_range = [int(x) for x in embedded_signature.sig_object["/ByteRange"]]
    return pdf[: byte_range[2] + byte_range[3]]


def integrity_problems(pdf: bytes) -> list[str]:
    """What is wrong with the existing signatures of ``pdf`` regardless of trust: one line per signature that is
    not intact, not cryptographically valid or followed by changes its DocMDP level forbids, and unsigned revisions
    that hold anything but validation data (after the last signature or between two). Empty when every signature
    holds (``sign`` refuses to add an approval otherwise)."""
    reader = PdfFileReader(BytesIO(pdf), strict=False)
    problems = []
    signatures = reader.embedded_signatures
    for sig in signatures:
        try:
            status = validate_pdf_signature(sig, ValidationContext(trust_roots=[], allow_fetching=False))
        except Exception as exc:  # noqa: BLE001 - a broken signature is a finding, not a crash
            problems.append(f"signature '{sig.field_name}' cannot be validated ({type(exc).__name__})")
            continue
        if not (status.intact and status.valid):
            problems.append(f"signature '{sig.field_name}' is {'not intact' if not status.intact else 'not valid'}")
        elif not contents_padding_clean(sig):
            problems.append(f"signature '{sig.field_name}' carries bytes beyond its CMS object")
        elif not _coverage_ok(status)[0]:
            problems.append(f"signature '{sig.field_name}': {_coverage_ok(status)[1]}")
    try:
        unsigned = unsigned_revisions(pdf, reader, signatures)
    except Exception as exc:  # noqa: BLE001 - an update that cannot be read is a finding, not a pass
        return [*problems, f"the revisions after the signatures cannot be checked ({type(exc).__name__})"]
    for name, (passed, detail) in unsigned.items():
        if not passed:
            problems.append(f"{name}: {detail}" if name != "nothing after the last signature"
                            else f"bytes follow the last signed revision ({detail})")
    return problems
