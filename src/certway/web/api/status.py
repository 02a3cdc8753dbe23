"""``/status``, ``/alarms``, ``/audit``: what needs attention and who changed what."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Query, Request

from certway.web.api.common import Out, Timestamp, node_of
from certway.web.api.domains import DomainOut
from certway.web.api.node import NodeOut
from certway.web.api.routing import ApiRoute, Reader

__all__ = ["AlarmOut", "AuditEntryOut", "StatusOut", "router"]

router = APIRouter(route_class=ApiRoute, tags=["status"])


class AlarmOut(Out):
    id: str
    severity: str
    text: str
    since: Timestamp


class ServerCertificateSummary(Out):
    subject: str
    not_after: Timestamp
    temporary: bool


class You(Out):
    name: str
    access: str


class StatusOut(Out):
    node: NodeOut
    alarms: list[AlarmOut]
    server_certificate: ServerCertificateSummary
    domains: list[DomainOut]
    you: You


class AuditEntryOut(Out):
    at: Timestamp
    actor: str
    via: str
    address: str | None
    action: str
    target: str
    outcome: str
    detail: dict[str, Any]


@router.get("/status", response_model=StatusOut)
def status(request: Request, who: Reader) -> dict[str, Any]:
    """Show the node status.

    Alarms and the expiry of every node certificate, the node settings and who you are."""
    node = node_of(request)
    server = node.identities.info("server")
    return {
        "node": node.settings.get().as_dict(),
        "alarms": [a.as_dict() for a in node.alarms.current()],
        "server_certificate": {
            "subject": server.subject,
            "not_after": server.not_after.isoformat(),
            "temporary": server.temporary,
        },
        "domains": [d.as_dict() for d in node.identities.domains()],
        "you": {"name": who.name, "access": who.access},
    }


@router.get("/alarms", response_model=list[AlarmOut])
def alarms(request: Request, _who: Reader) -> list[dict[str, Any]]:
    """List the alarms.

    Alarms computed from the current state, each with the time it was first seen."""
    return [a.as_dict() for a in node_of(request).alarms.current()]


@router.get("/audit", response_model=list[AuditEntryOut])
def audit(
    request: Request,
    _who: Reader,
    since: dt.datetime | None = None,
    limit: int = Query(200, ge=1, le=10_000),
) -> list[dict[str, Any]]:
    """Read the audit log.

    Who changed what, when, from where and the outcome, oldest first; at most limit
    entries from since on. Never secrets."""
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=dt.UTC)
    return [e.as_dict() for e in node_of(request).audit.entries(since=since, limit=limit)]
