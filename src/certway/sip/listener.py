"""The SIP over TLS listener: mutual TLS, peer checks (revocation policy ``sip-tls``),
OPTIONS; hot reload of its TLS state.

TLS comes from ``tls.contexts.ServerTls`` (server certificate + chain, SNI → domain
certificates, contexts rebuilt when certificates, trusted CAs or SIP settings change); the
poller of ``certway serve`` calls ``refresh()``. Established connections keep their TLS
session and are not re-checked; new connections see every change.

Peer certificates are checked by certway's trust engine, not by OpenSSL: the handshake asks
for a certificate (per the mutual TLS mode) and accepts whatever the peer proves it holds the
key of, then ``PeerValidator`` decides — chain to the trusted list, validity, client EKU (per
the EKU setting), revocation per the ``sip-tls`` policy, and the access rules. That is what lets
a refused peer be logged in one line with the reason and the certificate's subject, serial and
issuer, and lets "EKU checking off" accept a serverAuth-only certificate (OpenSSL would refuse
both in the handshake). Python's ``ssl`` has no API for this, so ``defer_verification``
installs an accept-all ``SSL_CTX_set_cert_verify_callback`` through ``ctypes``, after checking
that it found the right ``SSL_CTX``; where that is impossible the listener falls back to
OpenSSL's verification against the trusted list (stricter, with less precise log lines).

Validation is the node's one path for every service (``services.peer_validation``): for a
certificate issued by one of the node's local CAs, that CA's revocation records decide, held
in memory and refreshed by every poll, so a revocation reaches the listener within one poll
(0.5 s) with no CRL download.

Each connection is its own task; a validation that may fetch (OCSP, CDP) runs on the node's
fetch pool (``FetchPool.executor``), never on asyncio's default executor, which stays free for
the hot-reload poller and the scheduler. A new connection is refused (logged with the reason)
when the listener already holds ``max_connections``, or ``max_connections_per_address`` from
its source address, or ``max_connections_per_certificate`` presenting the same client
certificate, so that one peer cannot take every slot; and, while a stored access rule cannot
be read (it may be a deny rule), every peer is refused. A peer is closed when it sends
malformed SIP that cannot be answered, more than ``max_rate`` messages a second, or a message
that does not complete within ``message_timeout`` (slowloris), when it sends nothing within
``first_message_timeout`` of connecting, or when it stays silent for ``idle_timeout``
afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

from cryptography import x509

from certway.errors import CertwayError
from certway.pki.text import format_name, plural, serial_hex
from certway.services.peer_validation import ValidationState, presented_certificates
from certway.services.sip_rules import certificate_names, decide
from certway.services.sip_settings import SIP_SERVICE, MutualTls, SipConfig, SipSettings
from certway.sip.message import (
    MAX_BODY,
    MAX_HEADER,
    PONG,
    Keepalive,
    Message,
    SipError,
    SipFramer,
    bad_request,
    method_not_allowed,
    options_ok,
)
from certway.tls.contexts import ClientCertMode, ServerTls, TlsState
from certway.tlsconf.presented import presented_chain
from certway.trust.validate import Purpose, ValidationOptions

if TYPE_CHECKING:
    from certway.services.node import Node

__all__ = [
    "PeerValidator",
    "PeerVerdict",
    "SipLimits",
    "SipListener",
    "Validate",
]

log = logging.getLogger("certway.sip")
K = TypeVar("K")
# What the TLS layer asks of the peer. "require" asks like "request" does: a peer without a
# certificate then completes the handshake and is refused by certway itself, with a log line
# naming it (OpenSSL would drop it in the handshake, silently).
_MODES = {
    MutualTls.OFF: ClientCertMode.NONE,
    MutualTls.REQUEST: ClientCertMode.REQUEST,
    MutualTls.REQUIRE: ClientCertMode.REQUEST,
}


@dataclass(frozen=True, slots=True)
class SipLimits:
    max_connections: int = 1000
    """Connections open at once, all peers together."""
    max_connections_per_address: int = 50
    """Connections open at once from one source IP address."""
    max_connections_per_certificate: int = 20
    """Connections open at once presenting the same client certificate (by SHA-256
    fingerprint), whatever address they come from."""
    message_timeout: float = 10.0
    """Seconds a message (headers and body) may take to arrive once it has started."""
    first_message_timeout: float = 30.0
    """Seconds a new connection may stay silent before its first message or keep-alive ping
    (at most ``idle_timeout``)."""
    idle_timeout: float = 600.0
    """Seconds without any byte (keep-alive pings count) before a connection that has
    already sent a message is closed."""
    handshake_timeout: float = 10.0
    max_rate: int = 50
    """Messages (keep-alive pings included) per second and connection."""
    max_header: int = MAX_HEADER
    max_body: int = MAX_BODY


# -- peer certificate checks -----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PeerVerdict:
    accepted: bool
    code: str
    """ok | no-certificate | malformed | untrusted | expired | wrong-eku | revoked |
    revocation-unknown | denied | …"""
    reason: str
    certificate: x509.Certificate | None = None

    def describe_certificate(self) -> tuple[str, str, str]:
        """Subject, serial (hex) and issuer for the log, or dashes when there is none."""
        cert = self.certificate
        if cert is None:
            return "-", "-", "-"
        return format_name(cert.subject), serial_hex(cert.serial_number), format_name(cert.issuer)


Validate = Callable[[bytes | None, SipConfig, Sequence[bytes]], PeerVerdict]
"""Decides on a peer: the DER certificate it presented (None if none), the settings and the
certificates it presented after its own (DER, untrusted intermediates)."""


def _refuse(code: str | None, reason: str, cert: x509.Certificate | None) -> PeerVerdict:
    return PeerVerdict(False, code or "invalid", reason, cert)


class PeerValidator:
    """The checks a SIP TLS peer certificate must pass; ``check`` is thread-safe.

    Validation itself is the node's one path (``ValidationState.validate``: profile,
    trusted CAs, CRLs, the local CAs' records, OCSP/CDP per the ``sip-tls`` policy); this
    class keeps that state in memory, so a handshake reads no database."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self._state: ValidationState
        self.reload()

    def reload(self) -> None:
        """Re-read the state validation depends on (the listener's ``refresh``)."""
        self._state = self._node.peer_validation.state(SIP_SERVICE)

    def refresh_records(self) -> bool:
        """Pick up new revocations of the local CAs (cheap: call it on every poll)."""
        records = self._node.local_ca.records()
        if records is self._state.records:
            return False
        self._state = replace(self._state, records=records)
        return True

    def can_run_inline(self, der: bytes | None) -> bool:
        """Whether ``check(der)`` is quick and blocks nothing (no OCSP or CDP fetch may be
        needed). Otherwise it belongs on the fetch pool."""
        return der is None or not self._state.may_fetch

    def check(
        self, der: bytes | None, config: SipConfig, intermediates: Sequence[bytes] = ()
    ) -> PeerVerdict:
        """Judge the client certificate ``der`` (with the certificates the peer presented
        after it: untrusted, for path building only) and the access rules."""
        if der is None:
            return _refuse("no-certificate", "the peer presented no client certificate", None)
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError:
            return _refuse("malformed", "the peer certificate cannot be parsed", None)
        options = ValidationOptions.for_peer(Purpose.CLIENT, check_eku=config.eku_check)
        result = self._state.validate(
            cert,
            presented_certificates(intermediates),
            options=options,
            at=self._node.clock.now(),
        )
        if not result.valid:
            return _refuse(result.code, result.reason, cert)
        decision = decide(config.rules, certificate_names(cert))
        if not decision.allowed:
            return _refuse("denied", decision.describe(), cert)
        return PeerVerdict(True, "ok", decision.describe(), cert)


# -- the listener ----------------------------------------------------------------------------
def _address(peername: Any) -> str:
    if isinstance(peername, tuple) and len(peername) >= 2:
        host, port = peername[0], peername[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(peername)


def _host(peername: Any) -> str:
    """The source address a connection is counted under (its IP, without the port)."""
    if isinstance(peername, tuple) and peername:
        return str(peername[0])
    return str(peername)


def _describe_der(der: bytes) -> str:
    fingerprint = hashlib.sha256(der).hexdigest()
    try:
        subject = format_name(x509.load_der_x509_certificate(der).subject)
    except ValueError:
        return f"SHA-256 {fingerprint}"
    return f"{subject!r} (SHA-256 {fingerprint})"


def _decrement(counts: dict[K, int], key: K) -> None:
    left = counts[key] - 1
    if left:
        counts[key] = left
    else:
        del counts[key]


@dataclass(frozen=True, slots=True)
class _Slot:
    """What a connection counts against: its source address and client certificate."""

    host: str
    fingerprint: bytes | None


class SipListener:
    """SIP over TLS on ``host:port`` (port 0 picks a free one; see ``port``)."""

    def __init__(
        self,
        node: Node,
        host: str = "127.0.0.1",
        port: int = 5061,
        *,
        sip_settings: SipSettings,
        validate: Validate | None = None,
        limits: SipLimits | None = None,
    ) -> None:
        self.node = node
        self.host = host
        self._wanted_port = port
        self._settings = sip_settings
        self.limits = limits or SipLimits()
        self._config = sip_settings.get()
        self.validator = PeerValidator(node)
        self._validate: Validate = validate or self.validator.check
        self.tls = ServerTls(
            defer_client_verification=True,
            state=self._tls_state,
            identity_for=node.identities.certificate_for_sni,
            key_for=node.identities.private_key,
        )
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[Any]] = set()
        self._per_address: dict[str, int] = {}
        self._per_certificate: dict[bytes, int] = {}

    # -- lifecycle ---------------------------------------------------------------------------
    def _tls_state(self) -> TlsState:
        mode = _MODES[self._settings.get().mutual_tls]
        cas = (
            self.node.trusted_cas.snapshot().certificates if mode is not ClientCertMode.NONE else ()
        )
        return TlsState(
            self._settings.watched_versions(), mode, tuple(cas), self.node.tls.profile("sip-tls")
        )

    @property
    def config(self) -> SipConfig:
        return self._config

    @property
    def connections(self) -> int:
        return len(self._connections)

    async def start(self) -> None:
        context = await asyncio.to_thread(self.tls.server_context)
        self._server = await asyncio.start_server(
            self._handle,
            self.host,
            self._wanted_port,
            ssl=context,
            ssl_handshake_timeout=self.limits.handshake_timeout,
            ssl_shutdown_timeout=5.0,
        )
        log.info("event=sip-listening address=%s:%d", self.host, self.port)

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the SIP listener is not started")
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop listening and close every connection (handshakes that finish meanwhile are
        closed as soon as they reach the listener)."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for _ in range(3):  # connections whose handshake completed while stopping
            tasks = list(self._connections)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.sleep(0)
        if server is not None:
            await server.wait_closed()

    def refresh(self) -> bool:
        """Pick up changed certificates, trusted CAs and SIP settings (blocking: call it in a
        thread). True when something moved; established connections are left alone."""
        records_moved = self.validator.refresh_records()
        if not self.tls.refresh():
            return records_moved
        try:
            self._config = self._settings.get()
            self.validator.reload()
        except Exception:
            self.tls.forget_state()  # the next refresh tries again instead of staying stale
            raise
        return True

    # -- connections -------------------------------------------------------------------------
    def _admit(self, peer: str, host: str, der: bytes | None) -> _Slot | None:
        """Take a slot for a new connection, or log why it is refused and return None: the
        listener's total, then the source address's, then the client certificate's share."""
        limits = self.limits
        fingerprint = hashlib.sha256(der).digest() if der is not None else None
        refusal: tuple[str, int, str] | None = None
        if len(self._connections) >= limits.max_connections:
            refusal = ("too-many-connections", limits.max_connections, "connections in all")
        elif self._per_address.get(host, 0) >= limits.max_connections_per_address:
            refusal = (
                "address-limit",
                limits.max_connections_per_address,
                f"connections from {host}",
            )
        elif (
            der is not None
            and fingerprint is not None
            and self._per_certificate.get(fingerprint, 0) >= limits.max_connections_per_certificate
        ):
            refusal = (
                "certificate-limit",
                limits.max_connections_per_certificate,
                f"connections with the client certificate {_describe_der(der)}",
            )
        if refusal is not None:
            reason, limit, what = refusal
            log.warning(
                "event=sip-refused peer=%s reason=%s limit=%d detail=%r",
                peer,
                reason,
                limit,
                f"already {limit} open {what}",
            )
            return None
        self._per_address[host] = self._per_address.get(host, 0) + 1
        if fingerprint is not None:
            self._per_certificate[fingerprint] = self._per_certificate.get(fingerprint, 0) + 1
        return _Slot(host, fingerprint)

    def _release(self, slot: _Slot) -> None:
        _decrement(self._per_address, slot.host)
        if slot.fingerprint is not None:
            _decrement(self._per_certificate, slot.fingerprint)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        peer = _address(peername)
        task = asyncio.current_task()
        if self._server is None or task is None:  # stopping
            writer.transport.abort()
            return
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
        slot = self._admit(peer, _host(peername), der)
        if slot is None:
            writer.transport.abort()
            return
        self._connections.add(task)
        try:
            config = self._config
            if config.mutual_tls is not MutualTls.OFF and config.unreadable_rules:
                # a rule that cannot be read may be a deny rule: refuse rather than guess
                log.warning(
                    "event=sip-refused peer=%s reason=rules-unreadable detail=%r",
                    peer,
                    "an access rule cannot be read, so no peer is let in until it is removed "
                    "or fixed: " + "; ".join(r.describe() for r in config.unreadable_rules),
                )
                return
            if der is None and config.mutual_tls is MutualTls.REQUEST:
                # "request": a peer without a certificate is served, not authenticated (as
                # Expressway does); one that presents a certificate has it checked below.
                log.info(
                    "event=sip-accepted peer=%s authenticated=no detail=%r",
                    peer,
                    "no client certificate: served without authentication (mutual TLS request)",
                )
            elif config.mutual_tls is not MutualTls.OFF:
                chain = presented_chain(ssl_object)
                if self._validate == self.validator.check and self.validator.can_run_inline(der):
                    verdict = self._validate(der, config, chain)
                else:
                    verdict = await self.node.fetch_pool.run(self._validate, der, config, chain)
                if not verdict.accepted:
                    self._log_refusal(peer, verdict)
                    return
                log.debug("event=sip-accepted peer=%s detail=%r", peer, verdict.reason)
            await self._converse(reader, writer, peer)
        except (ConnectionError, ssl.SSLError, TimeoutError) as exc:
            log.debug("event=sip-closed peer=%s reason=%s", peer, type(exc).__name__)
        except CertwayError as exc:
            log.warning("event=sip-closed peer=%s reason=error detail=%r", peer, str(exc))
        except Exception as exc:  # a bug must not take the listener down
            log.error("event=sip-connection-failed peer=%s error=%s", peer, type(exc).__name__)
        finally:
            self._connections.discard(task)
            self._release(slot)
            writer.close()

    @staticmethod
    def _log_refusal(peer: str, verdict: PeerVerdict) -> None:
        subject, serial, issuer = verdict.describe_certificate()
        log.warning(
            "event=sip-refused peer=%s reason=%s detail=%r subject=%r serial=%s issuer=%r",
            peer,
            verdict.code,
            verdict.reason,
            subject,
            serial,
            issuer,
        )

    @staticmethod
    def _answer(item: Message | Keepalive) -> bytes | None:
        if isinstance(item, Keepalive):
            return PONG
        if not item.is_request or item.method == "ACK":
            return None  # responses are ignored; an ACK is never answered
        if item.method == "OPTIONS":
            return options_ok(item)
        return method_not_allowed(item)

    async def _converse(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> None:
        limits = self.limits
        loop = asyncio.get_running_loop()
        framer = SipFramer(max_header=limits.max_header, max_body=limits.max_body)
        started: float | None = None  # when the message being received began
        spoken = False  # a whole message or keep-alive ping has arrived
        window, count = -1, 0
        while True:
            if started is not None:
                timeout = max(0.0, started + limits.message_timeout - loop.time())
            elif spoken:
                timeout = limits.idle_timeout
            else:
                timeout = min(limits.first_message_timeout, limits.idle_timeout)
            try:
                data = await asyncio.wait_for(reader.read(16384), timeout)
            except TimeoutError:
                if started is not None:
                    log.warning(
                        "event=sip-closed peer=%s reason=message-timeout detail=%r",
                        peer,
                        f"a message did not complete within {limits.message_timeout:g} s "
                        f"({plural(framer.buffered, 'byte')} received)",
                    )
                elif spoken:
                    log.info("event=sip-closed peer=%s reason=idle", peer)
                else:
                    log.info(
                        "event=sip-closed peer=%s reason=silent detail=%r",
                        peer,
                        f"no message within {timeout:g} s of connecting",
                    )
                return
            if not data:
                return
            error: SipError | None = None
            try:
                items = framer.feed(data)
            except SipError as exc:
                items, error = exc.preceding, exc
            now = loop.time()
            if items:
                started = None
                spoken = True
            if framer.in_message and started is None:
                started = now
            for item in items:
                second = int(now)
                if second != window:
                    window, count = second, 0
                count += 1
                if count > limits.max_rate:
                    log.warning(
                        "event=sip-closed peer=%s reason=rate-limit detail=%r",
                        peer,
                        f"more than {limits.max_rate} messages in one second",
                    )
                    return
                reply = self._answer(item)
                if reply is not None:
                    writer.write(reply)
            if error is not None:
                reply = bad_request(error)
                if reply is not None:
                    writer.write(reply)
                log.warning(
                    "event=sip-malformed peer=%s status=%d detail=%r action=%s",
                    peer,
                    error.status,
                    error.detail,
                    "close" if error.fatal else "answer",
                )
                if error.fatal:
                    with contextlib.suppress(TimeoutError, ConnectionError):
                        await asyncio.wait_for(writer.drain(), 1.0)
                    return
            await asyncio.wait_for(writer.drain(), limits.idle_timeout)
