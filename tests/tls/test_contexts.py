"""Deferred client-certificate verification (ctypes into libssl) and its fallback.

With ``defer_client_verification`` the listener's contexts accept any client certificate in
the handshake so that certway's own validation can refuse it with a reason. That reaches into
CPython's ``SSLContext`` with ctypes, guarded by sanity checks; when a check fails (or libssl
cannot be found) OpenSSL verifies the client certificate as usual and a warning says so.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certway.services.identities import ActiveIdentity
from certway.tls.contexts import ClientCertMode, ServerTls, TlsState, defer_verification
from certway.tlsconf import openssl as tls_openssl

from conftest import key_pem
from pkitools import Pki

FQDN = "vcs.example.com"


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki("TLS", index=700)


@pytest.fixture(scope="module")
def stranger() -> Pki:
    return Pki("Stranger", index=710)


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def server_tls(pki: Pki, *, defer: bool) -> ServerTls:
    identity = ActiveIdentity(
        "server", "", 1, pki.leaf(FQDN), (pki.intermediate,), key_id="test-key"
    )
    return ServerTls(
        defer_client_verification=defer,
        state=lambda: TlsState((1,), ClientCertMode.REQUEST, (pki.root,)),
        identity_for=lambda _name: identity,
        key_for=lambda _identity: pki.leaf_key,
    )


def client_context(server_pki: Pki, client_pki: Pki, tmp_path: Path) -> ssl.SSLContext:
    """Trusts the server's root and presents a client certificate from ``client_pki``."""
    context = ssl.create_default_context(cadata=_pem(server_pki.root).decode("ascii"))
    chain = tmp_path / f"{client_pki.root.serial_number}.pem"
    chain.write_bytes(
        _pem(client_pki.leaf("alice.example.com", profile="client"), client_pki.intermediate)
        + key_pem(client_pki.leaf_key)
    )
    context.load_cert_chain(chain)
    return context


def handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> bytes | None:
    """A TLS handshake in memory; the client certificate the server received (DER)."""
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    client_end = client.wrap_bio(to_client, to_server, server_hostname=FQDN)
    server_end = server.wrap_bio(to_server, to_client, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(10):
        for side, end in (("client", client_end), ("server", server_end)):
            if not done[side]:
                try:
                    end.do_handshake()
                    done[side] = True
                except ssl.SSLWantReadError:
                    pass
        if all(done.values()):
            return server_end.getpeercert(binary_form=True)
    raise AssertionError("the handshake did not finish")


def test_deferred_verification_accepts_an_untrusted_client_certificate(
    pki: Pki, stranger: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The handshake lets it through, so that the application can say why it is refused."""
    caplog.set_level(logging.WARNING, "certway.tls")
    server = server_tls(pki, defer=True).server_context()
    der = handshake(server, client_context(pki, stranger, tmp_path))
    assert der is not None
    assert x509.load_der_x509_certificate(der).issuer == stranger.intermediate.subject
    assert "event=tls-verify-fallback" not in caplog.text


def test_defer_verification_on_a_plain_context() -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.verify_mode = ssl.CERT_OPTIONAL
    assert defer_verification(context) is True


class _LyingLib:
    """libssl as found, except one function, and a record of callbacks installed."""

    def __init__(self, lib: Any, **overrides: Callable[..., int]) -> None:
        self._lib = lib
        self._overrides = overrides
        self.installed = 0

    def __getattr__(self, name: str) -> Any:
        if name in self._overrides:
            return self._overrides[name]
        return getattr(self._lib, name)

    def SSL_CTX_set_cert_verify_callback(self, *args: Any) -> None:
        self.installed += 1
        self._lib.SSL_CTX_set_cert_verify_callback(*args)


@pytest.mark.parametrize("lie", ["SSL_CTX_get_options", "SSL_CTX_get_verify_mode"])
def test_a_pointer_that_does_not_read_back_as_the_context_is_refused(
    lie: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pointer read from the Python object must give back the context's own options and
    verify mode; otherwise nothing is written through it."""
    found = tls_openssl._openssl()
    if found is None:
        pytest.skip("libssl's functions are not reachable from _ssl on this Python")
    lib, accept_all = found
    real = getattr(lib, lie)
    lying = _LyingLib(lib, **{lie: lambda address: real(address) ^ 1})
    monkeypatch.setattr(tls_openssl, "_openssl", lambda: (lying, accept_all))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.verify_mode = ssl.CERT_OPTIONAL
    assert defer_verification(context) is False
    assert lying.installed == 0


def test_fallback_to_openssl_verification_is_logged_and_still_checks_clients(
    pki: Pki,
    stranger: Pki,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(tls_openssl, "_openssl", lambda: None)  # as if libssl were not found
    caplog.set_level(logging.WARNING, "certway.tls")
    server = server_tls(pki, defer=True).server_context()
    assert "event=tls-verify-fallback" in caplog.text
    # OpenSSL verifies now: a certificate from a CA the listener does not trust fails the
    # handshake ...
    with pytest.raises(ssl.SSLError, match="certificate"):
        handshake(server, client_context(pki, stranger, tmp_path))
    # ... and a trusted one passes it.
    der = handshake(server, client_context(pki, pki, tmp_path))
    assert der is not None
    assert x509.load_der_x509_certificate(der).issuer == pki.intermediate.subject
