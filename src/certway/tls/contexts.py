"""Server TLS contexts built from the node's state, with SNI (domain certificates) and hot reload.

Every handshake goes through ``sni_callback``, which hands OpenSSL the context of the name the
client asked for (a domain certificate, or the server certificate). Contexts are rebuilt when
the node's change counters move, so a new certificate, trusted CA or security setting is used
by the next handshake — no restart, and established connections keep theirs.

Python's ``ssl`` loads keys only from files: the PEM goes to an anonymous in-memory file
(``memfd_create``) that is read once and closed; it never touches the disk.
"""

from __future__ import annotations

import contextlib
import logging
import os
import ssl
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certway.pki.keys import PrivateKey
from certway.services.identities import ActiveIdentity
from certway.tlsconf.openssl import set_accept_all_verify
from certway.tlsconf.policy import INTERMEDIATE, TlsProfile

__all__ = [
    "ClientCertMode",
    "ServerTls",
    "TlsState",
    "build_context",
    "client_context",
    "defer_verification",
    "load_identity",
]

log = logging.getLogger("certway.tls")

# SNI names remembered per state (bounds memory against clients sending random names; past it
# a name is looked up on every handshake, as before).
_NAME_CACHE_LIMIT = 65536


class ClientCertMode(StrEnum):
    NONE = "none"  # do not ask for a client certificate
    REQUEST = "request"  # ask; the application decides what a missing/bad one means
    REQUIRE = "require"  # the handshake fails without one


_VERIFY = {
    ClientCertMode.NONE: ssl.CERT_NONE,
    ClientCertMode.REQUEST: ssl.CERT_OPTIONAL,
    ClientCertMode.REQUIRE: ssl.CERT_REQUIRED,
}


# -- client certificates checked by certway, not OpenSSL -----------------------------------------
def defer_verification(context: ssl.SSLContext) -> bool:
    """Make OpenSSL accept any client certificate on ``context`` so that certway's own
    validation decides (and can explain). False when it cannot be done safely."""
    return set_accept_all_verify(context)


def _pem(certs: Sequence[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def load_identity(
    context: ssl.SSLContext, certs: Sequence[x509.Certificate], key: PrivateKey
) -> None:
    """Load a certificate chain and its key into ``context`` through an in-memory file."""
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.memfd_create("certway-tls", os.MFD_CLOEXEC)
    try:
        os.write(fd, _pem(certs) + key_pem)
        context.load_cert_chain(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def build_context(
    identity: ActiveIdentity,
    key: PrivateKey,
    *,
    client_cas: Sequence[x509.Certificate] = (),
    client_mode: ClientCertMode = ClientCertMode.NONE,
    profile: TlsProfile = INTERMEDIATE,
) -> ssl.SSLContext:
    """A server context with the TLS ``profile`` presenting ``identity`` (certificate +
    chain)."""
    context = profile.apply(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    load_identity(context, [identity.certificate, *identity.chain], key)
    if client_mode is not ClientCertMode.NONE and client_cas:
        # The selected context's CA store is what verifies (and names in the
        # CertificateRequest) the client's certificate, so each per-name context holds it.
        context.load_verify_locations(cadata=_pem(client_cas).decode("ascii"))
        context.verify_mode = (
            ssl.CERT_REQUIRED if client_mode is ClientCertMode.REQUIRE else ssl.CERT_OPTIONAL
        )
    return context


ChallengeLookup = Callable[[str | None], tuple[x509.Certificate, PrivateKey] | None]
"""The ACME TLS-ALPN-01 certificate to present for an SNI name while a challenge is pending."""


def _challenge_context(
    cert: x509.Certificate, key: PrivateKey, *, profile: TlsProfile
) -> ssl.SSLContext:
    """The context answering an ACME TLS-ALPN-01 validation (RFC 8737): the challenge
    certificate, and ``acme-tls/1`` as the only ALPN protocol."""
    context = profile.apply(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    load_identity(context, [cert], key)
    context.set_alpn_protocols(["acme-tls/1"])
    return context


@dataclass(frozen=True)
class TlsState:
    """What the contexts are built from; when any part changes they are rebuilt."""

    versions: tuple[int, ...]
    client_mode: ClientCertMode
    client_cas: tuple[x509.Certificate, ...]
    profile: TlsProfile = INTERMEDIATE


class ServerTls:
    """The SNI-switching server context of one listener.

    ``state`` returns the current inputs cheaply (change counters); ``identity_for`` maps an
    SNI name to the identity to present; ``key_for`` opens its sealed key; ``challenge_for``
    (optional) gives the ACME TLS-ALPN-01 certificate of a name being validated, presented
    instead for that name until the challenge is withdrawn (the state moves then).

    A handshake does no I/O: the context chosen for an SNI name is remembered until ``refresh``
    sees the state move (the identity counter is part of it), so ``identity_for`` — a database
    read — runs once per name and change, not once per handshake.
    """

    def __init__(
        self,
        *,
        defer_client_verification: bool = False,
        state: Callable[[], TlsState],
        identity_for: Callable[[str | None], ActiveIdentity | None],
        key_for: Callable[[ActiveIdentity], PrivateKey],
        challenge_for: ChallengeLookup | None = None,
    ) -> None:
        self._defer = defer_client_verification
        self._challenge_for = challenge_for
        self._state_fn = state
        self._identity_for = identity_for
        self._key_for = key_for
        self._lock = threading.Lock()
        self._state = state()
        self._contexts: dict[tuple[str, str, int], ssl.SSLContext] = {}
        self._by_name: dict[str | None, ssl.SSLContext] = {}
        self._generation = 0
        self._base: ssl.SSLContext | None = None

    def _deferred(self, context: ssl.SSLContext) -> ssl.SSLContext:
        """With ``defer_client_verification``, OpenSSL accepts any client certificate on
        ``context`` (the peer still proves it holds the key) and certway's own validation
        decides, so a refusal can say why instead of failing the handshake."""
        if self._defer and not defer_verification(context):
            self._defer = False
            log.warning(
                "event=tls-verify-fallback detail='client certificates are verified by "
                "OpenSSL: refusals in the handshake cannot explain themselves'"
            )
        return context

    def forget_state(self) -> None:
        """Make the next ``refresh`` rebuild, e.g. after a reload that depends on it failed."""
        with self._lock:
            self._state = TlsState((), ClientCertMode.NONE, ())

    def refresh(self) -> bool:
        """Pick up changes (called by a poller); True when the state moved."""
        state = self._state_fn()
        if state == self._state:
            return False
        with self._lock:
            self._state = state
            self._contexts = {}
            self._by_name = {}
            self._generation += 1
            if self._base is not None:
                # OpenSSL takes the verify mode from the listening context when a connection
                # starts (switching context in the SNI callback does not change it), so the
                # request for a client certificate is set here; the CA store that verifies it
                # is the selected per-name context's.
                self._base.verify_mode = _VERIFY[state.client_mode]
                # The protocol versions, too, are the listening context's (OpenSSL copies
                # them into each connection before the SNI callback); the cipher and group
                # lists, copied the same way, are the same in every profile.
                state.profile.apply_versions(self._base)
        # Warm up here, in the poller's thread, not in the next handshake on the event loop:
        # the identity lookup (it rebuilds its name map after a change: ~0.6 s with 10,000
        # domains) and the server certificate's context. A failure is retried by a handshake.
        with contextlib.suppress(ssl.SSLError, OSError, ValueError):
            self.context_for(None)
        return True

    def context_for(self, server_name: str | None) -> ssl.SSLContext:
        context = self._by_name.get(server_name)
        if context is not None:
            return context
        generation = self._generation
        challenge = self._challenge_for(server_name) if self._challenge_for else None
        if challenge is not None:
            context = _challenge_context(*challenge, profile=self._state.profile)
        else:
            context = self._context_of(self._identity_for(server_name))
        with self._lock:
            # Not when a refresh ran meanwhile: the identity may predate the change.
            if generation == self._generation and len(self._by_name) < _NAME_CACHE_LIMIT:
                self._by_name[server_name] = context
        return context

    def _context_of(self, identity: ActiveIdentity | None) -> ssl.SSLContext:
        if identity is None:
            raise ssl.SSLError("no server certificate is configured")
        key = (identity.kind, identity.name, identity.version)
        context = self._contexts.get(key)
        if context is None:
            with self._lock:
                context = self._contexts.get(key)
                if context is None:
                    context = self._deferred(
                        build_context(
                            identity,
                            self._key_for(identity),
                            client_cas=self._state.client_cas,
                            client_mode=self._state.client_mode,
                            profile=self._state.profile,
                        )
                    )
                    self._contexts[key] = context
        return context

    def server_context(self) -> ssl.SSLContext:
        """The listening context: its SNI callback (called with or without SNI) swaps in the
        current per-name context for every handshake."""
        identity = self._identity_for(None)
        if identity is None:
            raise ssl.SSLError("no server certificate is configured")
        base = build_context(
            identity,
            self._key_for(identity),
            client_cas=self._state.client_cas,
            client_mode=self._state.client_mode,
            profile=self._state.profile,
        )
        base.verify_mode = _VERIFY[self._state.client_mode]
        base.sni_callback = self._sni
        self._deferred(base)
        self._base = base
        return base

    def _sni(
        self, sslobj: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _ctx: ssl.SSLContext
    ) -> int | None:
        try:
            sslobj.context = self.context_for(server_name)
        except (ssl.SSLError, OSError, ValueError):
            return ssl.ALERT_DESCRIPTION_INTERNAL_ERROR
        return None


def client_context(
    identity: ActiveIdentity | None, key: PrivateKey | None, profile: TlsProfile = INTERMEDIATE
) -> ssl.SSLContext:
    """A client context with the TLS ``profile`` presenting ``identity`` (certificate +
    chain), if any.

    OpenSSL does not check the server: the caller does, after the handshake, through the
    node's one validation path (zones, remote syslog).
    """
    context = profile.apply(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if identity is not None and key is not None:
        load_identity(context, [identity.certificate, *identity.chain], key)
    return context
