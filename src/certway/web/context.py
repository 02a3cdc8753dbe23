"""What the API and the UI share: the admin app's state (``WebContext``: the node, password
logins, UI sessions), who is calling (``authenticate`` → ``Principal``) and the error mapping.

Authentication, in this order: the admin client-certificate policy judges the TLS peer
certificate from ``scope["extensions"]["tls"]``; in certificate-based authentication mode it
also names the user. Otherwise the API takes HTTP Basic and the UI a session cookie (Secure,
HttpOnly, SameSite=Strict) with a CSRF token on every form. Password logins go through
``LoginGuard`` (certway.web.logins: throttled per account and per address, password hashing
capped); each failed one is logged and audited. Every change runs as the authenticated account
(audit log).

The app (certway.web.app) and the routers (certway.web.api, certway.web.ui, certway.web.docs)
import this module; it imports none of them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from certway.directory import Directory, DirectoryUnavailable
from certway.errors import (
    CertwayError,
    Conflict,
    DecodeError,
    FetchError,
    NotFound,
    PassphraseError,
    PolicyViolation,
    StoreError,
    TokenError,
    ValidationFailed,
)
from certway.services.admins import AdminInfo
from certway.services.api_tokens import TokenRefused
from certway.services.audit import Actor, Via, acting_as
from certway.services.node import Node
from certway.waiting import check_may_wait
from certway.web.logins import LoginGuard, LoginRefused, ThrottlePolicy

__all__ = [
    "MAX_UPLOAD",
    "SESSION_COOKIE",
    "SESSION_LIFETIME",
    "AuthRequired",
    "CertificateRefused",
    "Principal",
    "WebContext",
    "as_principal",
    "authenticate",
    "client_address",
    "peer_certificate",
    "problem",
    "status_for",
    "too_large",
    "too_large_problem",
]

MAX_UPLOAD = 8 * 1024 * 1024
"""Largest request body accepted (a big CA bundle or CRL); more is refused with 413."""
SESSION_COOKIE = "certway_session"
SESSION_LIFETIME = 8 * 3600
BASIC_CACHE_SECONDS = 30.0
"""How long a verified HTTP Basic credential is remembered (in memory, keyed by an HMAC of
user and password under a per-process key): a script sending Basic on every request costs
one argon2 run per ``BASIC_CACHE_SECONDS``, not one per request."""
BASIC_CACHE_SIZE = 1024
UNAUTHENTICATED = "(unauthenticated)"
"""The actor of a failed login in the audit log (the account named is its target)."""

log = logging.getLogger("certway.web")


def too_large(limit: int) -> StarletteHTTPException:
    """What a request body over ``limit`` bytes raises while it is read (answered with 413)."""
    return StarletteHTTPException(413, f"request bodies are limited to {limit} bytes")


def too_large_problem(limit: int) -> JSONResponse:
    """The answer to a request body over ``limit`` bytes refused before the app reads it."""
    return problem(413, "Too large", str(too_large(limit).detail))


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    """An RFC 9457 problem document."""
    return JSONResponse(
        {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra},
        status_code=status,
        media_type="application/problem+json",
    )


_STATUS: list[tuple[type[CertwayError], int, str]] = [
    (NotFound, 404, "Not found"),
    (Conflict, 409, "Conflict"),
    (StoreError, 503, "Store unavailable"),
    (TokenError, 503, "Key token unavailable"),
    (FetchError, 502, "Fetch failed"),
    (DirectoryUnavailable, 502, "LDAP server unavailable"),
    (ValidationFailed, 422, "Validation failed"),
    (PassphraseError, 400, "Bad passphrase"),  # a DecodeError: more specific first
    (DecodeError, 400, "Bad input"),
    (PolicyViolation, 422, "Refused"),
]


def status_for(exc: CertwayError) -> tuple[int, str]:
    for kind, status, title in _STATUS:
        if isinstance(exc, kind):
            return status, title
    return 400, "Bad request"


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    access: str
    via: Via  # api | ui
    address: str | None

    @property
    def can_write(self) -> bool:
        return self.access == "read-write"


@dataclass
class _Session:
    account: AdminInfo
    csrf: str
    expires: float
    stamp: str | None  # AdminAccounts.credential_stamp when the session began
    flashes: dict[str, Any] = field(default_factory=dict)
    """What a form action left for the page it redirected to (by the page's path): the UI's
    post/redirect/get. Popped by that page's next view."""


@dataclass(frozen=True, slots=True)
class _Verified:
    account: AdminInfo
    stamp: str  # WebContext._login_stamp when the password was verified
    expires: float


class WebContext:
    """State shared by the API and UI routes of one admin app."""

    def __init__(
        self,
        node: Node,
        *,
        secure_cookies: bool = True,
        throttle: ThrottlePolicy | None = None,
    ) -> None:
        self.node = node
        self.secure_cookies = secure_cookies
        self.logins = LoginGuard(throttle)
        self.directory = Directory(node)
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()
        # Verified HTTP Basic credentials: HMAC(key, user, password) → account. Neither the
        # password nor an unkeyed hash of it is kept.
        self._basic_key = secrets.token_bytes(32)
        self._verified: dict[bytes, _Verified] = {}

    # password logins (API and UI)
    def password_login(
        self, name: str, password: str, *, address: str, via: Via
    ) -> AdminInfo | None:
        """The account when the password is right, else None (logged and audited). Raises
        ``LoginRefused`` when the throttle does not let the attempt in, or (503) when the LDAP
        server is needed and cannot be used."""
        admins = self.node.admins
        key = hmac.new(
            self._basic_key,
            name.encode("utf-8", "replace") + b"\0" + password.encode("utf-8", "replace"),
            hashlib.sha256,
        ).digest()
        cached = self._cached_login(key, name)
        if cached is not None:
            # Still through the guard: a blocked account or address stays blocked, and a
            # success clears that pair's failures as a checked password does.
            return self.logins.check(name, address, lambda: cached)
        check_may_wait("a password check")
        # The stamp is read before the password is checked: should the password change
        # meanwhile, the remembered login carries the old stamp and is dropped at its next use.
        stamp = self._login_stamp(name)
        try:
            account = self.logins.check(
                name, address, lambda: self.directory.verify(name, password)
            )
        except DirectoryUnavailable as exc:
            log.warning("event=login-ldap-unavailable account=%r via=%s", name[:64], via)
            raise LoginRefused(
                503,
                f"{exc}; the local recovery account can still log in",
                5,
            ) from None
        if account is not None:
            self._remember_login(key, account, stamp)
        if account is None:
            shown = name[:64]
            log.warning("event=login-failed account=%r source=%s via=%s", shown, address, via)
            with acting_as(Actor(UNAUTHENTICATED, via, address)):
                admins.login_failed(shown)
        return account

    def _cached_login(self, key: bytes, name: str) -> AdminInfo | None:
        """The account of a recently verified credential, if its password and access level
        are still those verified (``credential_stamp``) and the entry is fresh."""
        with self._lock:
            found = self._verified.get(key)
        if found is None:
            return None
        if found.expires < time.monotonic() or found.account.name != name:
            self._forget_login(key)
            return None
        if self._login_stamp(name) != found.stamp:
            self._forget_login(key)
            return None
        return found.account

    def _login_stamp(self, name: str) -> str:
        """What a remembered password login depends on: the local account's credential stamp
        and the LDAP settings' version (the admin-auth source, groups, server)."""
        return f"{self.node.admins.credential_stamp(name)}|ldap:{self.node.ldap.version()}"

    def _remember_login(self, key: bytes, account: AdminInfo, stamp: str) -> None:
        with self._lock:
            now = time.monotonic()
            if len(self._verified) >= BASIC_CACHE_SIZE:
                self._verified = {k: v for k, v in self._verified.items() if v.expires > now}
                while len(self._verified) >= BASIC_CACHE_SIZE:
                    del self._verified[next(iter(self._verified))]
            self._verified[key] = _Verified(account, stamp, now + BASIC_CACHE_SECONDS)

    def _forget_login(self, key: bytes) -> None:
        with self._lock:
            self._verified.pop(key, None)

    def token_login(self, token: str, *, address: str) -> Principal:
        """The principal of an API token (``Authorization: Bearer``); a refused token is
        logged and audited with the reason, never the token."""
        try:
            info = self.node.api_tokens.authenticate(token)
        except TokenRefused as exc:
            log.warning("event=token-refused source=%s reason=%r", address, str(exc))
            with acting_as(Actor(UNAUTHENTICATED, "api", address)):
                self.node.audit.record(
                    "api-token.login", "(bearer token)", "refused", {"error": str(exc)}
                )
            raise AuthRequired(str(exc)) from None
        return Principal(f"token:{info.name}", info.access, "api", address)

    # sessions (UI)
    def new_session(self, account: AdminInfo) -> tuple[str, str]:
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        stamp = self._stamp(account.name)
        with self._lock:
            now = time.monotonic()
            self._sessions = {k: v for k, v in self._sessions.items() if v.expires > now}
            self._sessions[token] = _Session(account, csrf, now + SESSION_LIFETIME, stamp)
        return token, csrf

    def session(self, token: str | None) -> _Session | None:
        """The live session of ``token``. A session ends when its account is removed or
        changed (password, access level) since it began."""
        if not token:
            return None
        with self._lock:
            found = self._sessions.get(token)
        if found is None or found.expires < time.monotonic():
            return None
        if self._stamp(found.account.name) != found.stamp:
            self.end_session(token)
            return None
        return found

    def _stamp(self, name: str) -> str | None:
        """The local account's credential stamp; for an LDAP account (no local one), the LDAP
        settings' version: a session of an LDAP account ends when they change."""
        stamp = self.node.admins.credential_stamp(name)
        return stamp if stamp is not None else f"ldap:{self.node.ldap.version()}"

    def end_session(self, token: str | None) -> None:
        if token:
            with self._lock:
                self._sessions.pop(token, None)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def peer_certificate(request: Request) -> bytes | None:
    """The TLS client certificate of this connection (PEM), from the ASGI TLS extension,
    followed by the certificates the client presented after it (untrusted: whoever checks
    it takes them as intermediates only, as ``ClientCheck`` does)."""
    tls = request.scope.get("extensions", {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or []
    return "".join(chain).encode("ascii") if chain else None


class AuthRequired(Exception):
    """No (valid) credentials: the API answers 401, the UI redirects to the login page."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class CertificateRefused(Exception):
    """The admin client-certificate policy refused this connection's certificate."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def authenticate(
    request: Request, context: WebContext, *, via: Via, session: bool | None = None
) -> Principal:
    """Who is calling: certificate policy first, then HTTP Basic, then the UI session (taken
    when ``session``, by default for ``via="ui"``)."""
    node = context.node
    address = client_address(request)
    try:
        gate = node.admin_security.authenticate(
            peer_certificate(request), resolve=context.directory.lookup
        )
    except DirectoryUnavailable as exc:
        raise CertificateRefused(str(exc)) from None
    if not gate.allowed:
        raise CertificateRefused(gate.reason)
    if gate.account is not None:  # certificate-based authentication: password login is off
        return Principal(gate.account.name, gate.account.access, via, address)
    header = request.headers.get("authorization", "")
    if header.lower().startswith("basic "):
        try:
            name, _, password = (
                base64.b64decode(header[6:].strip(), validate=True).decode("utf-8").partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            raise AuthRequired("malformed Authorization header") from None
        account = context.password_login(name, password, address=address, via=via)
        if account is None:
            raise AuthRequired("wrong user name or password")
        return Principal(account.name, account.access, via, address)
    if header.lower().startswith("bearer ") and via == "api":
        return context.token_login(header[7:].strip(), address=address)
    # The session cookie is the UI's (its forms carry CSRF tokens); the API takes only HTTP
    # Basic or the client certificate, so a cookie cannot be replayed against it. (The API's
    # description, which only reads, takes the session too: certway.web.docs.)
    takes_session = via == "ui" if session is None else session
    found = context.session(request.cookies.get(SESSION_COOKIE)) if takes_session else None
    if found is not None:
        return Principal(found.account.name, found.account.access, "ui", address)
    raise AuthRequired("log in first")


@contextmanager
def as_principal(principal: Principal) -> Iterator[None]:
    with acting_as(Actor(principal.name, principal.via, principal.address)):
        yield
