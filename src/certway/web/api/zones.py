"""``/zones``: neighbour zones (the SIP peers this node pings) and their status."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from certway.services.zones import (
    DEFAULT_INTERVAL,
    DEFAULT_PORT,
    MAX_INTERVAL,
    MIN_INTERVAL,
    Zone,
    ZoneStatus,
)
from certway.sip.zones import check_zone
from certway.web.api.common import Out, Timestamp, node_of
from certway.web.api.routing import ApiRoute, Reader, Writer
from certway.web.context import as_principal

__all__ = ["ZONE_CHECK_TIMEOUT", "ZoneOut", "router"]

router = APIRouter(route_class=ApiRoute, tags=["zones"])

ZONE_CHECK_TIMEOUT = 5.0
"""Seconds a "check now" from the API may spend on each peer (the pinger of ``certway serve``
keeps its own, longer default)."""


class ZoneBody(BaseModel):
    name: str
    peers: list[str] = Field(description="peer addresses: DNS names or IP addresses")
    port: int = Field(default=DEFAULT_PORT, ge=1, le=65535)
    tls_verify: bool | Literal["on", "off"] = Field(
        default=True,
        description="the peer certificate must chain to the trusted CA list, be unrevoked and "
        "name the peer address (or the verify subject name)",
    )
    verify_subject: str | None = Field(
        default=None, description="the name the peer certificate must carry instead"
    )
    interval: int = Field(
        default=DEFAULT_INTERVAL,
        ge=MIN_INTERVAL,
        le=MAX_INTERVAL,
        description="seconds between OPTIONS pings",
    )


class PeerStatusOut(Out):
    address: str
    state: str = Field(description="Active or Failed")
    reason: str | None
    detail: str
    checked_at: Timestamp | None
    response: str | None = Field(description="the status line of the answer, e.g. 200 OK")
    certificate: str | None = Field(description="the subject of the peer's certificate")


class ZoneStatusOut(Out):
    zone: str
    state: str = Field(description="Active, Failed or Unknown (not checked yet)")
    reason: str | None
    detail: str
    checked_at: Timestamp | None
    peers: list[PeerStatusOut]


class ZoneOut(Out):
    name: str
    peers: list[str]
    port: int
    tls_verify: str = Field(description="on or off")
    verify_subject: str | None
    interval: int = Field(description="seconds between OPTIONS pings")
    status: ZoneStatusOut


def _on(value: bool | str) -> bool:
    return value if isinstance(value, bool) else value == "on"


def _zone(zone: Zone, status: ZoneStatus) -> dict[str, Any]:
    return {**zone.as_dict(), "status": status.as_dict()}


@router.get("/zones", response_model=list[ZoneOut])
def zones(request: Request, _who: Reader) -> list[dict[str, Any]]:
    """List the neighbour zones.

    Every neighbour zone with the status of its last check."""
    service = node_of(request).zones
    entries = service.entries()
    statuses = service.statuses()
    return [_zone(z, statuses.get(z.name) or ZoneStatus.unknown(z.name)) for z in entries]


@router.post("/zones", status_code=201, response_model=ZoneOut)
def zone_add(request: Request, body: ZoneBody, who: Writer) -> dict[str, Any]:
    """Add a neighbour zone.

    A zone pinged with SIP OPTIONS over TLS, presenting the client certificate; its
    peers, port and TLS verification settings."""
    with as_principal(who):
        zone = node_of(request).zones.add(
            body.name,
            peers=body.peers,
            port=body.port,
            tls_verify=_on(body.tls_verify),
            verify_subject=body.verify_subject,
            interval=body.interval,
        )
    return _zone(zone, ZoneStatus.unknown(zone.name))


@router.get("/zones/{name}", response_model=ZoneOut)
def zone_get(request: Request, name: str, _who: Reader) -> dict[str, Any]:
    """Show a neighbour zone.

    The zone's settings and the status of its last check, with the reason when it
    failed."""
    service = node_of(request).zones
    return _zone(service.get(name), service.status(name))


@router.delete("/zones/{name}", status_code=204)
def zone_remove(request: Request, name: str, who: Writer) -> None:
    """Remove a neighbour zone.

    The zone stops being checked."""
    with as_principal(who):
        node_of(request).zones.remove(name)


@router.post("/zones/{name}/check", response_model=ZoneOut)
async def zone_check(request: Request, name: str, who: Writer) -> dict[str, Any]:
    """Ping the zone's peers now and record its status (Active, or Failed with the reason).

    An unreachable or failing peer is a Failed status, not an error of this request.
    """
    with as_principal(who):
        zone, status = await check_zone(node_of(request), name, timeout=ZONE_CHECK_TIMEOUT)
    return _zone(zone, status)
