"""LDAP admin authentication settings: the directory, its group → access level map and where
admin logins are checked (``admin-auth`` source: local, ldap or both).

Settings are JSON in the settings table (ADR 0006). The service bind password is sealed with
the node's master key like a private key (associated data ``certway/ldap-bind-password``); it
is never shown, logged, exported nor put in an error or the audit log.

The break-glass rule: whatever the source, the local account named ``admin`` (the recovery
account, ``RECOVERY_ACCOUNT``) can always log in with its local password, so an unreachable
or misconfigured directory never locks every administrator out.

The last outcome of talking to the directory is kept (``ldap.status``) and raises the
``ldap`` alarm while the directory cannot be used.
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from ldap3.core.exceptions import LDAPException
from ldap3.operation.search import parse_filter
from ldap3.utils.dn import parse_dn

from certway.clock import Clock
from certway.errors import Conflict, NotFound, PolicyViolation
from certway.services.admins import ACCESS_LEVELS
from certway.services.audit import Audit, audited
from certway.store.db import Store
from certway.store.repositories import SettingsRepository
from certway.store.topics import Topic, TopicRepository

__all__ = [
    "DEFAULT_USER_FILTER",
    "RECOVERY_ACCOUNT",
    "AuthSource",
    "LdapConfig",
    "LdapGroup",
    "LdapSettings",
    "LdapStatus",
]

_KEY = "ldap"
_PASSWORD_KEY = "ldap.bind"  # noqa: S105 - a settings key, not a password
_STATUS_KEY = "ldap.status"
_SOURCE_KEY = "admin-auth"
_AAD = b"certway/ldap-bind-password"
"""Bumped on every LDAP or admin-auth change: running servers drop their directory
connection and read the new settings."""
DEFAULT_USER_FILTER = "(uid={user})"
RECOVERY_ACCOUNT = "admin"
MAX_GROUPS = 200


class AuthSource(StrEnum):
    LOCAL = "local"
    LDAP = "ldap"
    BOTH = "both"


@dataclass(frozen=True, slots=True)
class LdapGroup:
    dn: str
    access: str

    def as_dict(self) -> dict[str, str]:
        return {"dn": self.dn, "access": self.access}


@dataclass(frozen=True, slots=True)
class LdapConfig:
    url: str
    starttls: bool
    base_dn: str
    bind_dn: str
    user_filter: str = DEFAULT_USER_FILTER
    verify: bool = True
    groups: tuple[LdapGroup, ...] = ()

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (636 if parts.scheme == "ldaps" else 389)

    @property
    def ldaps(self) -> bool:
        return urlsplit(self.url).scheme == "ldaps"

    def as_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "starttls": self.starttls,
            "base_dn": self.base_dn,
            "bind_dn": self.bind_dn,
            "user_filter": self.user_filter,
            "verify": self.verify,
            "groups": [g.as_dict() for g in self.groups],
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> LdapConfig:
        return cls(
            url=str(raw["url"]),
            starttls=bool(raw.get("starttls")),
            base_dn=str(raw["base_dn"]),
            bind_dn=str(raw["bind_dn"]),
            user_filter=str(raw.get("user_filter") or DEFAULT_USER_FILTER),
            verify=bool(raw.get("verify", True)),
            groups=tuple(
                LdapGroup(str(g["dn"]), str(g["access"])) for g in raw.get("groups") or ()
            ),
        )


@dataclass(frozen=True, slots=True)
class LdapStatus:
    """The last outcome of using the directory: ``error`` is None when it worked."""

    error: str | None
    at: dt.datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {"error": self.error, "at": self.at.isoformat() if self.at else None}


def check_url(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("ldap", "ldaps") or not parts.hostname:
        raise PolicyViolation(
            "ldap-url", f"'{url}' is not an LDAP URL: use ldaps://HOST[:636] or ldap://HOST[:389]"
        )
    try:
        port = parts.port
    except ValueError:
        raise PolicyViolation("ldap-url", f"'{url}' has a bad port") from None
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise PolicyViolation(
            "ldap-url", f"'{url}': give only the scheme, host and port (the base DN is separate)"
        )
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{shown}" + (f":{port}" if port else "")


def check_dn(dn: str, what: str) -> str:
    clean = dn.strip()
    if not clean:
        raise PolicyViolation("ldap-dn", f"the {what} is empty")
    try:
        parse_dn(clean)
    except LDAPException as exc:
        raise PolicyViolation("ldap-dn", f"the {what} '{clean}' is not a DN: {exc}") from None
    return clean


def check_filter(text: str) -> str:
    clean = text.strip()
    if clean.count("{user}") < 1:
        raise PolicyViolation("ldap-filter", "the user filter must contain {user}")
    if not (clean.startswith("(") and clean.endswith(")")):
        raise PolicyViolation("ldap-filter", "the user filter must be enclosed in parentheses")
    try:
        parse_filter(  # type: ignore[no-untyped-call]
            clean.replace("{user}", "x"), None, False, False, None, False
        )
    except (LDAPException, IndexError, ValueError) as exc:
        raise PolicyViolation(
            "ldap-filter", f"the user filter '{clean}' is not an LDAP filter: {exc}"
        ) from None
    return clean


def _check_access(access: str) -> str:
    if access not in ACCESS_LEVELS:
        raise PolicyViolation("access", f"access must be read-write or read-only, not '{access}'")
    return access


def _and(words: list[str]) -> str:
    """``the URL``, ``the URL and the bind DN``, ``the URL, the bind DN and the bind password``."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def _same_dn(a: str, b: str) -> bool:
    return _dn_key(a) == _dn_key(b)


def _dn_key(dn: str) -> tuple[tuple[str, str], ...]:
    try:
        return tuple((attr.lower(), value.lower()) for attr, value, _ in parse_dn(dn))
    except LDAPException:
        return (("", dn.lower()),)


class LdapSettings:
    def __init__(self, store: Store, clock: Clock, audit: Audit) -> None:
        self._store = store
        self._clock = clock
        self._audit = audit

    # -- reading --------------------------------------------------------------------------------
    def get(self) -> LdapConfig | None:
        with self._store.reading() as session:
            raw = SettingsRepository(session).get(_KEY)
        return LdapConfig.from_dict(raw) if isinstance(raw, dict) else None

    def require(self) -> LdapConfig:
        config = self.get()
        if config is None:
            raise NotFound("no LDAP server is configured")
        return config

    def bind_password(self) -> str:
        """The service bind password, unsealed (for the LDAP client only)."""
        with self._store.reading() as session:
            raw = SettingsRepository(session).get(_PASSWORD_KEY)
        if not isinstance(raw, str):
            raise NotFound("no LDAP bind password is stored")
        return self._store.vault.open(base64.b64decode(raw), _AAD).decode()

    def source(self) -> AuthSource:
        with self._store.reading() as session:
            raw = SettingsRepository(session).get(_SOURCE_KEY)
        try:
            return AuthSource(str(raw.get("source"))) if isinstance(raw, dict) else AuthSource.LOCAL
        except ValueError:
            return AuthSource.LOCAL

    def version(self) -> int:
        with self._store.reading() as session:
            (version,) = TopicRepository(session).versions((Topic.LDAP,))
        return version

    def status(self) -> LdapStatus:
        with self._store.reading() as session:
            raw = SettingsRepository(session).get(_STATUS_KEY)
        if not isinstance(raw, dict):
            return LdapStatus(None, None)
        at = raw.get("at")
        return LdapStatus(raw.get("error"), dt.datetime.fromisoformat(at) if at else None)

    def view(self) -> dict[str, Any]:
        """The settings as shown by ``ldap show``, the API and the UI: never the password."""
        config = self.get()
        return {
            **(
                config.as_dict()
                if config
                else {
                    "url": None,
                    "starttls": False,
                    "base_dn": None,
                    "bind_dn": None,
                    "user_filter": DEFAULT_USER_FILTER,
                    "verify": True,
                    "groups": [],
                }
            ),
            "source": self.source().value,
            "last_error": self.status().error,
        }

    def access_for(self, config: LdapConfig, groups: list[str]) -> str | None:
        """The access level the groups give: read-write wins; None when no group is mapped."""
        found = {g.access for g in config.groups if any(_same_dn(g.dn, dn) for dn in groups)}
        if "read-write" in found:
            return "read-write"
        return "read-only" if found else None

    # -- changing -------------------------------------------------------------------------------
    @audited("ldap.set", target=lambda **k: "LDAP server")
    def set(
        self,
        *,
        url: str | None = None,
        starttls: bool | None = None,
        base_dn: str | None = None,
        bind_dn: str | None = None,
        bind_password: str | None = None,
        user_filter: str | None = None,
        verify: bool | None = None,
    ) -> LdapConfig:
        """Create or change the LDAP server settings; a first ``set`` needs the URL, base DN,
        bind DN and bind password."""
        current = self.get()
        if current is None:
            missing = [
                what
                for what, value in (
                    ("the URL", url),
                    ("the base DN", base_dn),
                    ("the bind DN", bind_dn),
                    ("the bind password", bind_password),
                )
                if value is None
            ]
            if missing:
                raise PolicyViolation(
                    "ldap-missing", f"a first LDAP configuration needs {_and(missing)}"
                )
            current = LdapConfig(url="ldaps://x", starttls=False, base_dn="", bind_dn="")
        config = replace(
            current,
            url=check_url(url) if url is not None else current.url,
            starttls=starttls if starttls is not None else current.starttls,
            base_dn=check_dn(base_dn, "base DN") if base_dn is not None else current.base_dn,
            bind_dn=check_dn(bind_dn, "bind DN") if bind_dn is not None else current.bind_dn,
            user_filter=check_filter(user_filter)
            if user_filter is not None
            else current.user_filter,
            verify=verify if verify is not None else current.verify,
        )
        if config.ldaps and config.starttls:
            raise PolicyViolation(
                "ldap-tls", "ldaps:// is TLS from the start: StartTLS is for ldap:// URLs"
            )
        if not config.ldaps and not config.starttls:
            raise PolicyViolation(
                "ldap-tls",
                "passwords are never sent in clear: use an ldaps:// URL, or an ldap:// URL with "
                "StartTLS",
            )
        if bind_password is not None and not bind_password:
            raise PolicyViolation("ldap-password", "the bind password is empty")
        with self._store.transaction() as session:
            settings = SettingsRepository(session)
            settings.set(_KEY, config.as_dict())
            if bind_password is not None:
                sealed = self._store.vault.seal(bind_password.encode(), _AAD)
                settings.set(_PASSWORD_KEY, base64.b64encode(sealed).decode("ascii"))
            TopicRepository(session).bump(Topic.LDAP)
            noted = {k: v for k, v in config.as_dict().items() if k != "groups"}
            self._audit.note(**noted, bind_password_changed=bind_password is not None)
        return config

    @audited("ldap.group.add", target=lambda dn, **k: dn)
    def add_group(self, dn: str, *, access: str) -> LdapGroup:
        config = self.require()
        group = LdapGroup(check_dn(dn, "group DN"), _check_access(access))
        if any(_same_dn(g.dn, group.dn) for g in config.groups):
            raise Conflict(f"group '{group.dn}' is mapped already (remove it first)")
        if len(config.groups) >= MAX_GROUPS:
            raise PolicyViolation("ldap-groups", f"at most {MAX_GROUPS} groups can be mapped")
        self._audit.note(access=group.access)  # before the change's transaction ends
        self._save(replace(config, groups=(*config.groups, group)))
        return group

    @audited("ldap.group.remove", target=lambda dn, **k: dn)
    def remove_group(self, dn: str) -> None:
        config = self.require()
        kept = tuple(g for g in config.groups if not _same_dn(g.dn, dn))
        if len(kept) == len(config.groups):
            raise NotFound(f"group '{dn}' is not mapped")
        self._save(replace(config, groups=kept))

    @audited("admin-auth.set", target=lambda source, **k: "admin authentication")
    def set_source(self, source: str) -> AuthSource:
        try:
            chosen = AuthSource(source)
        except ValueError:
            raise PolicyViolation(
                "admin-auth", f"the source must be local, ldap or both, not '{source}'"
            ) from None
        if chosen is not AuthSource.LOCAL and self.get() is None:
            raise PolicyViolation("ldap-not-configured", "configure the LDAP server first")
        with self._store.transaction() as session:
            settings = SettingsRepository(session)
            settings.set(_SOURCE_KEY, {"source": chosen.value})
            TopicRepository(session).bump(Topic.LDAP)
            self._audit.note(source=chosen.value)
        return chosen

    def record_status(self, error: str | None) -> None:
        """Remember the outcome of the last use of the directory (the alarm reads it); writes
        only when it changed."""
        if self.status().error == error:
            return
        with self._store.transaction() as session:
            SettingsRepository(session).set(
                _STATUS_KEY, {"error": error, "at": self._clock.now().isoformat()}
            )

    def _save(self, config: LdapConfig) -> None:
        with self._store.transaction() as session:
            settings = SettingsRepository(session)
            settings.set(_KEY, config.as_dict())
            TopicRepository(session).bump(Topic.LDAP)
