"""Certificate-based authentication: the client-certificate policy of this admin interface
(not required, validation, or authentication with a username taken from the certificate)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from certway.errors import CertwayError
from certway.services.admin_security import Mode
from certway.web.context import peer_certificate
from certway.web.ui.kit import (
    MODE_LABELS,
    RECOVERY_COMMAND,
    Form,
    UiRoute,
    View,
    form_action,
    page_view,
)

__all__ = ["router"]

router = APIRouter(include_in_schema=False, route_class=UiRoute)


def _mine(view: View) -> str:
    """What this browser's own client certificate gives under the current policy."""
    node = view.node
    config = node.admin_security.get()
    peer = peer_certificate(view.request)
    if peer is None:
        return "your browser sent no client certificate on this connection"
    try:
        report = node.client_check.check(
            peer, purpose="client", service="admin-https", regex=config.regex, fmt=config.format
        )
    except CertwayError as exc:
        return f"your certificate could not be checked: {exc}"
    verdict = "valid" if report.result.valid else f"rejected: {report.result.reason}"
    if report.username is None:
        return f"your certificate is {verdict}; no username: {report.username_error}"
    account = node.admins.get(report.username.username)
    who = f"account '{account.name}' ({account.access})" if account else "no account of that name"
    return f"your certificate is {verdict}; it maps to user '{report.username.username}': {who}"


def _cert_auth_page(view: View, form: Form | None = None) -> HTMLResponse:
    config = view.node.admin_security.get()
    values = {"mode": config.mode.value, "regex": config.regex, "format": config.format}
    values.update((form or view.form).values())
    return view.render(
        "certificate_auth.html",
        title="Certificate-based authentication",
        config=config,
        form=values,
        modes=MODE_LABELS,
        mine=_mine(view),
        recovery=RECOVERY_COMMAND,
    )


@router.get("/certificate-auth")
def cert_auth_page(request: Request) -> Response:
    return _cert_auth_page(page_view(request))


def _stricter(view: View, form: Form) -> str | None:
    """Ask before a change of mode towards certificates (browsers without one are refused)."""
    mode = form.get("mode")
    if mode == view.node.admin_security.get().mode.value or mode not in MODE_LABELS:
        return None
    if mode == Mode.NOT_REQUIRED.value:
        return None
    return (
        f"Switch administrator client certificate security to {MODE_LABELS[mode]}? From the "
        "next connection, browsers and API clients without an accepted client certificate "
        f"are refused. Recovery needs the server's console: {RECOVERY_COMMAND}"
    )


@router.post("/certificate-auth")
@form_action(_cert_auth_page, keep_form="on-error", confirm=_stricter)
def cert_auth_set(view: View, form: Form) -> str:
    config = view.node.admin_security.set(
        mode=form.get("mode") or None,
        regex=form.raw("regex") or None,
        fmt=form.raw("format") or None,
        current_certificate=peer_certificate(view.request),
        guard=True,
    )
    return (
        f"client certificate security: {MODE_LABELS[config.mode.value]} (live for new "
        "connections at once)"
    )
