"""The cluster: its peers (one shared database, at most ``MAX_PEERS``), their liveness, the
removal of a decommissioned peer, and the exported cluster key a new peer joins with."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from certway.clock import Clock
from certway.errors import Conflict, NotFound, PolicyViolation
from certway.pki.text import plural
from certway.services.audit import Audit, audited
from certway.services.cluster_tls import describe_result
from certway.services.identities import Identities
from certway.services.node_settings import NodeSettings
from certway.store.db import MAX_PEERS, Store, key_check_value
from certway.store.keyexport import seal_key
from certway.store.repositories import PeerRepository
from certway.store.schema import PeerRow
from certway.store.topics import Topic, TopicRepository
from certway.store.vault import load_master_key

__all__ = [
    "HEARTBEAT_INTERVAL",
    "MAX_PEERS",
    "STOPPED_AFTER",
    "Cluster",
    "ClusterStatus",
    "PeerInfo",
    "RemovedPeer",
]

HEARTBEAT_INTERVAL = dt.timedelta(seconds=30)
"""How often a serving peer records that it is alive (its scheduler round)."""
STOPPED_AFTER = 10 * HEARTBEAT_INTERVAL
"""A peer silent this long is taken as stopped and may be removed; one seen more recently is
still running (a busy round may be late, ten in a row are not)."""


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
            "tls_status": self.tls_status,
            "tls_checked_at": iso(self.tls_checked_at),
        }

    @property
    def tls_status(self) -> str:
        """The last check as ``cluster status`` shows it: verified, FAILED: reason, or not
        checked."""
        return describe_result(self.tls_result)

    @property
    def label(self) -> str:
        return f"peer {self.id} ({self.fqdn})" if self.fqdn else f"peer {self.id}"


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    """What ``cluster status`` shows: clustered or not, this node, the peers."""

    clustered: bool
    node_id: int
    database: str
    """The database URL, without password."""
    peers: list[PeerInfo]

    def as_dict(self) -> dict[str, Any]:
        return {
            "clustered": self.clustered,
            "node_id": self.node_id,
            "database": self.database,
            "max_peers": MAX_PEERS,
            "peers": [p.as_dict() for p in self.peers],
        }


@dataclass(frozen=True, slots=True)
class RemovedPeer:
    peer: PeerInfo
    rows: dict[str, int]
    """Rows deleted per table."""

    def as_dict(self) -> dict[str, Any]:
        return {"peer": self.peer.as_dict(), "rows": dict(self.rows)}


def _ago(delta: dt.timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 120:
        return plural(seconds, "second")
    return plural(seconds // 60, "minute")


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

    def _info(self, row: PeerRow) -> PeerInfo:
        return PeerInfo(
            id=row.id,
            fqdn=row.fqdn,
            this_node=row.id == self._store.node_id,
            joined_at=row.joined_at,
            last_seen=row.last_seen,
            server_cert_not_after=row.server_cert_not_after,
            tls_result=row.tls_result,
            tls_checked_at=row.tls_checked_at,
        )

    def peers(self) -> list[PeerInfo]:
        with self._store.reading() as session:
            return [self._info(row) for row in PeerRepository(session).all()]

    def status(self) -> ClusterStatus:
        return ClusterStatus(
            clustered=self.clustered,
            node_id=self.node_id,
            database=self._store.database_url,
            peers=self.peers(),
        )

    def find(self, peer: str | int) -> PeerInfo:
        """A peer by its node id or its FQDN (as ``cluster status`` shows them)."""
        wanted = str(peer).strip()
        for info in self.peers():
            if str(info.id) == wanted or (info.fqdn and info.fqdn.lower() == wanted.lower()):
                return info
        raise NotFound(
            f"the cluster has no peer '{wanted}' (name a peer by its node id or FQDN as the "
            "cluster status shows them)"
        )

    @audited("cluster.remove-peer", target=lambda peer: f"peer {peer}")
    def remove_peer(self, peer: str | int) -> RemovedPeer:
        """Remove a decommissioned peer and its per-peer state (server, client and domain
        certificates, pending CSRs and their keys, its own settings, its alarms), in one
        transaction. Refused, changing nothing: on an embedded node, for this node itself,
        for a peer seen less than ``STOPPED_AFTER`` ago (still running), for an unknown
        peer."""
        if not self.clustered:
            raise PolicyViolation(
                "cluster-embedded",
                "this node is embedded (SQLite), a cluster of one: there are no peers to remove",
            )
        found = self.find(peer)
        if found.this_node:
            raise Conflict(
                f"{found.label} is this node: a node cannot remove itself; stop it and remove "
                "it from another peer"
            )
        now = self._clock.now()
        with self._store.transaction() as session:
            peers = PeerRepository(session)
            row = peers.get(found.id, for_update=True)  # its heartbeat waits for us
            if row is None:
                raise NotFound(f"{found.label} was removed meanwhile")
            if row.last_seen is not None and now - row.last_seen < STOPPED_AFTER:
                raise Conflict(
                    f"{found.label} was last seen {_ago(now - row.last_seen)} ago: it is still "
                    "running; stop certway on it first, then remove it once it has been "
                    f"silent for {_ago(STOPPED_AFTER)}"
                )
            current = self._info(row)
            rows = peers.remove(found.id)
            TopicRepository(session).bump(Topic.CLUSTER)
            TopicRepository(session).bump(Topic.IDENTITY)
            self._audit.note(node_id=found.id, fqdn=found.fqdn, rows=sum(rows.values()))
        return RemovedPeer(current, rows)

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
            TopicRepository(session).bump(Topic.CLUSTER)
        return sealed
