"""Build the unsigned dossier from the pipeline outputs (or from imported external results): evidence, filled
templates, figures, PDF/A-3b file."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from certification.dossier.evidence import EvidenceInputs, collect_evidence
from certification.dossier.external import (ExternalInputs, collect_external_evidence, external_records_name,
                                            read_external_records)
from certification.dossier.external_render import render_external_dossier
from certification.dossier.pdfa import ArchivalMetadata, check_language, make_archival, parse_evidence_time
from certification.dossier.render import evidence_bytes, render_dossier
from certification.dossier.templates import approval_roles, document_metadata, load_external_texts, load_texts, read_raw
from certification.errors import InputError
from certification.records import parse_certify_records


@dataclass(frozen=True)
class SignerIdentity:
    """What the document states about the key that will sign it (known before rendering)."""

    development_key: bool
    signer: str
    trust_anchor_sha256: str


@dataclass(frozen=True)
class BuiltDossier:
    evidence: dict[str, Any]
    evidence_json: bytes
    unsigned_pdf: bytes
    roles: dict[str, dict[str, str]]


def _images(test_path: Path, indices: Sequence[int]) -> dict[int, np.ndarray]:
    with np.load(test_path) as npz:
        images = npz["images"]
        out = {}
        for i in indices:
            image = np.asarray(images[i])
            if image.dtype != np.uint8:  # float32 CHW in [0,1]
                image = np.clip(np.rint(np.transpose(image, (1, 2, 0)) * 255), 0, 255).astype(np.uint8)
            out[int(i)] = image
        return out


DEFAULT_LANGUAGE = "en-GB"  # document.yaml 'language' overrides it


def archival_metadata(evidence: Mapping[str, Any], language: str) -> ArchivalMetadata:
    """PDF/A identification of the dossier: its title, manufacturer, language and the evidence time as creation date."""
    doc = evidence["document"]
    return ArchivalMetadata(title=f"{doc['document_id']} {doc['title']}", author=doc["manufacturer"],
                            subject="Certified robustness dossier", language=check_language(language),
                            created=parse_evidence_time(doc["time_utc"]))


def build_dossier(inputs: EvidenceInputs, params: Mapping[str, Any], templates: str | os.PathLike[str],
                  approval_fields: Sequence[str], signer: SignerIdentity) -> BuiltDossier:
    """Evidence dict, its JSON bytes and the deterministic unsigned PDF/A-3b file for the outputs named by ``inputs``."""
    raw = read_raw(templates)
    roles = approval_roles(raw, list(approval_fields))
    signing = {"development_key": signer.development_key, "signer": signer.signer,
               "trust_anchor_sha256": signer.trust_anchor_sha256, "approvals": roles}
    evidence = collect_evidence(inputs, params, document_metadata(raw), signing)
    texts = load_texts(templates, evidence)
    records_bytes = inputs.certify_records.read_bytes()
    records = parse_certify_records(records_bytes, str(inputs.certify_records))
    try:
        images = _images(inputs.test_split, [row["index"] for row in evidence["least_robust"]])
    except (OSError, KeyError, IndexError, ValueError) as exc:
        raise InputError(f"{inputs.test_split}: cannot read the least robust images ({exc})") from None
    pdf = make_archival(render_dossier(evidence, texts, records, records_bytes, images),
                        archival_metadata(evidence, raw["document.yaml"].get("language", DEFAULT_LANGUAGE)))
    return BuiltDossier(evidence=evidence, evidence_json=evidence_bytes(evidence), unsigned_pdf=pdf, roles=roles)


def build_external_dossier(inputs: ExternalInputs, params: Mapping[str, Any] | None,
                           templates: str | os.PathLike[str], approval_fields: Sequence[str],
                           signer: SignerIdentity) -> BuiltDossier:
    """The unsigned PDF/A-3b dossier of an externally certified model: the evidence is the imported results of
    ``inputs`` (:mod:`certification.dossier.external`); words from the templates' document.yaml and external.yaml."""
    raw = read_raw(templates)
    roles = approval_roles(raw, list(approval_fields))
    signing = {"development_key": signer.development_key, "signer": signer.signer,
               "trust_anchor_sha256": signer.trust_anchor_sha256, "approvals": roles}
    imported = read_external_records(inputs)
    evidence = collect_external_evidence(inputs, imported, document_metadata(raw), signing, params)
    texts = load_external_texts(templates, evidence)
    extra = external_records_name(imported, inputs.results)
    pdf = render_external_dossier(evidence, texts, imported.records, imported.jsonl,
                                  {extra: imported.original} if extra else {})
    pdf = make_archival(pdf, archival_metadata(evidence, raw["document.yaml"].get("language", DEFAULT_LANGUAGE)))
    return BuiltDossier(evidence=evidence, evidence_json=evidence_bytes(evidence), unsigned_pdf=pdf, roles=roles)
