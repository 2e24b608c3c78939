"""Attached files and metadata of the dossier PDF: writing them deterministically, reading them back.

The evidence JSON and the per-example results are embedded as PDF attached files (EmbeddedFiles name
tree) by pypdf, which copies the input's /ID and adds no dates, so the same inputs give the same bytes.
The evidence hash is also written to the document information dictionary under ``/SmoothcertEvidenceSHA256``.
:mod:`certification.dossier.pdfa` then makes them PDF/A-3 associated files (MIME type, size, the evidence time as
date, /AFRelationship, the catalog's /AF); reading them back here does not depend on that.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from io import BytesIO
from typing import Mapping

from pypdf import PdfReader, PdfWriter

EVIDENCE_ATTACHMENT = "evidence.json"
RECORDS_ATTACHMENT = "certify.jsonl"
EVIDENCE_INFO_KEY = "/SmoothcertEvidenceSHA256"


def attach_files(pdf: bytes, files: Mapping[str, bytes], info: Mapping[str, str]) -> bytes:
    """Return ``pdf`` with ``files`` attached (sorted by name) and ``info`` added to its metadata."""
    writer = PdfWriter(clone_from=PdfReader(BytesIO(pdf)))
    for name in sorted(files):
        writer.add_attachment(name, files[name])
    writer.add_metadata(dict(info))
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


@dataclass(frozen=True)
class RevisionContent:
    """What one revision of a PDF says: attached files, metadata, and page text (also whitespace-free)."""

    attachments: dict[str, bytes]
    info: dict[str, str]
    text: str
    text_compact: str


def read_pdf_content(pdf: bytes) -> RevisionContent:
    """Attachments, metadata and text of a PDF given as bytes (the last revision in them)."""
    reader = PdfReader(BytesIO(pdf))
    attachments = {name: blobs[0] for name, blobs in reader.attachments.items() if blobs}
    info = {str(k): str(v) for k, v in (reader.metadata or {}).items()}
    text = "\n".join(page.extract_text() or "" for page in reader.pages)
    return RevisionContent(attachments=attachments, info=info, text=text, text_compact=re.sub(r"\s+", "", text))
