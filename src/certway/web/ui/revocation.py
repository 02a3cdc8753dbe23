"""CRL management (held CRLs, manual uploads, CRL URLs and their schedule) and the revocation
policy of each service."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from certway.errors import PolicyViolation
from certway.pki.text import plural
from certway.services.revocation import SERVICES
from certway.web.context import as_principal
from certway.web.ui.kit import Form, UiRoute, View, form_action, page_view, when

__all__ = ["router"]

router = APIRouter(include_in_schema=False, route_class=UiRoute)


# -- CRLs --------------------------------------------------------------------------------------
def _crls_page(view: View, form: Form | None = None) -> HTMLResponse:
    with as_principal(view.principal):
        held = view.node.revocation.held()
        sources = view.node.revocation.sources()
        schedule = view.node.revocation.schedule()
    kept = form or view.form
    return view.render(
        "crls.html",
        title="CRL management",
        held=held,
        sources=sources,
        schedule=schedule,
        urls=kept.values_for("/crls/sources").get("urls", "\n".join(s.url for s in sources)),
        daily_at=kept.values_for("/crls/schedule").get("daily_at", schedule.daily_at),
    )


@router.get("/crls")
def crls_page(request: Request) -> Response:
    return _crls_page(page_view(request))


@router.post("/crls/manual")
@form_action(_crls_page)
def crl_upload(view: View, form: Form) -> None:
    data = form.file("crl", "CRL file")
    if data is None:
        raise PolicyViolation("input", "choose a CRL file (PEM or DER)")
    accepted = view.node.revocation.upload_manual(data)
    view.notices.extend(f"stored {a.describe()}" for a in accepted)


@router.post("/crls/manual/remove")
@form_action(_crls_page, confirm="Remove the manually uploaded CRLs?")
def crl_remove(view: View, form: Form) -> str:
    removed = view.node.revocation.remove_manual()
    return f"removed {plural(removed, 'manual CRL')}"


@router.post("/crls/sources")
@form_action(_crls_page, keep_form="on-error")
def crl_sources(view: View, form: Form) -> str:
    sources = view.node.revocation.set_sources(form.raw("urls").splitlines())
    return f"{plural(len(sources), 'CRL URL')} saved"


@router.post("/crls/schedule")
@form_action(_crls_page, keep_form="on-error")
def crl_schedule(view: View, form: Form) -> str:
    schedule = view.node.revocation.set_schedule(
        daily_at=form.get("daily_at") or None, enabled=form.get("enabled") == "on"
    )
    state = f"on, daily at {schedule.daily_at} UTC" if schedule.enabled else "off"
    return f"automatic CRL updates: {state}"


@router.post("/crls/update")
@form_action(_crls_page)
def crl_update(view: View, form: Form) -> str | None:
    sources = view.node.revocation.update_now()
    for source in sources:
        if source.error:
            view.warnings.append(f"{source.url}: {source.error}")
        else:
            view.notices.append(
                f"{source.url}: CRL #{source.crl_number}, next update {when(source.next_update)}"
            )
    return None if sources else "no CRL URLs are configured: nothing to update"


# -- revocation policies -----------------------------------------------------------------------
def _revocation_page(view: View, form: Form | None = None, *, service: str = "") -> HTMLResponse:
    policies = {name: view.node.revocation.policy(name) for name in SERVICES}
    return view.render("revocation.html", title="Revocation settings", policies=policies)


@router.get("/revocation")
def revocation_page(request: Request) -> Response:
    return _revocation_page(page_view(request))


@router.post("/revocation/{service}")
@form_action(_revocation_page)
def revocation_set(view: View, form: Form, service: str) -> str:
    changes: dict[str, object] = {
        key: form.get(key) == "on"
        for key in ("enabled", "ocsp", "crl", "cdp")
        if form.get(key) in ("on", "off")
    }
    changes.update({key: form.opt(key) for key in ("scope", "fallback", "profile")})
    view.node.revocation.set_policy(service, **changes)
    return f"{service} revocation policy saved"
