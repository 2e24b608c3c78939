"""Long-term validation data (PAdES B-LT): embedding it after a signature, and telling such a revision from an edit.

PAdES B-LT is B-T plus the validation data a verifier needs years later without asking the CA: the certificates of
the signer's and the TSA's chains and a CRL or OCSP response for each certificate below a root, in the document
security store (/DSS, with a /VRI entry per signature). The store cannot be covered by the signature it serves, so
it is written as an incremental revision *after* the signature. That revision is signed by nobody; verify accepts it
only when :func:`validation_data_problem` finds nothing in it but validation data:

- it writes the /DSS dictionary or the catalog: the catalog may gain or change its /DSS entry, every other entry
  stays exactly as before;
- the /DSS is an indirect dictionary holding only /Type, /Certs, /OCSPs, /CRLs and /VRI, either new or the one the
  catalog named before;
- every other object the revision writes is new (its number at or above the previous revision's /Size, so it
  cannot fill a reference the signed document left dangling), no object is freed, and the trailer's /Root, /Info
  and /Encrypt are the previous revision's.

New objects can then be reached only through the /DSS, so nothing a reader sees (pages, annotations, form values,
document information, XMP metadata) can change. The store's own content is not authenticated by the PDF: a damaged
CRL or OCSP response only costs the B-LT level (verify reports B-T), since each carries its issuer's signature.

The document information dictionary (/ModDate included) and the XMP metadata are not touched: pyHanko's own
``embed_validation_info`` writes the store with a writer that sets /ModDate, so :func:`embed_validation_data` writes
it itself with :class:`MetadataKeepingWriter`. Validation data is fetched from the URLs in the certificates (CRL
distribution points, OCSP in the authority information access) only when a caller asks for it; nothing here trusts
a root found in the file: the roots used to build paths while collecting data decide nothing, verify decides trust
against its own roots.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from io import BytesIO
from typing import Any, Iterable, Sequence

from asn1crypto import x509 as asn1_x509
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.general import extract_certificate_info
from pyhanko.sign.validation.dss import DocumentSecurityStore, collect_validation_info
from pyhanko.sign.validation.generic_cms import extract_tst_data_iter
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import PathBuildingError, PathValidationError, RevokedError

from certification.errors import InputError

DSS_KEYS = {"/Type", "/Certs", "/OCSPs", "/CRLs", "/VRI"}
MODES = ("auto", "off", "required")
FETCH_TIMEOUT_S = 10  # per CRL/OCSP request, seconds


class MetadataKeepingWriter(IncrementalPdfFileWriter):
    """An incremental writer that leaves the document information dictionary and the XMP metadata as they are:
    pyHanko's writer sets /ModDate (and rewrites XMP) on every update, which verify flags as a visible change to
    what the author signed."""

    def _update_meta(self) -> None:
        return None


@dataclass(frozen=True)
class EmbeddedValidationData:
    """What one DSS revision added for one signature: the field, certificates, CRLs and OCSP responses collected
    (before de-duplication against what the store already held), and whether a revision was written."""

    field_name: str
    certificates: int
    crls: int
    ocsps: int
    written: bool

    def line(self) -> str:
        return (f"validation data for '{self.field_name}': {self.certificates} certificate(s), {self.crls} CRL(s), "
                f"{self.ocsps} OCSP response(s){'' if self.written else ' (already in the document)'}")


class ValidationDataUnavailable(InputError):
    """Validation data could not be collected (no CRL/OCSP URL in a certificate, responder unreachable, unknown
    issuer): the signature stays B-T."""


def _signed_data_certs(signed_data: Any) -> tuple[Any, list[asn1_x509.Certificate]]:
    info = extract_certificate_info(signed_data)
    return info.signer_cert, list(info.other_certs)


def _self_signed(certs: Iterable[asn1_x509.Certificate]) -> list[asn1_x509.Certificate]:
    return [c for c in certs if c.self_signed in ("maybe", "yes")]


def collect_validation_data(embedded_sig: Any, trust_roots: Sequence[asn1_x509.Certificate] = (),
                            fetch: bool = True, crls: Sequence[bytes] = (), ocsps: Sequence[bytes] = ()) \
        -> tuple[ValidationContext, list[Any]]:
    """Build the signer's and the signature timestamp's certificate paths and obtain revocation information for
    every certificate on them below the root (revocation mode "require"), fetching from the certificates' URLs when
    ``fetch``, else only from ``crls``/``ocsps`` (DER). Returns the context (holding what was obtained) and the paths.

    Path building uses ``trust_roots`` and the self-signed certificates the signature and its timestamp carry; that
    decides no trust. Raises :class:`ValidationDataUnavailable` (one line, what to fix) when data is missing and
    :class:`InputError` when a certificate is revoked."""
    carried = [choice.chosen for choice in embedded_sig.signed_data["certificates"] or []]
    for signed in (False, True):
        for tst in extract_tst_data_iter(embedded_sig.signer_info, signed=signed):
            carried.extend(choice.chosen for choice in tst["certificates"] or [])
    roots = list(trust_roots) + [c for c in _self_signed(carried) if c.dump() not in {r.dump() for r in trust_roots}]
    from pyhanko_certvalidator.fetchers.requests_fetchers import RequestsFetcherBackend

    context = ValidationContext(trust_roots=roots, other_certs=carried, allow_fetching=fetch,
                                crls=list(crls), ocsps=list(ocsps), revocation_mode="require",
                                fetcher_backend=RequestsFetcherBackend(per_request_timeout=FETCH_TIMEOUT_S))
    try:
        paths = asyncio.run(collect_validation_info(embedded_sig, context))
    except RevokedError as exc:
        raise InputError(f"a certificate of signature '{embedded_sig.field_name}' is revoked ({_first_line(exc)}); "
                         "sign with a valid key") from None
    except (PathBuildingError, PathValidationError) as exc:
        raise ValidationDataUnavailable(
            f"no validation data for signature '{embedded_sig.field_name}' ({_first_line(exc)}); the CA must publish a "
            "CRL or OCSP URL in its certificates, reachable at signing time (or set dossier.validation_data: off)") from None
    if not (context.crls or context.ocsps):
        raise ValidationDataUnavailable(f"no CRL or OCSP response obtained for signature '{embedded_sig.field_name}'")
    return context, paths


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def embed_validation_data(pdf: bytes, trust_roots: Sequence[asn1_x509.Certificate] = (), fetch: bool = True,
                          crls: Sequence[bytes] = (), ocsps: Sequence[bytes] = ()) -> tuple[bytes, EmbeddedValidationData]:
    """Append one revision to ``pdf`` that adds (or extends) its /DSS with the validation data of its *last*
    signature and a /VRI entry for it; the document information and XMP metadata stay as they are. See
    :func:`collect_validation_data` for where the data comes from and the errors."""
    reader = PdfFileReader(BytesIO(pdf), strict=False)
    signatures = reader.embedded_signatures
    if not signatures:
        raise InputError("no signature to embed validation data for")
    sig = signatures[-1]
    context, paths = collect_validation_data(sig, trust_roots, fetch, crls, ocsps)
    writer = MetadataKeepingWriter(BytesIO(pdf), strict=False)
    store = DocumentSecurityStore.supply_dss_in_writer(
        writer, sig.pkcs7_content.hex().encode("ascii"), paths=paths, validation_context=context, embed_roots=False)
    out = BytesIO()
    written = store.modified
    if written:
        writer.write(out)
    certificates = len({c.dump() for path in paths for c in list(path)[1:]})
    return (out.getvalue() if written else pdf,
            EmbeddedValidationData(sig.field_name, certificates, len(context.crls), len(context.ocsps), written))


def _canonical(obj: Any) -> Any:
    """A comparable form of a PDF object as written (references by number, not resolved)."""
    if isinstance(obj, generic.IndirectObject):
        return ("ref", obj.idnum, obj.generation)
    if isinstance(obj, generic.StreamObject):
        return ("stream", tuple(sorted((str(k), _canonical(v)) for k, v in obj.items())), bytes(obj.encoded_data))
    if isinstance(obj, generic.DictionaryObject):
        return ("dict", tuple(sorted((str(k), _canonical(v)) for k, v in obj.items())))
    if isinstance(obj, generic.ArrayObject):
        return ("array", tuple(_canonical(v) for v in obj))
    return (type(obj).__name__, str(obj))


def _raw_entries(mapping: generic.DictionaryObject) -> dict[str, Any]:
    return {str(k): _canonical(mapping.raw_get(k)) for k in mapping}


def _describe(resolver: Any, ref: generic.Reference) -> str:
    """``object 12 0 (/Page)``, ``object 3 0 (document information)``: what a changed object is, for a message."""
    info = resolver.trailer_view.raw_get("/Info") if "/Info" in resolver.trailer_view else None
    kind = None
    if isinstance(info, generic.IndirectObject) and (info.idnum, info.generation) == (ref.idnum, ref.generation):
        kind = "document information"
    else:
        try:
            obj = resolver(ref)
            kind = obj.get("/Type") if isinstance(obj, generic.DictionaryObject) else None
        except Exception:  # noqa: BLE001 - the description is best effort
            kind = None
    return f"object {ref.idnum} {ref.generation}" + (f" ({kind})" if kind else "")


def validation_data_problem(reader: PdfFileReader, revision: int) -> str | None:
    """None when revision ``revision`` (> 0) of the file holds validation data only (the rules in the module
    docstring); else one line saying what else it changes."""
    before, after = reader.get_historical_resolver(revision - 1), reader.get_historical_resolver(revision)
    old_trailer, new_trailer = before.trailer_view, after.trailer_view
    for key in ("/Root", "/Info", "/Encrypt"):
        old, new = old_trailer.raw_get(key) if key in old_trailer else None, \
            new_trailer.raw_get(key) if key in new_trailer else None
        if _canonical(old) != _canonical(new):
            return f"it changes the trailer's {key}"
    freed = reader.xrefs.refs_freed_in_revision(revision)
    if freed:
        return f"it deletes {', '.join(_describe(before, r) for r in sorted(freed, key=lambda r: r.idnum))}"
    root_ref = new_trailer.raw_get("/Root").reference
    old_root, new_root = before(root_ref), after(root_ref)
    old_entries, new_entries = _raw_entries(old_root), _raw_entries(new_root)
    changed = sorted(k for k in (set(old_entries) | set(new_entries)) - {"/DSS"} if old_entries.get(k) != new_entries.get(k))
    if changed:
        return f"it changes the catalog's {', '.join(changed)}"
    if "/DSS" not in new_root:
        return "it adds no validation data (no /DSS)"
    raw = new_root.raw_get("/DSS")
    if not isinstance(raw, generic.IndirectObject):
        return "its /DSS is not an indirect object"
    dss_ref = raw.reference
    extra = sorted(set(map(str, after(dss_ref))) - DSS_KEYS)
    if extra:
        return f"its /DSS holds {', '.join(extra)} besides validation data"
    size = reader.xrefs.get_xref_container_info(revision - 1).size
    old_dss = _canonical(old_root.raw_get("/DSS")) if "/DSS" in old_root else None
    if dss_ref.idnum < size and old_dss != ("ref", dss_ref.idnum, dss_ref.generation):
        return f"its /DSS reuses {_describe(before, dss_ref)}, which was not the document security store"
    allowed = {(root_ref.idnum, root_ref.generation), (dss_ref.idnum, dss_ref.generation)}
    touched = sorted(reader.xrefs.explicit_refs_in_revision(revision), key=lambda r: r.idnum)
    if not {(r.idnum, r.generation) for r in touched} & allowed:
        return "it adds no validation data (the /DSS is not written)"
    # any other object it writes must be new: numbered at or above the previous /Size
    others = [r for r in touched if (r.idnum, r.generation) not in allowed and r.idnum < size]
    if others:
        return f"it changes {', '.join(_describe(before, r) for r in others[:5])}" + \
            (f" and {len(others) - 5} more" if len(others) > 5 else "")
    return None


def dss_validation_context(reader: PdfFileReader, roots: Sequence[asn1_x509.Certificate], moment: Any) -> ValidationContext | None:
    """A no-network context holding only the document security store's certificates, CRLs and OCSP responses, that
    requires revocation information for every certificate below ``roots``, at ``moment`` (None: no /DSS)."""
    if "/DSS" not in reader.root:
        return None
    store = DocumentSecurityStore.read_dss(reader)
    return store.as_validation_context({"trust_roots": list(roots), "allow_fetching": False,
                                        "revocation_mode": "require", "moment": moment, "retroactive_revinfo": True})


def chain_covered(context: ValidationContext, signed_data: Any) -> str | None:
    """None when the signer of ``signed_data`` (a CMS SignedData) validates with revocation information from
    ``context`` for every certificate below the root; else why not (one line)."""
    cert, others = _signed_data_certs(signed_data)
    validator = CertificateValidator(cert, intermediate_certs=others, validation_context=context)
    try:
        asyncio.run(validator.async_validate_usage(key_usage=set()))
    except (PathBuildingError, PathValidationError) as exc:
        return _first_line(exc)
    return None
