"""SIP TLS settings (mutual TLS, client EKU checking), the certificate access rules, and the
neighbour zones with their status and "Check now"."""

from __future__ import annotations

import re

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from certway.errors import NotFound, PolicyViolation
from certway.services.sip_rules import RuleAction, RuleType
from certway.services.sip_settings import MutualTls
from certway.services.zones import DEFAULT_INTERVAL, DEFAULT_PORT, ZoneStatus
from certway.sip.zones import check_zone_now
from certway.web.context import as_principal
from certway.web.ui.kit import Form, UiRoute, View, form_action, page_view

__all__ = ["ZONE_CHECK_TIMEOUT", "router"]

router = APIRouter(include_in_schema=False, route_class=UiRoute)

MUTUAL_TLS_LABELS = {
    MutualTls.OFF.value: "Off: no client certificate is asked for",
    MutualTls.REQUEST.value: "Request: asked for, then checked; peers without one are closed",
    MutualTls.REQUIRE.value: "Require: the TLS handshake fails without a client certificate",
}
ZONE_CHECK_TIMEOUT = 5.0
"""Seconds a "Check now" may spend on each peer of a zone."""


def _sip_page(view: View, form: Form | None = None, **_path: str) -> HTMLResponse:
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
        refill=(form or view.form).values_for,
    )


@router.get("/sip")
def sip_page(request: Request) -> Response:
    return _sip_page(page_view(request))


@router.post("/sip/settings")
@form_action(_sip_page)
def sip_settings_set(view: View, form: Form) -> str:
    config = view.node.sip.set(mutual_tls=form.opt("mutual_tls"), eku_check=form.opt("eku_check"))
    return (
        f"SIP TLS settings saved: mutual TLS {config.mutual_tls.value}, EKU checking "
        f"{'on' if config.eku_check else 'off'} (new connections use them at once)"
    )


@router.post("/sip/rules")
@form_action(_sip_page, keep_form="on-error")
def sip_rule_add(view: View, form: Form) -> str:
    rule = view.node.sip.add_rule(
        priority=form.integer("priority", "the priority", 100),
        type=form.get("type"),
        pattern=form.raw("pattern"),
        action=form.get("action"),
    )
    return (
        f"access rule {rule.id} added: {rule.action.value} {rule.type.value} "
        f"'{rule.pattern}' (priority {rule.priority})"
    )


@router.post("/sip/rules/{rule_id}/remove")
@form_action(_sip_page, confirm=lambda _v, _f, rule_id: f"Remove access rule {rule_id}?")
def sip_rule_remove(view: View, form: Form, rule_id: str) -> str:
    if not re.fullmatch(r"\d{1,9}", rule_id):
        raise NotFound(f"no SIP access rule has id '{rule_id}'")
    rule = view.node.sip.remove_rule(int(rule_id))
    return f"access rule {rule.id} removed"


@router.post("/sip/zones")
@form_action(_sip_page, keep_form="on-error")
def zone_add(view: View, form: Form) -> str:
    verify = form.get("tls_verify", "on")
    if verify not in ("on", "off"):
        raise PolicyViolation("zone-verify", f"TLS verify mode must be on or off, not '{verify}'")
    zone = view.node.zones.add(
        form.get("name"),
        peers=form.split("peers"),
        port=form.integer("port", "the port", DEFAULT_PORT),
        tls_verify=verify == "on",
        verify_subject=form.opt("verify_subject"),
        interval=form.integer("interval", "the interval", DEFAULT_INTERVAL),
    )
    return (
        f"added zone {zone.name}: {', '.join(zone.peers)} port {zone.port}, TLS verify "
        f"{'on' if zone.tls_verify else 'off'}, every {zone.interval} s"
    )


@router.post("/sip/zones/{name}/remove")
@form_action(_sip_page, confirm=lambda _v, _f, name: f"Remove zone {name}?")
def zone_remove(view: View, form: Form, name: str) -> str:
    view.node.zones.remove(name)
    return f"removed zone {name}"


@router.post("/sip/zones/{name}/check")
@form_action(_sip_page)
def zone_check(view: View, form: Form, name: str) -> str | None:
    # a form action's work runs in a worker thread: check_zone_now runs its own event loop
    status = check_zone_now(view.node, name, timeout=ZONE_CHECK_TIMEOUT)
    if status.active:
        return f"zone {name}: Active ({status.detail})"
    view.warnings.append(f"zone {name}: Failed, {status.reason}: {status.detail}")
    return None
