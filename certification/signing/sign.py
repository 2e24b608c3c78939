"""PAdES signatures on the dossier (pyHanko): the pipeline's author signature and later approvals.

The pipeline signs first with a *certification* signature (DocMDP level FILL_FORMS), in the same
revision creating empty visible signature fields for the human approvals. Approvals later fill those
fields as incremental updates, which FILL_FORMS allows, so every signature stays valid. Each visible
signature shows the signer's printed name, role, meaning and the UTC signing time (21 CFR 11.50).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from io import BytesIO
from typing import Sequence

from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.text import TextBoxStyle
from pyhanko.pdf_utils.misc import PdfReadError
from pyhanko.sign import fields, signers
from pyhanko.sign.fields import MDPPerm, SigFieldSpec, SigSeedSubFilter
from pyhanko.stamp import TextStampStyle

from certification.errors import InputError
from certification.signing.keys import common_name, signer_certificate
from certification.signing.layout import AUTHOR_FIELD, signature_boxes

STAMP_TEXT = "Signed by: %(name)s\nRole: %(role)s\nMeaning: %(meaning)s\nUTC time: %(ts)s"
UTC_FORMAT = "%Y-%m-%d %H:%M:%S UTC"


@dataclass(frozen=True)
class Manifestation:
    """What a signature means (21 CFR 11.50): printed name, role and meaning. The time is added at signing."""

    name: str
    role: str
    meaning: str


def _stamp_style() -> TextStampStyle:
    return TextStampStyle(stamp_text=STAMP_TEXT, text_box_style=TextBoxStyle(font_size=8),
                          border_width=1, timestamp_format=UTC_FORMAT)


def _text_params(manifest: Manifestation, when: dt.datetime) -> dict[str, str]:
    return {"name": manifest.name, "role": manifest.role, "meaning": manifest.meaning,
            "ts": when.astimezone(dt.timezone.utc).strftime(UTC_FORMAT)}


def _writer(pdf: bytes) -> IncrementalPdfFileWriter:
    try:
        return IncrementalPdfFileWriter(BytesIO(pdf), strict=False)
    except (PdfReadError, ValueError) as exc:
        raise InputError(f"not a readable PDF ({exc})") from None


def default_manifestation(signer: signers.SimpleSigner, role: str, meaning: str) -> Manifestation:
    """A manifestation whose printed name is the common name of the signer's certificate."""
    return Manifestation(name=common_name(signer_certificate(signer)), role=role, meaning=meaning)


def sign_as_author(pdf: bytes, signer: signers.SimpleSigner, manifest: Manifestation,
                   approval_fields: Sequence[str]) -> bytes:
    """Certify ``pdf`` (PAdES, SHA-256, DocMDP FILL_FORMS) and add empty approval fields; return the bytes.

    The fields sit on the last page at :func:`certification.signing.layout.signature_boxes`.
    """
    boxes = signature_boxes(list(approval_fields))
    writer = _writer(pdf)
    for name in approval_fields:
        fields.append_signature_field(writer, SigFieldSpec(sig_field_name=name, on_page=-1, box=boxes[name]))
    meta = signers.PdfSignatureMetadata(
        field_name=AUTHOR_FIELD, certify=True, docmdp_permissions=MDPPerm.FILL_FORMS,
        subfilter=SigSeedSubFilter.PADES, md_algorithm="sha256",
        reason=f"{manifest.meaning} ({manifest.role})", name=manifest.name,
    )
    pdf_signer = signers.PdfSigner(meta, signer=signer, stamp_style=_stamp_style(),
                                   new_field_spec=SigFieldSpec(sig_field_name=AUTHOR_FIELD, on_page=-1,
                                                               box=boxes[AUTHOR_FIELD]))
    out = BytesIO()
    pdf_signer.sign_pdf(writer, output=out,
                        appearance_text_params=_text_params(manifest, dt.datetime.now(dt.timezone.utc)))
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


def sign_field(pdf: bytes, field_name: str, signer: signers.SimpleSigner, manifest: Manifestation) -> bytes:
    """Sign the existing empty field ``field_name`` as an incremental update (approval signature). Refused when
    an existing signature does not hold (an approval must not vouch for a tampered document)."""
    from certification.signing.verify import integrity_problems

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
    meta = signers.PdfSignatureMetadata(field_name=field_name, subfilter=SigSeedSubFilter.PADES,
                                        md_algorithm="sha256", reason=f"{manifest.meaning} ({manifest.role})",
                                        name=manifest.name)
    pdf_signer = signers.PdfSigner(meta, signer=signer, stamp_style=_stamp_style())
    out = BytesIO()
    pdf_signer.sign_pdf(_writer(pdf), output=out, existing_fields_only=True,
                        appearance_text_params=_text_params(manifest, dt.datetime.now(dt.timezone.utc)))
    return out.getvalue()
