"""Node settings (N): system FQDN, role, cluster FQDN and peers."""

from __future__ import annotations

import socket
from dataclasses import dataclass, replace

from certway.clock import Clock
from certway.errors import PolicyViolation
from certway.pki.names import check_fqdn
from certway.services.audit import Audit, audited
from certway.store.db import Store
from certway.store.repositories import PeerRepository, SettingsRepository

__all__ = ["IDENTITY_VERSION", "NodeConfig", "NodeSettings", "default_fqdn"]

_KEY = "node"
IDENTITY_VERSION = "version.identity"
"""Bumped whenever an active certificate or node setting changes: listeners reload."""


def default_fqdn() -> str:
    """This machine's FQDN when it has one, else ``<hostname>.local``."""
    for candidate in (socket.getfqdn(), f"{socket.gethostname()}.local", "certway.local"):
        try:
            return check_fqdn(candidate)
        except PolicyViolation:
            continue
    return "certway.local"


@dataclass(frozen=True, slots=True)
class NodeConfig:
    fqdn: str
    role: str = "edge"
    cluster_fqdn: str | None = None
    peers: tuple[str, ...] = ()

    @property
    def host_label(self) -> str:
        return self.fqdn.split(".", 1)[0]

    @property
    def clustered(self) -> bool:
        return bool(self.cluster_fqdn or self.peers)

    def as_dict(self) -> dict[str, object]:
        return {
            "fqdn": self.fqdn,
            "role": self.role,
            "cluster_fqdn": self.cluster_fqdn,
            "peers": list(self.peers),
        }


class NodeSettings:
    def __init__(self, store: Store, clock: Clock, audit: Audit) -> None:
        self._store = store
        self._clock = clock
        self._audit = audit

    def get(self) -> NodeConfig:
        with self._store.reading() as session:
            raw = SettingsRepository(session).get(_KEY)
            # On a shared database the other peers are the cluster's (beside any configured).
            others = (
                [p.fqdn for p in PeerRepository(session).all() if p.id != self._store.node_id]
                if self._store.clustered
                else []
            )
        if not isinstance(raw, dict):
            raw = {}
        configured = tuple(raw.get("peers") or ())
        return NodeConfig(
            fqdn=str(raw.get("fqdn") or default_fqdn()),
            role=str(raw.get("role") or "edge"),
            cluster_fqdn=raw.get("cluster_fqdn") or None,
            peers=tuple(dict.fromkeys([*configured, *(o for o in others if o)])),
        )

    @audited("node.set", target=lambda **k: "node settings")
    def set(
        self,
        *,
        fqdn: str | None = None,
        role: str | None = None,
        cluster_fqdn: str | None = None,
        peers: list[str] | None = None,
    ) -> NodeConfig:
        """Change settings; ``cluster_fqdn=""`` and ``peers=[]`` clear them."""
        config = self.get()
        if fqdn is not None:
            config = replace(config, fqdn=check_fqdn(fqdn, what="system FQDN"))
        if role is not None:
            if role not in ("edge", "core"):
                raise PolicyViolation("role", f"role must be 'edge' or 'core', not '{role}'")
            config = replace(config, role=role)
        if cluster_fqdn is not None:
            config = replace(
                config,
                cluster_fqdn=check_fqdn(cluster_fqdn, what="cluster FQDN")
                if cluster_fqdn
                else None,
            )
        if peers is not None:
            clean = tuple(dict.fromkeys(check_fqdn(p, what="peer FQDN") for p in peers if p))
            config = replace(config, peers=clean)
        with self._store.transaction() as session:
            settings = SettingsRepository(session)
            settings.set(_KEY, config.as_dict())
            settings.bump(IDENTITY_VERSION)
            if fqdn is not None:
                PeerRepository(session).set_fqdn(self._store.node_id, config.fqdn)
            self._audit.note(**config.as_dict())
        return config

    def mutual_tls_in_use(self) -> bool:
        """Whether a feature needs the node certificate to carry clientAuth (an upload check):
        clustering, neighbour zones (certway is then the TLS client and presents it, the client
        certificate defaulting to the server certificate) or SIP TLS with mutual TLS *required*.
        ("request", the default, asks peers for certificates without making mutual TLS
        mandatory.)"""
        if self.get().clustered:
            return True
        with self._store.reading() as session:
            settings = SettingsRepository(session)
            sip = settings.get("sip")
            zones = settings.get("zones")
        if zones:
            return True
        return isinstance(sip, dict) and sip.get("mutual_tls") == "require"
