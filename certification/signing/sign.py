"""PAdES signatures on the dossier (pyHanko): the pipeline's author signature and later approvals.

The pipeline signs first with a *certification* signature (DocMDP level FILL_FORMS), in the same
revision creating empty visible signature fields for the human approvals. Approvals later fill those
fields as incremental updates, which FILL_FORMS allows, so every signature stays valid. Each visible
signature shows the signer's printed name, role, meaning and the UTC signing time (21 CFR 11.50). The printed
name is always the common name of the signing certificate, and one certificate signs one field only (21 CFR
11.100). With a ``timestamper`` (an RFC 3161 TSA) each signature carries a signature timestamp (PAdES B-T);
without one it is PAdES B-B. The stamp's font dictionary is an indirect object.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from io import BytesIO
from typing import Sequence

from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.text import TextBoxStyle
from pyhanko.pdf_utils.misc import PdfReadError
from pyhanko.sign import fields, signers
from pyhanko.pdf_utils.font.opentype import GlyphAccumulatorFactory
from pyhanko.sign.fields import MDPPerm, SigFieldSpec, SigSeedSubFilter
from pyhanko.sign.timestamps import TimeStamper
from pyhanko.stamp import TextStampStyle

from certification.errors import InputError
from certification.fonts import FONT_MONO, font_file
from certification.signing.keys import common_name, signer_certificate
from certification.signing.layout import AUTHOR_FIELD, signature_boxes
from certification.signing.ltv import MODES, MetadataKeepingWriter, ValidationDataUnavailable, embed_validation_data

STAMP_TEXT = "Signed by: %(name)s\nRole: %(role)s\nMeaning: %(meaning)s\nUTC time: %(ts)s"
UTC_FORMAT = "%Y-%m-%d %H:%M:%S UTC"


@dataclass(frozen=True)
class Manifestation:
    """What a signature means (21 CFR 11.50): printed name, role and meaning. The time is added at signing."""

    name: str
    role: str
    meaning: str


def _stamp_style() -> TextStampStyle:
    """The stamp's text style: DejaVu Sans Mono embedded as a TrueType subset (an indirect font object with its
    widths and FontFile2), so a signed dossier keeps PDF/A's every-font-embedded rule."""
    font = GlyphAccumulatorFactory(str(font_file(FONT_MONO)), font_size=8)
    return TextStampStyle(stamp_text=STAMP_TEXT, text_box_style=TextBoxStyle(font=font, font_size=8),
                          border_width=1, timestamp_format=UTC_FORMAT)


def _text_params(manifest: Manifestation, when: dt.datetime) -> dict[str, str]:
    return {"name": manifest.name, "role": manifest.role, "meaning": manifest.meaning,
            "ts": when.astimezone(dt.timezone.utc).strftime(UTC_FORMAT)}


def _writer(pdf: bytes, keep_metadata: bool = False) -> IncrementalPdfFileWriter:
    try:
        return (MetadataKeepingWriter if keep_metadata else IncrementalPdfFileWriter)(BytesIO(pdf), strict=False)
    except (PdfReadError, ValueError) as exc:
        raise InputError(f"not a readable PDF ({exc})") from None


def default_manifestation(signer: signers.SimpleSigner, role: str, meaning: str) -> Manifestation:
    """A manifestation whose printed name is the common name of the signer's certificate."""
    return Manifestation(name=common_name(signer_certificate(signer)), role=role, meaning=meaning)


def _check_name(signer: signers.SimpleSigner, manifest: Manifestation) -> None:
    name = common_name(signer_certificate(signer))
    if manifest.name != name:
        raise InputError(f"printed name {manifest.name!r} differs from the signing certificate's common name {name!r}; "
                         "the printed name is the certificate's (omit --name, or use the signer's own key)")


@dataclass(frozen=True)
class LongTerm:
    """Whether and how to embed validation data after a signature (PAdES B-LT).

    ``mode``: "off" never; "auto" when the signature is timestamped and the data can be obtained (else it stays B-T,
    and ``notes`` says why); "required" refuses (InputError) a signature that cannot reach B-LT. ``trust_roots`` only
    help build paths (trust is verify's business); ``fetch`` allows the CRL/OCSP requests to the certificates' URLs;
    ``crls``/``ocsps`` (DER) are supplied data. ``notes`` collects one line per signature on what was embedded."""

    mode: str = "off"
    trust_roots: tuple[object, ...] = ()
    fetch: bool = True
    crls: tuple[bytes, ...] = ()
    ocsps: tuple[bytes, ...] = ()
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InputError(f"validation data mode {self.mode!r} is not one of {', '.join(MODES)} "
                             "(dossier.validation_data / --validation-data)")


def _long_term(signed: bytes, long_term: LongTerm | None, timestamper: TimeStamper | None) -> bytes:
    if long_term is None or long_term.mode == "off":
        return signed
    if timestamper is None:
        if long_term.mode == "required":
            raise InputError("validation data (PAdES B-LT) needs a signature timestamp: set dossier.tsa_url / --tsa-url, "
                             "or validation_data: auto")
        long_term.notes.append("no time-stamping authority: PAdES B-B, no validation data embedded")
        return signed
    try:
        out, embedded = embed_validation_data(signed, long_term.trust_roots, long_term.fetch,  # type: ignore[arg-type]
                                              long_term.crls, long_term.ocsps)
    except ValidationDataUnavailable as exc:
        if long_term.mode == "required":
            raise
        long_term.notes.append(f"PAdES B-T only: {exc}")
        return signed
    long_term.notes.append(f"PAdES B-LT: {embedded.line()}")
    return out


def sign_as_author(pdf: bytes, signer: signers.SimpleSigner, manifest: Manifestation,
                   approval_fields: Sequence[str], timestamper: TimeStamper | None = None,
                   long_term: LongTerm | None = None) -> bytes:
    """Certify ``pdf`` (PAdES, SHA-256, DocMDP FILL_FORMS) and add empty approval fields; return the bytes.

    The fields sit on the last page at :func:`certification.signing.layout.signature_boxes`. With ``long_term``
    validation data may follow in a revision of its own (see :class:`LongTerm`).
    """
    _check_name(signer, manifest)
    boxes = signature_boxes(list(approval_fields))
    writer = _writer(pdf)
    for name in approval_fields:
        fields.append_signature_field(writer, SigFieldSpec(sig_field_name=name, on_page=-1, box=boxes[name]))
    meta = signers.PdfSignatureMetadata(
        field_name=AUTHOR_FIELD, certify=True, docmdp_permissions=MDPPerm.FILL_FORMS,
        subfilter=SigSeedSubFilter.PADES, md_algorithm="sha256",
        reason=f"{manifest.meaning} ({manifest.role})", name=manifest.name,
    )
    pdf_signer = signers.PdfSigner(meta, signer=signer, stamp_style=_stamp_style(), timestamper=timestamper,
                                   new_field_spec=SigFieldSpec(sig_field_name=AUTHOR_FIELD, on_page=-1,
                                                               box=boxes[AUTHOR_FIELD]))
    return _long_term(_sign(pdf_signer, writer, manifest), long_term, timestamper)


def _sign(pdf_signer: signers.PdfSigner, writer: IncrementalPdfFileWriter, manifest: Manifestation,
          **kwargs: object) -> bytes:
    from pyhanko.sign.timestamps import TimestampRequestError

    out = BytesIO()
    try:
        pdf_signer.sign_pdf(writer, output=out, appearance_text_params=_text_params(manifest, dt.datetime.now(dt.timezone.utc)),
                            **kwargs)
    except (TimestampRequestError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"the time-stamping authority did not answer ({first[:200]}); check dossier.tsa_url / "
                         "--tsa-url, or leave it empty for an untimestamped (PAdES B-B) signature") from None
    return out.getvalue()


def empty_signature_fields(pdf: bytes) -> list[str]:
    """Names of the signature fields of ``pdf`` that are not yet signed."""
    reader = _reader(pdf)
    return [name for name, value, _ in fields.enumerate_sig_fields(reader, filled_status=False)]


def all_signature_fields(pdf: bytes) -> list[str]:
    reader = _reader(pdf)
    return [name for name, value, _ in fields.enumerate_sig_fields(reader)]


def _reader(pdf: bytes) -> PdfFileReader:
    try:
        return PdfFileReader(BytesIO(pdf), strict=False)
    except (PdfReadError, ValueError) as exc:
        raise InputError(f"not a readable PDF ({exc})") from None


def signing_certificates(pdf: bytes) -> dict[str, tuple[bytes, bytes]]:
    """Field name -> (DER of the signing certificate, DER of its public key), for every signed field of ``pdf``."""
    out = {}
    for sig in _reader(pdf).embedded_signatures:
        out[sig.field_name] = (sig.signer_cert.dump(), sig.signer_cert.public_key.dump())
    return out


def sign_field(pdf: bytes, field_name: str, signer: signers.SimpleSigner, manifest: Manifestation,
               timestamper: TimeStamper | None = None, long_term: LongTerm | None = None) -> bytes:
    """Sign the existing empty field ``field_name`` as an incremental update (approval signature). Refused when
    an existing signature does not hold (an approval must not vouch for a tampered document), when the printed
    name is not the certificate's common name, and when the certificate already signed another field. Validation
    data already in the document (an earlier signature's /DSS revision) is signed by this approval; with
    ``long_term`` this signature's own data is added to the /DSS in a further revision."""
    from certification.signing.verify import integrity_problems

    _check_name(signer, manifest)

    try:
        problems = integrity_problems(pdf)
    except Exception:  # noqa: BLE001 - unreadable structure: reported by empty_signature_fields below
        problems = []
    if problems:
        raise InputError(f"the document's signatures do not hold ({'; '.join(problems)}); refusing to add an approval "
                         "to a changed document: get the author-signed original")
    empty = empty_signature_fields(pdf)
    if field_name not in empty:
        signed = sorted(set(all_signature_fields(pdf)) - set(empty))
        if field_name in signed:
            raise InputError(f"signature field '{field_name}' is already signed; empty fields: {empty or 'none'}")
        raise InputError(f"no signature field '{field_name}'; empty fields: {', '.join(empty) or 'none'}")
    mine = (signer.signing_cert.dump(), signer.signing_cert.public_key.dump())
    for other, (cert_der, key_der) in signing_certificates(pdf).items():
        if cert_der == mine[0] or key_der == mine[1]:
            raise InputError(f"this certificate ({manifest.name}) already signed field '{other}'; one certificate "
                             f"signs one role: sign '{field_name}' with the approver's own key")
    meta = signers.PdfSignatureMetadata(field_name=field_name, subfilter=SigSeedSubFilter.PADES,
                                        md_algorithm="sha256", reason=f"{manifest.meaning} ({manifest.role})",
                                        name=manifest.name)
    pdf_signer = signers.PdfSigner(meta, signer=signer, stamp_style=_stamp_style(), timestamper=timestamper)
    signed = _sign(pdf_signer, _writer(pdf, keep_metadata=True), manifest, existing_fields_only=True)
    return _long_term(signed, long_term, timestamper)


def timestamper_for(tsa_url: str) -> TimeStamper | None:
    """An RFC 3161 client for ``tsa_url`` (http or https), or None for an empty URL (no timestamp, PAdES B-B)."""
    if not tsa_url:
        return None
    if not tsa_url.startswith(("http://", "https://")):
        raise InputError(f"TSA URL {tsa_url!r} must start with http:// or https://")
    from pyhanko.sign.timestamps import HTTPTimeStamper

    return HTTPTimeStamper(tsa_url, https=tsa_url.startswith("https://"))
