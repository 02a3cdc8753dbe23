"""The local CA pages: create roots, sign CSRs, revoke, and each CA's detail page with its
certificate, issued certificates and CRL downloads."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from certway.errors import CertwayError, PolicyViolation
from certway.pki.crl import REASONS
from certway.pki.decode import detect
from certway.pki.issue import PROFILES
from certway.pki.keys import KEY_TYPES
from certway.pki.text import plural, serial_hex
from certway.services.local_ca import CaSettings
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

__all__ = ["router"]

router = APIRouter(include_in_schema=False, route_class=UiRoute)


def _local_ca_page(view: View, form: Form | None = None) -> HTMLResponse:
    """The CA list and its forms; ``view.result``: a certificate just signed."""
    with as_principal(view.principal):
        cas = view.node.local_ca.cas()
    return view.render(
        "local_ca.html",
        title="Local CA",
        cas=cas,
        form=(form or Form()).values(),
        key_types=KEY_TYPES,
        profiles=tuple(PROFILES),
        reasons=tuple(REASONS),
        signed=view.result,
    )


@router.get("/local-ca")
def local_ca_page(request: Request) -> Response:
    return _local_ca_page(page_view(request))


@router.post("/local-ca/roots")
@form_action(_local_ca_page, keep_form="on-error")
def local_ca_create_root(view: View, form: Form) -> str:
    settings = CaSettings(crl_urls=form.split("crl_urls"), ocsp_url=form.opt("ocsp_url"))
    info = view.node.local_ca.create_root(
        form.get("name"),
        form.get("subject"),
        key_type=form.get("key_type", "ec:p256"),
        days=form.integer("days", "the validity in days", 3650),
        settings=settings,
    )
    return (
        f"created CA '{info.name}': {info.subject} ({info.key}), valid until "
        f"{info.not_after:%Y-%m-%d}"
    )


@router.post("/local-ca/sign")
@form_action(_local_ca_page, keep_form="on-error")
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


@router.post("/local-ca/revoke")
@form_action(_local_ca_page, keep_form="on-error")
def local_ca_revoke(view: View, form: Form) -> str:
    crl = view.node.local_ca.revoke(form.get("ca"), form.get("serial"), reason=form.opt("reason"))
    return (
        f"revoked {form.get('serial')} ({form.get('reason') or 'no reason given'}); "
        f"CRL #{crl.number} published with {plural(crl.entries, 'entry')}"
    )


@router.get("/local-ca/{name}")
def local_ca_detail(request: Request, name: str) -> Response:
    view = page_view(request)
    node = view.node
    try:
        with as_principal(view.principal):
            info = node.local_ca.info(name)
            issued = node.local_ca.issued(name, search=request.query_params.get("search") or None)
            crl = node.local_ca.current_crl(name)
    except CertwayError as exc:
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
