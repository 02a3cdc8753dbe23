"""Choosing the certificate for a TLS ClientHello's server name: a map from domain to
active identity, rebuilt once per change of the identity counter."""

from __future__ import annotations

from dataclasses import dataclass

from certway.services.identities.model import ActiveIdentity, normalise_domain
from certway.services.identities.slots import Slots
from certway.store.repositories import SlotRepository

__all__ = ["SniLookup"]


@dataclass(frozen=True)
class _SniMap:
    version: int
    server: ActiveIdentity | None
    domains: dict[str, ActiveIdentity]
    host_label: str


class SniLookup(Slots):
    """The identity to present for a server name."""

    _sni: _SniMap | None = None  # set per instance when first built

    def certificate_for_sni(self, server_name: str | None) -> ActiveIdentity | None:
        """The identity for a TLS ClientHello's SNI: the domain's certificate when the name is
        the domain or the node's host label + domain, else the server certificate. O(1): a
        dict built once per change of the identity counter."""
        sni = self._sni_map()
        if server_name:
            wanted = normalise_domain(server_name)
            found = sni.domains.get(wanted)
            if found is None:
                label, _, rest = wanted.partition(".")
                if label == sni.host_label:
                    found = sni.domains.get(rest)
            if found is not None:
                return found
        return sni.server

    def _sni_map(self) -> _SniMap:
        version = self.version()
        cached = self._sni
        if cached is not None and cached.version == version:
            return cached
        with self._lock:
            cached = self._sni  # another thread may have rebuilt it meanwhile
            if cached is not None and cached.version == version:
                return cached
            with self._store.reading() as session:
                repo = SlotRepository(session)
                domains = {
                    slot.name: self._identity(slot, row)
                    for slot, row in repo.active_versions("domain")
                }
                server = self._active_row(repo, "server", "")
            sni = _SniMap(
                version,
                self._identity(*server) if server else None,
                domains,
                self._node.get().host_label,
            )
            self._sni = sni
            return sni
