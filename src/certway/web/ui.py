"""The web UI (I3): server-rendered pages, one per SPEC I3 page, readable without JavaScript.

Every page needs an authenticated administrator (``authenticate(..., via="ui")``); every form
that changes state carries the session's CSRF token and needs a read-write account, and read-only
accounts see the pages without their forms. Service errors are shown on the page with the same
one-line message as the CLI; nothing here re-implements a rule of the services.

Handlers that read a form are ``async`` (Starlette parses multipart bodies asynchronously) and
hand the work to a thread, because the services block (database, key generation, argon2).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
import secrets
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from certway.errors import CertwayError, NotFound, PolicyViolation
from certway.pki.crl import REASONS
from certway.pki.csr import DIGESTS, SubjectFields
from certway.pki.decode import detect
from certway.pki.issue import PROFILES
from certway.pki.keys import KEY_TYPES
from certway.services.admin_security import Mode
from certway.services.admins import AdminInfo
from certway.services.identities import CsrOptions, IdentityInfo, Kind
from certway.services.local_ca import CaSettings, serial_hex
from certway.services.node import Node
from certway.services.revocation import SERVICES
from certway.services.sip_settings import MutualTls
from certway.services.zones import DEFAULT_INTERVAL, DEFAULT_PORT, ZoneStatus
from certway.sip.rules import RuleAction, RuleType
from certway.tls.policy import TLS_SERVICES
from certway.trust.identity import certificate_text
from certway.web.app import (
    MAX_UPLOAD,
    SESSION_COOKIE,
    SESSION_LIFETIME,
    Principal,
    WebContext,
    as_principal,
    authenticate,
    client_address,
    peer_certificate,
    status_for,
)
from certway.web.logins import LoginRefused

__all__ = ["UploadTooLarge", "certificate_refused_page", "router"]

T = TypeVar("T")

_HERE = Path(__file__).parent
_STATIC: dict[str, str] = {"certway.css": "text/css", "certway.js": "text/javascript"}
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
MUTUAL_TLS_LABELS = {
    MutualTls.OFF.value: "Off: no client certificate is asked for",
    MutualTls.REQUEST.value: "Request: asked for, then checked; peers without one are closed",
    MutualTls.REQUIRE.value: "Require: the TLS handshake fails without a client certificate",
}
ZONE_CHECK_TIMEOUT = 5.0
"""Seconds a "Check now" may spend on each peer of a zone."""


class UploadTooLarge(CertwayError):
    """An uploaded file is larger than ``MAX_UPLOAD``: shown on the page like any error."""


# -- templates and responses -------------------------------------------------------------------
def _when(value: dt.datetime | None, fmt: str = "%Y-%m-%d %H:%M UTC") -> str:
    return value.strftime(fmt) if value is not None else "—"


@functools.cache
def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(_HERE / "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["day"] = functools.partial(_when, fmt="%Y-%m-%d")
    env.filters["compact"] = lambda v: re.sub(r"[^0-9A-Fa-f]", "", str(v))
    return env


def _html(template: str, context: Mapping[str, Any], status: int = 200) -> HTMLResponse:
    body = _env().get_template(template).render(**context)
    response = HTMLResponse(body, status_code=status)
    response.headers["Content-Security-Policy"] = _CSP
    response.headers["Cache-Control"] = "no-store"
    return response


def _download(data: bytes, filename: str, media_type: str) -> Response:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", filename) or "download"
    return Response(
        data,
        media_type=media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{safe}"',
            "Cache-Control": "no-store",
        },
    )


def _pem(certs: Iterable[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _context(request: Request) -> WebContext:
    return cast(WebContext, request.app.state.web)


def _set_session_cookie(response: Response, context: WebContext, token: str) -> None:
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
    session = _context(request).session(request.cookies.get(SESSION_COOKIE))
    return session.csrf if session is not None else ""


# -- who is calling ----------------------------------------------------------------------------
@dataclass
class _View:
    """An authenticated page request: who, the CSRF token for forms, and messages to show."""

    request: Request
    principal: Principal
    csrf: str
    new_session: str | None = None  # certificate-authenticated: a session just for CSRF
    notices: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    status: int = 200

    @property
    def node(self) -> Node:
        return _context(self.request).node

    def failed(self, exc: CertwayError) -> None:
        self.error = str(exc)
        self.status = 413 if isinstance(exc, UploadTooLarge) else status_for(exc)[0]

    def render(self, template: str, **context: Any) -> HTMLResponse:
        response = _html(
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
            _set_session_cookie(response, _context(self.request), self.new_session)
        return response


def _view(request: Request) -> _View:
    """Authenticate a page view (redirect to /login or the refusal page when needed)."""
    context = _context(request)
    principal = authenticate(request, context, via="ui")
    session = context.session(request.cookies.get(SESSION_COOKIE))
    if session is not None and session.account.name == principal.name:
        return _View(request, principal, session.csrf)
    # Certificate-based authentication names the user without a login: open a session so
    # the forms still carry a CSRF token bound to this browser.
    token, csrf = context.new_session(AdminInfo(principal.name, principal.access))
    return _View(request, principal, csrf, new_session=token)


class _Refused(Exception):
    """Stop a request with an HTML error page (403 for CSRF / read-only, 400 bad forms)."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message

    def response(self, request: Request) -> HTMLResponse:
        return _html(
            "error.html",
            {
                "nav": NAV,
                "path": request.url.path,
                "user": None,
                "can_write": False,
                "csrf": _session_csrf(request),
                "notices": [],
                "warnings": [],
                "error": None,
                "title": self.title,
                "message": self.message,
                "status": self.status,
            },
            self.status,
        )


class _UiRoute(APIRoute):
    """Routes of the UI answer ``_Refused`` with an HTML page (not problem+json)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except _Refused as exc:
                return exc.response(request)

        return guarded


router = APIRouter(include_in_schema=False, route_class=_UiRoute)


@dataclass
class _Form:
    """A submitted form: text fields and uploaded files read with the size limit."""

    fields: dict[str, list[str]] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    oversize: set[str] = field(default_factory=set)

    @classmethod
    def of_query(cls, params: Iterable[tuple[str, str]]) -> _Form:
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


async def _read_form(request: Request) -> _Form:
    try:
        data: FormData = await request.form()
    except StarletteHTTPException as exc:  # malformed multipart, a field over 1 MiB, ...
        raise _Refused(400, "Bad form", f"the form could not be read: {exc.detail}") from None
    form = _Form()
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


async def _submit(request: Request) -> tuple[_View, _Form]:
    """A state-changing form: authenticated, read-write, and carrying this session's token."""
    context = _context(request)
    principal = await run_in_threadpool(authenticate, request, context, via="ui")
    if not principal.can_write:
        raise _Refused(
            403,
            "Read-only account",
            f"account '{principal.name}' is read-only: it can view the pages but not change "
            "anything",
        )
    form = await _read_form(request)
    session = context.session(request.cookies.get(SESSION_COOKIE))
    sent = form.raw("csrf")
    if session is None or not sent or not secrets.compare_digest(session.csrf, sent):
        raise _Refused(
            403,
            "Form refused",
            "this form did not come from a page of this session (CSRF check failed): reload "
            "the page and submit it again",
        )
    return _View(request, principal, session.csrf), form


async def _run(view: _View, work: Callable[[], T]) -> T:
    """Run blocking service work in a thread, attributed to the caller in the audit log."""

    def call() -> T:
        with as_principal(view.principal):
            return work()

    return await run_in_threadpool(call)


def _attempt(view: _View, work: Callable[[], T]) -> T | None:
    """Run a service call; a CertwayError becomes the page's error message."""
    try:
        return work()
    except CertwayError as exc:
        view.failed(exc)
        return None


# -- login, logout, static files ---------------------------------------------------------------
def _login_page(
    request: Request, *, error: str | None = None, status: int = 200, user: str = ""
) -> HTMLResponse:
    config = _context(request).node.admin_security.get()
    return _html(
        "login.html",
        {
            "nav": (),
            "path": "/login",
            "user": None,
            "can_write": False,
            "csrf": "",
            "notices": [],
            "warnings": [],
            "error": error,
            "title": "Log in",
            "certificate_login": config.mode is Mode.AUTHENTICATION,
            "login_user": user,
        },
        status,
    )


def _gate(request: Request, *, status: int = 200) -> Response | None:
    """The certificate policy applies to the login page too: a certificate that names an
    account is already logged in; with certificate-based authentication there is no password
    login; in validation mode a refused certificate gets the refusal page."""
    security = _context(request).node.admin_security
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
    context = _context(request)
    form = await _read_form(request)
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
    _set_session_cookie(response, context, token)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    context = _context(request)
    token = request.cookies.get(SESSION_COOKIE)
    session = context.session(token)
    if session is not None:
        form = await _read_form(request)
        if not secrets.compare_digest(session.csrf, form.raw("csrf") or "-"):
            raise _Refused(403, "Form refused", "CSRF check failed: reload the page and log out")
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
        return Response("not found", status_code=404, media_type="text/plain")
    data = (_HERE / "static" / name).read_bytes()
    return Response(data, media_type=media_type, headers={"Cache-Control": "max-age=3600"})


# -- status ------------------------------------------------------------------------------------
def _info(node: Node, kind: Kind, name: str = "") -> IdentityInfo | None:
    try:
        return node.identities.info(kind, name)
    except NotFound:
        return None


@router.get("/")
def status_page(request: Request) -> Response:
    view = _view(request)
    node = view.node
    with as_principal(view.principal):
        alarms = node.alarms.current()
        server = _info(node, "server")
        client = _info(node, "client")
        domains = node.identities.domains()
        pending = node.identities.pending_csr("server")
        config = node.settings.get()
    return view.render(
        "status.html",
        title="Status",
        alarms=alarms,
        server=server,
        client=client,
        domains=domains,
        pending=pending,
        config=config,
        security=MODE_LABELS[node.admin_security.get().mode.value],
    )


# -- server and domain certificates ------------------------------------------------------------
def _csr_options(form: _Form) -> CsrOptions:
    return CsrOptions(
        cn=form.get("cn", "node"),
        alt_names=form.get("alt_names", "none"),
        add_san=form.split("add_san"),
        ucm_domains=form.split("ucm_domains"),
        ucm_domain_format=form.get("ucm_domain_format", "dns"),
        xmpp_domains=form.split("xmpp_domains"),
        chat_aliases=form.split("chat_aliases"),
        phone_security_profiles=form.split("phone_security_profiles"),
        key_type=form.get("key_type", "rsa:4096"),
        digest=form.get("digest", "sha256"),
        subject=SubjectFields(
            country=form.opt("country"),
            state=form.opt("state"),
            locality=form.opt("locality"),
            organization=form.opt("organization"),
            organizational_unit=form.opt("organizational_unit"),
            email=form.opt("email"),
        ),
    )


def _base(kind: Kind, name: str) -> str:
    return "/server-certificate" if kind == "server" else f"/domains/{name}"


def _identity_page(
    view: _View,
    kind: Kind,
    name: str = "",
    *,
    form: _Form | None = None,
) -> HTMLResponse:
    """The server certificate page, or one domain's page: view, CSR, upload, history."""
    node = view.node
    csr_form = form or _Form()
    with as_principal(view.principal):
        if kind == "domain":
            try:
                name = node.identities.domain(name).name
            except NotFound:
                raise _Refused(404, "No such domain", f"no domain '{name}'") from None
        info = _info(node, kind, name)
        pending = node.identities.pending_csr(kind, name)
        history = node.identities.history(kind, name)
        config = node.settings.get()
        preview: list[str] = []
        preview_error: str | None = None
        try:
            preview = node.identities.preview(kind, name, _csr_options(csr_form))
        except CertwayError as exc:
            preview_error = str(exc)
    base = _base(kind, name)
    return view.render(
        "identity.html",
        title="Server certificate" if kind == "server" else f"Domain {name}",
        kind=kind,
        name=name,
        base=base,
        pem_url="/server-certificate.pem" if kind == "server" else f"{base}/certificate.pem",
        info=info,
        pending=pending,
        history=history,
        config=config,
        form=csr_form.values(),
        preview=preview,
        preview_error=preview_error,
        preview_url=f"/csr-preview?kind={kind}" + (f"&name={name}" if name else ""),
        key_types=KEY_TYPES,
        digests=tuple(DIGESTS),
    )


@router.get("/server-certificate")
def server_certificate(request: Request) -> Response:
    return _identity_page(_view(request), "server")


@router.get("/server-certificate.pem")
def server_certificate_pem(request: Request) -> Response:
    view = _view(request)
    info = view.node.identities.info("server")
    return _download(info.pem.encode(), "server-certificate.pem", PEM_TYPE)


@router.get("/server-certificate/csr.pem")
def server_csr_pem(request: Request) -> Response:
    return _csr_download(_view(request), "server", "")


def _csr_download(view: _View, kind: Kind, name: str) -> Response:
    pending = view.node.identities.pending_csr(kind, name)
    if pending is None:
        raise _Refused(404, "No pending CSR", "no CSR is pending: generate one first")
    filename = "server.csr.pem" if kind == "server" else f"{name}.csr.pem"
    return _download(pending.pem.encode(), filename, PEM_TYPE)


@router.get("/csr-preview")
def csr_preview(request: Request) -> Response:
    """'Alternative name as it will appear' as JSON, for the live preview of the CSR forms."""
    view = _view(request)
    form = _Form.of_query(request.query_params.multi_items())
    kind = form.get("kind", "server")
    if kind not in ("server", "domain"):
        return JSONResponse({"error": f"unknown certificate kind '{kind}'"}, status_code=400)
    try:
        names = view.node.identities.preview(cast(Kind, kind), form.get("name"), _csr_options(form))
    except CertwayError as exc:
        return JSONResponse({"error": str(exc), "names": []})
    return JSONResponse({"names": names})


async def _generate(request: Request, kind: Kind, name: str) -> Response:
    view, form = await _submit(request)

    def work() -> HTMLResponse:
        pending = _attempt(
            view, lambda: view.node.identities.generate_csr(kind, name, _csr_options(form))
        )
        if pending is not None:
            view.notices.append(
                f"CSR generated for {pending.common_name} ({pending.key} key, kept on this "
                "node): download it, have it signed, then upload the certificate"
            )
            return _identity_page(view, kind, name)
        return _identity_page(view, kind, name, form=form)

    return await _run(view, work)


async def _preview(request: Request, kind: Kind, name: str) -> Response:
    view, form = await _submit(request)
    return await _run(view, lambda: _identity_page(view, kind, name, form=form))


async def _discard(request: Request, kind: Kind, name: str) -> Response:
    view, _form = await _submit(request)

    def work() -> HTMLResponse:
        _attempt(view, lambda: view.node.identities.discard_csr(kind, name))
        if view.error is None:
            view.notices.append("pending CSR discarded")
        return _identity_page(view, kind, name)

    return await _run(view, work)


async def _upload(request: Request, kind: Kind, name: str) -> Response:
    view, form = await _submit(request)

    def work() -> HTMLResponse:
        def upload() -> Any:
            cert = form.file("certificate", "certificate file")
            if cert is None:
                raise PolicyViolation("input", "choose the certificate file to upload")
            passphrase = form.raw("passphrase")
            return view.node.identities.upload(
                kind,
                name,
                cert,
                chain_data=form.file("chain", "chain file"),
                key_data=form.file("key", "key file"),
                passphrase=passphrase.encode() if passphrase else None,
            )

        result = _attempt(view, upload)
        if result is not None:
            info = result.info
            view.notices.append(
                f"activated version {info.version}: {info.subject}, issued by {info.issuer}, "
                f"valid until {info.not_after:%Y-%m-%d}"
            )
            view.warnings.extend(result.warnings)
        return _identity_page(view, kind, name)

    return await _run(view, work)


async def _restore(request: Request, kind: Kind, name: str) -> Response:
    view, form = await _submit(request)

    def work() -> HTMLResponse:
        version = _attempt(view, lambda: form.integer("version", "the version", 0))
        if version is not None:
            info = _attempt(view, lambda: view.node.identities.restore(kind, name, version))
            if info is not None:
                view.notices.append(
                    f"version {version} is active again (as version {info.version})"
                )
        return _identity_page(view, kind, name)

    return await _run(view, work)


@router.post("/server-certificate/csr")
async def server_csr_generate(request: Request) -> Response:
    return await _generate(request, "server", "")


@router.post("/server-certificate/csr/preview")
async def server_csr_preview(request: Request) -> Response:
    return await _preview(request, "server", "")


@router.post("/server-certificate/csr/discard")
async def server_csr_discard(request: Request) -> Response:
    return await _discard(request, "server", "")


@router.post("/server-certificate/upload")
async def server_upload(request: Request) -> Response:
    return await _upload(request, "server", "")


@router.post("/server-certificate/restore")
async def server_restore(request: Request) -> Response:
    return await _restore(request, "server", "")


# -- domains -----------------------------------------------------------------------------------
def _domains_page(view: _View, *, form: _Form | None = None) -> HTMLResponse:
    with as_principal(view.principal):
        domains = view.node.identities.domains()
        config = view.node.settings.get()
    return view.render(
        "domains.html",
        title="Domain certificates",
        domains=domains,
        config=config,
        form=(form or _Form()).values(),
    )


@router.get("/domains")
def domains_page(request: Request) -> Response:
    return _domains_page(_view(request))


@router.post("/domains")
async def domain_add(request: Request) -> Response:
    view, form = await _submit(request)

    def work() -> HTMLResponse:
        added = _attempt(view, lambda: view.node.identities.add_domain(form.get("domain")))
        if added is not None:
            view.notices.append(f"domain {added.name} added: generate its CSR on its page")
            return _domains_page(view)
        return _domains_page(view, form=form)

    return await _run(view, work)


@router.get("/domains/{name}")
def domain_page(request: Request, name: str) -> Response:
    return _identity_page(_view(request), "domain", name)


@router.get("/domains/{name}/certificate.pem")
def domain_certificate_pem(request: Request, name: str) -> Response:
    view = _view(request)
    info = view.node.identities.info("domain", name)
    return _download(info.pem.encode(), f"{name}.pem", PEM_TYPE)


@router.get("/domains/{name}/csr.pem")
def domain_csr_pem(request: Request, name: str) -> Response:
    return _csr_download(_view(request), "domain", name)


@router.post("/domains/{name}/remove")
async def domain_remove(request: Request, name: str) -> Response:
    view, _form = await _submit(request)

    def work() -> HTMLResponse:
        _attempt(view, lambda: view.node.identities.remove_domain(name))
        if view.error is None:
            view.notices.append(f"domain {name} removed")
        return _domains_page(view)

    return await _run(view, work)


@router.post("/domains/{name}/csr")
async def domain_csr_generate(request: Request, name: str) -> Response:
    return await _generate(request, "domain", name)


@router.post("/domains/{name}/csr/preview")
async def domain_csr_preview(request: Request, name: str) -> Response:
    return await _preview(request, "domain", name)


@router.post("/domains/{name}/csr/discard")
async def domain_csr_discard(request: Request, name: str) -> Response:
    return await _discard(request, "domain", name)


@router.post("/domains/{name}/upload")
async def domain_upload(request: Request, name: str) -> Response:
    return await _upload(request, "domain", name)


# -- trusted CA list ---------------------------------------------------------------------------
def _trust_page(view: _View) -> HTMLResponse:
    with as_principal(view.principal):
        entries = view.node.trusted_cas.entries()
    return view.render("trusted_cas.html", title="Trusted CA certificates", entries=entries)


@router.get("/trusted-cas")
def trusted_cas_page(request: Request) -> Response:
    return _trust_page(_view(request))


@router.get("/trusted-cas.pem")
def trusted_cas_pem(request: Request) -> Response:
    view = _view(request)
    trusted = view.node.trusted_cas
    certs = [trusted.certificate(e.fingerprint) for e in trusted.entries()]
    return _download(_pem(certs), "trusted-cas.pem", PEM_TYPE)


@router.get("/trusted-cas/{fingerprint}")
def trusted_ca_page(request: Request, fingerprint: str) -> Response:
    view = _view(request)
    try:
        cert = view.node.trusted_cas.certificate(fingerprint)
    except CertwayError as exc:
        raise _Refused(404, "Not found", str(exc)) from None
    entry = next(
        e
        for e in view.node.trusted_cas.entries()
        if e.fingerprint.replace(":", "").startswith(fingerprint.replace(":", "").upper())
    )
    return view.render(
        "trusted_ca.html",
        title=f"Trusted CA {entry.subject}",
        entry=entry,
        text=certificate_text(cert),
    )


@router.get("/trusted-cas/{fingerprint}/certificate.pem")
def trusted_ca_pem(request: Request, fingerprint: str) -> Response:
    view = _view(request)
    cert = view.node.trusted_cas.certificate(fingerprint)
    return _download(_pem([cert]), f"ca-{fingerprint[:16]}.pem", PEM_TYPE)


@router.post("/trusted-cas")
async def trusted_ca_add(request: Request) -> Response:
    view, form = await _submit(request)

    def work() -> HTMLResponse:
        def add() -> Any:
            data = form.file("file", "CA file")
            if data is None:
                raise PolicyViolation("input", "choose a PEM or DER file with CA certificates")
            return view.node.trusted_cas.add(data)

        report = _attempt(view, add)
        if report is not None:
            view.notices.extend(f"added {i.subject} ({i.fingerprint})" for i in report.added)
            view.notices.extend(f"skipped: {line}" for line in report.skipped)
            view.notices.extend(f"embedded CRL stored: {line}" for line in report.crls)
            view.warnings.extend(report.warnings)
            if not report.added and not report.skipped and not report.crls:
                view.notices.append("nothing was added")
        return _trust_page(view)

    return await _run(view, work)


@router.post("/trusted-cas/remove")
async def trusted_ca_remove(request: Request) -> Response:
    view, form = await _submit(request)

    def work() -> HTMLResponse:
        selected = form.all("fingerprint")
        if not selected:
            view.failed(PolicyViolation("input", "select the CAs to delete first"))
            return _trust_page(view)
        removed = _attempt(view, lambda: view.node.trusted_cas.remove(selected))
        view.notices.extend(f"removed {subject}" for subject in removed or [])
        return _trust_page(view)

    return await _run(view, work)


@router.post("/trusted-cas/reset")
async def trusted_ca_reset(request: Request) -> Response:
    view, _form = await _submit(request)

    def work() -> HTMLResponse:
        entries = _attempt(view, view.node.trusted_cas.reset)
        if entries is not None:
            view.notices.append(f"trusted CA list reset to the factory list ({len(entries)} CAs)")
        return _trust_page(view)

    return await _run(view, work)


# -- CRLs --------------------------------------------------------------------------------------
def _crls_page(view: _View, *, form: _Form | None = None) -> HTMLResponse:
    with as_principal(view.principal):
        held = view.node.revocation.held()
        sources = view.node.revocation.sources()
        schedule = view.node.revocation.schedule()
    values = (form or _Form()).values()
    return view.render(
        "crls.html",
        title="CRL management",
        held=held,
        sources=sources,
        schedule=schedule,
        urls=values.get("urls", "\n".join(s.url for s in sources)),
        daily_at=values.get("daily_at", schedule.daily_at),
    )


@router.get("/crls")
def crls_page(request: Request) -> Response:
    return _crls_page(_view(request))


@router.post("/crls/manual")
async def crl_upload(request: Request) -> Response:
    view, form = await _submit(request)

    def work() -> HTMLResponse:
        def upload() -> Any:
            data = form.file("crl", "CRL file")
            if data is None:
                raise PolicyViolation("input", "choose a CRL file (PEM or DER)")
            return view.node.revocation.upload_manual(data)

        accepted = _attempt(view, upload)
        view.notices.extend(f"stored {a.describe()}" for a in accepted or [])
        return _crls_page(view)

    return await _run(view, work)


@router.post("/crls/manual/remove")
async def crl_remove(request: Request) -> Response:
    view, _form = await _submit(request)

    def work() -> HTMLResponse:
        removed = _attempt(view, view.node.revocation.remove_manual)
        if removed is not None:
            view.notices.append(f"removed {removed} manual CRL(s)")
        return _crls_page(view)

    return await _run(view, work)


@router.post("/crls/sources")
async def crl_sources(request: Request) -> Response:
    view, form = await _submit(request)

    def work() -> HTMLResponse:
        urls = form.raw("urls").splitlines()
        sources = _attempt(view, lambda: view.node.revocation.set_sources(urls))
        if sources is not None:
            view.notices.append(f"{len(sources)} CRL URL(s) saved")
            return _crls_page(view)
        return _crls_page(view, form=form)

    return await _run(view, work)


@router.post("/crls/schedule")
async def crl_schedule(request: Request) -> Response:
    view, form = await _submit(request)

    def work() -> HTMLResponse:
        schedule = _attempt(
            view,
            lambda: view.node.revocation.set_schedule(
                daily_at=form.get("daily_at") or None, enabled=form.get("enabled") == "on"
            ),
        )
        if schedule is not None:
            state = f"on, daily at {schedule.daily_at} UTC" if schedule.enabled else "off"
            view.notices.append(f"automatic CRL updates: {state}")
            return _crls_page(view)
        return _crls_page(view, form=form)

    return await _run(view, work)


@router.post("/crls/update")
async def crl_update(request: Request) -> Response:
    view, _form = await _submit(request)

    def work() -> HTMLResponse:
        sources = _attempt(view, view.node.revocation.update_now)
        for source in sources or []:
            if source.error:
                view.warnings.append(f"{source.url}: {source.error}")
            else:
                view.notices.append(
                    f"{source.url}: CRL #{source.crl_number}, next update "
                    f"{_when(source.next_update)}"
                )
        if sources == []:
            view.notices.append("no CRL URLs are configured: nothing to update")
        return _crls_page(view)

    return await _run(view, work)


# -- revocation policies -----------------------------------------------------------------------
def _revocation_page(view: _View) -> HTMLResponse:
    policies = {name: view.node.revocation.policy(name) for name in SERVICES}
    return view.render("revocation.html", title="Revocation settings", policies=policies)


@router.get("/revocation")
def revocation_page(request: Request) -> Response:
    return _revocation_page(_view(request))


@router.post("/revocation/{service}")
async def revocation_set(request: Request, service: str) -> Response:
    view, form = await _submit(request)

    def work() -> HTMLResponse:
        changes: dict[str, object] = {
            key: form.get(key) == "on"
            for key in ("enabled", "ocsp", "crl", "cdp")
            if form.get(key) in ("on", "off")
        }
        changes.update({key: form.opt(key) for key in ("scope", "fallback", "profile")})
        policy = _attempt(view, lambda: view.node.revocation.set_policy(service, **changes))
        if policy is not None:
            view.notices.append(f"{service} revocation policy saved")
        return _revocation_page(view)

    return await _run(view, work)


# -- client certificate testing ----------------------------------------------------------------
def _client_test_page(
    view: _View, *, form: _Form | None = None, report: Any = None
) -> HTMLResponse:
    config = view.node.admin_security.get()
    values = {"regex": config.regex, "format": config.format, **(form or _Form()).values()}
    return view.render(
        "client_test.html",
        title="Client certificate testing",
        form=values,
        report=report,
        services=tuple(SERVICES),
        has_peer=peer_certificate(view.request) is not None,
    )


@router.get("/client-certificate-test")
def client_test_page(request: Request) -> Response:
    return _client_test_page(_view(request))


@router.post("/client-certificate-test")
async def client_test(request: Request) -> Response:
    view, form = await _submit(request)
    peer = peer_certificate(request)

    def work() -> HTMLResponse:
        def check() -> Any:
            if form.on("use_browser"):
                if peer is None:
                    raise PolicyViolation(
                        "input",
                        "your browser sent no client certificate on this connection: import "
                        "one into the browser (and turn on certificate validation) or upload it",
                    )
                data: bytes | None = peer
            else:
                data = form.file("certificate", "certificate file")
                if data is None and form.get("pasted"):
                    data = form.get("pasted").encode()
            if data is None:
                raise PolicyViolation(
                    "input",
                    "choose a certificate: upload a file, paste it, or use your browser's",
                )
            regex, fmt = form.opt("regex"), form.opt("format")
            return view.node.client_check.check(
                data,
                purpose=form.get("purpose", "client"),
                name=form.opt("name"),
                service=form.get("service", "admin-https"),
                chain=form.file("chain", "chain file"),
                regex=regex,
                fmt=fmt,
            )

        report = _attempt(view, check)
        return _client_test_page(view, form=form, report=report)

    return await _run(view, work)


# -- admin client-certificate security (S2) ----------------------------------------------------
def _cert_auth_page(view: _View, *, form: _Form | None = None) -> HTMLResponse:
    node = view.node
    config = node.admin_security.get()
    values = {"mode": config.mode.value, "regex": config.regex, "format": config.format}
    values.update((form or _Form()).values())
    peer = peer_certificate(view.request)
    mine: str
    if peer is None:
        mine = "your browser sent no client certificate on this connection"
    else:
        try:
            report = node.client_check.check(
                peer, purpose="client", service="admin-https", regex=config.regex, fmt=config.format
            )
        except CertwayError as exc:
            mine = f"your certificate could not be checked: {exc}"
        else:
            verdict = "valid" if report.result.valid else f"rejected: {report.result.reason}"
            if report.username is not None:
                account = node.admins.get(report.username.username)
                who = (
                    f"account '{account.name}' ({account.access})"
                    if account
                    else "no account of that name"
                )
                mine = (
                    f"your certificate is {verdict}; it maps to user "
                    f"'{report.username.username}': {who}"
                )
            else:
                mine = f"your certificate is {verdict}; no username: {report.username_error}"
    return view.render(
        "certificate_auth.html",
        title="Certificate-based authentication",
        config=config,
        form=values,
        modes=MODE_LABELS,
        mine=mine,
    )


@router.get("/certificate-auth")
def cert_auth_page(request: Request) -> Response:
    return _cert_auth_page(_view(request))


@router.post("/certificate-auth")
async def cert_auth_set(request: Request) -> Response:
    view, form = await _submit(request)
    peer = peer_certificate(request)

    def work() -> HTMLResponse:
        config = _attempt(
            view,
            lambda: view.node.admin_security.set(
                mode=form.get("mode") or None,
                regex=form.raw("regex") or None,
                fmt=form.raw("format") or None,
                current_certificate=peer,
            ),
        )
        if config is not None:
            view.notices.append(
                f"client certificate security: {MODE_LABELS[config.mode.value]} (live for new "
                "connections at once)"
            )
            return _cert_auth_page(view)
        return _cert_auth_page(view, form=form)

    return await _run(view, work)


# -- SIP TLS settings, access rules and neighbour zones (S4, S5) --------------------------------
def _sip_page(view: _View, *, form: _Form | None = None) -> HTMLResponse:
    with as_principal(view.principal):
        config = view.node.sip.get()
        zones = view.node.zones.entries()
        statuses = view.node.zones.statuses()
    rows = [(z, statuses.get(z.name) or ZoneStatus.unknown(z.name)) for z in zones]
    return view.render(
        "sip.html",
        title="SIP TLS & zones",
        config=config,
        zones=rows,
        modes=MUTUAL_TLS_LABELS,
        rule_types=[(t.value, t.value.capitalize()) for t in RuleType],
        rule_actions=[(a.value, a.value.capitalize()) for a in RuleAction],
        defaults={"port": DEFAULT_PORT, "interval": DEFAULT_INTERVAL},
        form=(form or _Form()).values(),
    )


@router.get("/sip")
def sip_page(request: Request) -> Response:
    return _sip_page(_view(request))


@router.post("/sip/settings")
async def sip_settings_set(request: Request) -> Response:
    view, form = await _submit(request)

    def work() -> HTMLResponse:
        config = _attempt(
            view,
            lambda: view.node.sip.set(
                mutual_tls=form.opt("mutual_tls"), eku_check=form.opt("eku_check")
            ),
        )
        if config is not None:
            view.notices.append(
                f"SIP TLS settings saved: mutual TLS {config.mutual_tls.value}, EKU checking "
                f"{'on' if config.eku_check else 'off'} (new connections use them at once)"
            )
        return _sip_page(view)

    return await _run(view, work)


@router.post("/sip/rules")
async def sip_rule_add(request: Request) -> Response:
    view, form = await _submit(request)

    def work() -> HTMLResponse:
        def add() -> Any:
            return view.node.sip.add_rule(
                priority=form.integer("priority", "the priority", 100),
                type=form.get("type"),
                pattern=form.raw("pattern"),
                action=form.get("action"),
            )

        rule = _attempt(view, add)
        if rule is not None:
            view.notices.append(
                f"access rule {rule.id} added: {rule.action.value} {rule.type.value} "
                f"'{rule.pattern}' (priority {rule.priority})"
            )
            return _sip_page(view)
        return _sip_page(view, form=form)

    return await _run(view, work)


@router.post("/sip/rules/{rule_id}/remove")
async def sip_rule_remove(request: Request, rule_id: str) -> Response:
    view, _form = await _submit(request)

    def work() -> HTMLResponse:
        def remove() -> Any:
            if not re.fullmatch(r"\d{1,9}", rule_id):
                raise NotFound(f"no SIP access rule has id '{rule_id}'")
            return view.node.sip.remove_rule(int(rule_id))

        rule = _attempt(view, remove)
        if rule is not None:
            view.notices.append(f"access rule {rule.id} removed")
        return _sip_page(view)

    return await _run(view, work)


@router.post("/sip/zones")
async def zone_add(request: Request) -> Response:
    view, form = await _submit(request)

    def work() -> HTMLResponse:
        def add() -> Any:
            verify = form.get("tls_verify", "on")
            if verify not in ("on", "off"):
                raise PolicyViolation(
                    "zone-verify", f"TLS verify mode must be on or off, not '{verify}'"
                )
            return view.node.zones.add(
                form.get("name"),
                peers=form.split("peers"),
                port=form.integer("port", "the port", DEFAULT_PORT),
                tls_verify=verify == "on",
                verify_subject=form.opt("verify_subject"),
                interval=form.integer("interval", "the interval", DEFAULT_INTERVAL),
            )

        zone = _attempt(view, add)
        if zone is not None:
            view.notices.append(
                f"added zone {zone.name}: {', '.join(zone.peers)} port {zone.port}, TLS verify "
                f"{'on' if zone.tls_verify else 'off'}, every {zone.interval} s"
            )
            return _sip_page(view)
        return _sip_page(view, form=form)

    return await _run(view, work)


@router.post("/sip/zones/{name}/remove")
async def zone_remove(request: Request, name: str) -> Response:
    view, _form = await _submit(request)

    def work() -> HTMLResponse:
        _attempt(view, lambda: view.node.zones.remove(name))
        if view.error is None:
            view.notices.append(f"removed zone {name}")
        return _sip_page(view)

    return await _run(view, work)


@router.post("/sip/zones/{name}/check")
async def zone_check(request: Request, name: str) -> Response:
    view, _form = await _submit(request)

    def work() -> HTMLResponse:
        from certway.sip.zones import ZonePinger

        node = view.node
        # check_now runs the asynchronous check on its own event loop: this is a worker thread
        pinger = ZonePinger(node, node.zones, timeout=ZONE_CHECK_TIMEOUT)
        status = _attempt(view, lambda: pinger.check_now(name))
        if status is not None:
            if status.active:
                view.notices.append(f"zone {name}: Active ({status.detail})")
            else:
                view.warnings.append(f"zone {name}: Failed, {status.reason}: {status.detail}")
        return _sip_page(view)

    return await _run(view, work)


# -- local CA ----------------------------------------------------------------------------------
def _local_ca_page(
    view: _View, *, form: _Form | None = None, signed: dict[str, Any] | None = None
) -> HTMLResponse:
    with as_principal(view.principal):
        cas = view.node.local_ca.cas()
    return view.render(
        "local_ca.html",
        title="Local CA",
        cas=cas,
        form=(form or _Form()).values(),
        key_types=KEY_TYPES,
        profiles=tuple(PROFILES),
        reasons=tuple(REASONS),
        signed=signed,
    )


@router.get("/local-ca")
def local_ca_page(request: Request) -> Response:
    return _local_ca_page(_view(request))


@router.post("/local-ca/roots")
async def local_ca_create_root(request: Request) -> Response:
    view, form = await _submit(request)

    def work() -> HTMLResponse:
        def create() -> Any:
            settings = CaSettings(crl_urls=form.split("crl_urls"), ocsp_url=form.opt("ocsp_url"))
            return view.node.local_ca.create_root(
                form.get("name"),
                form.get("subject"),
                key_type=form.get("key_type", "ec:p256"),
                days=form.integer("days", "the validity in days", 3650),
                settings=settings,
            )

        info = _attempt(view, create)
        if info is not None:
            view.notices.append(
                f"created CA '{info.name}': {info.subject} ({info.key}), valid until "
                f"{info.not_after:%Y-%m-%d}"
            )
            return _local_ca_page(view)
        return _local_ca_page(view, form=form)

    return await _run(view, work)


@router.post("/local-ca/sign")
async def local_ca_sign(request: Request) -> Response:
    view, form = await _submit(request)

    def work() -> HTMLResponse:
        def sign() -> Any:
            data = form.file("csr", "CSR file")
            if data is None and form.get("csr_text"):
                data = form.get("csr_text").encode()
            if data is None:
                raise PolicyViolation("input", "choose a CSR file (PEM or DER) or paste one")
            return view.node.local_ca.sign(
                form.get("ca"),
                data,
                profile=form.get("profile", "server-client"),
                days=form.integer("days", "the validity in days", 365),
            )

        result = _attempt(view, sign)
        if result is None:
            return _local_ca_page(view, form=form)
        cert = result.certificate
        serial = serial_hex(cert.serial_number)
        view.notices.append(
            f"issued serial {serial} to {cert.subject.rfc4514_string()}, valid until "
            f"{cert.not_valid_after_utc:%Y-%m-%d}"
        )
        signed = {
            "ca": form.get("ca"),
            "serial": serial,
            "pem": result.pem(with_chain=True).decode(),
        }
        return _local_ca_page(view, signed=signed)

    return await _run(view, work)


@router.post("/local-ca/revoke")
async def local_ca_revoke(request: Request) -> Response:
    view, form = await _submit(request)

    def work() -> HTMLResponse:
        crl = _attempt(
            view,
            lambda: view.node.local_ca.revoke(
                form.get("ca"), form.get("serial"), reason=form.opt("reason")
            ),
        )
        if crl is not None:
            view.notices.append(
                f"revoked {form.get('serial')} ({form.get('reason') or 'no reason given'}); "
                f"CRL #{crl.number} published with {crl.entries} entries"
            )
            return _local_ca_page(view)
        return _local_ca_page(view, form=form)

    return await _run(view, work)


@router.get("/local-ca/{name}")
def local_ca_detail(request: Request, name: str) -> Response:
    view = _view(request)
    node = view.node
    try:
        with as_principal(view.principal):
            info = node.local_ca.info(name)
            issued = node.local_ca.issued(name, search=request.query_params.get("search") or None)
            crl = node.local_ca.current_crl(name)
    except CertwayError as exc:
        raise _Refused(404, "Not found", str(exc)) from None
    return view.render(
        "local_ca_detail.html",
        title=f"Local CA {name}",
        ca=info,
        issued=issued,
        crl=crl,
        crl_text=detect(crl.der).to_text(),
        text=certificate_text(node.local_ca.certificate(name)),
        search=request.query_params.get("search", ""),
    )


@router.get("/local-ca/{name}/certificate.pem")
def local_ca_certificate(request: Request, name: str) -> Response:
    view = _view(request)
    return _download(_pem([view.node.local_ca.certificate(name)]), f"{name}.pem", PEM_TYPE)


@router.get("/local-ca/{name}/crl.pem")
def local_ca_crl_pem(request: Request, name: str) -> Response:
    view = _view(request)
    with as_principal(view.principal):
        crl = view.node.local_ca.current_crl(name)
    return _download(crl.pem, f"{name}.crl.pem", PEM_TYPE)


@router.get("/local-ca/{name}/crl.crl")
def local_ca_crl_der(request: Request, name: str) -> Response:
    view = _view(request)
    with as_principal(view.principal):
        crl = view.node.local_ca.current_crl(name)
    return _download(crl.der, f"{name}.crl", "application/pkix-crl")


@router.get("/local-ca/{name}/issued/{serial}.pem")
def local_ca_issued_pem(request: Request, name: str, serial: str) -> Response:
    view = _view(request)
    local = view.node.local_ca
    cert = local.issued_certificate(name, serial)
    certs = [cert]
    if request.query_params.get("chain"):
        chain = local.chain(name)
        certs.extend(c for c in chain if c.subject != c.issuer)
    return _download(_pem(certs), f"{serial_hex(cert.serial_number)}.pem", PEM_TYPE)


@router.get("/local-ca/{name}/issued/{serial}.crt")
def local_ca_issued_der(request: Request, name: str, serial: str) -> Response:
    view = _view(request)
    cert = view.node.local_ca.issued_certificate(name, serial)
    return _download(
        cert.public_bytes(serialization.Encoding.DER),
        f"{serial_hex(cert.serial_number)}.crt",
        "application/pkix-cert",
    )


# -- audit -------------------------------------------------------------------------------------
@router.get("/audit")
def audit_page(request: Request) -> Response:
    view = _view(request)
    entries = list(reversed(view.node.audit.entries(limit=200)))
    rows = [
        (e, json.dumps(e.detail, sort_keys=True, default=str) if e.detail else "") for e in entries
    ]
    return view.render("audit.html", title="Audit log", rows=rows)


# -- the refusal page (called by the app's CertificateRefused handler) ---------------------------
def certificate_refused_page(request: Request, detail: str) -> HTMLResponse:
    """Explain why this browser's client certificate was refused, and what to do about it."""
    mode = _context(request).node.admin_security.get().mode
    return _html(
        "refused.html",
        {
            "nav": (),
            "path": request.url.path,
            "user": None,
            "can_write": False,
            "csrf": "",
            "notices": [],
            "warnings": [],
            "error": None,
            "title": "Client certificate refused",
            "detail": detail,
            "mode": MODE_LABELS[mode.value],
            "authentication": mode is Mode.AUTHENTICATION,
            "sent": peer_certificate(request) is not None,
        },
        403,
    )


# -- TLS profiles ------------------------------------------------------------------------------
# (a self-contained block: the profile of each listener and outbound client, ``tls.policy``)
def _tls_page(view: _View) -> HTMLResponse:
    policy = view.node.tls.policy()
    profiles = {service: policy.profile(service) for service in TLS_SERVICES}
    return view.render(
        "tls.html", title="TLS profiles", profiles=profiles, descriptions=TLS_SERVICES
    )


@router.get("/tls")
def tls_page(request: Request) -> Response:
    return _tls_page(_view(request))


@router.post("/tls/{service}")
async def tls_set(request: Request, service: str) -> Response:
    view, form = await _submit(request)

    def work() -> HTMLResponse:
        profile = form.opt("profile") or ""
        chosen = _attempt(view, lambda: view.node.tls.set(service, profile))
        if chosen is not None:
            view.notices.append(
                f"{service}: TLS profile {chosen.name.value} saved; "
                "it applies from the next connection"
            )
        return _tls_page(view)

    return await _run(view, work)
