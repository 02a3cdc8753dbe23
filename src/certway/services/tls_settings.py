"""The TLS profile of each service (``tlsconf.policy``): stored as one document under the setting
``tls.profiles``; every change moves the topic ``Topic.TLS`` so that listeners rebuild their
contexts and outbound clients use the new profile from their next connection (no restart)."""

from __future__ import annotations

from certway.clock import Clock
from certway.services.audit import Audit, audited
from certway.store.db import Store
from certway.store.repositories import SettingsRepository
from certway.store.topics import Topic, TopicRepository
from certway.tlsconf.policy import TLS_SERVICES, ProfileName, TlsPolicy, TlsProfile, check_service

__all__ = ["TlsSettings"]

_KEY = "tls.profiles"


def _read(settings: SettingsRepository) -> TlsPolicy:
    raw = settings.get(_KEY)
    if not isinstance(raw, dict):
        return TlsPolicy()
    chosen: list[tuple[str, ProfileName]] = []
    for service in TLS_SERVICES:
        try:
            chosen.append((service, ProfileName(str(raw.get(service)))))
        except ValueError:
            # Not stored, or a profile this version does not know: the default applies (the
            # default is the broader one, so that no peer is locked out by a damaged setting).
            continue
    return TlsPolicy(tuple(chosen))


class TlsSettings:
    def __init__(self, store: Store, clock: Clock, audit: Audit) -> None:
        self._store = store
        self._clock = clock
        self._audit = audit

    def policy(self) -> TlsPolicy:
        with self._store.reading() as session:
            return _read(SettingsRepository(session))

    def profile(self, service: str) -> TlsProfile:
        """The profile ``service`` uses now (one of ``TLS_SERVICES``)."""
        check_service(service)
        return self.policy().profile(service)

    @audited("tls.set", target=lambda service, profile: f"TLS profile of {service}")
    def set(self, service: str, profile: str) -> TlsProfile:
        """Select ``profile`` (intermediate or modern) for ``service``."""
        with self._store.transaction() as session:
            settings = SettingsRepository(session)
            policy = _read(settings).with_profile(service, profile)
            settings.set(_KEY, {s: p.value for s, p in policy.profiles})
            TopicRepository(session).bump(Topic.TLS)
            chosen = policy.profile(service)
            self._audit.note(service=service, profile=chosen.name.value)
        return chosen
