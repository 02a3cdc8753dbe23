"""The LDAP client of admin authentication (ldap3, ADR 0007).

Every connection is TLS — LDAPS, or StartTLS on ldap:// — from a context certway builds: the
``ldap`` service's TLS profile, the node's client certificate (presented when the server asks
for one), and no verification by OpenSSL. Right after the handshake the server's certificate
is judged by certway's one validation path (``ValidationState.validate`` of the ``ldap``
service: trusted CA list, revocation policy, the URL's host name), and the connection is
dropped before anything is sent when it fails. With ``verify off`` the connection is still
TLS but the certificate is not judged.

A login: search the user with the service bind (the user name escaped per RFC 4515), read
their groups (``memberOf`` and a search for groups listing them as ``member`` or
``uniqueMember``), then bind as the user on a connection of its own; the groups map to an
access level (read-write wins). The service-bind connection is kept and reused until the
settings, the trusted CAs, the CRLs or the client certificate change, or it breaks. Every
network step is bounded by ``timeout``.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ldap3 import NONE, SUBTREE, Connection, Server, Tls
from ldap3.core.exceptions import LDAPException, LDAPInvalidCredentialsResult
from ldap3.utils.conv import escape_filter_chars

from certway.errors import CertwayError
from certway.services.admins import AdminInfo
from certway.services.ldap_settings import (
    RECOVERY_ACCOUNT,
    AuthSource,
    LdapConfig,
)
from certway.services.node import Node
from certway.store.topics import Topic, TopicRepository
from certway.tls.contexts import load_identity
from certway.tlsconf.presented import presented_chain
from certway.waiting import check_may_wait

__all__ = ["DEFAULT_TIMEOUT", "Directory", "DirectoryTest", "DirectoryUnavailable"]

log = logging.getLogger("certway.ldap")

DEFAULT_TIMEOUT = 5
"""Seconds for each connect, TLS handshake and LDAP answer (whole seconds: ldap3 sets
SO_RCVTIMEO from it)."""
MAX_NAME = 256
_WATCHED = (Topic.LDAP, Topic.TRUSTED_CAS, Topic.REVOCATION, Topic.IDENTITY)


class DirectoryUnavailable(CertwayError):
    """The LDAP server cannot be used: unreachable, its certificate refused, the service bind
    refused. The message says which, never a password."""


@dataclass(frozen=True, slots=True)
class DirectoryTest:
    """What ``ldap test`` found for one user."""

    user: str
    dn: str | None
    groups: tuple[str, ...]
    access: str | None
    authenticated: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "dn": self.dn,
            "groups": list(self.groups),
            "access": self.access,
            "authenticated": self.authenticated,
        }


class _Refused(Exception):
    """Raised inside ldap3's socket wrapping when certway refuses the server certificate."""


class _CertwayTls(Tls):
    """ldap3's TLS hook, replaced: certway's context, then certway's own validation."""

    def __init__(
        self, context: ssl.SSLContext, check: Callable[[bytes | None, list[bytes]], None]
    ) -> None:
        super().__init__(validate=ssl.CERT_NONE)
        self._context = context
        self._check = check
        self.refused: str | None = None

    def wrap_socket(self, connection: Any, do_handshake: bool = False) -> None:
        wrapped = self._context.wrap_socket(
            connection.socket,
            server_side=False,
            do_handshake_on_connect=True,
            server_hostname=connection.server.host,
        )
        connection.socket = wrapped
        try:
            self._check(wrapped.getpeercert(binary_form=True), presented_chain(wrapped))
        except _Refused as exc:
            self.refused = str(exc)
            wrapped.close()
            raise


class Directory:
    """Admin authentication against the configured LDAP server, for one process."""

    def __init__(self, node: Node, *, timeout: int = DEFAULT_TIMEOUT) -> None:
        self.node = node
        self.timeout = timeout
        self._lock = threading.Lock()
        self._service: tuple[tuple[Any, ...], Connection] | None = None

    # -- what callers use ---------------------------------------------------------------------
    def source(self) -> AuthSource:
        source = self.node.ldap.source()
        if source is not AuthSource.LOCAL and self.node.ldap.get() is None:
            return AuthSource.LOCAL
        return source

    def verify(self, name: str, password: str) -> AdminInfo | None:
        """A password login under the admin-auth source: the account, or None when refused.
        Raises ``DirectoryUnavailable`` when only the directory could have said yes and it
        cannot be used (the recovery account still logs in locally)."""
        source = self.source()
        admins = self.node.admins
        if source is AuthSource.LOCAL:
            return admins.verify(name, password)
        if source is AuthSource.BOTH or name == RECOVERY_ACCOUNT:
            local = admins.verify(name, password)
            if local is not None or source is AuthSource.LDAP:
                return local
        return self.authenticate(name, password)

    def lookup(self, name: str) -> AdminInfo | None:
        """The account of a username mapped from a client certificate (no password): a local
        account (source local or both, or the recovery account), else the directory's."""
        source = self.source()
        if source is not AuthSource.LDAP or name == RECOVERY_ACCOUNT:
            local = self.node.admins.get(name)
            if local is not None or source is AuthSource.LOCAL:
                return local
        config = self.node.ldap.require()
        found = self._find(config, name)
        if found is None:
            return None
        access = self.node.ldap.access_for(config, found[1])
        return AdminInfo(name, access) if access else None

    def authenticate(self, name: str, password: str) -> AdminInfo | None:
        config = self.node.ldap.require()
        if not password or not 0 < len(name) <= MAX_NAME or "\0" in name:
            return None  # an empty password would be an anonymous bind
        found = self._find(config, name)
        if found is None:
            return None
        dn, groups = found
        if not self._bind_as(config, dn, password):
            return None
        access = self.node.ldap.access_for(config, groups)
        if access is None:
            log.warning("event=ldap-no-group user=%r dn=%r", name[:64], dn)
            return None
        return AdminInfo(name, access)

    def test(self, name: str, password: str | None) -> DirectoryTest:
        """``ldap test``: find ``name``, bind as them when a password is given, and report
        the groups and the access level."""
        config = self.node.ldap.require()
        found = self._find(config, name) if 0 < len(name) <= MAX_NAME else None
        if found is None:
            return DirectoryTest(name, None, (), None, False)
        dn, groups = found
        authenticated = bool(password) and self._bind_as(config, dn, password or "")
        access = self.node.ldap.access_for(config, groups)
        return DirectoryTest(name, dn, tuple(groups), access, authenticated)

    def close(self) -> None:
        with self._lock:
            self._drop()

    # -- the directory ------------------------------------------------------------------------
    def _find(self, config: LdapConfig, name: str) -> tuple[str, list[str]] | None:
        """The user's DN and group DNs, through the service bind; None when not exactly one
        entry matches."""
        user_filter = config.user_filter.replace("{user}", escape_filter_chars(name))
        with self._lock:
            for attempt in (1, 2):
                conn = self._service_connection(config)
                try:
                    conn.search(
                        config.base_dn,
                        user_filter,
                        SUBTREE,
                        attributes=["memberOf"],
                        size_limit=2,
                        time_limit=self.timeout,
                    )
                    entries = [e for e in conn.response or () if e.get("type") == "searchResEntry"]
                    if len(entries) != 1:
                        if len(entries) > 1:
                            log.warning("event=ldap-ambiguous-user user=%r", name[:64])
                        self._ok()
                        return None
                    dn = str(entries[0]["dn"])
                    groups = [str(g) for g in entries[0]["attributes"].get("memberOf") or ()]
                    member = escape_filter_chars(dn)
                    conn.search(
                        config.base_dn,
                        f"(|(member={member})(uniqueMember={member}))",
                        SUBTREE,
                        attributes=[],
                        size_limit=500,
                        time_limit=self.timeout,
                    )
                    groups += [
                        str(e["dn"])
                        for e in conn.response or ()
                        if e.get("type") == "searchResEntry"
                    ]
                    self._ok()
                    return dn, list(dict.fromkeys(groups))
                except LDAPException as exc:
                    self._drop()
                    if attempt == 2:  # a kept connection may have gone stale: retry once
                        raise self._unavailable(config, f"search failed: {exc}") from None
        return None  # pragma: no cover - the loop returns or raises

    def _bind_as(self, config: LdapConfig, dn: str, password: str) -> bool:
        conn, tls = self._connection(config, dn, password)
        try:
            _open(conn, config)
            conn.bind()
            return True
        except LDAPInvalidCredentialsResult:
            return False
        except LDAPException as exc:
            raise self._unavailable(config, _reason(exc, tls)) from None
        finally:
            _close(conn)

    def _service_connection(self, config: LdapConfig) -> Connection:
        marker = self._marker()
        if self._service is not None and self._service[0] == marker:
            return self._service[1]
        self._drop()
        conn, tls = self._connection(config, config.bind_dn, self.node.ldap.bind_password())
        try:
            _open(conn, config)
            conn.bind()
        except LDAPInvalidCredentialsResult:
            _close(conn)
            raise self._unavailable(
                config, f"the service bind as {config.bind_dn} was refused (wrong bind password?)"
            ) from None
        except LDAPException as exc:
            _close(conn)
            raise self._unavailable(config, _reason(exc, tls)) from None
        self._service = (marker, conn)
        return conn

    def _drop(self) -> None:
        if self._service is not None:
            _close(self._service[1])
            self._service = None

    def _marker(self) -> tuple[Any, ...]:
        with self.node.store.reading() as session:
            counters = TopicRepository(session).versions(_WATCHED)
        return (*counters, self.node.tls.profile("ldap"))

    def _connection(
        self, config: LdapConfig, user: str, password: str
    ) -> tuple[Connection, _CertwayTls]:
        check_may_wait("the LDAP server")
        tls = _CertwayTls(self._context(), lambda der, chain: self._judge(config, der, chain))
        server = Server(
            config.host,
            port=config.port,
            use_ssl=config.ldaps,
            tls=tls,
            get_info=NONE,
            connect_timeout=self.timeout,
        )
        conn = Connection(
            server,
            user=user,
            password=password,
            receive_timeout=self.timeout,
            raise_exceptions=True,
            read_only=True,
            auto_referrals=False,
        )
        return conn, tls

    def _context(self) -> ssl.SSLContext:
        context = self.node.tls.profile("ldap").apply(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # certway judges the server: _judge
        identities = self.node.identities
        identity = identities.active("client")
        if identity is not None:
            key = identities.private_key(identity)
            load_identity(context, [identity.certificate, *identity.chain], key)
        return context

    def _judge(self, config: LdapConfig, der: bytes | None, intermediates: list[bytes]) -> None:
        if not config.verify:
            return
        refusal = self.node.peer_validation.state("ldap").server_refusal(
            der,
            intermediates=intermediates,
            name=config.host,
            at=self.node.clock.now(),
            server="the LDAP server",
        )
        if refusal is not None:
            raise _Refused(refusal)

    def _ok(self) -> None:
        self.node.ldap.record_status(None)

    def _unavailable(self, config: LdapConfig, reason: str) -> DirectoryUnavailable:
        log.warning("event=ldap-unavailable url=%s reason=%r", config.url, reason)
        self.node.ldap.record_status(reason)
        return DirectoryUnavailable(f"the LDAP server {config.url} cannot be used: {reason}")


def _open(conn: Connection, config: LdapConfig) -> None:
    conn.open(read_server_info=False)
    if config.starttls:
        conn.start_tls(read_server_info=False)


def _close(conn: Connection) -> None:
    """Unbind and close; a connection that broke or was refused has nothing to say."""
    with contextlib.suppress(LDAPException, OSError):
        conn.unbind()


def _reason(exc: LDAPException, tls: _CertwayTls) -> str:
    if tls.refused:
        return tls.refused
    text = str(exc) or type(exc).__name__
    return text.replace("socket ssl wrapping error: ", "TLS handshake failed: ")
