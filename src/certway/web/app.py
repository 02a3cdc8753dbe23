"""The HTTPS admin application: REST API under ``/api/v1`` and the web UI, one FastAPI app.

This module wires the routers (certway.web.api, certway.web.docs, certway.web.ui) to the shared
state (certway.web.context: who is calling, sessions, the error mapping), adds the middleware
(security headers, the body limit) and maps errors to answers in one place: problem+json for
the API, a redirect or an HTML page for the UI. Nothing imports this module but the callers
of ``create_admin_app``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from certway.errors import CertwayError
from certway.services.node import Node
from certway.web.acme import AcmeEndpoint
from certway.web.api import router as api_router
from certway.web.api.sign_endpoint import SignEndpoint
from certway.web.context import (
    MAX_UPLOAD,
    AuthRequired,
    CertificateRefused,
    WebContext,
    problem,
    status_for,
    too_large,
    too_large_problem,
)
from certway.web.docs import describe_api
from certway.web.docs import router as docs_router
from certway.web.logins import LoginRefused, ThrottlePolicy
from certway.web.ui import certificate_refused_page
from certway.web.ui import router as ui_router
from certway.web.ui.kit import error_page

__all__ = ["SECURITY_HEADERS", "BodyLimit", "SecurityHeaders", "create_admin_app"]


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
            await too_large_problem(self.limit)(scope, receive, send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise too_large(self.limit)
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
            await too_large_problem(self.limit)(scope, receive, send)


_UI_ERRORS = {
    404: ("Page not found", "there is no page at this address: choose a page from the menu"),
    405: ("Not a page", "this address takes a form, not a page view: choose a page from the menu"),
}


def _is_api(request: Request) -> bool:
    """The API (and its description) answers problem+json; every other path is the UI's."""
    return request.url.path.startswith("/api/")


def create_admin_app(
    node: Node, *, secure_cookies: bool = True, throttle: ThrottlePolicy | None = None
) -> FastAPI:
    """The admin app for ``node``: REST API under /api/v1 and the UI (``throttle``: the
    password-login limits, ``ThrottlePolicy()`` by default)."""
    # FastAPI's own schema and docs routes are public and load Swagger UI from a CDN: ours
    # (certway.web.docs) need an account and serve the files themselves.
    app = FastAPI(
        title="certway admin API", version="1", openapi_url=None, docs_url=None, redoc_url=None
    )
    app.state.web = WebContext(node, secure_cookies=secure_cookies, throttle=throttle)

    @app.exception_handler(CertwayError)
    async def certway_error(request: Request, exc: CertwayError) -> Response:
        status, title = status_for(exc)
        if not _is_api(request):
            return error_page(request, status, title, str(exc))
        code = getattr(exc, "code", None)
        return problem(status, title, str(exc), **({"code": code} if code else {}))

    @app.exception_handler(AuthRequired)
    async def auth_required(request: Request, exc: AuthRequired) -> Any:
        if request.url.path.startswith("/api/"):
            response = problem(401, "Unauthorized", exc.detail)
            response.headers["WWW-Authenticate"] = 'Basic realm="certway"'
            return response
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
        return certificate_refused_page(request, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        errors = [{k: v for k, v in e.items() if k in ("type", "loc", "msg")} for e in exc.errors()]
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(part) for part in first.get("loc", ()))
        detail = f"{where}: {first.get('msg')}" if where else str(first.get("msg"))
        if not _is_api(request):
            return error_page(request, 422, "Invalid request", detail)
        return problem(422, "Invalid request", detail, errors=jsonable_encoder(errors))

    @app.exception_handler(StarletteHTTPException)  # FastAPI's, and Starlette's 404/405/413
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if _is_api(request):
            response: Response = problem(exc.status_code, "Error", str(exc.detail))
        else:
            title, message = _UI_ERRORS.get(exc.status_code, ("Error", str(exc.detail)))
            response = error_page(request, exc.status_code, title, message)
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(Exception)  # a bug: logged by the server; the user gets a page
    async def server_error(request: Request, _exc: Exception) -> Response:
        message = "the request failed on the server (the server log has the details)"
        if _is_api(request):
            return problem(500, "Internal server error", message)
        return error_page(request, 500, "Internal server error", message)

    app.add_middleware(BodyLimit, limit=MAX_UPLOAD)  # before any parsing
    app.add_middleware(SecurityHeaders)  # on every answer, a refused upload's included
    # /acme/<CA>/: the local CAs' ACME server (JWS-authenticated, see certway.web.acme)
    app.add_middleware(AcmeEndpoint, server=node.acme_server, security_headers=SECURITY_HEADERS)
    # POST /api/v1/local-ca/{name}/sign: the automation hot path (certway.web.api.sign_endpoint)
    app.add_middleware(SignEndpoint, handlers=app.exception_handlers, headers=SecurityHeaders)
    app.include_router(api_router, prefix="/api/v1")
    app.include_router(docs_router, prefix="/api/v1")
    app.include_router(ui_router)
    app.openapi = lambda: describe_api(app)  # type: ignore[method-assign]
    return app
