"""What every page of the web UI shares: templates and responses, who is calling (``View``),
forms (``Form``, CSRF), and ``form_action``, the one way a form that changes state is handled.

Every page needs an authenticated administrator (``authenticate(..., via="ui")``); every form
that changes state carries the session's CSRF token and needs a read-write account, and
read-only accounts see the pages without their forms. Service errors are shown on the page
with the same one-line message as the CLI; nothing here re-implements a rule of the services.

Handlers that read a form are ``async`` (Starlette parses multipart bodies asynchronously) and
hand the work to a thread, because the services block (database, key generation, argon2).
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import re
import secrets
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fastapi import Request, Response
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from certway.errors import CertwayError, PolicyViolation
from certway.services.admin_security import Mode
from certway.services.admins import AdminInfo
from certway.services.node import Node
from certway.web.context import (
    MAX_UPLOAD,
    SESSION_COOKIE,
    SESSION_LIFETIME,
    Principal,
    WebContext,
    as_principal,
    authenticate,
    status_for,
)

__all__ = [
    "MODE_LABELS",
    "NAV",
    "PEM_TYPE",
    "WEB_DIR",
    "Form",
    "Refused",
    "UiRoute",
    "UploadTooLarge",
    "View",
    "bare_page",
    "download",
    "form_action",
    "html",
    "page_view",
    "pem",
    "read_form",
    "run",
    "set_session_cookie",
    "submit",
    "web_context",
    "when",
]

T = TypeVar("T")

WEB_DIR = Path(__file__).parent.parent
"""certway/web: the templates and static files."""
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
NAV: tuple[tuple[str, str], ...] = (
    ("/", "Status"),
    ("/server-certificate", "Server certificate"),
    ("/domains", "Domain certificates"),
    ("/trusted-cas", "Trusted CA certificates"),
    ("/crls", "CRL management"),
    ("/revocation", "Revocation settings"),
    ("/tls", "TLS profiles"),
    ("/client-certificate-test", "Client certificate testing"),
    ("/certificate-auth", "Certificate-based authentication"),
    ("/ldap", "LDAP admin authentication"),
    ("/sip", "SIP TLS & zones"),
    ("/local-ca", "Local CA"),
    ("/audit", "Audit log"),
)
MODE_LABELS = {
    Mode.NOT_REQUIRED.value: "Not required",
    Mode.VALIDATION.value: "Certificate validation",
    Mode.AUTHENTICATION.value: "Certificate-based authentication",
}
PEM_TYPE = "application/x-pem-file"


class UploadTooLarge(CertwayError):
    """An uploaded file is larger than ``MAX_UPLOAD``: shown on the page like any error."""


# -- templates and responses -------------------------------------------------------------------
def when(value: dt.datetime | None, fmt: str = "%Y-%m-%d %H:%M UTC") -> str:
    return value.strftime(fmt) if value is not None else "—"


@functools.cache
def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(WEB_DIR / "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    env.filters["day"] = functools.partial(when, fmt="%Y-%m-%d")
    env.filters["compact"] = lambda v: re.sub(r"[^0-9A-Fa-f]", "", str(v))
    return env


def html(template: str, context: Mapping[str, Any], status: int = 200) -> HTMLResponse:
    body = _env().get_template(template).render(**context)
    response = HTMLResponse(body, status_code=status)
    response.headers["Content-Security-Policy"] = _CSP
    response.headers["Cache-Control"] = "no-store"
    return response


def bare_page(request: Request, path: str | None = None, **context: Any) -> dict[str, Any]:
    """The template context of a page shown to no one logged in (login, refusal, errors)."""
    return {
        "nav": (),
        "path": request.url.path if path is None else path,
        "user": None,
        "can_write": False,
        "csrf": "",
        "notices": [],
        "warnings": [],
        "error": None,
        **context,
    }


def download(data: bytes, filename: str, media_type: str) -> Response:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", filename) or "download"
    return Response(
        data,
        media_type=media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{safe}"',
            "Cache-Control": "no-store",
        },
    )


def pem(certs: Iterable[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def web_context(request: Request) -> WebContext:
    return cast(WebContext, request.app.state.web)


def set_session_cookie(response: Response, context: WebContext, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=SESSION_LIFETIME,
        path="/",
        secure=context.secure_cookies,
        httponly=True,
        samesite="strict",
    )


def _session_csrf(request: Request) -> str:
    session = web_context(request).session(request.cookies.get(SESSION_COOKIE))
    return session.csrf if session is not None else ""


# -- who is calling ----------------------------------------------------------------------------
@dataclass
class View:
    """An authenticated page request: who, the CSRF token for forms, and messages to show."""

    request: Request
    principal: Principal
    csrf: str
    new_session: str | None = None  # certificate-authenticated: a session just for CSRF
    notices: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    status: int = 200
    result: Any = None
    """What a form action produced for its page to show (a signed certificate, a report)."""

    @property
    def node(self) -> Node:
        return web_context(self.request).node

    def failed(self, exc: CertwayError) -> None:
        self.error = str(exc)
        self.status = 413 if isinstance(exc, UploadTooLarge) else status_for(exc)[0]

    def render(self, template: str, **context: Any) -> HTMLResponse:
        response = html(
            template,
            {
                "nav": NAV,
                "path": self.request.url.path,
                "user": self.principal,
                "can_write": self.principal.can_write,
                "csrf": self.csrf,
                "notices": self.notices,
                "warnings": self.warnings,
                "error": self.error,
                **context,
            },
            self.status,
        )
        if self.new_session is not None:
            set_session_cookie(response, web_context(self.request), self.new_session)
        return response


def page_view(request: Request) -> View:
    """Authenticate a page view (redirect to /login or the refusal page when needed)."""
    context = web_context(request)
    principal = authenticate(request, context, via="ui")
    session = context.session(request.cookies.get(SESSION_COOKIE))
    if session is not None and session.account.name == principal.name:
        return View(request, principal, session.csrf)
    # Certificate-based authentication names the user without a login: open a session so
    # the forms still carry a CSRF token bound to this browser.
    token, csrf = context.new_session(AdminInfo(principal.name, principal.access))
    return View(request, principal, csrf, new_session=token)


class Refused(Exception):
    """Stop a request with an HTML error page (403 for CSRF / read-only, 400 bad forms)."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message

    def response(self, request: Request) -> HTMLResponse:
        context = bare_page(request, title=self.title, message=self.message, status=self.status)
        return html(
            "error.html", {**context, "nav": NAV, "csrf": _session_csrf(request)}, self.status
        )


class UiRoute(APIRoute):
    """Routes of the UI answer ``Refused`` with an HTML page (not problem+json)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except Refused as exc:
                return exc.response(request)

        return guarded


# -- forms -------------------------------------------------------------------------------------
@dataclass
class Form:
    """A submitted form: text fields and uploaded files read with the size limit."""

    fields: dict[str, list[str]] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    oversize: set[str] = field(default_factory=set)

    @classmethod
    def of_query(cls, params: Iterable[tuple[str, str]]) -> Form:
        form = cls()
        for key, value in params:
            form.fields.setdefault(key, []).append(value)
        return form

    def raw(self, key: str) -> str:
        values = self.fields.get(key)
        return values[0] if values else ""

    def get(self, key: str, default: str = "") -> str:
        return self.raw(key).strip() or default

    def opt(self, key: str) -> str | None:
        return self.get(key) or None

    def all(self, key: str) -> list[str]:
        return [v.strip() for v in self.fields.get(key, []) if v.strip()]

    def split(self, key: str) -> tuple[str, ...]:
        """Comma (or line) separated values, as in the Expressway form."""
        return tuple(v.strip() for v in re.split(r"[,\n]", self.raw(key)) if v.strip())

    def on(self, key: str) -> bool:
        return self.get(key).lower() in {"on", "yes", "true", "1"}

    def integer(self, key: str, what: str, default: int) -> int:
        text = self.get(key)
        if not text:
            return default
        if not re.fullmatch(r"\d{1,6}", text):
            raise PolicyViolation("number", f"{what} must be a whole number, not '{text}'")
        return int(text)

    def file(self, key: str, what: str) -> bytes | None:
        if key in self.oversize:
            raise UploadTooLarge(
                f"the {what} is larger than the upload limit of {_size(MAX_UPLOAD)}: "
                "nothing was changed"
            )
        return self.files.get(key)

    def values(self) -> dict[str, str]:
        """First values of the text fields, to fill a form in again (never secrets)."""
        return {k: v[0] for k, v in self.fields.items() if v and k not in {"csrf", "passphrase"}}


def _size(count: int) -> str:
    return f"{count // (1024 * 1024)} MiB" if count >= 1024 * 1024 else f"{count} bytes"


async def read_form(request: Request) -> Form:
    try:
        data: FormData = await request.form()
    except StarletteHTTPException as exc:  # malformed multipart, a field over 1 MiB, ...
        raise Refused(400, "Bad form", f"the form could not be read: {exc.detail}") from None
    form = Form()
    try:
        for key, value in data.multi_items():
            if isinstance(value, UploadFile):
                content = await value.read(MAX_UPLOAD + 1)
                if len(content) > MAX_UPLOAD:
                    form.oversize.add(key)
                elif content:  # a browser sends an empty part when no file was chosen
                    form.files[key] = content
            else:
                form.fields.setdefault(key, []).append(value)
    finally:
        await data.close()
    return form


async def submit(request: Request) -> tuple[View, Form]:
    """A state-changing form: authenticated, read-write, and carrying this session's token."""
    context = web_context(request)
    principal = await run_in_threadpool(authenticate, request, context, via="ui")
    if not principal.can_write:
        raise Refused(
            403,
            "Read-only account",
            f"account '{principal.name}' is read-only: it can view the pages but not change "
            "anything",
        )
    form = await read_form(request)
    session = context.session(request.cookies.get(SESSION_COOKIE))
    sent = form.raw("csrf")
    if session is None or not sent or not secrets.compare_digest(session.csrf, sent):
        raise Refused(
            403,
            "Form refused",
            "this form did not come from a page of this session (CSRF check failed): reload "
            "the page and submit it again",
        )
    return View(request, principal, session.csrf), form


async def run(view: View, work: Callable[[], T]) -> T:
    """Run blocking service work in a thread, attributed to the caller in the audit log."""

    def call() -> T:
        with as_principal(view.principal):
            return work()

    return await run_in_threadpool(call)


# -- the form action: submit → work → message → page -------------------------------------------
Page = Callable[..., HTMLResponse]
"""Renders a page: ``page(view, form, **path_parameters)``; ``form`` (or None) fills the
page's form in again."""
Work = Callable[..., str | None]
"""A form action's work: ``work(view, form, **path_parameters)`` calls the services and
returns the success message (or None, having put its messages on the view itself)."""


def form_action(
    page: Page, *, keep_form: Literal["no", "on-error", "always"] = "no"
) -> Callable[[Work], Callable[..., Coroutine[Any, Any, Response]]]:
    """Turn ``work`` into the endpoint of a form that changes state.

    The endpoint checks the caller (read-write account, this session's CSRF token) and reads
    the form; then, in a thread and as the caller, runs ``work`` and renders ``page`` with the
    success message among the notices, or with the ``CertwayError`` of the work as the page's
    error (and its status). ``keep_form`` says when the page shows the submitted values again.
    The endpoint takes the path parameters ``work`` takes after ``view`` and ``form``."""

    def decorate(work: Work) -> Callable[..., Coroutine[Any, Any, Response]]:
        async def endpoint(request: Request, **params: Any) -> Response:
            view, form = await submit(request)

            def act() -> HTMLResponse:
                try:
                    notice = work(view, form, **params)
                except CertwayError as exc:
                    view.failed(exc)
                    return page(view, form if keep_form != "no" else None, **params)
                if notice:
                    view.notices.append(notice)
                return page(view, form if keep_form == "always" else None, **params)

            return await run(view, act)

        signature = inspect.signature(work, eval_str=True)
        request = inspect.Parameter(
            "request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request
        )
        path_parameters = list(signature.parameters.values())[2:]
        endpoint.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[request, *path_parameters], return_annotation=Response
        )
        endpoint.__name__ = work.__name__
        endpoint.__qualname__ = work.__qualname__
        endpoint.__module__ = work.__module__
        endpoint.__doc__ = work.__doc__
        return endpoint

    return decorate
