"""SIP TLS settings (S4): mutual TLS mode, client-EKU checking, certificate access rules.

Stored as one JSON document under the setting ``sip``; every change bumps the counter
``version.sip`` so that listeners pick it up (S7). Revocation checking of SIP peers is the
``sip-tls`` policy of the revocation service (RV5), not repeated here.

Mutual TLS modes:

- ``off``: no client certificate is asked for; any TLS client may send SIP requests.
- ``request`` (default): a client certificate is asked for in the handshake, which completes
  with or without one; certway then validates it (trust, validity, revocation, EKU, access
  rules) and closes the connection of a peer that has none or a failing one, with one log
  line saying why. This is the default because mutual TLS is what SIP TLS between an edge
  and its neighbours is for, and because a refusal after the handshake can be explained in
  the log (subject, serial, issuer, reason) while a failed handshake cannot.
- ``require``: as ``request``, but a peer without a certificate fails the TLS handshake
  itself (TLS alert ``certificate_required``), for peers that expect the strict behaviour.

EKU checking ``on`` (default) requires clientAuth in a peer certificate that has an extended
key usage; ``off`` accepts, for instance, serverAuth-only certificates of older SIP peers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from certway.clock import Clock
from certway.errors import NotFound, PolicyViolation
from certway.services.audit import Audit, audited
from certway.services.node_settings import IDENTITY_VERSION
from certway.services.revocation import CRL_VERSION
from certway.services.trusted_cas import TRUST_VERSION
from certway.sip.rules import AccessRule, make_rule, ordered
from certway.store.db import Store
from certway.store.repositories import SettingsRepository

__all__ = ["MAX_RULES", "SIP_VERSION", "MutualTls", "SipConfig", "SipSettings"]

SIP_VERSION = "version.sip"
"""Bumped on every change of the SIP settings or rules: the SIP listener reloads."""
MAX_RULES = 1000
_KEY = "sip"


class MutualTls(StrEnum):
    OFF = "off"
    REQUEST = "request"
    REQUIRE = "require"


@dataclass(frozen=True, slots=True)
class SipConfig:
    mutual_tls: MutualTls = MutualTls.REQUEST
    eku_check: bool = True
    rules: tuple[AccessRule, ...] = ()
    """Sorted by priority, then id."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "mutual_tls": self.mutual_tls.value,
            "eku_check": "on" if self.eku_check else "off",
            "rules": [r.as_dict() for r in self.rules],
        }


def _on_off(value: bool | str, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if value.lower() in ("on", "true", "yes"):
        return True
    if value.lower() in ("off", "false", "no"):
        return False
    raise PolicyViolation("sip", f"{what} must be on or off, not '{value}'")


def _mode(value: str) -> MutualTls:
    try:
        return MutualTls(value.lower())
    except ValueError:
        raise PolicyViolation(
            "sip", f"mutual TLS must be off, request or require, not '{value}'"
        ) from None


class SipSettings:
    def __init__(self, store: Store, clock: Clock, audit: Audit) -> None:
        self._store = store
        self._clock = clock
        self._audit = audit

    # -- reading ----------------------------------------------------------------------------
    @staticmethod
    def _read(settings: SettingsRepository) -> tuple[SipConfig, int]:
        raw = settings.get(_KEY)
        if not isinstance(raw, dict):
            return SipConfig(), 1
        rules = []
        for item in raw.get("rules") or ():
            try:
                rules.append(AccessRule.from_dict(item))
            except (PolicyViolation, KeyError, TypeError, ValueError):
                continue  # a rule written by a newer version: ignored, never fatal
        try:
            mode = _mode(str(raw.get("mutual_tls", MutualTls.REQUEST.value)))
        except PolicyViolation:
            mode = MutualTls.REQUEST
        config = SipConfig(
            mutual_tls=mode,
            eku_check=bool(raw.get("eku_check", True)),
            rules=tuple(ordered(rules)),
        )
        next_id = raw.get("next_rule_id")
        if not isinstance(next_id, int):
            next_id = max((r.id for r in rules), default=0) + 1
        return config, next_id

    @staticmethod
    def _write(settings: SettingsRepository, config: SipConfig, next_id: int) -> None:
        settings.set(
            _KEY,
            {
                "mutual_tls": config.mutual_tls.value,
                "eku_check": config.eku_check,
                "rules": [r.as_dict() for r in config.rules],
                "next_rule_id": next_id,
            },
        )
        settings.bump(SIP_VERSION)

    def get(self) -> SipConfig:
        with self._store.reading() as session:
            return self._read(SettingsRepository(session))[0]

    def rules(self) -> list[AccessRule]:
        """The access rules in the order they are applied (priority, then id)."""
        return list(self.get().rules)

    def version(self) -> int:
        with self._store.reading() as session:
            return int(SettingsRepository(session).get(SIP_VERSION) or 0)

    def watched_versions(self) -> tuple[int, ...]:
        """The change counters a SIP listener's TLS contexts depend on: certificates (identity),
        trusted CAs (client CAs), CRLs and revocation policies, and these settings."""
        keys = (IDENTITY_VERSION, TRUST_VERSION, CRL_VERSION, SIP_VERSION)
        with self._store.reading() as session:
            settings = SettingsRepository(session)
            return tuple(int(settings.get(k) or 0) for k in keys)

    # -- changing ---------------------------------------------------------------------------
    @audited("sip.set", target=lambda **k: "SIP TLS settings")
    def set(
        self, *, mutual_tls: str | None = None, eku_check: bool | str | None = None
    ) -> SipConfig:
        """Change the mutual TLS mode (off|request|require) and/or EKU checking (on|off)."""
        mode = _mode(mutual_tls) if mutual_tls is not None else None
        eku = _on_off(eku_check, "EKU checking") if eku_check is not None else None
        with self._store.transaction() as session:
            settings = SettingsRepository(session)
            config, next_id = self._read(settings)
            if mode is not None:
                config = replace(config, mutual_tls=mode)
            if eku is not None:
                config = replace(config, eku_check=eku)
            self._write(settings, config, next_id)
            self._audit.note(**config.as_dict())
        return config

    @audited("sip.rule.add", target=lambda **k: f"SIP access rule '{k.get('pattern')}'")
    def add_rule(self, *, priority: int, type: str, pattern: str, action: str) -> AccessRule:
        """Add a certificate access rule; it gets the next free id."""
        make_rule(0, priority=priority, type=type, pattern=pattern, action=action)  # check first
        with self._store.transaction() as session:
            settings = SettingsRepository(session)
            config, next_id = self._read(settings)
            if len(config.rules) >= MAX_RULES:
                raise PolicyViolation("rule", f"at most {MAX_RULES} access rules are allowed")
            rule = make_rule(next_id, priority=priority, type=type, pattern=pattern, action=action)
            config = replace(config, rules=tuple(ordered([*config.rules, rule])))
            self._write(settings, config, next_id + 1)
            self._audit.note(**rule.as_dict())
        return rule

    @audited("sip.rule.remove", target=lambda rule_id: f"SIP access rule {rule_id}")
    def remove_rule(self, rule_id: int) -> AccessRule:
        with self._store.transaction() as session:
            settings = SettingsRepository(session)
            config, next_id = self._read(settings)
            found = next((r for r in config.rules if r.id == rule_id), None)
            if found is None:
                known = ", ".join(str(r.id) for r in config.rules) or "none"
                raise NotFound(f"no SIP access rule has id {rule_id} (rules: {known})")
            config = replace(config, rules=tuple(r for r in config.rules if r.id != rule_id))
            self._write(settings, config, next_id)
        return found
