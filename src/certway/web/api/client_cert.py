"""``/client-cert``: the certificate the node presents as a TLS client (to zone peers)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from certway.web.api.common import node_of
from certway.web.api.identity import IdentityOut, Upload, upload
from certway.web.api.routing import ApiRoute, Reader, Writer
from certway.web.context import as_principal

__all__ = ["router"]

router = APIRouter(route_class=ApiRoute, tags=["client certificate"])


@router.get("/client-cert", response_model=IdentityOut)
def client_get(request: Request, _who: Reader) -> dict[str, Any]:
    return node_of(request).identities.info("client").as_dict()


@router.post("/client-cert", response_model=IdentityOut)
def client_upload(request: Request, body: Upload, who: Writer) -> dict[str, Any]:
    return upload(request, "client", "", body, who)


@router.post("/client-cert/copy-server", response_model=IdentityOut)
def client_copy(request: Request, who: Writer) -> dict[str, Any]:
    with as_principal(who):
        return node_of(request).identities.copy_server_to_client().as_dict()
