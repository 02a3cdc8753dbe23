"""The cluster: its peers (one shared database), their liveness, and the exported cluster key
a new peer joins with."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from certway.clock import Clock
from certway.services.audit import Audit, audited
from certway.services.identities import Identities
from certway.services.node_settings import NodeSettings
from certway.store.db import Store, key_check_value
from certway.store.keyexport import seal_key
from certway.store.repositories import PeerRepository
from certway.store.vault import load_master_key

__all__ = ["Cluster", "PeerInfo"]


@dataclass(frozen=True, slots=True)
class PeerInfo:
    id: int
    fqdn: str
    this_node: bool
    joined_at: dt.datetime
    last_seen: dt.datetime | None
    server_cert_not_after: dt.datetime | None
    tls_result: str | None
    """How the other peers last verified this peer's server certificate (mutual-TLS health
    check); None: not checked yet."""
    tls_checked_at: dt.datetime | None

    def as_dict(self) -> dict[str, Any]:
        def iso(value: dt.datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        return {
            "id": self.id,
            "fqdn": self.fqdn,
            "this_node": self.this_node,
            "joined_at": self.joined_at.isoformat(),
            "last_seen": iso(self.last_seen),
            "server_cert_not_after": iso(self.server_cert_not_after),
            "tls_result": self.tls_result,
            "tls_checked_at": iso(self.tls_checked_at),
        }


class Cluster:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        audit: Audit,
        settings: NodeSettings,
        identities: Identities,
    ) -> None:
        self._store = store
        self._clock = clock
        self._audit = audit
        self._settings = settings
        self._identities = identities

    @property
    def node_id(self) -> int:
        return self._store.node_id

    @property
    def clustered(self) -> bool:
        """Whether this node keeps its state in a shared (PostgreSQL) database."""
        return self._store.clustered

    def peers(self) -> list[PeerInfo]:
        with self._store.reading() as session:
            rows = PeerRepository(session).all()
            return [
                PeerInfo(
                    id=row.id,
                    fqdn=row.fqdn,
                    this_node=row.id == self._store.node_id,
                    joined_at=row.joined_at,
                    last_seen=row.last_seen,
                    server_cert_not_after=row.server_cert_not_after,
                    tls_result=row.tls_result,
                    tls_checked_at=row.tls_checked_at,
                )
                for row in rows
            ]

    def heartbeat(self) -> None:
        """Record that this peer is alive now, with its FQDN and server certificate expiry
        (the server calls it on every scheduler round)."""
        active = self._identities.active("server")
        not_after = active.certificate.not_valid_after_utc if active is not None else None
        fqdn = self._settings.get().fqdn
        with self._store.transaction() as session:
            PeerRepository(session).seen(
                self._store.node_id, self._clock.now(), fqdn=fqdn, server_cert_not_after=not_after
            )

    @audited("cluster.export-key", target=lambda *a, **k: "cluster key")
    def export_key(self, passphrase: str) -> bytes:
        """The cluster key encrypted under ``passphrase`` (memory-hard KDF, AES-GCM): what
        ``init --join`` reads. The key itself is never returned."""
        key = load_master_key(self._store.data_dir)
        sealed = seal_key(key, passphrase)
        with self._store.transaction() as session:
            PeerRepository(session).key_exported(key_check_value(key), self._clock.now())
        return sealed
