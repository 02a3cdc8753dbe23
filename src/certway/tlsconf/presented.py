"""The certificates a TLS peer presented after its own: untrusted intermediates for path
building, never trust anchors.

Python 3.11's ``ssl`` documents only the peer's leaf (``getpeercert(binary_form=True)``). The
chain the peer sent in its handshake is what ``SSLSocket.get_unverified_chain()`` returns from
Python 3.13 on. Its C implementation, ``_ssl._SSLSocket.get_unverified_chain`` (OpenSSL's
``SSL_get_peer_cert_chain``, with the leaf put first on the server side, where OpenSSL leaves it
out), is in ``_ssl`` since Python 3.10: on 3.10 to 3.12 it is reached through the wrapper's
``_sslobj``, the object the 3.13 method calls. That needs no ``ctypes``: no address is read, no
OpenSSL function is called on a pointer we found ourselves, and OpenSSL's references are
counted by CPython.

Whatever goes wrong (not a TLS connection, no handshake yet, a Python without the method) gives
no intermediates, as before: the leaf alone is judged, with the trusted list as the pool of
intermediates. Nothing here raises.
"""

from __future__ import annotations

import ssl
from typing import Any

__all__ = ["MAX_PRESENTED", "presented_chain"]

MAX_PRESENTED = 10
"""At most this many certificates after the leaf are taken (a real chain has one to three)."""

_SSL_MODULE: Any = getattr(ssl, "_ssl", None)  # the C module ``ssl`` wraps
_DER = getattr(_SSL_MODULE, "ENCODING_DER", None)
_INNER = getattr(_SSL_MODULE, "_SSLSocket", None)


def presented_chain(connection: object) -> list[bytes]:
    """The certificates (DER) the peer of ``connection`` (an ``ssl.SSLSocket`` or
    ``ssl.SSLObject`` after its handshake) presented after its leaf, in the order it sent
    them, without the leaf and without repeats; at most ``MAX_PRESENTED``. [] when it sent
    none or they cannot be read. They are untrusted: give them to path building as
    intermediates, never as anchors."""
    if not isinstance(connection, ssl.SSLSocket | ssl.SSLObject):
        return []
    try:
        leaf = connection.getpeercert(binary_form=True)
        chain = _unverified_chain(connection) if leaf else []
    except Exception:  # any failure means "the leaf alone", as before
        return []
    seen = {leaf}
    extra: list[bytes] = []
    for der in chain:
        if isinstance(der, bytes) and der not in seen:
            seen.add(der)
            extra.append(der)
            if len(extra) == MAX_PRESENTED:
                break
    return extra


def _unverified_chain(connection: ssl.SSLSocket | ssl.SSLObject) -> list[Any]:
    public = getattr(connection, "get_unverified_chain", None)
    if public is not None:  # Python 3.13+: DER bytes, leaf first
        return list(public() or ())[: MAX_PRESENTED + 1]
    inner = getattr(connection, "_sslobj", None)
    if _INNER is None or _DER is None or not isinstance(inner, _INNER):
        return []
    certificates = inner.get_unverified_chain() or ()  # _ssl.Certificate objects, leaf first
    return [c.public_bytes(_DER) for c in list(certificates)[: MAX_PRESENTED + 1]]
