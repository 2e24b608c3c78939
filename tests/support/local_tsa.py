"""A real RFC 3161 time-stamping authority on the loopback: an HTTP server answering with pyHanko's DummyTimeStamper
(a genuine CMS timestamp token signed by a TSA certificate from a test CA)."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

from asn1crypto import keys, tsp
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import serialization
from pyhanko.sign.timestamps import DummyTimeStamper
from pyhanko_certvalidator.registry import SimpleCertificateStore


@contextmanager
def local_tsa(tsa_key: object, tsa_cert: object, ca_cert: object) -> Iterator[str]:
    """Serve timestamps on http://127.0.0.1:<free port>/ while the context is open; yields the URL."""
    cert = asn1_x509.Certificate.load(tsa_cert.public_bytes(serialization.Encoding.DER))  # type: ignore[attr-defined]
    ca = asn1_x509.Certificate.load(ca_cert.public_bytes(serialization.Encoding.DER))  # type: ignore[attr-defined]
    key = keys.PrivateKeyInfo.load(tsa_key.private_bytes(serialization.Encoding.DER,  # type: ignore[attr-defined]
                                                         serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    stamper = DummyTimeStamper(tsa_cert=cert, tsa_key=key, certs_to_embed=SimpleCertificateStore.from_certs([ca]))
    served: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            answer = stamper.request_tsa_response(tsp.TimeStampReq.load(body)).dump()
            served.append(len(answer))
            self.send_response(200)
            self.send_header("Content-Type", "application/timestamp-reply")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
