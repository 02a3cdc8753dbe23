"""The status page (alarms, node certificates at a glance) and the audit log."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request, Response

from certway.errors import NotFound
from certway.services.identities import IdentityInfo, IdentityKind
from certway.services.node import Node
from certway.web.context import as_principal
from certway.web.ui.kit import MODE_LABELS, UiRoute, page_view

__all__ = ["identity_info", "router"]

router = APIRouter(include_in_schema=False, route_class=UiRoute)


def identity_info(node: Node, kind: IdentityKind, name: str = "") -> IdentityInfo | None:
    try:
        return node.identities.info(kind, name)
    except NotFound:
        return None


@router.get("/")
def status_page(request: Request) -> Response:
    view = page_view(request)
    node = view.node
    with as_principal(view.principal):
        alarms = node.alarms.current()
        server = identity_info(node, "server")
        client = identity_info(node, "client")
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


@router.get("/audit")
def audit_page(request: Request) -> Response:
    view = page_view(request)
    entries = list(reversed(view.node.audit.entries(limit=200)))
    rows = [
        (e, json.dumps(e.detail, sort_keys=True, default=str) if e.detail else "") for e in entries
    ]
    return view.render("audit.html", title="Audit log", rows=rows)
