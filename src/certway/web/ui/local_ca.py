"""The local CA pages: create roots, sign CSRs, revoke, and each CA's detail page with its
certificate, issued certificates and CRL downloads."""

from __future__ import annotations

from urllib.parse import quote

from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from certway.errors import NotFound, PolicyViolation
from certway.pki.crl import REASONS
from certway.pki.decode import detect
from certway.pki.issue import PROFILES
from certway.pki.keys import KEY_TYPES
from certway.pki.text import plural, serial_hex
from certway.services.local_ca import CaInfo, CaSettings
from certway.trust.identity import certificate_text
from certway.web.context import as_principal
from certway.web.ui.kit import (
    PEM_TYPE,
    Form,
    Refused,
    UiRoute,
    View,
    download,
    form_action,
    page_view,
    pem,
)

__all__ = ["router", "with_ca"]

router = APIRouter(include_in_schema=False, route_class=UiRoute)


def _local_ca_page(view: View, form: Form | None = None) -> HTMLResponse:
    """The CA list and its forms; ``view.result``: a certificate just signed. The CA chosen
    last (``?ca=``, kept by every action) stays selected in the forms; a refused form is
    filled in again with its own values, the others are not (``refill``)."""
    with as_principal(view.principal):
        cas = view.node.local_ca.cas()
    kept = form or view.form
    return view.render(
        "local_ca.html",
        title="Local CA",
        cas=cas,
        parents=[ca for ca in cas if ca.can_sign_ca],
        selected=kept.values().get("ca") or view.request.query_params.get("ca", ""),
        refill=kept.values_for,
        key_types=KEY_TYPES,
        tokens=[t.name for t in view.node.tokens.tokens()],
        profiles=tuple(PROFILES),
        reasons=tuple(REASONS),
        signed=view.result,
    )


@router.get("/local-ca")
def local_ca_page(request: Request) -> Response:
    return _local_ca_page(page_view(request))


def with_ca(form: Form, field: str = "ca") -> str:
    """Back to the Local CA page with the CA of the form still chosen."""
    chosen = form.get(field)
    return f"/local-ca?ca={quote(chosen, safe='')}" if chosen else "/local-ca"


def _new_ca(form: Form) -> str:
    """A CA just created or imported: chosen on the page. (Refused, the page goes back to
    the CA chosen before, which the forms carry as ``ca``.)"""
    return with_ca(form, "name")


def _settings(form: Form) -> CaSettings:
    return CaSettings(crl_urls=form.split("crl_urls"), ocsp_url=form.opt("ocsp_url"))


def _created(info: CaInfo) -> str:
    return (
        f"created CA '{info.name}': {info.subject} ({info.key}), valid until "
        f"{info.not_after:%Y-%m-%d}"
    )


@router.post("/local-ca/roots")
@form_action(_local_ca_page, keep_form="on-error", to=_new_ca, on_error=with_ca)
def local_ca_create_root(view: View, form: Form) -> str:
    info = view.node.local_ca.create_root(
        form.get("name"),
        form.get("subject"),
        key_type=form.get("key_type", "ec:p256"),
        days=form.integer("days", "the validity in days", 3650),
        settings=_settings(form),
        token=form.opt("token"),
    )
    return _created(info)


@router.post("/local-ca/intermediates")
@form_action(_local_ca_page, keep_form="on-error", to=_new_ca, on_error=with_ca)
def local_ca_create_intermediate(view: View, form: Form) -> str:
    if not form.get("parent"):
        raise PolicyViolation("input", "choose the parent CA that signs the intermediate")
    info = view.node.local_ca.create_intermediate(
        form.get("name"),
        form.get("parent"),
        form.get("subject"),
        key_type=form.get("key_type", "ec:p256"),
        days=form.integer("days", "the validity in days", 1825),
        settings=_settings(form),
    )
    return _created(info) + f", signed by '{form.get('parent')}'"


@router.post("/local-ca/import")
@form_action(_local_ca_page, keep_form="on-error", to=_new_ca, on_error=with_ca)
def local_ca_import(view: View, form: Form) -> str:
    cert = form.file("certificate", "CA certificate file")
    key = form.file("key", "CA key file")
    if cert is None or key is None:
        raise PolicyViolation("input", "choose both the CA certificate file and its key file")
    passphrase = form.raw("passphrase")
    info = view.node.local_ca.import_ca(
        form.get("name"),
        cert,
        key,
        passphrase=passphrase.encode() if passphrase else None,
        settings=_settings(form),
    )
    return (
        f"imported CA '{info.name}': {info.subject} ({info.key}), valid until "
        f"{info.not_after:%Y-%m-%d}; its key is sealed in the store"
    )


@router.post("/local-ca/sign")
@form_action(_local_ca_page, keep_form="on-error", to=with_ca)
def local_ca_sign(view: View, form: Form) -> str:
    data = form.file("csr", "CSR file")
    if data is None and form.get("csr_text"):
        data = form.get("csr_text").encode()
    if data is None:
        raise PolicyViolation("input", "choose a CSR file (PEM or DER) or paste one")
    result = view.node.local_ca.sign(
        form.get("ca"),
        data,
        profile=form.get("profile", "server-client"),
        days=form.integer("days", "the validity in days", 365),
    )
    cert = result.certificate
    serial = serial_hex(cert.serial_number)
    view.result = {
        "ca": form.get("ca"),
        "serial": serial,
        "pem": result.pem(with_chain=True).decode(),
    }
    return (
        f"issued serial {serial} to {cert.subject.rfc4514_string()}, valid until "
        f"{cert.not_valid_after_utc:%Y-%m-%d}"
    )


def _revocation_question(view: View, form: Form, name: str | None = None, serial: str = "") -> str:
    ca = name or form.get("ca")
    serial = serial or form.get("serial")
    reason = form.get("reason") or "no reason given"
    return (
        f"Revoke the certificate with serial {serial} of CA '{ca}' ({reason})? A new CRL is "
        "published at once; a revocation cannot be undone."
    )


def _revoke(view: View, form: Form, name: str, serial: str) -> str:
    crl = view.node.local_ca.revoke(
        name, serial, reason=form.opt("reason"), allow_unlisted=form.on("unlisted")
    )
    return (
        f"revoked {serial} ({form.get('reason') or 'no reason given'}); "
        f"CRL #{crl.number} published with {plural(crl.entries, 'entry')}"
    )


@router.post("/local-ca/revoke")
@form_action(_local_ca_page, keep_form="on-error", to=with_ca, confirm=_revocation_question)
def local_ca_revoke(view: View, form: Form) -> str:
    return _revoke(view, form, form.get("ca"), form.get("serial"))


def _detail_again(view: View, form: Form | None = None, *, name: str, serial: str) -> HTMLResponse:
    return _local_ca_detail(view, name)


@router.post("/local-ca/{name}/issued/{serial}/revoke")
@form_action(
    _detail_again,
    to=lambda _form, name, serial: f"/local-ca/{quote(name, safe='')}",
    confirm=_revocation_question,
)
def local_ca_revoke_issued(view: View, form: Form, name: str, serial: str) -> str:
    """The revoke button of one issued certificate (on its CA's page)."""
    return _revoke(view, form, name, serial)


@router.get("/local-ca/{name}")
def local_ca_detail(request: Request, name: str) -> Response:
    return _local_ca_detail(page_view(request), name)


def _local_ca_detail(view: View, name: str) -> HTMLResponse:
    request = view.request
    node = view.node
    try:
        with as_principal(view.principal):
            info = node.local_ca.info(name)
            issued = node.local_ca.issued(name, search=request.query_params.get("search") or None)
            crl = node.local_ca.current_crl(name)
    except NotFound as exc:
        raise Refused(404, "Not found", str(exc)) from None
    return view.render(
        "local_ca_detail.html",
        title=f"Local CA {name}",
        ca=info,
        issued=issued,
        crl=crl,
        crl_text=detect(crl.der).to_text(),
        text=certificate_text(node.local_ca.certificate(name)),
        search=request.query_params.get("search", ""),
        reasons=tuple(REASONS),
    )


@router.get("/local-ca/{name}/certificate.pem")
def local_ca_certificate(request: Request, name: str) -> Response:
    view = page_view(request)
    return download(pem([view.node.local_ca.certificate(name)]), f"{name}.pem", PEM_TYPE)


@router.get("/local-ca/{name}/crl.pem")
def local_ca_crl_pem(request: Request, name: str) -> Response:
    view = page_view(request)
    with as_principal(view.principal):
        crl = view.node.local_ca.current_crl(name)
    return download(crl.pem, f"{name}.crl.pem", PEM_TYPE)


@router.get("/local-ca/{name}/crl.crl")
def local_ca_crl_der(request: Request, name: str) -> Response:
    view = page_view(request)
    with as_principal(view.principal):
        crl = view.node.local_ca.current_crl(name)
    return download(crl.der, f"{name}.crl", "application/pkix-crl")


@router.get("/local-ca/{name}/issued/{serial}.pem")
def local_ca_issued_pem(request: Request, name: str, serial: str) -> Response:
    view = page_view(request)
    local = view.node.local_ca
    cert = local.issued_certificate(name, serial)
    certs = [cert]
    if request.query_params.get("chain"):
        chain = local.chain(name)
        certs.extend(c for c in chain if c.subject != c.issuer)
    return download(pem(certs), f"{serial_hex(cert.serial_number)}.pem", PEM_TYPE)


@router.get("/local-ca/{name}/issued/{serial}.crt")
def local_ca_issued_der(request: Request, name: str, serial: str) -> Response:
    view = page_view(request)
    cert = view.node.local_ca.issued_certificate(name, serial)
    return download(
        cert.public_bytes(serialization.Encoding.DER),
        f"{serial_hex(cert.serial_number)}.crt",
        "application/pkix-cert",
    )
