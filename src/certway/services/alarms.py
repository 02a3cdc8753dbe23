"""Alarms, computed from the current state each time they are asked for.

An alarm exists while its cause does; ``since`` is when it was first seen (kept in the
``alarm_state`` table, deleted when the cause goes). Its id is its kind (``AlarmKind``)
followed by what it is about: ``expired:server``, ``crl-stale:manual:<issuer>``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from certway.clock import Clock
from certway.errors import StoreError
from certway.pki.names import common_name
from certway.pki.text import format_name, plural
from certway.services.acme_client import AcmeClient
from certway.services.cluster_tls import ClusterTls
from certway.services.identities import Identities
from certway.services.ldap_settings import RECOVERY_ACCOUNT, AuthSource, LdapSettings
from certway.services.local_ca import LocalCA
from certway.services.revocation import RevocationService
from certway.services.sip_settings import MutualTls, SipSettings
from certway.services.syslog import SyslogSettings
from certway.services.tokens import Tokens
from certway.services.trusted_cas import TrustedCAs
from certway.services.zones import alarms_for_zones
from certway.store.db import Store
from certway.store.repositories import AlarmStateRepository

__all__ = ["EXPIRY_WARNING", "Alarm", "AlarmKind", "AlarmSeverity", "Alarms"]

EXPIRY_WARNING = dt.timedelta(days=30)
CRL_STALE_WARNING = dt.timedelta(hours=24)


class AlarmSeverity(StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"


class AlarmKind(StrEnum):
    """What an alarm is about: the first part of its id."""

    EXPIRED = "expired"
    EXPIRING = "expiring"
    TEMPORARY_CERTIFICATE = "temporary-certificate"
    SERVER_NO_CN = "server-no-cn"
    SIP_RULE_UNREADABLE = "sip-rule-unreadable"
    CRL_EXPIRED = "crl-expired"
    CRL_STALE = "crl-stale"
    CRL_UNUSABLE = "crl-unusable"
    CRL_SOURCE = "crl-source"
    OCSP_RESPONDER = "ocsp-responder"
    ZONE = "zone"
    SYSLOG = "syslog"
    TOKEN = "token"  # noqa: S105 (an alarm kind, not a secret)
    ACME_RENEWAL = "acme-renewal"
    ACME_RENEWAL_EXPIRING = "acme-renewal-expiring"
    DATABASE_UNREACHABLE = "database-unreachable"
    PEER_TLS = "peer-tls"
    LDAP = "ldap"


_SEVERITY_ORDER = {AlarmSeverity.CRITICAL: 0, AlarmSeverity.WARNING: 1}


@dataclass(frozen=True, slots=True)
class Alarm:
    id: str
    severity: AlarmSeverity
    text: str
    since: dt.datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "severity": self.severity,
            "text": self.text,
            "since": self.since.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class _Cause:
    kind: AlarmKind
    about: str | None
    """What the alarm is about, after the kind in its id; None for a one-of-a-kind alarm."""
    severity: AlarmSeverity
    text: str

    @property
    def id(self) -> str:
        return str(self.kind) if self.about is None else f"{self.kind}:{self.about}"


def _state_key(alarm_id: str) -> str:
    """The alarm's key in ``alarm_state`` (at most 200 characters: long ids are digested)."""
    if len(alarm_id) <= 200:
        return alarm_id
    return f"{alarm_id[:120]}#{hashlib.sha256(alarm_id.encode()).hexdigest()}"


def _expiry(about: str, what: str, not_after: dt.datetime, now: dt.datetime) -> list[_Cause]:
    if not_after <= now:
        return [
            _Cause(
                AlarmKind.EXPIRED,
                about,
                AlarmSeverity.CRITICAL,
                f"{what} expired on {not_after:%Y-%m-%d}",
            )
        ]
    left = not_after - now
    if left <= EXPIRY_WARNING:
        return [
            _Cause(
                AlarmKind.EXPIRING,
                about,
                AlarmSeverity.WARNING,
                f"{what} expires on {not_after:%Y-%m-%d} (in {plural(left.days, 'day')})",
            )
        ]
    return []


class Alarms:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        identities: Identities,
        trusted: TrustedCAs,
        local_ca: LocalCA,
        revocation: RevocationService,
        sip: SipSettings | None = None,
        tokens: Tokens | None = None,
        syslog: SyslogSettings | None = None,
        *,
        acme: AcmeClient | None = None,
        cluster: ClusterTls | None = None,
        ldap: LdapSettings | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._identities = identities
        self._trusted = trusted
        self._local_ca = local_ca
        self._revocation = revocation
        self._sip = sip
        self._tokens = tokens
        self._syslog = syslog
        self._acme = acme
        self._cluster = cluster
        self._ldap = ldap
        self._unreachable: tuple[dt.datetime, str] | None = None  # since, why

    # -- the database itself -----------------------------------------------------------------
    def database_unreachable(self, reason: str) -> bool:
        """This process could not reach the database (kept in memory: the database is what
        cannot record it). True when the alarm is new."""
        if self._unreachable is not None:
            return False
        self._unreachable = (self._clock.now(), reason)
        return True

    def database_reachable(self) -> bool:
        """The database answers again. True when that clears the alarm."""
        was, self._unreachable = self._unreachable, None
        return was is not None

    def _database_alarm(self) -> Alarm | None:
        if self._unreachable is None:
            return None
        since, reason = self._unreachable
        text = (
            f"the database is unreachable ({reason}): listeners keep serving with the last "
            "state read, changes cannot be made"
        )
        return Alarm(str(AlarmKind.DATABASE_UNREACHABLE), AlarmSeverity.CRITICAL, text, since)

    def current(self) -> list[Alarm]:
        """The alarms raised now, most severe first; records first-seen times. While the
        database is unreachable, only the alarm that says so."""
        now = self._clock.now()
        try:
            return self._from_store(now)
        except StoreError as exc:
            self.database_unreachable(str(exc).removeprefix("the database is unavailable: "))
        database = self._database_alarm()
        return [database] if database is not None else []

    def _from_store(self, now: dt.datetime) -> list[Alarm]:
        causes = {c.id: c for c in self._causes(now)}
        with self._store.transaction() as session:
            state = AlarmStateRepository(session)
            seen = state.first_seen()
            keys = {alarm_id: _state_key(alarm_id) for alarm_id in causes}
            live = set(keys.values())
            state.clear(key for key in seen if key not in live)
            for key in live - set(seen):
                state.record(key, now)
                seen[key] = now
        since = {alarm_id: seen[key] for alarm_id, key in keys.items()}
        alarms = [Alarm(c.id, c.severity, c.text, since[c.id]) for c in causes.values()]
        self.database_reachable()  # it answered
        return sorted(alarms, key=lambda a: (_SEVERITY_ORDER[a.severity], a.since, a.id))

    def _causes(self, now: dt.datetime) -> Iterable[_Cause]:
        yield from self._node_certificates(now)
        for ca in self._trusted.entries():
            yield from _expiry(
                f"trusted-ca:{ca.fingerprint}", f"trusted CA {ca.subject}", ca.not_after, now
            )
        for local in self._local_ca.cas():
            yield from _expiry(
                f"local-ca:{local.name}", f"local CA '{local.name}'", local.not_after, now
            )
        yield from self._revocation_sources(now)
        yield from self._sip_rules()
        yield from self._token_faults()
        yield from self._syslog_destinations()
        if self._cluster is not None:
            for fqdn, reason in self._cluster.failing():
                text = f"the certificate of cluster peer {fqdn} fails verification: {reason}"
                yield _Cause(AlarmKind.PEER_TLS, fqdn, AlarmSeverity.CRITICAL, text)
        for zone_alarm in alarms_for_zones(self._store):
            about = zone_alarm.id.removeprefix(f"{AlarmKind.ZONE}:")
            yield _Cause(AlarmKind.ZONE, about, AlarmSeverity(zone_alarm.severity), zone_alarm.text)
        yield from self._acme_renewals(now)
        yield from self._ldap_directory()

    def _acme_renewals(self, now: dt.datetime) -> Iterable[_Cause]:
        """A failing ACME renewal (warning), critical once the certificate is close to
        expiry; both clear with the next successful renewal."""
        if self._acme is None:
            return
        for problem in self._acme.renewal_problems():
            retry = (
                f"; next attempt {problem.next_attempt:%Y-%m-%d %H:%M} UTC"
                if problem.next_attempt is not None
                else ""
            )
            yield _Cause(
                AlarmKind.ACME_RENEWAL,
                problem.slot,
                AlarmSeverity.WARNING,
                f"ACME renewal of the {problem.label} failed {plural(problem.failures, 'time')}: "
                f"{problem.last_error}{retry}",
            )
            if problem.not_after is not None and problem.not_after - now <= EXPIRY_WARNING:
                yield _Cause(
                    AlarmKind.ACME_RENEWAL_EXPIRING,
                    problem.slot,
                    AlarmSeverity.CRITICAL,
                    f"the {problem.label} expires on {problem.not_after:%Y-%m-%d} and its ACME "
                    "renewal is failing",
                )

    def _ldap_directory(self) -> Iterable[_Cause]:
        if self._ldap is None or self._ldap.source() is AuthSource.LOCAL:
            return
        config = self._ldap.get()
        error = self._ldap.status().error
        if config is None or error is None:
            return
        yield _Cause(
            AlarmKind.LDAP,
            None,
            AlarmSeverity.CRITICAL,
            f"the LDAP server {config.url} cannot be used ({error}): LDAP accounts cannot log "
            f"in; the local recovery account '{RECOVERY_ACCOUNT}' still can",
        )

    def _node_certificates(self, now: dt.datetime) -> Iterable[_Cause]:
        server = self._identities.active("server")
        if server is not None:
            cert = server.certificate
            yield from _expiry("server", "the server certificate", cert.not_valid_after_utc, now)
            if self._identities.is_temporary(cert):
                yield _Cause(
                    AlarmKind.TEMPORARY_CERTIFICATE,
                    None,
                    AlarmSeverity.WARNING,
                    "the server certificate is the temporary one issued by the factory CA: "
                    "replace it with a certificate from a trusted CA",
                )
            if not common_name(cert.subject):
                yield _Cause(
                    AlarmKind.SERVER_NO_CN,
                    None,
                    AlarmSeverity.WARNING,
                    f"the server certificate ({format_name(cert.subject) or 'empty subject'}) "
                    "has no common name",
                )
        client = self._identities.active("client")
        if client is not None and client.kind == "client":
            yield from _expiry(
                "client",
                "the client certificate",
                client.certificate.not_valid_after_utc,
                now,
            )
        for domain in self._identities.domains():
            if domain.not_after is not None:
                yield from _expiry(
                    f"domain:{domain.name}",
                    f"the certificate of domain {domain.name}",
                    domain.not_after,
                    now,
                )

    def _token_faults(self) -> Iterable[_Cause]:
        if self._tokens is None:
            return
        for fault in self._tokens.faults():
            cas = ", ".join(f"'{ca}'" for ca in fault.cas)
            yield _Cause(
                AlarmKind.TOKEN,
                fault.name,
                AlarmSeverity.CRITICAL,
                f"PKCS#11 token '{fault.name}' cannot sign for local CA {cas} ({fault.reason}): "
                "its certificates, CRLs and OCSP answers fail until the token is back; "
                "certway logs in again by itself",
            )

    def _syslog_destinations(self) -> Iterable[_Cause]:
        if self._syslog is None or not self._syslog.destinations():
            return
        for destination, state in self._syslog.status():
            if state.error is None:
                continue
            lost = (
                f"; {state.dropped} older message{'' if state.dropped == 1 else 's'} dropped "
                "because the queue was full"
                if state.dropped
                else ""
            )
            waiting = f"{state.queued} message{'' if state.queued == 1 else 's'} waiting"
            reason = f": {state.error}"
            yield _Cause(
                AlarmKind.SYSLOG,
                destination.address,
                AlarmSeverity.WARNING,
                f"remote syslog {destination.address} ({destination.transport.value}) cannot "
                f"take messages{reason} ({waiting}{lost})",
            )

    def _sip_rules(self) -> Iterable[_Cause]:
        if self._sip is None:
            return
        config = self._sip.get()
        for position, broken in enumerate(config.unreadable_rules, start=1):
            effect = (
                "the SIP listener refuses every peer until it is removed or fixed"
                if config.mutual_tls is not MutualTls.OFF
                else "it would refuse every peer once mutual TLS is turned on"
            )
            yield _Cause(
                AlarmKind.SIP_RULE_UNREADABLE,
                str(broken.id) if broken.id is not None else f"#{position}",
                AlarmSeverity.CRITICAL,
                f"SIP access {broken.describe()}: {effect}",
            )

    def _revocation_sources(self, now: dt.datetime) -> Iterable[_Cause]:
        for held in self._revocation.held():
            where = f"{held.kind}:{held.source}:{held.issuer}"
            label = f"the CRL of {held.issuer} ({held.source})"
            if held.next_update is None:
                continue
            if held.next_update <= now:
                yield _Cause(
                    AlarmKind.CRL_EXPIRED,
                    where,
                    AlarmSeverity.CRITICAL,
                    f"{label} expired on {held.next_update:%Y-%m-%d %H:%M} UTC: certificates "
                    "of that CA count as revoked until a current CRL is loaded",
                )
            elif held.next_update - now <= CRL_STALE_WARNING:
                yield _Cause(
                    AlarmKind.CRL_STALE,
                    where,
                    AlarmSeverity.WARNING,
                    f"{label} expires at {held.next_update:%Y-%m-%d %H:%M} UTC and has not "
                    "been replaced by a newer one",
                )
        for bad in self._revocation.unusable_crls():
            yield _Cause(
                AlarmKind.CRL_UNUSABLE,
                f"{bad.kind}:{bad.source}:{bad.issuer}",
                AlarmSeverity.CRITICAL,
                f"the CRL of {bad.issuer} ({bad.label}) no longer verifies ({bad.reason}): "
                "certificates of that CA count as revoked until a usable CRL is loaded",
            )
        for source in self._revocation.sources():
            if source.error:
                yield _Cause(
                    AlarmKind.CRL_SOURCE,
                    source.url,
                    AlarmSeverity.WARNING,
                    f"CRL source {source.url} could not be used: {source.error}",
                )
        for url, failure in self._revocation.responder_failures().items():
            yield _Cause(
                AlarmKind.OCSP_RESPONDER,
                url,
                AlarmSeverity.WARNING,
                f"OCSP responder {url} could not be used: {failure.get('error', 'unknown')}",
            )
