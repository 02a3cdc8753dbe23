"""SIP TLS settings: mutual TLS mode, client-EKU checking, certificate access rules.

Stored as one JSON document under the setting ``sip``; every change moves the
``Topic.SIP`` change topic so that listeners pick it up (hot reload). Revocation checking of SIP
peers is the ``sip-tls`` policy of the revocation service (policies per service), not repeated here.

Mutual TLS modes:

- ``off``: no client certificate is asked for; any TLS client may send SIP requests.
- ``request`` (default): a client certificate is asked for in the handshake, which completes
  with or without one. A peer that presents a certificate is served only if certway validates
  it (trust, validity, revocation, EKU, access rules); a failing one is closed with one log
  line saying why (subject, serial, issuer, reason). A peer without a certificate is served
  without authentication (logged as ``authenticated=no``), as Expressway does for
  non-authenticated SIP.
- ``require``: every peer must present a valid certificate. A peer without one completes the
  handshake and is then closed by certway with a log line naming it (``reason=no-certificate``)
  instead of failing in OpenSSL, where it would go unlogged.

EKU checking ``on`` (default) requires clientAuth in a peer certificate that has an extended
key usage; ``off`` accepts, for instance, serverAuth-only certificates of older SIP peers.

A stored access rule that cannot be read any more (a pattern this version refuses, a rule
type or action it does not know) is never dropped: it could be a deny rule, and without it
the default would be to allow. It is kept in ``SipConfig.unreadable_rules`` (and written back
unchanged by every change), the listener refuses every peer while there is one, and an alarm
names it until it is removed (``remove_rule`` takes its id) or the rules are fixed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from certway.clock import Clock
from certway.errors import NotFound, PolicyViolation
from certway.services.audit import Audit, audited
from certway.services.sip_rules import AccessRule, RuleAction, RuleType, make_rule, ordered
from certway.store.db import Session, Store
from certway.store.repositories import SettingsRepository
from certway.store.topics import Topic, TopicRepository

__all__ = [
    "MAX_RULES",
    "SIP_SERVICE",
    "MutualTls",
    "SipConfig",
    "SipSettings",
    "UnreadableRule",
]

SIP_SERVICE = "sip-tls"
"""The service whose profile and revocation policy SIP TLS peers (inbound and zones) get."""
"""Bumped on every change of the SIP settings or rules: the SIP listener reloads."""
MAX_RULES = 1000
_KEY = "sip"


class MutualTls(StrEnum):
    OFF = "off"
    REQUEST = "request"
    REQUIRE = "require"


@dataclass(frozen=True, slots=True)
class UnreadableRule:
    """A stored access rule that cannot be used; kept as stored, with the reason."""

    raw: Any
    reason: str

    @property
    def id(self) -> int | None:
        if isinstance(self.raw, dict):
            value = self.raw.get("id")
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        return None

    def describe(self) -> str:
        label = f"rule {self.id}" if self.id is not None else "a rule without id"
        if isinstance(self.raw, dict):
            shown = " ".join(
                f"{key}={self.raw[key]!r}"
                for key in ("action", "type", "pattern", "priority")
                if key in self.raw
            )
            label = f"{label} ({shown})" if shown else label
        return f"{label}: {self.reason}"

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "stored": self.raw, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class SipConfig:
    mutual_tls: MutualTls = MutualTls.REQUEST
    eku_check: bool = True
    rules: tuple[AccessRule, ...] = ()
    """Sorted by priority, then id."""
    unreadable_rules: tuple[UnreadableRule, ...] = ()
    """Stored rules that cannot be used: while there is one, every SIP peer is refused."""

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "mutual_tls": self.mutual_tls.value,
            "eku_check": "on" if self.eku_check else "off",
            "rules": [r.as_dict() for r in self.rules],
        }
        if self.unreadable_rules:  # only there when something is wrong
            data["unreadable_rules"] = [r.as_dict() for r in self.unreadable_rules]
        return data


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
    # What a SIP listener's TLS contexts depend on: certificates (identity), trusted CAs
    # (client CAs), CRLs and revocation policies, these settings and the TLS profiles.
    LISTENER_TOPICS = (Topic.IDENTITY, Topic.TRUSTED_CAS, Topic.REVOCATION, Topic.SIP, Topic.TLS)

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
        unreadable = []
        stored = raw.get("rules") or []
        if not isinstance(stored, list):
            stored = [stored]
        for item in stored:
            try:
                rules.append(AccessRule.from_dict(item))
            except PolicyViolation as exc:
                unreadable.append(UnreadableRule(item, str(exc)))
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                # e.g. a rule written by a newer version, or a damaged document
                unreadable.append(
                    UnreadableRule(item, f"not a rule this version can read ({exc!r})")
                )
        try:
            mode = _mode(str(raw.get("mutual_tls", MutualTls.REQUEST.value)))
        except PolicyViolation:
            mode = MutualTls.REQUEST
        config = SipConfig(
            mutual_tls=mode,
            eku_check=bool(raw.get("eku_check", True)),
            rules=tuple(ordered(rules)),
            unreadable_rules=tuple(unreadable),
        )
        next_id = raw.get("next_rule_id")
        used = [r.id for r in rules] + [u.id for u in unreadable if u.id is not None]
        if not isinstance(next_id, int) or next_id <= max(used, default=0):
            next_id = max(used, default=0) + 1
        return config, next_id

    @staticmethod
    def _write(session: Session, config: SipConfig, next_id: int) -> None:
        SettingsRepository(session).set(
            _KEY,
            {
                "mutual_tls": config.mutual_tls.value,
                "eku_check": config.eku_check,
                "rules": [r.as_dict() for r in config.rules]
                + [u.raw for u in config.unreadable_rules],  # kept until removed or fixed
                "next_rule_id": next_id,
            },
        )
        TopicRepository(session).bump(Topic.SIP)

    def get(self) -> SipConfig:
        with self._store.reading() as session:
            return self._read(SettingsRepository(session))[0]

    def rules(self) -> list[AccessRule]:
        """The access rules in the order they are applied (priority, then id)."""
        return list(self.get().rules)

    def version(self) -> int:
        with self._store.reading() as session:
            return TopicRepository(session).versions((Topic.SIP,))[0]

    def watched_versions(self) -> tuple[int, ...]:
        """The topic versions a SIP listener's TLS contexts depend on: certificates (identity),
        trusted CAs (client CAs), CRLs and revocation policies, these settings and the TLS
        profiles."""
        with self._store.reading() as session:
            return TopicRepository(session).versions(self.LISTENER_TOPICS)

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
            self._write(session, config, next_id)
            self._audit.note(**config.as_dict())
        return config

    @audited("sip.rule.add", target=lambda **k: f"SIP access rule '{k.get('pattern')}'")
    def add_rule(
        self, *, priority: int, type: RuleType | str, pattern: str, action: RuleAction | str
    ) -> AccessRule:
        """Add a certificate access rule; it gets the next free id. ``type`` and ``action``
        may be given as their (case-insensitive) names: a bad one is a PolicyViolation."""
        make_rule(0, priority=priority, type=type, pattern=pattern, action=action)  # check first
        with self._store.transaction() as session:
            settings = SettingsRepository(session)
            config, next_id = self._read(settings)
            if len(config.rules) >= MAX_RULES:
                raise PolicyViolation("rule", f"at most {MAX_RULES} access rules are allowed")
            rule = make_rule(next_id, priority=priority, type=type, pattern=pattern, action=action)
            config = replace(config, rules=tuple(ordered([*config.rules, rule])))
            self._write(session, config, next_id + 1)
            self._audit.note(**rule.as_dict())
        return rule

    @audited("sip.rule.remove", target=lambda rule_id: f"SIP access rule {rule_id}")
    def remove_rule(self, rule_id: int) -> AccessRule | UnreadableRule:
        with self._store.transaction() as session:
            settings = SettingsRepository(session)
            config, next_id = self._read(settings)
            found = next((r for r in config.rules if r.id == rule_id), None)
            broken = next((u for u in config.unreadable_rules if u.id == rule_id), None)
            if found is None and broken is None:
                ids = [r.id for r in config.rules] + [
                    u.id for u in config.unreadable_rules if u.id is not None
                ]
                known = ", ".join(str(i) for i in sorted(ids)) or "none"
                raise NotFound(f"no SIP access rule has id {rule_id} (rules: {known})")
            config = replace(
                config,
                rules=tuple(r for r in config.rules if r.id != rule_id),
                unreadable_rules=tuple(u for u in config.unreadable_rules if u.id != rule_id),
            )
            self._write(session, config, next_id)
        if found is not None:
            return found
        assert broken is not None
        return broken
