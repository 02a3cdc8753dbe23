"""Logging in and out, the client-certificate refusal page, and the static files."""

from __future__ import annotations

import functools
import secrets

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from certway.services.admin_security import Mode
from certway.web.context import SESSION_COOKIE, client_address, peer_certificate
from certway.web.logins import LoginRefused
from certway.web.ui.kit import (
    MODE_LABELS,
    RECOVERY_COMMAND,
    WEB_DIR,
    Refused,
    UiRoute,
    bare_page,
    html,
    read_form,
    set_session_cookie,
    web_context,
)

__all__ = ["certificate_refused_page", "router"]

router = APIRouter(include_in_schema=False, route_class=UiRoute)

_STATIC: dict[str, str] = {"certway.css": "text/css", "certway.js": "text/javascript"}


def _login_page(
    request: Request, *, error: str | None = None, status: int = 200, user: str = ""
) -> HTMLResponse:
    config = web_context(request).node.admin_security.get()
    context = bare_page(
        request,
        "/login",
        error=error,
        title="Log in",
        certificate_login=config.mode is Mode.AUTHENTICATION,
        login_user=user,
    )
    return html("login.html", context, status)


def _gate(request: Request, *, status: int = 200) -> Response | None:
    """The certificate policy applies to the login page too: a certificate that names an
    account is already logged in; with certificate-based authentication there is no password
    login; in validation mode a refused certificate gets the refusal page."""
    security = web_context(request).node.admin_security
    gate = security.authenticate(peer_certificate(request))
    if gate.account is not None:
        return RedirectResponse("/", status_code=303)
    if security.get().mode is Mode.AUTHENTICATION:
        return _login_page(request, error=gate.reason, status=status)
    if not gate.allowed:
        return certificate_refused_page(request, gate.reason)
    return None


@router.get("/login")
def login_form(request: Request) -> Response:
    return _gate(request) or _login_page(request)


@router.post("/login")
async def login(request: Request) -> Response:
    gated = await run_in_threadpool(functools.partial(_gate, request, status=403))
    if gated is not None:
        return gated
    context = web_context(request)
    form = await read_form(request)
    user = form.get("user")
    login = functools.partial(
        context.password_login,
        user,
        form.raw("password"),
        address=client_address(request),
        via="ui",
    )
    try:
        account = await run_in_threadpool(login)
    except LoginRefused as refused:
        page = _login_page(request, error=refused.detail, status=refused.status, user=user)
        page.headers["Retry-After"] = str(refused.retry_after)
        return page
    if account is None:
        return _login_page(request, error="wrong user name or password", status=401, user=user)
    context.end_session(request.cookies.get(SESSION_COOKIE))  # no session fixation
    token, _csrf = context.new_session(account)
    response = RedirectResponse("/", status_code=303)
    set_session_cookie(response, context, token)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    context = web_context(request)
    token = request.cookies.get(SESSION_COOKIE)
    session = context.session(token)
    if session is not None:
        form = await read_form(request)
        if not secrets.compare_digest(session.csrf, form.raw("csrf") or "-"):
            raise Refused(403, "Form refused", "CSRF check failed: reload the page and log out")
        context.end_session(token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(
        SESSION_COOKIE, path="/", secure=context.secure_cookies, httponly=True, samesite="strict"
    )
    return response


@router.get("/static/{name}")
def static_file(name: str) -> Response:
    media_type = _STATIC.get(name)
    if media_type is None:
        raise Refused(404, "Page not found", f"there is no static file '{name}'")
    data = (WEB_DIR / "static" / name).read_bytes()
    return Response(data, media_type=media_type, headers={"Cache-Control": "max-age=3600"})


def certificate_refused_page(request: Request, detail: str) -> HTMLResponse:
    """Explain why this browser's client certificate was refused, and what to do about it
    (called by the app's handler of ``CertificateRefused`` too)."""
    mode = web_context(request).node.admin_security.get().mode
    context = bare_page(
        request,
        title="Client certificate refused",
        detail=detail,
        mode=MODE_LABELS[mode.value],
        authentication=mode is Mode.AUTHENTICATION,
        sent=peer_certificate(request) is not None,
        recovery=RECOVERY_COMMAND,
    )
    return html("refused.html", context, 403)
