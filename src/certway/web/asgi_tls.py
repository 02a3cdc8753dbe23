"""Expose the TLS connection to the ASGI app: ``scope["extensions"]["tls"]``.

uvicorn does not fill the ASGI TLS extension; this subclass of uvicorn's httptools protocol
(its compiled HTTP/1.1 parser) does, once per connection, with the certificates the client
presented (its leaf first, then the rest of the chain it sent, ``presented_chain``: untrusted,
the trust engine uses them as intermediates only), the SNI name and the TLS version.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from certway.services.peer_validation import presented_certificates
from certway.tlsconf.presented import presented_chain

__all__ = ["TlsHttpToolsProtocol", "tls_info"]

_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


def tls_info(ssl_object: ssl.SSLObject | None) -> dict[str, Any] | None:
    """The ASGI TLS extension dict for a connection, or None for plain TCP."""
    if ssl_object is None:
        return None
    peer_der = ssl_object.getpeercert(binary_form=True)
    chain: list[str] = []
    if peer_der:
        cert = x509.load_der_x509_certificate(peer_der)
        chain = [
            c.public_bytes(serialization.Encoding.PEM).decode("ascii")
            for c in (cert, *presented_certificates(presented_chain(ssl_object)))
        ]
    version = ssl_object.version() or ""
    return {
        "server_cert": None,
        "client_cert_chain": chain,
        "client_cert_name": None,
        "client_cert_error": None,
        "tls_version": _TLS_VERSIONS.get(version),
        "cipher_suite": None,
        "server_name": getattr(ssl_object, "server_hostname", None),
    }


class TlsHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` that adds the TLS extension to every request scope of a
    connection."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        info = tls_info(transport.get_extra_info("ssl_object"))
        if info is None:
            return
        app = self.app

        async def with_tls(scope: Any, receive: Any, send: Any) -> None:
            extensions = scope.setdefault("extensions", {})
            extensions["tls"] = info
            await app(scope, receive, send)

        self.app = with_tls
