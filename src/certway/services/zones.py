"""Neighbour zones: definitions, the status the pinger records, and their alarms.

A zone is a named set of peer addresses (DNS names or IP addresses) on one port, reached over
SIP/TLS with the node's client certificate. ``TLS verify mode`` on means the peer's
certificate must chain to the trusted CA list, pass revocation per the ``sip-tls`` policy, and
carry the peer address in its subject alternative names (an IP address SAN for an IP address,
a DNS SAN for a name); with a ``TLS verify subject name`` that name must be in the
certificate (SAN, or the CN) instead of the address.

Definitions live in the settings store under ``zones`` (changes are audited); the status of
the last check of each zone under ``zones.status`` (written by the pinger of ``certway
serve`` or by ``certway zone check``; not audited: it is an observation, not a change). Any
process reading the store — the CLI, the API, the alarms — sees the same status.

A zone is **Active** when at least one of its peers answered the last OPTIONS with a final
SIP response over a connection whose certificate passed the checks: any final response
(``200 OK``, but also ``404`` or ``405``), as Expressway does, because an answer of any kind
proves the neighbour is up and the TLS trust between the two works. It is **Failed** when no
peer did; each failed peer raises a "zone TLS failure" alarm (``alarms_for_zones``), also
while another peer keeps the zone Active.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from certway.clock import Clock, utc
from certway.errors import Conflict, NotFound, PolicyViolation
from certway.services.audit import Audit, audited
from certway.store.db import Store
from certway.store.repositories import SettingsRepository

__all__ = [
    "DEFAULT_INTERVAL",
    "DEFAULT_PORT",
    "REASONS",
    "STATUS_KEY",
    "ZONES_KEY",
    "PeerStatus",
    "Zone",
    "ZoneAlarm",
    "ZoneStatus",
    "Zones",
    "alarms_for_zones",
    "check_peer_address",
]

ZONES_KEY = "zones"
STATUS_KEY = "zones.status"
DEFAULT_PORT = 5061
DEFAULT_INTERVAL = 30
MIN_INTERVAL = 5
MAX_INTERVAL = 86400
MAX_PEERS = 6  # as Expressway's neighbour zones
MAX_ZONES = 1000

ACTIVE = "Active"
FAILED = "Failed"
UNKNOWN = "Unknown"

REASONS = (
    "untrusted",
    "name mismatch",
    "revoked",
    "expired",
    "refused",
    "timeout",
    "unreachable",
)
"""Why a peer failed; ``PeerStatus.detail`` says it in a sentence."""

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def check_peer_address(text: str) -> str:
    """A peer address as stored: an IP address (v4/v6, canonical) or a DNS name (lower case).

    Ports, URIs and wildcards are refused with a message that says what to give instead.
    """
    address = text.strip()
    if address.startswith("[") and address.endswith("]"):
        address = address[1:-1]
    if not address:
        raise PolicyViolation("zone-peer", "a peer address is empty")
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        pass
    if "://" in address or address.lower().startswith("sip:"):
        raise PolicyViolation(
            "zone-peer", f"peer '{text}' is a URI: give a DNS name or an IP address"
        )
    if "*" in address:
        raise PolicyViolation("zone-peer", f"peer '{text}': wildcards are not allowed")
    if address.count(":") == 1 and address.rsplit(":", 1)[1].isdigit():
        raise PolicyViolation(
            "zone-peer",
            f"peer '{text}' has a port: give the address alone and the port as the zone's port",
        )
    name = address.rstrip(".").lower()
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL_RE.match(label) for label in labels):
        raise PolicyViolation(
            "zone-peer", f"peer '{text}' is neither an IP address nor a valid DNS name"
        )
    if labels[-1].isdigit():
        raise PolicyViolation("zone-peer", f"peer '{text}' is not a valid IP address")
    return name


@dataclass(frozen=True, slots=True)
class Zone:
    """A neighbour zone's definition."""

    name: str
    peers: tuple[str, ...]
    port: int = DEFAULT_PORT
    tls_verify: bool = True
    verify_subject: str | None = None
    """When set (TLS verify on), the name the peer certificate must carry instead of the
    peer address."""
    interval: int = DEFAULT_INTERVAL
    """Seconds between OPTIONS pings."""

    def expected_name(self, address: str) -> str | None:
        """The name a peer's certificate must carry, or None when TLS verify is off."""
        if not self.tls_verify:
            return None
        return self.verify_subject or address

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "peers": list(self.peers),
            "port": self.port,
            "tls_verify": "on" if self.tls_verify else "off",
            "verify_subject": self.verify_subject,
            "interval": self.interval,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Zone:
        return cls(
            name=str(raw["name"]),
            peers=tuple(str(p) for p in raw["peers"]),
            port=int(raw.get("port", DEFAULT_PORT)),
            tls_verify=raw.get("tls_verify", "on") == "on",
            verify_subject=raw.get("verify_subject") or None,
            interval=int(raw.get("interval", DEFAULT_INTERVAL)),
        )


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _time(value: object) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return utc(dt.datetime.fromisoformat(value))
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class PeerStatus:
    """The outcome of one OPTIONS ping to one peer."""

    address: str
    active: bool
    reason: str | None
    """One of ``REASONS`` when the peer failed, else None."""
    detail: str
    """One sentence: what was answered, or what went wrong."""
    checked_at: dt.datetime
    response: str | None = None
    """The status line's code and reason phrase, e.g. ``200 OK``."""
    certificate: str | None = None
    """Subject of the certificate the peer presented, when one was seen."""

    @property
    def state(self) -> str:
        return ACTIVE if self.active else FAILED

    def as_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "state": self.state,
            "reason": self.reason,
            "detail": self.detail,
            "checked_at": _iso(self.checked_at),
            "response": self.response,
            "certificate": self.certificate,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> PeerStatus:
        return cls(
            address=str(raw["address"]),
            active=raw.get("state") == ACTIVE,
            reason=raw.get("reason"),
            detail=str(raw.get("detail", "")),
            checked_at=_time(raw.get("checked_at")) or dt.datetime.min.replace(tzinfo=dt.UTC),
            response=raw.get("response"),
            certificate=raw.get("certificate"),
        )


@dataclass(frozen=True, slots=True)
class ZoneStatus:
    """A zone's state after its last check: Active, Failed, or Unknown (not checked yet)."""

    zone: str
    state: str
    reason: str | None
    detail: str
    checked_at: dt.datetime | None
    peers: tuple[PeerStatus, ...] = field(default=())

    @property
    def active(self) -> bool:
        return self.state == ACTIVE

    @classmethod
    def of(cls, zone: str, peers: Sequence[PeerStatus]) -> ZoneStatus:
        """Active when any peer is; else Failed with the first peer's reason."""
        if not peers:
            return cls.unknown(zone)
        checked = max(p.checked_at for p in peers)
        good = [p for p in peers if p.active]
        if good:
            failed = len(peers) - len(good)
            detail = good[0].detail if not failed else f"{good[0].detail}; {failed} peer(s) failed"
            return cls(zone, ACTIVE, None, detail, checked, tuple(peers))
        first = peers[0]
        if len(peers) == 1:
            detail = first.detail
        else:
            detail = "; ".join(f"{p.address}: {p.detail}" for p in peers)
        return cls(zone, FAILED, first.reason, detail, checked, tuple(peers))

    @classmethod
    def unknown(cls, zone: str) -> ZoneStatus:
        return cls(zone, UNKNOWN, None, "not checked yet", None, ())

    def as_dict(self) -> dict[str, Any]:
        return {
            "zone": self.zone,
            "state": self.state,
            "reason": self.reason,
            "detail": self.detail,
            "checked_at": _iso(self.checked_at),
            "peers": [p.as_dict() for p in self.peers],
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ZoneStatus:
        return cls(
            zone=str(raw["zone"]),
            state=str(raw.get("state", UNKNOWN)),
            reason=raw.get("reason"),
            detail=str(raw.get("detail", "")),
            checked_at=_time(raw.get("checked_at")),
            peers=tuple(PeerStatus.from_dict(p) for p in raw.get("peers", [])),
        )


@dataclass(frozen=True, slots=True)
class ZoneAlarm:
    """A "zone TLS failure" alarm, for ``services.alarms``."""

    id: str
    severity: str
    text: str


def _load_zones(settings: SettingsRepository) -> dict[str, Zone]:
    raw = settings.get(ZONES_KEY)
    if not isinstance(raw, dict):
        return {}
    return {name: Zone.from_dict(value) for name, value in raw.items() if isinstance(value, dict)}


def _load_statuses(settings: SettingsRepository) -> dict[str, ZoneStatus]:
    raw = settings.get(STATUS_KEY)
    if not isinstance(raw, dict):
        return {}
    return {
        name: ZoneStatus.from_dict(value) for name, value in raw.items() if isinstance(value, dict)
    }


class Zones:
    """Zone definitions (audited) and their last recorded status."""

    def __init__(self, store: Store, clock: Clock, audit: Audit) -> None:
        self._store = store
        self._clock = clock
        self._audit = audit
        self._record_lock = threading.Lock()  # concurrent checks update one JSON map

    # -- definitions -------------------------------------------------------------------------
    @audited("zone.add")
    def add(
        self,
        name: str,
        *,
        peers: Iterable[str],
        port: int = DEFAULT_PORT,
        tls_verify: bool = True,
        verify_subject: str | None = None,
        interval: int = DEFAULT_INTERVAL,
    ) -> Zone:
        """Define a zone; every value is checked before anything is stored."""
        if not _NAME_RE.match(name):
            raise PolicyViolation(
                "zone-name",
                f"zone name '{name}' must be 1-64 letters, digits, dots, hyphens or "
                "underscores, starting with a letter or digit",
            )
        clean = tuple(dict.fromkeys(check_peer_address(p) for p in peers))
        if not clean:
            raise PolicyViolation("zone-peer", "a zone needs at least one peer address")
        if len(clean) > MAX_PEERS:
            raise PolicyViolation("zone-peer", f"a zone has at most {MAX_PEERS} peer addresses")
        if not 1 <= port <= 65535:
            raise PolicyViolation("zone-port", f"port {port} is not between 1 and 65535")
        if not MIN_INTERVAL <= interval <= MAX_INTERVAL:
            raise PolicyViolation(
                "zone-interval",
                f"interval {interval} s is not between {MIN_INTERVAL} and {MAX_INTERVAL} seconds",
            )
        subject: str | None = None
        if verify_subject:
            if not tls_verify:
                raise PolicyViolation(
                    "zone-verify-subject",
                    "a TLS verify subject name is only used with TLS verify mode on",
                )
            subject = check_peer_address(verify_subject)
        zone = Zone(name, clean, port, tls_verify, subject, interval)
        with self._store.transaction() as session:
            settings = SettingsRepository(session)
            zones = _load_zones(settings)
            if name in zones:
                raise Conflict(f"zone '{name}' already exists: remove it first to redefine it")
            if len(zones) >= MAX_ZONES:
                raise PolicyViolation("zone-limit", f"at most {MAX_ZONES} zones can be defined")
            zones[name] = zone
            settings.set(ZONES_KEY, {n: z.as_dict() for n, z in zones.items()})
            self._audit.note(**zone.as_dict())
        return zone

    @audited("zone.remove")
    def remove(self, name: str) -> None:
        """Delete a zone and its status (its alarm clears with it)."""
        with self._store.transaction() as session:
            settings = SettingsRepository(session)
            zones = _load_zones(settings)
            if name not in zones:
                raise self._not_found(name, zones)
            del zones[name]
            settings.set(ZONES_KEY, {n: z.as_dict() for n, z in zones.items()})
            statuses = settings.get(STATUS_KEY)
            if isinstance(statuses, dict) and name in statuses:
                del statuses[name]
                settings.set(STATUS_KEY, statuses)

    def entries(self) -> list[Zone]:
        with self._store.reading() as session:
            zones = _load_zones(SettingsRepository(session))
        return sorted(zones.values(), key=lambda z: z.name)

    def get(self, name: str) -> Zone:
        with self._store.reading() as session:
            zones = _load_zones(SettingsRepository(session))
        if name not in zones:
            raise self._not_found(name, zones)
        return zones[name]

    @staticmethod
    def _not_found(name: str, zones: dict[str, Zone]) -> NotFound:
        known = ", ".join(sorted(zones)) or "none defined"
        return NotFound(f"no zone named '{name}' (zones: {known})")

    # -- status ------------------------------------------------------------------------------
    def status(self, name: str) -> ZoneStatus:
        """The last recorded status of zone ``name`` (Unknown when never checked)."""
        with self._store.reading() as session:
            settings = SettingsRepository(session)
            zones = _load_zones(settings)
            if name not in zones:
                raise self._not_found(name, zones)
            return _load_statuses(settings).get(name) or ZoneStatus.unknown(name)

    def statuses(self) -> dict[str, ZoneStatus]:
        """Every zone's status, Unknown for zones never checked."""
        with self._store.reading() as session:
            settings = SettingsRepository(session)
            zones = _load_zones(settings)
            known = _load_statuses(settings)
        return {name: known.get(name) or ZoneStatus.unknown(name) for name in sorted(zones)}

    def record(self, zone: Zone, status: ZoneStatus) -> ZoneStatus | None:
        """Store the outcome of a check of ``zone``; returns the previous status.

        A check that finished after its zone was removed or redefined (other peers, port or
        verification settings) is dropped: it describes a zone that no longer exists.
        """
        with self._record_lock, self._store.transaction() as session:
            settings = SettingsRepository(session)
            current = _load_zones(settings).get(zone.name)
            if current != zone:
                return None
            raw = settings.get(STATUS_KEY)
            statuses = dict(raw) if isinstance(raw, dict) else {}
            previous = statuses.get(zone.name)
            statuses[zone.name] = status.as_dict()
            settings.set(STATUS_KEY, statuses)
        return ZoneStatus.from_dict(previous) if isinstance(previous, dict) else None

    def due(self, at: dt.datetime | None = None) -> list[Zone]:
        """Zones whose interval has passed since their last check (or never checked)."""
        now = at or self._clock.now()
        with self._store.reading() as session:
            settings = SettingsRepository(session)
            zones = _load_zones(settings)
            statuses = _load_statuses(settings)
        due = []
        for name in sorted(zones):
            zone = zones[name]
            last = statuses.get(name)
            checked = last.checked_at if last is not None else None
            if checked is None or now - checked >= dt.timedelta(seconds=zone.interval):
                due.append(zone)
        return due


def alarms_for_zones(store: Store) -> list[ZoneAlarm]:
    """One "zone TLS failure" alarm per failed peer of every zone, from the recorded status.

    The alarm is critical when the whole zone is Failed, a warning when other peers keep the
    zone Active. It clears when the peer passes again or the zone is removed.
    """
    with store.reading() as session:
        settings = SettingsRepository(session)
        zones = _load_zones(settings)
        statuses = _load_statuses(settings)
    alarms: list[ZoneAlarm] = []
    for name in sorted(zones):
        status = statuses.get(name)
        if status is None or status.state == UNKNOWN:
            continue
        severity = "warning" if status.active else "critical"
        for peer in status.peers:
            if peer.active or peer.address not in zones[name].peers:
                continue
            alarms.append(
                ZoneAlarm(
                    f"zone:{name}:{peer.address}",
                    severity,
                    f"zone '{name}': TLS connection to {peer.address}:{zones[name].port} "
                    f"failed ({peer.reason}): {peer.detail}",
                )
            )
    return alarms
