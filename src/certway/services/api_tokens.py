"""API tokens for automation: ``Authorization: Bearer certway_<key id>_<secret>``.

A token is 256 random bits (the secret) behind a public key id that finds its row. The store
keeps only the SHA-256 of the secret: a high-entropy secret needs no password hash, so a
request costs one SHA-256 and one constant-time comparison (``hmac.compare_digest``), not an
argon2 run. The token is returned once, by ``create``; it cannot be shown again.

Each token has an access level (read-only or read-write, as admin accounts), an optional
expiry, and can be revoked; an expired or revoked token is refused with a message saying so.
Creating and revoking are audited (never the token); a refused token is logged by the web
adapter.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass

from certway.clock import Clock, utc
from certway.errors import Conflict, NotFound, PolicyViolation
from certway.services.admins import ACCESS_LEVELS
from certway.services.audit import Audit, audited, current_actor
from certway.store.db import Store
from certway.store.repositories import ApiTokenRepository
from certway.store.schema import ApiTokenRow

__all__ = [
    "MAX_TOKEN_DAYS",
    "RECHECK_SECONDS",
    "TOKEN_PREFIX",
    "ApiTokenInfo",
    "ApiTokens",
    "NewApiToken",
    "TokenRefused",
]

RECHECK_SECONDS = 1.0
"""How long a token found valid is taken as still valid without reading the store again: a
token revoked by another process (the CLI) is refused within this time; one revoked by this
process, and any token past its expiry, at once."""
TOKEN_PREFIX = "certway_"  # noqa: S105 (the public start of every token)
MAX_TOKEN_DAYS = 3650
_RECENT_SIZE = 1024
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_TOKEN_RE = re.compile(r"^certway_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


class TokenRefused(Exception):
    """A bearer token that does not authenticate; the message says why (never the token)."""


@dataclass(frozen=True, slots=True)
class ApiTokenInfo:
    name: str
    access: str
    created_by: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    status: str  # active | expired | revoked

    @property
    def can_write(self) -> bool:
        return self.access == "read-write"

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "access": self.access,
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "status": self.status,
        }


@dataclass(frozen=True, slots=True)
class NewApiToken:
    info: ApiTokenInfo
    token: str  # shown once


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def _status(row: ApiTokenRow, now: dt.datetime) -> str:
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at is not None and utc(row.expires_at) <= now:
        return "expired"
    return "active"


def _info(row: ApiTokenRow, now: dt.datetime) -> ApiTokenInfo:
    return ApiTokenInfo(
        row.name,
        row.access,
        row.created_by,
        utc(row.created_at),
        utc(row.expires_at) if row.expires_at else None,
        utc(row.revoked_at) if row.revoked_at else None,
        _status(row, now),
    )


class ApiTokens:
    def __init__(self, store: Store, clock: Clock, audit: Audit) -> None:
        self._store = store
        self._clock = clock
        self._audit = audit
        # Tokens found valid lately: SHA-256 of the whole token → (details, monotonic time).
        self._lock = threading.Lock()
        self._recent: dict[str, tuple[ApiTokenInfo, float]] = {}

    def tokens(self) -> list[ApiTokenInfo]:
        now = self._clock.now()
        with self._store.reading() as session:
            return [_info(row, now) for row in ApiTokenRepository(session).all()]

    @audited("api-token.create")
    def create(self, name: str, access: str, *, days: int | None = None) -> NewApiToken:
        """A new token named ``name``; the token text is in the result and nowhere else. The
        name of a revoked or expired token may be reused (the old one is dropped)."""
        if not _NAME_RE.match(name):
            raise PolicyViolation(
                "api-token-name", f"token name '{name}' must be 1-64 letters, digits, . _ @ -"
            )
        if access not in ACCESS_LEVELS:
            raise PolicyViolation(
                "access", f"access must be read-write or read-only, not '{access}'"
            )
        if days is not None and not 1 <= days <= MAX_TOKEN_DAYS:
            raise PolicyViolation(
                "api-token-days", f"the expiry must be 1 to {MAX_TOKEN_DAYS} days, not {days}"
            )
        now = self._clock.now()
        key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        row = ApiTokenRow(
            name=name,
            key_id=key_id,
            secret_sha256=_digest(secret),
            access=access,
            created_by=current_actor().name[:128],
            created_at=now,
            expires_at=now + dt.timedelta(days=days) if days is not None else None,
            revoked_at=None,
        )
        with self._store.transaction() as session:
            tokens = ApiTokenRepository(session)
            existing = tokens.by_name(name)
            if existing is not None:
                if _status(existing, now) == "active":
                    raise Conflict(
                        f"an API token named '{name}' exists: revoke it first or choose "
                        "another name"
                    )
                tokens.delete(existing)
            tokens.add(row)
            self._audit.note(access=access, expires_at=row.expires_at)
            info = _info(row, now)
        return NewApiToken(info, f"{TOKEN_PREFIX}{key_id}_{secret}")

    @audited("api-token.revoke")
    def revoke(self, name: str) -> ApiTokenInfo:
        now = self._clock.now()
        with self._store.transaction() as session:
            row = ApiTokenRepository(session).by_name(name)
            if row is None:
                raise NotFound(f"no API token named '{name}'")
            if row.revoked_at is not None:
                raise Conflict(f"API token '{name}' is already revoked")
            row.revoked_at = now
            info = _info(row, now)
        with self._lock:
            self._recent.clear()
        return info

    def authenticate(self, token: str) -> ApiTokenInfo:
        """The token's details when it is valid now; ``TokenRefused`` saying why otherwise.
        The secret is compared in constant time, against its SHA-256."""
        found = _TOKEN_RE.match(token.strip())
        if found is None:
            raise TokenRefused("malformed API token")
        key_id, secret = found.groups()
        now = self._clock.now()
        whole = hashlib.sha256(token.strip().encode("ascii")).hexdigest()
        with self._lock:
            recent = self._recent.get(whole)
        if recent is not None and time.monotonic() - recent[1] < RECHECK_SECONDS:
            info = recent[0]
            if info.expires_at is None or info.expires_at > now:
                return info
        with self._store.reading() as session:
            row = ApiTokenRepository(session).by_key_id(key_id)
            stored = row.secret_sha256 if row is not None else _digest("")
            # Compared even when the key id is unknown, so both cases cost the same.
            matches = hmac.compare_digest(_digest(secret), stored)
            if row is None or not matches:
                raise TokenRefused("unknown API token")
            info = _info(row, now)
        if info.status == "revoked":
            raise TokenRefused(f"API token '{info.name}' was revoked")
        if info.status == "expired":
            assert info.expires_at is not None
            raise TokenRefused(
                f"API token '{info.name}' expired on {info.expires_at:%Y-%m-%d %H:%M} UTC"
            )
        with self._lock:
            if len(self._recent) >= _RECENT_SIZE:
                self._recent.clear()
            self._recent[whole] = (info, time.monotonic())
        return info
