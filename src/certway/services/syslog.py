"""Remote syslog: where the node's audit log, alarms and TLS refusals are sent, and the
messages themselves (RFC 5424, framed per RFC 5425 / RFC 6587 for stream transports).

Destinations are cluster-wide settings (``syslog add HOST:PORT``), audited. What is sent:
- every audit entry (who changed what, the outcome; details as JSON, never secrets),
- the node's warnings and errors that carry an ``event=`` (alarms raised, TLS peers refused
  by the SIP listener, the admin listener and zones, failed logins) and alarms cleared.
Messages wait in a bounded on-disk queue per destination (``store.syslog_queue``) until the
sender of ``certway serve`` (``outbound.syslog``) has delivered them, in order; a receiver
that is down, slow or whose certificate is refused holds up only its own queue.
"""

from __future__ import annotations

import collections
import datetime as dt
import ipaddress
import json
import logging
import os
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from certway.clock import Clock
from certway.errors import NotFound, PolicyViolation
from certway.pki.names import check_dns_name
from certway.services.audit import Audit, AuditEntry, audited
from certway.store.db import Store
from certway.store.repositories import SettingsRepository
from certway.store.syslog_queue import DestinationState, SyslogQueue

__all__ = [
    "AUDIT_CURSOR",
    "SYSLOG_SERVICE",
    "SYSLOG_VERSION",
    "Destination",
    "SyslogEvents",
    "SyslogSettings",
    "Transport",
    "audit_message",
    "format_message",
    "frame",
    "record_message",
]

SYSLOG_SERVICE = "syslog"
"""The service name of outbound syslog over TLS (its revocation policy and TLS profile)."""
SYSLOG_VERSION = "version.syslog"
_KEY = "syslog.destinations"
AUDIT_CURSOR = "audit"
MAX_DESTINATIONS = 8
SD_ID = "certway@32473"
"""The SD-ID of certway's structured data (32473: the private enterprise number that RFC 5612
reserves for documentation and examples)."""
_BOM = "\ufeff"


class Transport(StrEnum):
    TLS = "tls"
    TCP = "tcp"
    UDP = "udp"


DEFAULT_PORTS = {Transport.TLS: 6514, Transport.TCP: 514, Transport.UDP: 514}


@dataclass(frozen=True, slots=True)
class Destination:
    host: str
    port: int
    transport: Transport
    verify: bool = True
    """TLS only: the receiver's certificate must chain to the trusted CA list, be unrevoked
    (the ``syslog`` revocation policy) and name ``host``."""

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "host": self.host,
            "port": self.port,
            "transport": self.transport.value,
            "verify": "on" if self.verify else "off",
        }


def parse_address(text: str, transport: Transport) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT`` or ``[IPv6]:PORT`` (the transport's port by default)."""
    text = text.strip()
    port_text = ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise PolicyViolation("syslog-address", f"'{text}' is not HOST:PORT")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host = text
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        host = check_dns_name(host, what="syslog host")
    if not port_text:
        return host, DEFAULT_PORTS[transport]
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise PolicyViolation("syslog-address", f"the port '{port_text}' is not 1-65535")
    return host, int(port_text)


class SyslogSettings:
    """The remote syslog destinations and their delivery status."""

    def __init__(self, store: Store, clock: Clock, audit: Audit) -> None:
        self._store = store
        self._clock = clock
        self._audit = audit
        self._queue: SyslogQueue | None = None
        self._lock = threading.Lock()

    @property
    def queue(self) -> SyslogQueue:
        with self._lock:
            if self._queue is None:
                self._queue = SyslogQueue(self._store.data_dir)
            return self._queue

    def close(self) -> None:
        with self._lock:
            if self._queue is not None:
                self._queue.close()
                self._queue = None

    def destinations(self) -> list[Destination]:
        with self._store.reading() as session:
            raw = SettingsRepository(session).get(_KEY) or []
        return [
            Destination(d["host"], int(d["port"]), Transport(d["transport"]), d["verify"] is True)
            for d in raw
        ]

    @audited("syslog.add")
    def add(self, address: str, *, transport: str = "tls", verify: bool = True) -> Destination:
        try:
            chosen = Transport(transport)
        except ValueError:
            raise PolicyViolation(
                "syslog-transport", f"transport '{transport}' is not one of tls, tcp, udp"
            ) from None
        host, port = parse_address(address, chosen)
        queue = self.queue
        if queue.cursor(AUDIT_CURSOR) is None:  # forwarding starts with this change
            queue.set_cursor(AUDIT_CURSOR, self._audit.last_position())
        added = Destination(host, port, chosen, verify if chosen is Transport.TLS else False)
        with self._store.transaction() as session:
            settings = SettingsRepository(session)
            current = settings.get(_KEY) or []
            if any(d["host"] == host and int(d["port"]) == port for d in current):
                raise PolicyViolation(
                    "syslog-address", f"{added.address} is already a syslog destination"
                )
            if len(current) >= MAX_DESTINATIONS:
                raise PolicyViolation(
                    "syslog-destinations", f"at most {MAX_DESTINATIONS} syslog destinations"
                )
            stored = {"host": host, "port": port, "transport": chosen.value, "verify": added.verify}
            settings.set(_KEY, [*current, stored])
            settings.bump(SYSLOG_VERSION)
            self._audit.note(address=added.address, transport=chosen.value, verify=added.verify)
        return added

    @audited("syslog.remove")
    def remove(self, address: str) -> Destination:
        with self._store.transaction() as session:
            settings = SettingsRepository(session)
            current = settings.get(_KEY) or []
            found = [d for d in self.destinations() if d.address == address.strip()]
            if not found:
                listed = ", ".join(d.address for d in self.destinations()) or "none"
                raise NotFound(f"no syslog destination {address} (destinations: {listed})")
            gone = found[0]
            settings.set(
                _KEY,
                [d for d in current if (d["host"], int(d["port"])) != (gone.host, gone.port)],
            )
            settings.bump(SYSLOG_VERSION)
            self._audit.note(address=gone.address)
        self.queue.forget(gone.address)
        return gone

    def status(self) -> list[tuple[Destination, DestinationState]]:
        return [(d, self.queue.state(d.address)) for d in self.destinations()]


# -- messages ------------------------------------------------------------------------------
_LEVELS = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}
FACILITY_SECURITY = 4  # security/authorization messages: refused peers, failed logins
FACILITY_AUDIT = 13  # log audit
FACILITY_LOCAL0 = 16  # the rest: alarms
_PAIR_RE = re.compile(r"""([A-Za-z][\w.-]{0,31})=('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|\S+)""")
_SECURITY_EVENTS = ("refused", "login", "certificate")


def _sd_value(value: str) -> str:
    """An SD-PARAM value: '"', '\\' and ']' escaped (RFC 5424 §6.3.3)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _header_field(value: str, limit: int) -> str:
    """A header field: printable US-ASCII without spaces, or '-' (NILVALUE)."""
    cleaned = "".join(c for c in value if 33 <= ord(c) <= 126)[:limit]
    return cleaned or "-"


def format_message(
    *,
    at: dt.datetime,
    hostname: str,
    facility: int,
    severity: int,
    msgid: str,
    params: dict[str, str],
    text: str,
) -> bytes:
    """One RFC 5424 message: header, the ``certway@32473`` SD-ELEMENT, UTF-8 text."""
    stamp = at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    names = {re.sub(r'[^!-~]|[="\]]', "", k)[:32]: v for k, v in params.items()}
    sd = "".join(f' {k}="{_sd_value(v)}"' for k, v in names.items() if k)
    header = (
        f"<{facility * 8 + severity}>1 {stamp} {_header_field(hostname, 255)} certway "
        f"{os.getpid()} {_header_field(msgid, 32)} [{SD_ID}{sd}]"
    )
    return f"{header} {_BOM}{text}".encode()


def frame(message: bytes) -> bytes:
    """Octet counting (RFC 5425 §4.3, RFC 6587 §3.4.1) for TLS and TCP."""
    return str(len(message)).encode() + b" " + message


def audit_message(entry: AuditEntry, hostname: str) -> bytes:
    params = {
        "event": "audit",
        "action": entry.action,
        "target": entry.target,
        "actor": entry.actor,
        "via": entry.via,
        "outcome": entry.outcome,
    }
    if entry.address:
        params["address"] = entry.address
    if entry.detail:
        params["detail"] = json.dumps(entry.detail, sort_keys=True, default=str)[:2000]
    who = f"{entry.actor} ({entry.via}{', ' + entry.address if entry.address else ''})"
    target = f" {entry.target}" if entry.target else ""
    return format_message(
        at=entry.at,
        hostname=hostname,
        facility=FACILITY_AUDIT,
        severity=5 if entry.outcome == "ok" else 4,
        msgid=entry.action,
        params=params,
        text=f"{entry.action}{target} by {who}: {entry.outcome}",
    )


def record_message(record: logging.LogRecord, hostname: str) -> bytes:
    """A node log line ``event=NAME key=value …`` as a message: the pairs become SD-PARAMs."""
    text = record.getMessage()
    params = {}
    for key, raw in _PAIR_RE.findall(text):
        value = raw
        if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
            value = raw[1:-1].encode().decode("unicode_escape", errors="replace")
        params[key] = value[:2000]
    event = params.get("event", "log")
    facility = (
        FACILITY_SECURITY if any(word in event for word in _SECURITY_EVENTS) else FACILITY_LOCAL0
    )
    severity = _LEVELS.get(record.levelno, 5)
    if event == "alarm-cleared":
        severity = 5
    return format_message(
        at=dt.datetime.fromtimestamp(record.created, dt.UTC),
        hostname=hostname,
        facility=facility,
        severity=severity,
        msgid=event,
        params=params,
        text=text,
    )


def forwarded(record: logging.LogRecord) -> bool:
    """Which log records go to syslog: warnings and errors of an ``event=`` (not the syslog
    sender's own: they would feed themselves), and alarms cleared."""
    message = record.msg if isinstance(record.msg, str) else ""
    if not message.startswith("event="):
        return False
    if message.startswith("event=syslog-"):
        return False
    return record.levelno >= logging.WARNING or message.startswith("event=alarm-cleared")


class SyslogEvents(logging.Handler):
    """Collects the node's forwarded log records in memory (bounded; a listener thread only
    appends to a deque) until the sender moves them to the on-disk queue."""

    def __init__(self, hostname: str, *, limit: int = 10_000) -> None:
        super().__init__(logging.INFO)
        self.hostname = hostname
        self._pending: collections.deque[bytes] = collections.deque(maxlen=limit)
        self.wake = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if not forwarded(record):
            return
        try:
            self._pending.append(record_message(record, self.hostname))
        except Exception:  # a log line that cannot be formatted is not worth a crash
            self.handleError(record)
            return
        self.wake.set()

    def take(self) -> list[bytes]:
        taken = []
        while self._pending:
            taken.append(self._pending.popleft())
        return taken


def queue_audit(
    settings: SyslogSettings, audit: Audit, destinations: Iterable[Destination], hostname: str
) -> int:
    """Move the audit entries recorded since the last call to every destination's queue
    (the first call starts from now: history is not replayed). How many were queued."""
    queue = settings.queue
    names = [d.address for d in destinations]
    position = queue.cursor(AUDIT_CURSOR)
    if position is None:
        queue.put([], [], cursor=(AUDIT_CURSOR, audit.last_position()))
        return 0
    total = 0
    while True:
        batch = audit.entries_after(position, 500)
        if not batch:
            return total
        position = batch[-1][0]
        queue.put(
            names,
            [audit_message(entry, hostname) for _, entry in batch],
            cursor=(AUDIT_CURSOR, position),
        )
        total += len(batch)
