"""Revocation information on the loopback for a test CA: a CRL at ``<url>crl`` and an OCSP responder at ``<url>ocsp``.

Certificates issued with :meth:`RevocationService.extensions` name these URLs (CRL distribution point, OCSP in the
authority information access), so signing fetches validation data exactly as it would from a production CA. The CA
signs both the CRL and the OCSP responses itself (RFC 5280 / RFC 6960 allow it). ``revoked`` holds serial numbers to
report as revoked; it may change while the service runs.
"""
from __future__ import annotations

import datetime as dt
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID


@dataclass
class RevocationService:
    """The running service: its base URL, the CA it speaks for, and what it has served."""

    url: str
    ca_key: object
    ca_cert: x509.Certificate
    revoked: set[int] = field(default_factory=set)
    served: list[str] = field(default_factory=list)
    certificates: dict[int, x509.Certificate] = field(default_factory=dict)

    def register(self, cert: x509.Certificate) -> None:
        """Let the OCSP responder answer for ``cert`` (it answers "unauthorized" for certificates it does not know)."""
        self.certificates[cert.serial_number] = cert

    def extensions(self, kind: str) -> list[x509.ExtensionType]:
        """Extensions pointing a certificate at this service: ``kind`` is "crl" or "ocsp"."""
        if kind == "crl":
            return [x509.CRLDistributionPoints([x509.DistributionPoint(
                full_name=[x509.UniformResourceIdentifier(self.url + "crl")], relative_name=None, reasons=None,
                crl_issuer=None)])]
        return [x509.AuthorityInformationAccess([x509.AccessDescription(
            AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(self.url + "ocsp"))])]

    def crl(self) -> bytes:
        now = dt.datetime.now(dt.timezone.utc)
        builder = (x509.CertificateRevocationListBuilder().issuer_name(self.ca_cert.subject)
                   .last_update(now - dt.timedelta(minutes=5)).next_update(now + dt.timedelta(days=1))
                   .add_extension(x509.CRLNumber(len(self.served) + 1), critical=False))
        for serial in sorted(self.revoked):
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial)
                .revocation_date(now - dt.timedelta(minutes=1)).build())
        return builder.sign(self.ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)  # type: ignore[arg-type]

    def ocsp_response(self, body: bytes) -> bytes:
        request = ocsp.load_der_ocsp_request(body)
        cert = self.certificates.get(request.serial_number)
        if cert is None:
            return ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED).public_bytes(
                serialization.Encoding.DER)
        now = dt.datetime.now(dt.timezone.utc)
        revoked = request.serial_number in self.revoked
        builder = ocsp.OCSPResponseBuilder().add_response(
            cert=cert, issuer=self.ca_cert, algorithm=hashes.SHA1(),
            cert_status=ocsp.OCSPCertStatus.REVOKED if revoked else ocsp.OCSPCertStatus.GOOD,
            this_update=now - dt.timedelta(minutes=5), next_update=now + dt.timedelta(days=1),
            revocation_time=now - dt.timedelta(minutes=1) if revoked else None, revocation_reason=None,
        ).responder_id(ocsp.OCSPResponderEncoding.HASH, self.ca_cert)
        for ext in request.extensions:
            if isinstance(ext.value, x509.OCSPNonce):
                builder = builder.add_extension(ext.value, critical=False)
        return builder.sign(self.ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)  # type: ignore[arg-type]


@contextmanager
def local_revocation(ca_key: object, ca_cert: x509.Certificate) -> Iterator[RevocationService]:
    """Serve the CA's CRL and OCSP on http://127.0.0.1:<free port>/ while the context is open."""
    holder: list[RevocationService] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, body: bytes, content_type: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            service = holder[0]
            if self.path.rstrip("/").endswith("crl"):
                service.served.append("crl")
                self._answer(service.crl(), "application/pkix-crl")
            else:
                self.send_error(404)

        def do_POST(self) -> None:  # noqa: N802
            service = holder[0]
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            service.served.append("ocsp")
            self._answer(service.ocsp_response(body), "application/ocsp-response")

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder.append(RevocationService(f"http://127.0.0.1:{server.server_address[1]}/", ca_key, ca_cert))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder[0]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
