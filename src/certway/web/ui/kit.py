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
from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

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
    "RECOVERY_COMMAND",
    "WEB_DIR",
    "Form",
    "Refused",
    "UiRoute",
    "UploadTooLarge",
    "View",
    "bare_page",
    "download",
    "error_page",
    "form_action",
    "form_get_redirects",
    "html",
    "page_view",
    "pem",
    "read_form",
    "redirect_after",
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
    ("/node", "Node settings"),
    ("/cluster", "Cluster"),
    ("/admins", "Administrator accounts"),
    ("/ldap", "LDAP admin authentication"),
    ("/sip", "SIP TLS & zones"),
    ("/local-ca", "Local CA"),
    ("/tokens", "PKCS#11 tokens"),
    ("/syslog", "Remote syslog"),
    ("/acme-client", "ACME client"),
    ("/api-tokens", "API tokens"),
    ("/audit", "Audit log"),
    ("/backup", "Backup and restore"),
)
MODE_LABELS = {
    Mode.NOT_REQUIRED.value: "Not required",
    Mode.VALIDATION.value: "Certificate validation",
    Mode.AUTHENTICATION.value: "Certificate-based authentication",
}
PEM_TYPE = "application/x-pem-file"
RECOVERY_COMMAND = "certway admin reset-security"
"""Run on the server's console: client certificate checks off, password login works again."""
SECRET_FIELDS = frozenset(
    {"csrf", "confirmed", "passphrase", "passphrase_again", "password", "password2", "pin"}
)
"""Form fields never kept to fill a form in again (nor carried through a confirmation)."""


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
    form: Form = field(default_factory=lambda: Form())
    """The fields a form action kept for its page to fill in again (never secrets), with the
    address the form was posted to: a page with several forms fills in only that one."""

    @property
    def node(self) -> Node:
        return web_context(self.request).node

    def failed(self, exc: CertwayError) -> None:
        self.error = str(exc)
        self.status = 413 if isinstance(exc, UploadTooLarge) else status_for(exc)[0]

    def render(self, template: str, **context: Any) -> HTMLResponse:
        """Render ``template`` with the page's messages; ``refill(action)`` in it gives the
        values kept from the form posted to ``action``, and none if another form was sent."""
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
                "refill": self.form.values_for,
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
        view = View(request, principal, session.csrf)
        flash = session.flashes.pop(request.url.path, None)
        if isinstance(flash, Flash):
            flash.apply(view)
        return view
    # Certificate-based authentication names the user without a login: open a session so
    # the forms still carry a CSRF token bound to this browser.
    token, csrf = context.new_session(AdminInfo(principal.name, principal.access))
    return View(request, principal, csrf, new_session=token)


@dataclass
class Flash:
    """The outcome of a form action, kept in the session for the page it redirects to."""

    notices: list[str]
    warnings: list[str]
    error: str | None
    status: int
    result: Any
    form: Form

    @classmethod
    def of(cls, view: View, form: Form | None) -> Flash:
        kept = form.kept() if form is not None else Form()
        return cls(view.notices, view.warnings, view.error, view.status, view.result, kept)

    def apply(self, view: View) -> None:
        view.notices.extend(self.notices)
        view.warnings.extend(self.warnings)
        view.error = self.error
        view.status = self.status
        view.result = self.result
        view.form = self.form


def error_page(request: Request, status: int, title: str, message: str) -> HTMLResponse:
    """An HTML error page of the UI (unknown URL, refused form, failed request)."""
    context = bare_page(request, title=title, message=message, status=status)
    return html("error.html", {**context, "nav": NAV, "csrf": _session_csrf(request)}, status)


class Refused(Exception):
    """Stop a request with an HTML error page (403 for CSRF / read-only, 400 bad forms)."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message

    def response(self, request: Request) -> HTMLResponse:
        return error_page(request, self.status, self.title, self.message)


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
    action: str = ""
    """The path the form was posted to (``submit`` sets it): which of a page's forms it is."""

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
        return {k: v[0] for k, v in self.fields.items() if v and k not in SECRET_FIELDS}

    def values_for(self, action: str) -> dict[str, str]:
        """``values()`` if this form was posted to ``action``, else none: on a page with
        several forms, each is filled in again with its own values only, never with those
        of another form sent from the page."""
        return self.values() if self.action and self.action == action else {}

    def kept(self) -> Form:
        """The text fields without secrets (what a page may show again after a redirect)."""
        fields = {k: list(v) for k, v in self.fields.items() if k not in SECRET_FIELDS}
        return Form(fields, action=self.action)


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
    form.action = request.url.path
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


# -- the form action: submit → (confirm) → work → redirect → page ----------------------------
Page = Callable[..., HTMLResponse]
"""Renders a page: ``page(view, form, **path_parameters)``; ``form`` (or None: then
``view.form``) fills the page's form in again."""
Work = Callable[..., str | None]
"""A form action's work: ``work(view, form, **path_parameters)`` calls the services and
returns the success message (or None, having put its messages on the view itself)."""
Target = str | Callable[..., str] | None
"""Where a form action sends the browser: a path, ``target(form, **path_parameters)``, or
None for the nearest page above the form's own path (``page_url``)."""
Question = str | Callable[..., str | None] | None
"""What to confirm before an irreversible action: a sentence, or ``question(view, form,
**path_parameters)`` giving one (None: nothing to confirm this time)."""

_PAGES: list[re.Pattern[str]] = []
"""Paths of the UI's pages (GET routes that are not form redirects), from ``form_get_redirects``."""
_FORMS_ONLY: list[re.Pattern[str]] = []
"""Paths that only take a form (POST without a page of their own)."""


def page_url(path: str) -> str:
    """The nearest page at or above ``path`` that is not only a form's address."""
    parts = path.rstrip("/").split("/")
    while len(parts) > 1:
        candidate = "/".join(parts)
        if not any(p.fullmatch(candidate) for p in _FORMS_ONLY) and any(
            p.fullmatch(candidate) for p in _PAGES
        ):
            return candidate
        parts.pop()
    return "/"


def _target(to: Target, form: Form, path: str, params: Mapping[str, Any]) -> str:
    if to is None:
        return page_url(path)
    if callable(to):
        return to(form, **params)
    return to


def form_action(
    page: Page,
    *,
    keep_form: Literal["no", "on-error", "always"] = "no",
    to: Target = None,
    on_error: Target = None,
    confirm: Question = None,
) -> Callable[[Work], Callable[..., Coroutine[Any, Any, Response]]]:
    """Turn ``work`` into the endpoint of a form that changes state.

    The endpoint checks the caller (read-write account, this session's CSRF token) and reads
    the form. With ``confirm``, an irreversible action first needs ``confirmed=yes`` in the
    form (the page's script asks in a dialog and adds it; without the script the answer is a
    confirmation page that posts the same form again). Then, in a thread and as the caller,
    it runs ``work`` and redirects (303) to the page ``to`` names: post/redirect/get, so a
    reload never submits again. That page shows the success message among the notices, or
    the ``CertwayError`` of the work as the page's error (with its status); ``keep_form``
    says when it shows the submitted values again (never secrets), in this form only: a
    page with several forms fills each in with ``refill(its action)``. ``on_error``, if given,
    is where a failed action goes instead (a refused new CA's name is no CA to choose on
    its page). ``page`` names the page function the form belongs to: its GET route renders
    the outcome after the redirect (the endpoint itself renders no page but the
    confirmation). The endpoint takes the path parameters ``work`` takes after ``view`` and
    ``form``."""

    def decorate(work: Work) -> Callable[..., Coroutine[Any, Any, Response]]:
        async def endpoint(request: Request, **params: Any) -> Response:
            view, form = await submit(request)
            target = _target(to, form, request.url.path, params)

            def act() -> Response:
                question = confirm(view, form, **params) if callable(confirm) else confirm
                if question and form.get("confirmed") != "yes":
                    return _confirmation(view, form, question, target)
                try:
                    notice = work(view, form, **params)
                except CertwayError as exc:
                    view.failed(exc)
                    kept = form if keep_form != "no" else None
                    if on_error is not None:
                        return _redirect(
                            view,
                            Flash.of(view, kept),
                            _target(on_error, form, request.url.path, params),
                        )
                else:
                    if notice:
                        view.notices.append(notice)
                    kept = form if keep_form == "always" else None
                return _redirect(view, Flash.of(view, kept), target)

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
        endpoint.form_target = to  # type: ignore[attr-defined]  # for form_get_redirects
        return endpoint

    return decorate


def redirect_after(view: View, target: str, form: Form | None = None) -> Response:
    """Post/redirect/get for a form that does not fit ``form_action`` (one whose success is
    a download): 303 to ``target``, whose page shows the view's messages once and ``form``'s
    fields again (never secrets)."""
    return _redirect(view, Flash.of(view, form), target)


def _redirect(view: View, flash: Flash, target: str) -> Response:
    """303 to ``target``, leaving ``flash`` in the session for it (a session renewed by the
    work, e.g. after a change of the caller's own password, gets it and its cookie)."""
    context = web_context(view.request)
    token = view.new_session or view.request.cookies.get(SESSION_COOKIE)
    session = context.session(token)
    if session is not None:
        session.flashes[target.split("?", 1)[0]] = flash
    response = RedirectResponse(target, status_code=303)
    if view.new_session is not None:
        set_session_cookie(response, context, view.new_session)
    return response


def _confirmation(view: View, form: Form, question: str, cancel: str) -> HTMLResponse:
    fields = [(k, v) for k, values in form.kept().fields.items() for v in values]
    return view.render(
        "confirm.html",
        title="Please confirm",
        question=question,
        action=view.request.url.path,
        fields=fields,
        cancel=cancel,
    )


def _go(to: Target) -> Callable[[Request], Response]:
    def go(request: Request) -> Response:
        path = request.url.path
        target = _target(to, Form(), path, request.path_params)
        return RedirectResponse(target if target != path else "/", status_code=303)

    return go


def form_get_redirects(routers: Iterable[APIRouter]) -> APIRouter:
    """Learn the UI's pages and forms from ``routers``, and answer a GET of a form's address
    (a bookmark, a reload after an old browser's POST) with a redirect to its page instead of
    "method not allowed". Include the result before ``routers``: a form's address can look
    like a page's (``/local-ca/sign`` and ``/local-ca/{name}``)."""
    redirects = APIRouter(include_in_schema=False)
    routes = [r for router in routers for r in router.routes if isinstance(r, APIRoute)]
    gets = {r.path for r in routes if "GET" in (r.methods or ())}
    _PAGES.extend(compile_path(path)[0] for path in sorted(gets))
    for route in routes:
        if "POST" not in (route.methods or ()) or route.path in gets:
            continue
        _FORMS_ONLY.append(compile_path(route.path)[0])
        go = _go(getattr(route.endpoint, "form_target", None))
        redirects.add_api_route(route.path, go, methods=["GET"], name=f"{route.name}-page")
        gets.add(route.path)
    return redirects
