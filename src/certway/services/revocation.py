"""Revocation data and policies: manual CRLs, URL sources with a daily schedule,
on-demand CDP downloads and OCSP (cached), the per-service policies, and the index that
validation reads.

Longer than most modules (about 800 lines) because these share one cache and one change
topic (``Topic.REVOCATION``): splitting the online lookups from the held CRLs would spread
that state over two objects that must move together. A split along ``OnlineRevocation``
is the next step when either grows.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from certway.clock import Clock
from certway.errors import CertwayError, DecodeError, FetchError, PolicyViolation
from certway.fetch import FetchPool, FetchPoolBusy, HttpFetcher, tls_context_for, unpack_crls
from certway.pki.load import load_crls
from certway.pki.ocsp import OcspAnswer, build_request, check_response, ocsp_cache_until, ocsp_urls
from certway.services.audit import Audit, audited
from certway.services.crl_store import AcceptedCrl, accept_crl, store_crl, vet_crl
from certway.services.trusted_cas import TrustedCAs
from certway.store.db import Store
from certway.store.repositories import HeldCrlRepository, SettingsRepository
from certway.store.topics import Topic, TopicRepository
from certway.tlsconf.policy import INTERMEDIATE, TlsProfile
from certway.trust.anchors import key_id
from certway.trust.policy import (
    ACME_DEFAULT,
    ADMIN_HTTPS_DEFAULT,
    LDAP_DEFAULT,
    SIP_TLS_DEFAULT,
    SYSLOG_DEFAULT,
    RevocationPolicy,
)
from certway.trust.revocation import (
    IndexedCrl,
    RevocationIndex,
    index_crl,
    name_key,
    parse_crl,
    subject_key,
)

__all__ = [
    "SERVICES",
    "FetchLimits",
    "Fetcher",
    "HeldCrlInfo",
    "OnlineRevocation",
    "RevocationService",
    "Schedule",
    "SourceStatus",
    "UnusableCrl",
]

log = logging.getLogger("certway.revocation")

FAILURE_MEMORY = dt.timedelta(seconds=30)
"""How long a failed OCSP responder or CDP URL is not asked again during validation."""
OCSP_FAILURES = "ocsp.failures"
SERVICES: dict[str, RevocationPolicy] = {
    "sip-tls": SIP_TLS_DEFAULT,
    "admin-https": ADMIN_HTTPS_DEFAULT,
    "syslog": SYSLOG_DEFAULT,
    "ldap": LDAP_DEFAULT,
    "acme": ACME_DEFAULT,
}
_SCHEDULE_KEY = "crl.schedule"
MAX_SOURCES = 100


class Fetcher(Protocol):
    """Fetches over HTTP(S); each call returns or raises ``FetchError`` within ``deadline``
    seconds (``HttpFetcher`` is the real one)."""

    def get(self, url: str, *, deadline: float | None = None) -> bytes: ...

    def post(
        self, url: str, body: bytes, content_type: str, *, deadline: float | None = None
    ) -> bytes: ...

    def close(self) -> None: ...


FetcherFactory = Callable[[Sequence[x509.Certificate]], Fetcher]


@dataclass(frozen=True, slots=True)
class FetchLimits:
    """How long a revocation fetch may take, and how many may run at once.

    ``validation_deadline`` bounds each OCSP request and a certificate's CDP downloads while
    a certificate is checked; ``update_deadline`` each CRL source download (scheduled or
    "update now"), which also waits at most that long for a free slot; ``slots`` is the
    number of fetches under way at once in the node. ``certway`` reads them from
    ``CERTWAY_FETCH_DEADLINE``, ``CERTWAY_CRL_UPDATE_DEADLINE`` and ``CERTWAY_FETCH_SLOTS``.
    """

    validation_deadline: float = 10.0
    update_deadline: float = 30.0
    slots: int = 8

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> FetchLimits:
        env = os.environ if environ is None else environ
        default = cls()
        return cls(
            validation_deadline=_seconds(
                env, "CERTWAY_FETCH_DEADLINE", default.validation_deadline
            ),
            update_deadline=_seconds(env, "CERTWAY_CRL_UPDATE_DEADLINE", default.update_deadline),
            slots=_count(env, "CERTWAY_FETCH_SLOTS", default.slots),
        )


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.5 <= value <= 600:  # also refuses nan and inf
        raise PolicyViolation(
            "fetch-limits", f"{name} must be a number of seconds from 0.5 to 600, not '{text}'"
        )
    return value


def _count(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit() or not 1 <= int(text) <= 64:
        raise PolicyViolation(
            "fetch-limits", f"{name} must be a whole number from 1 to 64, not '{text}'"
        )
    return int(text)


def default_fetcher(
    trusted: Sequence[x509.Certificate], *, profile: TlsProfile = INTERMEDIATE
) -> Fetcher:
    """HTTP(S) fetcher; HTTPS servers are verified against the trusted CA list only (with
    none, httpx's default CA bundle), with the TLS ``profile``."""
    return HttpFetcher(verify=tls_context_for(list(trusted), profile=profile))


@dataclass(frozen=True, slots=True)
class HeldCrlInfo:
    kind: str
    source: str
    issuer: str
    number: int | None
    this_update: dt.datetime
    next_update: dt.datetime | None
    entries: int
    status: str  # current | expired

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "source": self.source,
            "issuer": self.issuer,
            "number": self.number,
            "this_update": self.this_update.isoformat(),
            "next_update": self.next_update.isoformat() if self.next_update else None,
            "entries": self.entries,
            "status": self.status,
        }


@dataclass(frozen=True, slots=True)
class SourceStatus:
    url: str
    last_attempt: dt.datetime | None
    last_success: dt.datetime | None
    error: str | None
    crl_number: int | None
    next_update: dt.datetime | None

    def as_dict(self) -> dict[str, object]:
        def iso(value: dt.datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "url": self.url,
            "last_attempt": iso(self.last_attempt),
            "last_success": iso(self.last_success),
            "error": self.error,
            "crl_number": self.crl_number,
            "next_update": iso(self.next_update),
        }


@dataclass(frozen=True, slots=True)
class Schedule:
    enabled: bool = False
    daily_at: str = "02:00"
    last_run: dt.datetime | None = None

    def due(self, now: dt.datetime) -> bool:
        """True when today's update time has passed and no run happened since."""
        if not self.enabled:
            return False
        hour, minute = (int(p) for p in self.daily_at.split(":"))
        slot = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if slot > now:
            slot -= dt.timedelta(days=1)
        return self.last_run is None or self.last_run < slot

    def as_dict(self) -> dict[str, object]:
        return {
            "enabled": self.enabled,
            "daily_at": self.daily_at,
            "last_run": self.last_run.isoformat() if self.last_run else None,
        }


def _check_url(url: str) -> str:
    url = url.strip()
    if not re.match(r"^https?://[^\s/]+(/\S*)?$", url):
        raise PolicyViolation("url", f"'{url}' is not an http:// or https:// URL")
    return url


class OnlineRevocation:
    """OCSP and CDP lookups with caches valid until the answer's nextUpdate.

    Each fetch holds a slot of ``pool`` and has ``deadline`` seconds (a certificate's CDP
    URLs share one deadline). A lookup that finds every slot busy does not wait: it fails at
    once (the check is "unknown" and the revocation policy's fallback decides), with a log
    line, and the source is not marked as failing."""

    def __init__(
        self,
        fetcher_factory: FetcherFactory,
        trusted: Callable[[], Sequence[x509.Certificate]],
        on_responder: Callable[[str, str | None], None] | None = None,
        *,
        pool: FetchPool | None = None,
        deadline: float = 10.0,
    ) -> None:
        self._factory = fetcher_factory
        self._trusted = trusted
        self._on_responder = on_responder
        """Told each OCSP responder's outcome (error text or None): feeds the alarms."""
        self._pool = pool or FetchPool()
        self._deadline = deadline
        self._busy_logged = 0.0
        self._busy_unlogged = 0
        self._lock = threading.Lock()
        self._ocsp: dict[tuple[bytes, int], tuple[dt.datetime, OcspAnswer]] = {}
        self._cdp: dict[str, tuple[dt.datetime, list[IndexedCrl]]] = {}
        self._failed: dict[str, tuple[dt.datetime, str]] = {}

    def _fetcher(self) -> Fetcher:
        return self._factory(self._trusted())

    def _download(self, url: str, deadline: float, ocsp_request: bytes | None = None) -> bytes:
        """GET ``url`` (or POST ``ocsp_request`` to it) holding a fetch slot; with none free,
        ``FetchPoolBusy`` at once (logged at most once a second, with the number refused)."""
        try:
            with self._pool.slot(url):
                fetcher = self._fetcher()
                try:
                    if ocsp_request is None:
                        return fetcher.get(url, deadline=deadline)
                    return fetcher.post(
                        url, ocsp_request, "application/ocsp-request", deadline=deadline
                    )
                finally:
                    fetcher.close()
        except FetchPoolBusy:  # only the slot raises it
            self._log_busy(url)
            raise

    def _log_busy(self, url: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._busy_unlogged += 1
            if now - self._busy_logged < 1.0:
                return
            count, self._busy_unlogged, self._busy_logged = self._busy_unlogged, 0, now
        log.warning(
            "event=revocation-fetch-skipped reason=all-slots-busy slots=%d url=%r refused=%d",
            self._pool.slots,
            url,
            count,
        )

    def ocsp(self, cert: x509.Certificate, issuer: x509.Certificate, at: dt.datetime) -> OcspAnswer:
        key = (key_id(issuer), cert.serial_number)
        with self._lock:
            cached = self._ocsp.get(key)
        if cached is not None and at < cached[0]:
            return cached[1]
        urls = ocsp_urls(cert)
        if not urls:
            raise FetchError("the certificate names no OCSP responder")
        request = build_request(cert, issuer)
        self._raise_if_failing(urls[0], at)
        try:
            body = self._download(urls[0], self._deadline, request.der)
            answer = check_response(body, request, issuer, at=at)
        except FetchPoolBusy:
            raise  # nothing was asked: not the responder's failure
        except FetchError as exc:
            self._remember_failure(urls[0], str(exc), at)
            self._report(urls[0], str(exc))
            raise
        except CertwayError as exc:
            self._report(urls[0], str(exc))
            raise
        self._report(urls[0], None)
        with self._lock:
            self._ocsp[key] = (ocsp_cache_until(answer, at), answer)
        return answer

    def _raise_if_failing(self, url: str, at: dt.datetime) -> None:
        """A source that just failed is not asked again for ``FAILURE_MEMORY``: with a
        responder down, every connection would otherwise wait out its timeouts again."""
        with self._lock:
            failed = self._failed.get(url)
        if failed is not None and at < failed[0]:
            seconds = FAILURE_MEMORY.total_seconds()
            raise FetchError(f"{failed[1]} (not retried for {seconds:g} s)")

    def _remember_failure(self, url: str, message: str, at: dt.datetime) -> None:
        with self._lock:
            self._failed[url] = (at + FAILURE_MEMORY, message)

    def _report(self, url: str, error: str | None) -> None:
        if self._on_responder is not None:
            self._on_responder(url, error)

    def cdp(
        self, cert: x509.Certificate, issuer: x509.Certificate, at: dt.datetime
    ) -> list[IndexedCrl]:
        """The CRL from the first of ``cert``'s distribution points that serves one, plus
        the delta CRLs its freshest-CRL pointers (of the certificate or of that CRL) serve.

        The CRLs are indexed but not verified here: the revocation check finds their signer
        (the issuer, a CRL-signing certificate, an indirect CRL issuer) when it uses them."""
        urls = _http_urls(cert, x509.CRLDistributionPoints)
        if not urls:
            try:
                cert.extensions.get_extension_for_class(x509.CRLDistributionPoints)
            except x509.ExtensionNotFound:
                return []
            raise FetchError("the CRL distribution points name no http(s) URL")
        wanted = {subject_key(issuer), *_crl_issuers(cert)}
        errors: list[str] = []
        end = time.monotonic() + self._deadline  # the URLs (deltas too) share one deadline
        for url in urls:
            try:
                crls = self._crls_at(url, wanted, at, end)
            except CertwayError as exc:
                errors.append(str(exc))
                continue
            return crls + self._deltas(cert, crls, wanted, at, end, seen=set(urls))
        raise FetchError("; ".join(errors))

    def _deltas(
        self,
        cert: x509.Certificate,
        crls: list[IndexedCrl],
        wanted: set[str],
        at: dt.datetime,
        end: float,
        seen: set[str],
    ) -> list[IndexedCrl]:
        """Delta CRLs named by freshest-CRL pointers; one that cannot be had leaves the
        complete CRL in force on its own."""
        urls = _http_urls(cert, x509.FreshestCRL)
        for crl in crls:
            if not crl.is_delta:
                urls += _http_urls(crl.crl, x509.FreshestCRL)
        deltas: list[IndexedCrl] = []
        for url in dict.fromkeys(urls):
            if url in seen:
                continue
            seen.add(url)
            try:
                deltas.extend(c for c in self._crls_at(url, wanted, at, end) if c.is_delta)
            except CertwayError:
                continue
        return deltas

    def _crls_at(self, url: str, wanted: set[str], at: dt.datetime, end: float) -> list[IndexedCrl]:
        """The CRLs of the issuers ``wanted`` served at ``url``, cached until their next
        update; raises CertwayError when there are none."""
        with self._lock:
            cached = self._cdp.get(url)
        if cached is not None and at < cached[0]:
            found = [c for c in cached[1] if c.authority in wanted]
            if found:
                return found
        self._raise_if_failing(url, at)
        left = end - time.monotonic()
        if left <= 0:
            raise FetchError(
                f"{url} was not asked: the {self._deadline:.3g} s deadline of this "
                "certificate's CRL downloads had passed"
            )
        try:
            crls = unpack_crls(self._download(url, left))
        except FetchPoolBusy:
            raise  # nothing was asked: not the server's failure
        except FetchError as exc:
            self._remember_failure(url, str(exc), at)
            raise
        indexed: list[IndexedCrl] = []
        problems: list[str] = []
        for crl in crls:
            try:
                indexed.append(parse_crl(crl, source=url))
            except PolicyViolation as exc:
                problems.append(str(exc))
        found = [c for c in indexed if c.authority in wanted]
        if not found:
            raise FetchError("; ".join(problems) or f"{url} serves no CRL of this CA")
        until = min(
            (c.next_update for c in indexed if c.next_update),
            default=at + dt.timedelta(hours=1),
        )
        with self._lock:
            self._cdp[url] = (until, indexed)
        return found


def _http_urls(
    holder: x509.Certificate | x509.CertificateRevocationList,
    kind: type[x509.CRLDistributionPoints] | type[x509.FreshestCRL],
) -> list[str]:
    """The http(s) URLs of a certificate's or CRL's distribution points of ``kind``."""
    try:
        points = holder.extensions.get_extension_for_class(kind).value
    except (x509.ExtensionNotFound, ValueError, x509.DuplicateExtension):
        return []
    return [
        name.value
        for point in points
        for name in (point.full_name or [])
        if isinstance(name, x509.UniformResourceIdentifier)
        and name.value.lower().startswith(("http://", "https://"))
    ]


def _crl_issuers(cert: x509.Certificate) -> list[str]:
    """The CRL issuers (other than the certificate issuer) its distribution points name."""
    try:
        points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return []
    return [
        name_key(name.value)
        for point in points
        for name in (point.crl_issuer or [])
        if isinstance(name, x509.DirectoryName)
    ]


class RevocationService:
    INDEX_TOPICS = (Topic.REVOCATION, Topic.TRUSTED_CAS)  # what index() is built from
    """Held CRLs, URL sources, schedule and policies, persisted in the node store."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        trusted: TrustedCAs,
        audit: Audit,
        fetcher_factory: FetcherFactory = default_fetcher,
        *,
        limits: FetchLimits | None = None,
        pool: FetchPool | None = None,
    ) -> None:
        self._audit = audit
        self._responder_lock = threading.Lock()
        self._store = store
        self._clock = clock
        self._trusted = trusted
        self._factory = fetcher_factory
        self.limits = limits or FetchLimits()
        self.pool = pool or FetchPool(self.limits.slots)
        self._index: tuple[tuple[int, ...], RevocationIndex, tuple[UnusableCrl, ...]] | None = None
        self.online = OnlineRevocation(
            fetcher_factory,
            lambda: trusted.snapshot().certificates,
            self._record_responder,
            pool=self.pool,
            deadline=self.limits.validation_deadline,
        )

    def _record_responder(self, url: str, error: str | None) -> None:
        """Persist OCSP responder failures (so alarms show them in every process)."""
        if error is None and url not in self.responder_failures():
            return  # the usual case, a good answer with nothing to clear: no write lock
        with self._responder_lock, self._store.transaction() as session:
            settings = SettingsRepository(session)
            failures = settings.get(OCSP_FAILURES)
            current = dict(failures) if isinstance(failures, dict) else {}
            if error is None and url not in current:
                return
            if error is None:
                current.pop(url, None)
            else:
                current[url] = {"error": error, "at": self._clock.now().isoformat()}
            settings.set(OCSP_FAILURES, current)

    def responder_failures(self) -> dict[str, dict[str, str]]:
        with self._store.reading() as session:
            failures = SettingsRepository(session).get(OCSP_FAILURES)
        return dict(failures) if isinstance(failures, dict) else {}

    # -- manual CRL -------------------------------------------------------------------
    @audited("crl.upload", target=lambda data: "manual CRL")
    def upload_manual(self, data: bytes) -> list[AcceptedCrl]:
        """Replace the manual CRL(s) with those in ``data`` (PEM or DER); all or nothing.

        An upload of delta CRLs only replaces the manual delta CRLs of the same issuer and
        keeps the complete CRLs they apply to."""
        crls = load_crls(data)
        trusted = list(self._trusted.snapshot().certificates)
        now = self._clock.now()
        source = "manual upload"
        with self._store.transaction() as session:
            # Vet every CRL against what is held (numbers never go backwards) before the
            # previous manual CRL is replaced.
            vetted = [vet_crl(session, c, source=source, trusted=trusted, at=now) for c in crls]
            if not all(v.is_delta for v in vetted):
                HeldCrlRepository(session).remove_kind("manual")
            accepted = [store_crl(session, v, kind="manual", source=source, at=now) for v in vetted]
            TopicRepository(session).bump(Topic.REVOCATION)
            self._audit.note(crls=[a.describe() for a in accepted])
        return accepted

    @audited("crl.remove", target=lambda: "manual CRL")
    def remove_manual(self) -> int:
        with self._store.transaction() as session:
            removed = HeldCrlRepository(session).remove_kind("manual")
            TopicRepository(session).bump(Topic.REVOCATION)
        return removed

    def held(self) -> list[HeldCrlInfo]:
        now = self._clock.now()
        with self._store.reading() as session:
            rows = HeldCrlRepository(session).all()
            return [
                HeldCrlInfo(
                    kind=r.kind,
                    source=r.source,
                    issuer=r.issuer,
                    number=r.number,
                    this_update=r.this_update,
                    next_update=r.next_update,
                    entries=r.entries,
                    status="expired" if r.next_update and r.next_update <= now else "current",
                )
                for r in rows
            ]

    # -- URL sources and schedule ------------------------------------------------------
    @audited("crl.sources.set", target=lambda urls: " ".join(urls))
    def set_sources(self, urls: Sequence[str]) -> list[SourceStatus]:
        clean: list[str] = []
        for url in urls:
            for part in filter(str.strip, url.splitlines()):
                checked = _check_url(part)
                if checked not in clean:
                    clean.append(checked)
        if len(clean) > MAX_SOURCES:
            raise PolicyViolation("crl-sources", f"at most {MAX_SOURCES} CRL URLs are allowed")
        with self._store.transaction() as session:
            HeldCrlRepository(session).set_sources(clean)
            TopicRepository(session).bump(Topic.REVOCATION)
        return self.sources()

    def sources(self) -> list[SourceStatus]:
        with self._store.reading() as session:
            return [
                SourceStatus(
                    r.url, r.last_attempt, r.last_success, r.error, r.crl_number, r.next_update
                )
                for r in HeldCrlRepository(session).sources()
            ]

    @audited("crl.update", target=lambda *a, **k: "CRL sources")
    def update_now(self, progress: Callable[[str], None] | None = None) -> list[SourceStatus]:
        """Fetch every source now, one after the other, each within the update deadline.
        A failed or timed-out fetch keeps the last good CRL and records why."""
        urls = [s.url for s in self.sources()]
        trusted = list(self._trusted.snapshot().certificates)
        fetcher = self._factory(trusted)
        try:
            for url in urls:
                if progress is not None:
                    progress(url)
                self._update_one(fetcher, url, trusted)
        finally:
            fetcher.close()
        self._audit.note(errors={s.url: s.error for s in self.sources() if s.error})
        with self._store.transaction() as session:
            settings = SettingsRepository(session)
            schedule = self._schedule(settings)
            settings.set(
                _SCHEDULE_KEY,
                {**schedule.as_dict(), "last_run": self._clock.now().isoformat()},
            )
            TopicRepository(session).bump(Topic.REVOCATION)  # the sources' status
        return self.sources()

    def _update_one(self, fetcher: Fetcher, url: str, trusted: list[x509.Certificate]) -> None:
        started = self._clock.now()
        error: str | None = None
        accepted: list[AcceptedCrl] = []
        seconds = self.limits.update_deadline
        try:
            with self.pool.slot(url, wait=seconds):
                data = fetcher.get(url, deadline=seconds)
            crls = unpack_crls(data)
        except CertwayError as exc:
            crls, error = [], str(exc)
        problems: list[str] = []
        for crl in crls:
            try:
                with self._store.transaction() as session:
                    accepted.append(
                        accept_crl(
                            session, crl, kind="url", source=url, trusted=trusted, at=started
                        )
                    )
                    TopicRepository(session).bump(Topic.REVOCATION)
            except CertwayError as exc:
                problems.append(str(exc))
        if problems:
            error = "; ".join(problems)
        with self._store.transaction() as session:
            row = HeldCrlRepository(session).source(url)
            if row is None:  # removed meanwhile
                return
            row.last_attempt = started
            row.error = error
            if accepted:
                row.last_success = started
                row.crl_number = accepted[0].number
                row.next_update = accepted[0].next_update

    def _schedule(self, settings: SettingsRepository) -> Schedule:
        raw = settings.get(_SCHEDULE_KEY)
        if not isinstance(raw, dict):
            return Schedule()
        last = raw.get("last_run")
        return Schedule(
            enabled=bool(raw.get("enabled", False)),
            daily_at=str(raw.get("daily_at", "02:00")),
            last_run=dt.datetime.fromisoformat(last) if isinstance(last, str) else None,
        )

    def schedule(self) -> Schedule:
        with self._store.reading() as session:
            return self._schedule(SettingsRepository(session))

    @audited("crl.schedule", target=lambda **k: "CRL schedule")
    def set_schedule(self, *, daily_at: str | None = None, enabled: bool | None = None) -> Schedule:
        if daily_at is not None and not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", daily_at):
            raise PolicyViolation("schedule", f"'{daily_at}' is not a time of day HH:MM (UTC)")
        with self._store.transaction() as session:
            settings = SettingsRepository(session)
            current = self._schedule(settings)
            updated = Schedule(
                enabled=current.enabled if enabled is None else enabled,
                daily_at=daily_at or current.daily_at,
                last_run=current.last_run,
            )
            settings.set(_SCHEDULE_KEY, updated.as_dict())
            TopicRepository(session).bump(Topic.REVOCATION)
            self._audit.note(**updated.as_dict())
        return updated

    def run_if_due(self) -> bool:
        """The scheduler's tick: update the sources when the daily time has come."""
        if not self.schedule().due(self._clock.now()):
            return False
        self.update_now()
        return True

    # -- policies ----------------------------------------------------------------------
    def policy(self, service: str) -> RevocationPolicy:
        default = self._default(service)
        with self._store.reading() as session:
            raw = SettingsRepository(session).get(f"policy.{service}")
        if not isinstance(raw, dict):
            return default
        return default.with_changes(**raw)

    @audited("revocation.set")
    def set_policy(self, /, service: str, **changes: object) -> RevocationPolicy:
        updated = self.policy(service).with_changes(**changes)
        stored = {
            "enabled": updated.enabled,
            "ocsp": updated.ocsp,
            "crl": updated.crl,
            "cdp": updated.cdp,
            "scope": updated.scope.value,
            "fallback": updated.fallback.value,
            "profile": updated.profile.value,
        }
        with self._store.transaction() as session:
            settings = SettingsRepository(session)
            settings.set(f"policy.{service}", stored)
            TopicRepository(session).bump(Topic.REVOCATION)
            self._audit.note(**updated.as_dict())
        return updated

    def _default(self, service: str) -> RevocationPolicy:
        try:
            return SERVICES[service]
        except KeyError:
            raise PolicyViolation(
                "service", f"unknown service '{service}': use {' or '.join(SERVICES)}"
            ) from None

    # -- the index validation reads ----------------------------------------------------------
    def index(self) -> RevocationIndex:
        """All held CRLs verified and indexed; rebuilt only when CRLs or trust changed.

        A held CRL that no longer verifies (its stored bytes damaged, or its CA certificate
        replaced by one that cannot have signed it or may not sign CRLs) is not dropped: that
        would leave its CA without a CRL, and the policy's fallback (by default "not revoked")
        would let every certificate it revoked back in. It stays in the index as an expired
        CRL, so certificates of that CA count as revoked until a usable CRL is loaded — the
        same as for a CRL past its next update — and it is logged once per rebuild and raised
        as an alarm (``unusable_crls``)."""
        return self._indexed()[0]

    def unusable_crls(self) -> tuple[UnusableCrl, ...]:
        """The held CRLs that no longer verify (see ``index``)."""
        return self._indexed()[1]

    def _indexed(self) -> tuple[RevocationIndex, tuple[UnusableCrl, ...]]:
        with self._store.reading() as session:
            version = TopicRepository(session).versions(self.INDEX_TOPICS)
        cached = self._index
        if cached is not None and cached[0] == version:
            return cached[1], cached[2]
        snapshot = self._trusted.snapshot()
        by_key = {key_id(c): c for c in snapshot.certificates}
        indexed: list[IndexedCrl] = []
        unusable: list[UnusableCrl] = []
        with self._store.reading() as session:
            rows = HeldCrlRepository(session).all(with_der=True)
            for row in rows:
                issuer = by_key.get(bytes.fromhex(row.issuer_key))
                if issuer is None:
                    continue  # its CA left the trusted list: the CRL is not used
                label = _label(row.kind, row.source)
                crl: x509.CertificateRevocationList | None = None
                try:
                    crl = x509.load_der_x509_crl(row.crl_der)
                    indexed.append(index_crl(crl, issuer, source=label, der=row.crl_der))
                except (ValueError, PolicyViolation, DecodeError) as exc:
                    reason = (
                        str(exc)
                        if isinstance(exc, CertwayError)
                        else "it cannot be parsed any more"
                    )
                    problem = UnusableCrl(row.kind, row.source, row.issuer, label, reason)
                    log.warning(
                        "event=crl-unusable source=%r issuer=%r detail=%r action=%s",
                        label,
                        row.issuer,
                        reason,
                        "certificates of this CA count as revoked",
                    )
                    unusable.append(problem)
                    indexed.append(_expired_stand_in(problem, row.this_update, issuer, crl))
        index = RevocationIndex.of(indexed)
        self._index = (version, index, tuple(unusable))
        return index, tuple(unusable)


@dataclass(frozen=True, slots=True)
class UnusableCrl:
    """A held CRL that no longer verifies against its CA."""

    kind: str
    source: str
    issuer: str
    label: str
    reason: str


def _expired_stand_in(
    problem: UnusableCrl,
    this_update: dt.datetime,
    issuer: x509.Certificate,
    crl: x509.CertificateRevocationList | None,
) -> IndexedCrl:
    """An index entry with no serials that expired when the CRL was issued: validation
    treats its CA as it treats a CA whose CRL is past its next update (revoked). Only its
    dates, scope and label are read; when the stored bytes cannot even be parsed, an empty
    CRL under a throwaway key stands in for the object (it is never looked into)."""
    if crl is None:
        throwaway = ec.generate_private_key(ec.SECP256R1())
        crl = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(issuer.subject)
            .last_update(this_update)
            .next_update(this_update)
            .sign(throwaway, hashes.SHA256())
        )
    source = f"{problem.label} (unusable: {problem.reason}; treated as expired)"
    return IndexedCrl.expired_stand_in(crl, issuer, source=source, this_update=this_update)


def _label(kind: str, source: str) -> str:
    return {"manual": "the manual CRL upload", "embedded": "a CA file"}.get(kind, source)
