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
    """Show the client certificate.

    The identity used for outbound TLS (neighbour zones): subject, issuer, validity,
    names and chain. It is the server certificate unless one was uploaded."""
    return node_of(request).identities.info("client").as_dict()


@router.post("/client-cert", response_model=IdentityOut)
def client_upload(request: Request, body: Upload, who: Writer) -> dict[str, Any]:
    """Upload a client certificate.

    A certificate with its private key (and chain) for outbound TLS. It must carry the
    clientAuth extended key usage; every upload check applies and errors change nothing."""
    return upload(request, "client", "", body, who)


@router.post("/client-cert/copy-server", response_model=IdentityOut)
def client_copy(request: Request, who: Writer) -> dict[str, Any]:
    """Use the server certificate as client certificate.

    Makes the outbound TLS identity the current server certificate again."""
    with as_principal(who):
        return node_of(request).identities.copy_server_to_client().as_dict()
