"""The remote syslog sender of ``certway serve``: one thread that moves new audit entries
and forwarded log records into the on-disk queues and delivers each destination's queue in
order (RFC 5425 TLS, RFC 6587 TCP with octet counting, or UDP datagrams).

A TLS receiver is judged like every other peer: its certificate must pass the node's one
validation path for the ``syslog`` service (trusted CA list, revocation policy, the
destination's host name) before a byte is sent, unless the destination says ``verify off``;
the node's client certificate is presented when the receiver asks for one. A destination
that is down or refused waits with growing pauses (up to a minute), its messages kept on
disk; an alarm says why. The listeners never wait for the sender: they only append to a
bounded in-memory list.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field

from certway.errors import CertwayError
from certway.services.audit import SYSTEM, acting_as
from certway.services.node import Node
from certway.services.syslog import (
    SYSLOG_SERVICE,
    Destination,
    SyslogEvents,
    Transport,
    format_message,
    frame,
    queue_audit,
)
from certway.tls.contexts import client_context
from certway.tlsconf.presented import presented_chain

__all__ = ["DeliveryError", "SyslogSender", "connect", "send_test", "send_tests"]

log = logging.getLogger("certway.syslog")

CONNECT_TIMEOUT = 5.0
BATCH = 500
MAX_PAUSE = 60.0


class DeliveryError(Exception):
    """A destination cannot take messages now; the text says why (one sentence)."""


def _context(node: Node) -> ssl.SSLContext:
    identities = node.identities
    identity = identities.active("client")
    key = identities.private_key(identity) if identity is not None else None
    return client_context(identity, key, node.tls.profile(SYSLOG_SERVICE))


def _check_receiver(node: Node, destination: Destination, tls: ssl.SSLSocket) -> None:
    refusal = node.peer_validation.state(SYSLOG_SERVICE).server_refusal(
        tls.getpeercert(binary_form=True),
        intermediates=presented_chain(tls),
        name=destination.host,
        at=node.clock.now(),
        server="the receiver",
    )
    if refusal is not None:
        raise DeliveryError(refusal)


def connect(node: Node, destination: Destination) -> socket.socket:
    """A connected socket (TLS: handshake done and the receiver's certificate accepted)."""
    kind = socket.SOCK_DGRAM if destination.transport is Transport.UDP else socket.SOCK_STREAM
    try:
        infos = socket.getaddrinfo(destination.host, destination.port, type=kind)
    except OSError as exc:
        raise DeliveryError(f"{destination.host} cannot be resolved: {exc.strerror}") from None
    last: OSError | None = None
    for family, socktype, proto, _, address in infos:
        sock = socket.socket(family, socktype, proto)
        sock.settimeout(CONNECT_TIMEOUT)
        try:
            sock.connect(address)
        except OSError as exc:
            sock.close()
            last = exc
            continue
        if destination.transport is not Transport.TLS:
            return sock
        try:
            tls = _context(node).wrap_socket(sock, server_hostname=destination.host)
        except (ssl.SSLError, OSError) as exc:
            sock.close()
            raise DeliveryError(f"the TLS handshake failed: {exc}") from None
        except CertwayError as exc:
            sock.close()
            raise DeliveryError(f"the client certificate cannot be used: {exc}") from None
        try:
            if destination.verify:
                _check_receiver(node, destination, tls)
        except BaseException:
            tls.close()
            raise
        return tls
    reason = last.strerror if last is not None and last.strerror else str(last)
    raise DeliveryError(f"cannot connect to {destination.address}: {reason}")


def _closed_by_peer(sock: socket.socket) -> bool:
    """A stream the receiver has closed (or reset): reading it now gives EOF."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


def _send(sock: socket.socket, destination: Destination, bodies: list[bytes]) -> None:
    try:
        if destination.transport is Transport.UDP:
            for body in bodies:
                sock.send(body)
        else:
            sock.sendall(b"".join(frame(body) for body in bodies))
    except (OSError, ssl.SSLError) as exc:
        raise DeliveryError(f"sending to {destination.address} failed: {exc}") from None


def send_test(node: Node, destination: Destination) -> None:
    """Send one test message now (``syslog test``); DeliveryError says why it could not."""
    hostname = node.settings.get().fqdn
    body = format_message(
        at=node.clock.now(),
        hostname=hostname,
        facility=16,
        severity=5,
        msgid="syslog-test",
        params={"event": "syslog-test"},
        text=f"certway syslog test from {hostname}",
    )
    sock = connect(node, destination)
    try:
        _send(sock, destination, [body])
    finally:
        sock.close()


def send_tests(node: Node) -> list[tuple[Destination, str | None]]:
    """A test message to every destination now: each with None, or why it could not go."""
    results: list[tuple[Destination, str | None]] = []
    for destination in node.syslog.destinations():
        try:
            send_test(node, destination)
            results.append((destination, None))
        except DeliveryError as exc:
            results.append((destination, str(exc)))
    return results


@dataclass
class _Link:
    destination: Destination
    sock: socket.socket | None = None
    pause: float = 0.0
    next_try: float = 0.0
    failures: int = field(default=0)


class SyslogSender:
    """Started and stopped by ``certway serve``. ``events`` is the logging handler to put on
    the node's loggers; ``retry`` the first pause after a failure (doubling up to a minute)."""

    def __init__(self, node: Node, *, retry: float = 1.0, interval: float = 0.5) -> None:
        self.node = node
        self.settings = node.syslog
        self.events = SyslogEvents(node.settings.get().fqdn)
        self._retry = retry
        self._interval = interval
        self._links: dict[str, _Link] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="certway-syslog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.events.wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for link in self._links.values():
            self._drop(link)

    def _run(self) -> None:
        with acting_as(SYSTEM):  # a new thread: it inherits no actor
            self._forward()

    def _forward(self) -> None:
        while not self._stop.is_set():
            try:
                self.pass_once()
            except Exception as exc:  # keep forwarding: the next pass tries again
                log.error("event=syslog-sender-failed error=%r", str(exc) or type(exc).__name__)
            self.events.wake.wait(self._interval)
            self.events.wake.clear()

    def pass_once(self) -> None:
        """Queue what is new, then deliver what each destination can take now."""
        destinations = self.settings.destinations()
        if not destinations:
            self.events.take()  # nowhere to send them
            return
        names = [d.address for d in destinations]
        for gone in set(self._links) - set(names):
            self._drop(self._links.pop(gone))
        queue = self.settings.queue
        pending = self.events.take()
        if pending:
            queue.put(names, pending)
        queue_audit(self.settings, self.node.audit, destinations, self.events.hostname)
        now = time.monotonic()
        for destination in destinations:
            link = self._links.get(destination.address)
            if link is None or link.destination != destination:
                if link is not None:
                    self._drop(link)
                link = self._links[destination.address] = _Link(destination)
            if now >= link.next_try:
                self._deliver(link)

    def _deliver(self, link: _Link) -> None:
        queue = self.settings.queue
        name = link.destination.address
        while not self._stop.is_set():
            batch = queue.peek(name, BATCH)
            if not batch:
                return
            try:
                stream = link.destination.transport is not Transport.UDP
                if link.sock is not None and stream and _closed_by_peer(link.sock):
                    self._drop(link)
                if link.sock is None:
                    link.sock = connect(self.node, link.destination)
                _send(link.sock, link.destination, [body for _, body in batch])
            except DeliveryError as exc:
                self._drop(link)
                link.failures += 1
                link.pause = min(MAX_PAUSE, max(self._retry, link.pause * 2))
                link.next_try = time.monotonic() + link.pause
                queue.failed(name, str(exc), self.node.clock.now().isoformat())
                if link.failures == 1:
                    log.warning(
                        "event=syslog-undeliverable destination=%s reason=%r", name, str(exc)
                    )
                return
            queue.delivered(name, batch[-1][0], len(batch))
            if link.failures:
                log.info("event=syslog-delivering destination=%s", name)
            link.failures, link.pause = 0, 0.0

    @staticmethod
    def _drop(link: _Link) -> None:
        if link.sock is not None:
            with contextlib.suppress(OSError):
                link.sock.close()
            link.sock = None
