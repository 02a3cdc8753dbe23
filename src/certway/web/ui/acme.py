"""The ACME page: the account, signing the pending CSR, the pending ACME certificate, the
renewal schedule and status, revocation."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from certway.services.acme_client import DAYS, REVOCATION_REASONS
from certway.web.context import as_principal
from certway.web.ui.kit import Form, UiRoute, View, form_action, page_view

__all__ = ["router"]

router = APIRouter(include_in_schema=False, route_class=UiRoute)


def _acme_page(view: View, form: Form | None = None) -> HTMLResponse:
    with as_principal(view.principal):
        status = view.node.acme.status()
        domains = [d.name for d in view.node.identities.domains()]
    return view.render(
        "acme.html",
        title="ACME",
        status=status,
        domains=domains,
        days=DAYS,
        reasons=[(r, r) for r in REVOCATION_REASONS],
        refill=(form or view.form).values_for,
    )


def _slot(form: Form) -> tuple[str, str]:
    target = form.get("target", "server")
    if target.startswith("domain:"):
        return "domain", target.removeprefix("domain:")
    return "server", ""


def _label(kind: str, name: str) -> str:
    return f"domain {name}" if kind == "domain" else "server certificate"


@router.get("/acme-client")
def acme_page(request: Request) -> Response:
    return _acme_page(page_view(request))


@router.post("/acme-client/account")
@form_action(_acme_page, keep_form="on-error")
def acme_account_create(view: View, form: Form) -> str:
    info = view.node.acme.create_account(
        form.get("directory"), form.get("email"), accept_terms=form.on("accept_terms")
    )
    return f"ACME account created: {info.uri}"


@router.post("/acme-client/account/deactivate")
@form_action(_acme_page)
def acme_account_deactivate(view: View, form: Form) -> str:
    view.node.acme.deactivate_account()
    return "ACME account deactivated"


@router.post("/acme-client/sign")
@form_action(_acme_page)
def acme_sign(view: View, form: Form) -> str:
    kind, name = _slot(form)
    result = view.node.acme.sign(kind, name, challenge=form.get("challenge", "http-01"))
    view.warnings.extend(result["warnings"])
    state = "live" if result["deployed"] else "staged: deploy it below"
    return f"the {_label(kind, name)} was signed by {result['issuer']} ({state})"


@router.post("/acme-client/deploy")
@form_action(_acme_page)
def acme_deploy(view: View, form: Form) -> str:
    kind, name = _slot(form)
    result = view.node.acme.deploy(kind, name)
    view.warnings.extend(result["warnings"])
    return f"the {_label(kind, name)} is live: version {result['version']}"


@router.post("/acme-client/renew")
@form_action(_acme_page)
def acme_renew(view: View, form: Form) -> str:
    kind, name = _slot(form)
    result = view.node.acme.renew_now(kind, name)
    return f"the {_label(kind, name)} was renewed: valid until {result['not_after']}"


@router.post("/acme-client/revoke")
@form_action(_acme_page)
def acme_revoke(view: View, form: Form) -> str:
    kind, name = _slot(form)
    result = view.node.acme.revoke(kind, name, reason=form.get("reason", "unspecified"))
    return f"serial {result['serial']} revoked at the ACME CA ({result['reason']})"


@router.post("/acme-client/schedule")
@form_action(_acme_page, keep_form="on-error")
def acme_schedule(view: View, form: Form) -> str:
    view.node.acme.set_schedule(
        days=form.all("days") or [],
        time_of_day=form.get("time"),
        auto_deploy=form.on("auto_deploy"),
        enabled=form.on("enabled"),
    )
    return "ACME renewal schedule saved"
