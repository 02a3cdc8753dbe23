"""The trusted CA list: view, download, add (PEM or DER bundles, embedded CRLs), remove, reset."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from certway.errors import CertwayError, PolicyViolation
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


def _trust_page(view: View, form: Form | None = None) -> HTMLResponse:
    with as_principal(view.principal):
        entries = view.node.trusted_cas.entries()
    return view.render("trusted_cas.html", title="Trusted CA certificates", entries=entries)


@router.get("/trusted-cas")
def trusted_cas_page(request: Request) -> Response:
    return _trust_page(page_view(request))


@router.get("/trusted-cas.pem")
def trusted_cas_pem(request: Request) -> Response:
    view = page_view(request)
    trusted = view.node.trusted_cas
    certs = [trusted.certificate(e.fingerprint) for e in trusted.entries()]
    return download(pem(certs), "trusted-cas.pem", PEM_TYPE)


@router.get("/trusted-cas/{fingerprint}")
def trusted_ca_page(request: Request, fingerprint: str) -> Response:
    view = page_view(request)
    try:
        cert = view.node.trusted_cas.certificate(fingerprint)
    except CertwayError as exc:
        raise Refused(404, "Not found", str(exc)) from None
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
    view = page_view(request)
    cert = view.node.trusted_cas.certificate(fingerprint)
    return download(pem([cert]), f"ca-{fingerprint[:16]}.pem", PEM_TYPE)


@router.post("/trusted-cas")
@form_action(_trust_page)
def trusted_ca_add(view: View, form: Form) -> str | None:
    data = form.file("file", "CA file")
    if data is None:
        raise PolicyViolation("input", "choose a PEM or DER file with CA certificates")
    report = view.node.trusted_cas.add(data)
    view.notices.extend(f"added {i.subject} ({i.fingerprint})" for i in report.added)
    view.notices.extend(f"skipped: {line}" for line in report.skipped)
    view.notices.extend(f"embedded CRL stored: {line}" for line in report.crls)
    view.warnings.extend(report.warnings)
    if not report.added and not report.skipped and not report.crls:
        return "nothing was added"
    return None


def _removal(view: View, form: Form) -> str | None:
    count = len(form.all("fingerprint"))
    return f"Delete {count} CA certificate(s) from the trusted CA list?" if count else None


@router.post("/trusted-cas/remove")
@form_action(_trust_page, confirm=_removal)
def trusted_ca_remove(view: View, form: Form) -> None:
    selected = form.all("fingerprint")
    if not selected:
        raise PolicyViolation("input", "select the CAs to delete first")
    removed = view.node.trusted_cas.remove(selected)
    view.notices.extend(f"removed {subject}" for subject in removed)


@router.post("/trusted-cas/reset")
@form_action(_trust_page, confirm="Replace the trusted CA list with the factory list?")
def trusted_ca_reset(view: View, form: Form) -> str:
    entries = view.node.trusted_cas.reset()
    return f"trusted CA list reset to the factory list ({len(entries)} CAs)"
