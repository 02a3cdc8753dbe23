"""Peers authenticate each other with their server certificates (Expressway's cluster TLS
verification): ``permissive`` checks and reports, ``enforce`` also refuses a peer whose
certificate fails.

A peer's certificate is judged through the node's one validation path
(``services.peer_validation`` via ``ClientCheck``), with the ``admin-https`` service's
profile and revocation policy (the peers talk over their admin listeners): as a server
certificate for the peer's FQDN when this node calls the peer, as a client certificate when
a peer calls this node's health endpoint.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from certway.clock import Clock
from certway.errors import DecodeError, PolicyViolation
from certway.services.audit import Audit, audited
from certway.services.client_check import ClientCheck
from certway.store.db import Store
from certway.store.repositories import PeerRepository, SettingsRepository
from certway.store.topics import Topic, TopicRepository

__all__ = [
    "SERVICE",
    "ClusterTls",
    "PeerJudgement",
    "PeerTlsResult",
    "Verification",
    "describe_result",
]

SERVICE = "admin-https"  # whose profile and revocation policy judge the peers
_KEY = "cluster.tls_verification"


class Verification(StrEnum):
    PERMISSIVE = "permissive"  # check and report (alarm), never refuse
    ENFORCE = "enforce"  # a peer whose certificate fails is refused


@dataclass(frozen=True, slots=True)
class PeerJudgement:
    valid: bool
    reason: str


@dataclass(frozen=True, slots=True)
class PeerTlsResult:
    """One check of a peer: its address, FQDN, whether its certificate passed and why."""

    fqdn: str
    address: str
    valid: bool
    reason: str
    checked_at: dt.datetime
    refused: bool = False  # the peer refused us (enforce on its side) or we could not connect

    def as_dict(self) -> dict[str, Any]:
        return {
            "fqdn": self.fqdn,
            "address": self.address,
            "valid": self.valid,
            "reason": self.reason,
            "checked_at": self.checked_at.isoformat(),
            "refused": self.refused,
        }


def describe_result(stored: str | None) -> str:
    """A peer's last check as ``cluster status`` shows it."""
    if not stored:
        return "not checked"
    try:
        last = json.loads(stored)
    except ValueError:
        return stored
    if not isinstance(last, dict):
        return stored
    if last.get("valid") and not last.get("refused"):
        return "verified"
    return f"FAILED: {last.get('reason', '')}"


class ClusterTls:
    TOPICS = (Topic.CLUSTER,)

    def __init__(self, store: Store, clock: Clock, audit: Audit, check: ClientCheck) -> None:
        self._store = store
        self._clock = clock
        self._audit = audit
        self._check = check

    def verification(self) -> Verification:
        with self._store.reading() as session:
            raw = SettingsRepository(session).get(_KEY)
        try:
            return Verification(str(raw))
        except ValueError:
            return Verification.PERMISSIVE  # not set (or unreadable): Expressway's default

    @audited("cluster.tls-verification.set", target=lambda mode: "cluster TLS verification")
    def set_verification(self, mode: str) -> Verification:
        try:
            chosen = Verification(mode)
        except ValueError:
            raise PolicyViolation(
                "cluster-tls",
                f"cluster TLS verification must be permissive or enforce, not '{mode}'",
            ) from None
        with self._store.transaction() as session:
            SettingsRepository(session).set(_KEY, chosen.value)
            TopicRepository(session).bump(Topic.CLUSTER)
            self._audit.note(mode=chosen.value)
        return chosen

    def judge(self, certificate_pem: bytes | None, *, as_server_for: str | None) -> PeerJudgement:
        """Judge a peer's certificate: ``as_server_for=FQDN`` when we called the peer (a server
        certificate for that name), None when the peer called us (a client certificate)."""
        if not certificate_pem:
            return PeerJudgement(False, "the peer presented no certificate")
        try:
            report = self._check.check(
                certificate_pem,
                purpose="server" if as_server_for else "client",
                name=as_server_for,
                service=SERVICE,
            )
        except (DecodeError, PolicyViolation) as exc:
            return PeerJudgement(False, str(exc))
        result = report.result
        return PeerJudgement(result.valid, result.reason)

    # -- the peers' checks of each other -----------------------------------------------------
    def register_address(self, address: str) -> None:
        """Where this peer's admin listener answers (its health endpoint), for the others."""
        with self._store.transaction() as session:
            PeerRepository(session).set_admin_address(self._store.node_id, address)

    def others(self) -> list[tuple[int, str, str]]:
        """(node id, FQDN, admin address) of every other peer that has said where it listens."""
        with self._store.reading() as session:
            rows = PeerRepository(session).all()
            return [
                (row.id, row.fqdn, row.admin_address)
                for row in rows
                if row.id != self._store.node_id and row.admin_address
            ]

    def record(self, node_id: int, result: PeerTlsResult) -> None:
        """Keep the last check of a peer (``cluster status`` shows it, an alarm follows it)."""
        with self._store.transaction() as session:
            PeerRepository(session).set_tls_result(
                node_id, json.dumps(result.as_dict(), sort_keys=True), result.checked_at
            )

    def failing(self) -> list[tuple[str, str]]:
        """(FQDN, reason) of the other peers whose last check failed."""
        found = []
        with self._store.reading() as session:
            for row in PeerRepository(session).all():
                if row.id == self._store.node_id or not row.tls_result:
                    continue
                try:
                    last = json.loads(row.tls_result)
                except ValueError:
                    continue
                if isinstance(last, dict) and not last.get("valid", True):
                    found.append((row.fqdn, str(last.get("reason", ""))))
        return found
