"""Node settings (N): system FQDN, role, cluster FQDN and peers."""

from __future__ import annotations

import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass, replace

from certway.clock import Clock
from certway.errors import PolicyViolation
from certway.pki.names import check_fqdn
from certway.services.audit import Audit, audited
from certway.store.db import Store
from certway.store.repositories import PeerRepository, SettingsRepository
from certway.store.topics import Topic, TopicRepository

__all__ = [
    "DEFAULT_PUBLISH_PORT",
    "NodeConfig",
    "NodeSettings",
    "check_publish_url",
    "default_fqdn",
    "read_node_config",
]

DEFAULT_PUBLISH_PORT = 8080
"""The port of `certway serve`'s CRL/OCSP publication listener unless told otherwise."""

_KEY = "node"


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
    publish_url: str | None = None

    @property
    def publication_base(self) -> str:
        """Where relying parties reach this node's CRLs (``/crl/<ca>.crl``) and OCSP
        responder (``/ocsp``): the set URL, else the FQDN and the default publication port."""
        return self.publish_url or f"http://{self.fqdn}:{DEFAULT_PUBLISH_PORT}"

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
            "publish_url": self.publish_url,
            "publication_base": self.publication_base,
        }


def read_node_config(settings: SettingsRepository, others: Sequence[str] = ()) -> NodeConfig:
    """The node settings as stored (defaults where unset); ``others``: the cluster's other
    peers on a shared database, added to the configured ones."""
    raw = settings.get(_KEY)
    if not isinstance(raw, dict):
        raw = {}
    configured = tuple(raw.get("peers") or ())
    return NodeConfig(
        fqdn=str(raw.get("fqdn") or default_fqdn()),
        role=str(raw.get("role") or "edge"),
        cluster_fqdn=raw.get("cluster_fqdn") or None,
        peers=tuple(dict.fromkeys([*configured, *(o for o in others if o)])),
        publish_url=raw.get("publish_url") or None,
    )


class NodeSettings:
    def __init__(self, store: Store, clock: Clock, audit: Audit) -> None:
        self._store = store
        self._clock = clock
        self._audit = audit

    def get(self) -> NodeConfig:
        with self._store.reading() as session:
            # On a shared database the other peers are the cluster's (beside any configured).
            others = (
                [p.fqdn for p in PeerRepository(session).all() if p.id != self._store.node_id]
                if self._store.clustered
                else []
            )
            return read_node_config(SettingsRepository(session), others)

    @audited("node.set", target=lambda **k: "node settings")
    def set(
        self,
        *,
        fqdn: str | None = None,
        role: str | None = None,
        cluster_fqdn: str | None = None,
        peers: list[str] | None = None,
        publish_url: str | None = None,
    ) -> NodeConfig:
        """Change settings; ``cluster_fqdn=""``, ``peers=[]`` and ``publish_url=""`` clear
        them."""
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
        if publish_url is not None:
            config = replace(config, publish_url=check_publish_url(publish_url) or None)
        with self._store.transaction() as session:
            settings = SettingsRepository(session)
            stored = config.as_dict()
            del stored["publication_base"]
            settings.set(_KEY, stored)
            TopicRepository(session).bump(Topic.IDENTITY)
            if fqdn is not None:
                PeerRepository(session).set_fqdn(self._store.node_id, config.fqdn)
            self._audit.note(**stored)
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


_PUBLISH_URL = re.compile(
    r"^https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?(/[^\s?#]*)?$"
)


def check_publish_url(url: str) -> str:
    """``http://HOST[:PORT][/path]`` without a trailing slash ('' stays '': no URL)."""
    url = url.strip()
    if not url:
        return ""
    match = _PUBLISH_URL.match(url)
    if match is None:
        raise PolicyViolation(
            "publish-url",
            f"publication URL '{url}' is not of the form http://HOST:PORT (e.g. "
            "http://ca.example.com:8080)",
        )
    if match.group(2) and not 0 < int(match.group(2)[1:]) < 65536:
        raise PolicyViolation("publish-url", f"publication URL '{url}' has an invalid port")
    return url.rstrip("/")
