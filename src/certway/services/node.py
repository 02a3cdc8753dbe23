"""The composition root: one node = one store + the services working on it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cryptography import x509

from certway.clock import Clock, SystemClock
from certway.errors import PolicyViolation
from certway.fetch import FetchPool
from certway.pki.names import check_fqdn
from certway.services.acme_client import AcmeClient
from certway.services.acme_server import AcmeServer
from certway.services.admin_security import AdminSecurity
from certway.services.admins import AdminAccounts
from certway.services.alarms import Alarms
from certway.services.api_tokens import ApiTokens
from certway.services.audit import Audit
from certway.services.backup import Backups
from certway.services.client_check import ClientCheck
from certway.services.cluster import Cluster
from certway.services.cluster_tls import ClusterTls
from certway.services.identities import Identities
from certway.services.ldap_settings import LdapSettings
from certway.services.local_ca import LocalCA
from certway.services.node_settings import NodeSettings, default_fqdn
from certway.services.peer_validation import PeerValidation
from certway.services.revocation import (
    Fetcher,
    FetcherFactory,
    FetchLimits,
    RevocationService,
    default_fetcher,
)
from certway.services.sip_settings import SipSettings
from certway.services.syslog import SyslogSettings
from certway.services.tls_settings import TlsSettings
from certway.services.tokens import Tokens
from certway.services.trusted_cas import TrustedCAs
from certway.services.zones import Zones
from certway.store.db import Store

__all__ = ["Node"]


class Node:
    """A certway node. Nothing is created at import time: tests build as many as they like.

    ``fetch_limits`` (default: from the environment, see ``FetchLimits``) bounds revocation
    fetches; ``fetch_pool`` is where they run (its threads start on first use)."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        fetcher_factory: FetcherFactory = default_fetcher,
        *,
        fetch_limits: FetchLimits | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.fetch_limits = fetch_limits or FetchLimits.from_environment()
        self.fetch_pool = FetchPool(self.fetch_limits.slots)
        self.audit = Audit(store, clock)
        self.settings = NodeSettings(store, clock, self.audit)
        self.tls = TlsSettings(store, clock, self.audit)
        if fetcher_factory is default_fetcher:
            # HTTPS downloads use the "outbound" TLS profile in force at each fetch.
            fetcher_factory = self._outbound_fetcher
        self.tokens = Tokens(store, clock, self.audit)
        self.syslog = SyslogSettings(store, clock, self.audit)
        self.local_ca = LocalCA(store, clock, self.audit, self.tokens)
        self.trusted_cas = TrustedCAs(store, clock, self.audit)
        self.revocation = RevocationService(
            store,
            clock,
            self.trusted_cas,
            self.audit,
            fetcher_factory,
            limits=self.fetch_limits,
            pool=self.fetch_pool,
        )
        self.peer_validation = PeerValidation(self.trusted_cas, self.revocation, self.local_ca)
        self.client_check = ClientCheck(clock, self.peer_validation)
        self.identities = Identities(
            store, clock, self.audit, self.settings, self.trusted_cas, self.local_ca
        )
        self.sip = SipSettings(store, clock, self.audit)
        self.acme = AcmeClient(
            store, clock, self.audit, self.identities, self.peer_validation, self.tls, self.settings
        )
        self.cluster_tls = ClusterTls(store, clock, self.audit, self.client_check)
        self.ldap = LdapSettings(store, clock, self.audit)
        self.alarms = Alarms(
            store,
            clock,
            self.identities,
            self.trusted_cas,
            self.local_ca,
            self.revocation,
            self.sip,
            self.tokens,
            self.syslog,
            acme=self.acme,
            cluster=self.cluster_tls,
            ldap=self.ldap,
        )
        self.admins = AdminAccounts(store, clock, self.audit)
        self.api_tokens = ApiTokens(store, clock, self.audit)
        self.zones = Zones(store, clock, self.audit)
        self.admin_security = AdminSecurity(store, self.audit, self.admins, self.client_check)
        self.backups = Backups(store, clock, self.audit, self.settings)
        self.cluster = Cluster(store, clock, self.audit, self.settings, self.identities)
        self.acme_server = AcmeServer(store, clock, self.audit, self.local_ca)

    def _outbound_fetcher(self, trusted: Sequence[x509.Certificate]) -> Fetcher:
        return default_fetcher(trusted, profile=self.tls.profile("outbound"))

    @classmethod
    def init(
        cls,
        data_dir: Path,
        clock: Clock | None = None,
        fetcher_factory: FetcherFactory = default_fetcher,
        *,
        fetch_limits: FetchLimits | None = None,
        fqdn: str | None = None,
        role: str | None = None,
        factory: bool = True,
        database: str | None = None,
        join_key: bytes | None = None,
    ) -> Node:
        """Create the data directory (master key 0600, database) if needed, then open it.

        A new node gets its node settings and, unless ``factory=False``, the factory state
        (factory state): a temporary CA in the trusted list and a server certificate issued by it.

        ``database`` (a PostgreSQL URL): a cluster node. Without ``join_key`` it creates the
        cluster (schema and cluster key) in that empty database; with the cluster's key it
        joins it as a new peer (``fqdn`` required: each peer has its own).
        """
        if database is None:
            store = Store.create(data_dir)
        elif join_key is None:
            store = Store.create_cluster(data_dir, database, fqdn=fqdn or default_fqdn())
        else:
            if not fqdn:
                raise PolicyViolation("fqdn", "a joining peer needs its own FQDN")
            store = Store.join_cluster(
                data_dir, database, join_key, fqdn=check_fqdn(fqdn, what="system FQDN")
            )
        if database is not None and fqdn is None:
            fqdn = default_fqdn()
        node = cls(
            store,
            clock or SystemClock(),
            fetcher_factory,
            fetch_limits=fetch_limits,
        )
        if fqdn is not None or role is not None:
            node.settings.set(fqdn=fqdn, role=role)
        if factory:
            node.identities.factory_setup()
        if database is not None:
            node.cluster.heartbeat()
        return node

    @classmethod
    def open(
        cls,
        data_dir: Path,
        clock: Clock | None = None,
        fetcher_factory: FetcherFactory = default_fetcher,
        *,
        fetch_limits: FetchLimits | None = None,
    ) -> Node:
        return cls(
            Store.open(data_dir), clock or SystemClock(), fetcher_factory, fetch_limits=fetch_limits
        )

    def close(self) -> None:
        self.acme_server.close()
        self.fetch_pool.close()
        self.tokens.close()
        self.syslog.close()
        self.store.close()
