"""The HTTPS admin application: REST API under ``/api/v1`` and the web UI, one FastAPI app.

Authentication, in this order: the admin client-certificate policy (S2) judges the TLS peer
certificate from ``scope["extensions"]["tls"]``; in certificate-based authentication mode it
also names the user. Otherwise the API takes HTTP Basic and the UI a session cookie (Secure,
HttpOnly, SameSite=Strict) with a CSRF token on every form. Password logins go through
``LoginGuard`` (certway.web.logins: throttled per account and per address, password hashing
capped); each failed one is logged and audited. Every change runs as the authenticated account
(audit log).
"""

from __future__ import annotations

import base64
import binascii
import logging
import secrets
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from certway.errors import (
    CertwayError,
    Conflict,
    DecodeError,
    FetchError,
    NotFound,
    PassphraseError,
    PolicyViolation,
    StoreError,
    ValidationFailed,
)
from certway.services.admins import AdminInfo
from certway.services.audit import Actor, acting_as
from certway.services.node import Node
from certway.web.logins import LoginGuard, LoginRefused, ThrottlePolicy

__all__ = [
    "CHANGING_METHODS",
    "MAX_UPLOAD",
    "ApiRoute",
    "Principal",
    "Reader",
    "WebContext",
    "Writer",
    "create_admin_app",
    "is_reads_only",
    "problem",
    "reads_only",
]

MAX_UPLOAD = 8 * 1024 * 1024
"""Largest request body accepted (a big CA bundle or CRL); more is refused with 413."""
SESSION_COOKIE = "certway_session"
SESSION_LIFETIME = 8 * 3600
UNAUTHENTICATED = "(unauthenticated)"
"""The actor of a failed login in the audit log (the account named is its target)."""

log = logging.getLogger("certway.web")


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
    (FetchError, 502, "Fetch failed"),
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
    via: str  # api | ui
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
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()

    # password logins (API and UI)
    def password_login(
        self, name: str, password: str, *, address: str, via: str
    ) -> AdminInfo | None:
        """The account when the password is right, else None (logged and audited). Raises
        ``LoginRefused`` when the throttle does not let the attempt in."""
        admins = self.node.admins
        account = self.logins.check(name, address, lambda: admins.verify(name, password))
        if account is None:
            shown = name[:64]
            log.warning("event=login-failed account=%r source=%s via=%s", shown, address, via)
            with acting_as(Actor(UNAUTHENTICATED, via, address)):
                admins.login_failed(shown)
        return account

    # sessions (UI)
    def new_session(self, account: AdminInfo) -> tuple[str, str]:
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        stamp = self.node.admins.credential_stamp(account.name)
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
        if self.node.admins.credential_stamp(found.account.name) != found.stamp:
            self.end_session(token)
            return None
        return found

    def end_session(self, token: str | None) -> None:
        if token:
            with self._lock:
                self._sessions.pop(token, None)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def peer_certificate(request: Request) -> bytes | None:
    """The TLS client certificate of this connection (PEM), from the ASGI TLS extension."""
    tls = request.scope.get("extensions", {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or []
    return chain[0].encode("ascii") if chain else None


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
    request: Request, context: WebContext, *, via: str, session: bool | None = None
) -> Principal:
    """Who is calling: certificate policy first, then HTTP Basic, then the UI session (taken
    when ``session``, by default for ``via="ui"``)."""
    node = context.node
    address = client_address(request)
    gate = node.admin_security.authenticate(peer_certificate(request))
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


def api_principal(request: Request) -> Principal:
    """The caller of an API route, authenticated once per request (``ApiRoute`` does it before
    the body is read; the ``Reader``/``Writer`` dependencies then find it here)."""
    known = getattr(request.state, "principal", None)
    if isinstance(known, Principal):
        return known
    context: WebContext = request.app.state.web
    principal = authenticate(request, context, via="api")
    request.state.principal = principal
    return principal


def require_write(principal: Principal) -> Principal:
    if not principal.can_write:
        raise HTTPException(403, f"account '{principal.name}' is read-only")
    return principal


def writer(principal: Annotated[Principal, Depends(api_principal)]) -> Principal:
    """Routes that change state: read-only accounts get 403."""
    return require_write(principal)


Reader = Annotated[Principal, Depends(api_principal)]
Writer = Annotated[Principal, Depends(writer)]

CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
"""Methods that need a read-write account unless the route is marked ``reads_only``."""

F = TypeVar("F", bound=Callable[..., Any])


def reads_only(endpoint: F) -> F:
    """Mark a POST route that computes an answer without changing anything (a preview, a
    test): read-only accounts may call it."""
    endpoint.__certway_reads_only__ = True  # type: ignore[attr-defined]
    return endpoint


def is_reads_only(endpoint: Callable[..., Any]) -> bool:
    return bool(getattr(endpoint, "__certway_reads_only__", False))


class ApiRoute(APIRoute):
    """Every API route authenticates the caller, and every POST/PUT/PATCH/DELETE route not
    marked ``reads_only`` requires a read-write account, *before* the body is read or
    validated: a refused caller gets 401/403, never a validation error, and a route that
    forgets its ``Writer`` dependency is still closed to read-only accounts."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        methods = self.methods or set()
        changes = bool(methods & CHANGING_METHODS) and not is_reads_only(self.endpoint)

        async def authorised(request: Request) -> Response:
            principal = await run_in_threadpool(api_principal, request)
            if changes:
                require_write(principal)
            return await handler(request)

        return authorised


def _too_large(limit: int) -> StarletteHTTPException:
    return StarletteHTTPException(413, f"request bodies are limited to {limit} bytes")


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Strict-Transport-Security": "max-age=31536000",
}


class SecurityHeaders:
    """Add ``SECURITY_HEADERS`` to every response that does not set them itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413 problem+json: at once when the
    Content-Length says so, else while the body is read (chunked uploads). Raised from
    ``receive`` as an HTTPException, which FastAPI passes on to the app's handler."""

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            detail = str(_too_large(self.limit).detail)
            await problem(413, "Too large", detail)(scope, receive, send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _too_large(self.limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except StarletteHTTPException as exc:  # read outside a route (a middleware): answer here
            if exc.status_code != 413 or started:
                raise
            await problem(413, "Too large", str(exc.detail))(scope, receive, send)


def create_admin_app(
    node: Node, *, secure_cookies: bool = True, throttle: ThrottlePolicy | None = None
) -> FastAPI:
    """The admin app for ``node``: REST API under /api/v1 and the UI (``throttle``: the
    password-login limits, ``ThrottlePolicy()`` by default)."""
    from certway.web.api import router as api_router
    from certway.web.docs import router as docs_router
    from certway.web.ui import router as ui_router

    # FastAPI's own schema and docs routes are public and load Swagger UI from a CDN: ours
    # (certway.web.docs) need an account and serve the files themselves.
    app = FastAPI(
        title="certway admin API", version="1", openapi_url=None, docs_url=None, redoc_url=None
    )
    app.state.web = WebContext(node, secure_cookies=secure_cookies, throttle=throttle)

    @app.exception_handler(CertwayError)
    async def certway_error(_request: Request, exc: CertwayError) -> JSONResponse:
        status, title = status_for(exc)
        code = getattr(exc, "code", None)
        return problem(status, title, str(exc), **({"code": code} if code else {}))

    @app.exception_handler(AuthRequired)
    async def auth_required(request: Request, exc: AuthRequired) -> Any:
        if request.url.path.startswith("/api/"):
            response = problem(401, "Unauthorized", exc.detail)
            response.headers["WWW-Authenticate"] = 'Basic realm="certway"'
            return response
        from fastapi.responses import RedirectResponse

        return RedirectResponse("/login", status_code=303)

    @app.exception_handler(LoginRefused)
    async def login_refused(_request: Request, exc: LoginRefused) -> JSONResponse:
        title = "Too many failed logins" if exc.status == 429 else "Too many login attempts"
        response = problem(exc.status, title, exc.detail)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.exception_handler(CertificateRefused)
    async def certificate_refused(request: Request, exc: CertificateRefused) -> Any:
        if request.url.path.startswith("/api/"):
            return problem(403, "Client certificate refused", exc.detail)
        from certway.web.ui import certificate_refused_page

        return certificate_refused_page(request, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{k: v for k, v in e.items() if k in ("type", "loc", "msg")} for e in exc.errors()]
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(part) for part in first.get("loc", ()))
        detail = f"{where}: {first.get('msg')}" if where else str(first.get("msg"))
        return problem(422, "Invalid request", detail, errors=jsonable_encoder(errors))

    @app.exception_handler(StarletteHTTPException)  # FastAPI's, and Starlette's 404/405/413
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        response = problem(exc.status_code, "Error", str(exc.detail))
        response.headers.update(exc.headers or {})
        return response

    app.add_middleware(SecurityHeaders)
    app.add_middleware(BodyLimit, limit=MAX_UPLOAD)  # outermost of ours: before any parsing
    app.include_router(api_router, prefix="/api/v1")
    app.include_router(docs_router, prefix="/api/v1")
    app.include_router(ui_router)
    return app
