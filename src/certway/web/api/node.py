"""``/node``: this node's name, role and cluster peers."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel

from certway.web.api.common import Out, node_of
from certway.web.api.routing import ApiRoute, Reader, Writer
from certway.web.context import as_principal

__all__ = ["NodeOut", "NodeSettingsBody", "router"]

router = APIRouter(route_class=ApiRoute, tags=["node"])


class NodeSettingsBody(BaseModel):
    fqdn: str | None = None
    role: Literal["edge", "core"] | None = None
    cluster_fqdn: str | None = None
    peers: list[str] | None = None


class NodeOut(Out):
    fqdn: str
    role: str
    cluster_fqdn: str | None
    peers: list[str]


@router.get("/node", response_model=NodeOut)
def node_get(request: Request, _who: Reader) -> dict[str, Any]:
    """Show the node settings.

    System FQDN, role, cluster FQDN and peers: the names that go into CSRs."""
    return dict(node_of(request).settings.get().as_dict())


@router.put("/node", response_model=NodeOut)
def node_put(request: Request, body: NodeSettingsBody, who: Writer) -> dict[str, Any]:
    """Change the node settings.

    Only the fields given change; the rest stay."""
    with as_principal(who):
        config = node_of(request).settings.set(
            fqdn=body.fqdn, role=body.role, cluster_fqdn=body.cluster_fqdn, peers=body.peers
        )
    return dict(config.as_dict())
