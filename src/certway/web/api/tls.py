"""``/tls``: the TLS profile of each listener and outbound client (``tlsconf.policy``)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from certway.web.api.common import Out, node_of
from certway.web.api.routing import ApiRoute, Reader, Writer
from certway.web.context import as_principal

__all__ = ["router"]

router = APIRouter(route_class=ApiRoute, tags=["tls"])

TlsService = Literal["admin-https", "sip-tls", "zones", "outbound", "syslog", "ldap"]


class TlsProfileBody(BaseModel):
    profile: Literal["intermediate", "modern"] = Field(
        description="intermediate: TLS 1.2 with ECDHE and AEAD ciphers, and TLS 1.3; "
        "modern: TLS 1.3 only"
    )


class TlsProfileOut(Out):
    profile: Literal["intermediate", "modern"]
    versions: list[str]
    tls12_ciphers: list[str] = Field(description="empty when TLS 1.2 is not offered")
    groups: list[str]


class TlsProfilesOut(Out):
    admin_https: TlsProfileOut = Field(alias="admin-https")
    sip_tls: TlsProfileOut = Field(alias="sip-tls")
    zones: TlsProfileOut
    outbound: TlsProfileOut
    syslog: TlsProfileOut
    ldap: TlsProfileOut


@router.get("/tls", response_model=TlsProfilesOut, response_model_by_alias=True)
def tls_profiles(request: Request, _who: Reader) -> dict[str, Any]:
    """Show the TLS profiles.

    The TLS profile of each service: versions, TLS 1.2 cipher suites and groups."""
    return node_of(request).tls.policy().as_dict()


@router.put("/tls/{service}", response_model=TlsProfileOut)
def tls_profile_set(
    request: Request, service: TlsService, body: TlsProfileBody, who: Writer
) -> dict[str, object]:
    """Select a service's TLS profile.

    intermediate or modern; listeners use it from their next connection, established
    connections keep theirs."""
    with as_principal(who):
        return node_of(request).tls.set(service, body.profile).as_dict()
