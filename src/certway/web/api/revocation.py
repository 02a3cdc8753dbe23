"""``/crls``, ``/crl-sources``, ``/crl-schedule``, ``/revocation``: held CRLs, where they come
from, when they are fetched, and the revocation policy of each service."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from certway.web.api.common import Data, Out, Timestamp, node_of, required
from certway.web.api.routing import ApiRoute, Reader, Writer
from certway.web.context import as_principal

__all__ = ["PolicyBody", "PolicyOut", "router"]

router = APIRouter(route_class=ApiRoute, tags=["revocation"])


class SourcesBody(BaseModel):
    urls: list[str]


class ScheduleBody(BaseModel):
    daily_at: str | None = Field(default=None, description="HH:MM, UTC")
    enabled: bool | None = None


class PolicyBody(BaseModel):
    mode: Literal["on", "off"] | None = None
    ocsp: bool | None = None
    crl: bool | None = None
    cdp: bool | None = None
    scope: Literal["peer", "all"] | None = None
    fallback: Literal["not-revoked", "revoked"] | None = None
    profile: Literal["rfc5280", "webpki"] | None = Field(
        default=None,
        description="How certificate paths are judged: rfc5280 (enterprise and UC PKIs) or "
        "webpki (the strict web PKI rules)",
    )


class HeldCrlOut(Out):
    kind: str
    source: str
    issuer: str
    number: int | None
    this_update: Timestamp
    next_update: Timestamp | None
    entries: int
    status: str = Field(description="current or expired")


class RemovedCount(Out):
    removed: int


class CrlSourceOut(Out):
    url: str
    last_attempt: Timestamp | None
    last_success: Timestamp | None
    error: str | None
    crl_number: int | None
    next_update: Timestamp | None


class CrlScheduleOut(Out):
    enabled: bool
    daily_at: str = Field(description="HH:MM, UTC")
    last_run: Timestamp | None


class SourcesOut(Out):
    schedule: CrlScheduleOut
    sources: list[CrlSourceOut]


class PolicyOut(Out):
    mode: str = Field(description="on or off")
    ocsp: bool
    crl: bool
    cdp: bool
    scope: str
    fallback: str
    profile: str


class PoliciesOut(Out):
    sip_tls: PolicyOut = Field(alias="sip-tls")
    admin_https: PolicyOut = Field(alias="admin-https")
    ldap: PolicyOut


@router.get("/crls", response_model=list[HeldCrlOut])
def crls(request: Request, _who: Reader) -> list[dict[str, object]]:
    """List the CRLs held.

    Every CRL held for validation: manual uploads, CRLs embedded in CA files and those
    from URL sources, with issuer, number and update times."""
    return [h.as_dict() for h in node_of(request).revocation.held()]


@router.post("/crls/manual", response_model=list[str])
def crl_upload(request: Request, body: Data, who: Writer) -> list[str]:
    """Upload a manual CRL.

    A CRL file (PEM or DER) that replaces the previous manual upload; the answer says
    which CRLs were accepted."""
    with as_principal(who):
        accepted = node_of(request).revocation.upload_manual(required(body.data, "CRL"))
    return [a.describe() for a in accepted]


@router.delete("/crls/manual", response_model=RemovedCount)
def crl_remove(request: Request, who: Writer) -> dict[str, int]:
    """Remove the manual CRLs.

    Deletes the manually uploaded CRLs; CRLs from other sources stay."""
    with as_principal(who):
        return {"removed": node_of(request).revocation.remove_manual()}


@router.get("/crl-sources", response_model=SourcesOut)
def sources(request: Request, _who: Reader) -> dict[str, Any]:
    """Show the CRL sources.

    The URLs CRLs are downloaded from, each with the status of its last attempt, and the
    daily schedule."""
    node = node_of(request)
    return {
        "schedule": node.revocation.schedule().as_dict(),
        "sources": [s.as_dict() for s in node.revocation.sources()],
    }


@router.put("/crl-sources", response_model=list[CrlSourceOut])
def sources_set(request: Request, body: SourcesBody, who: Writer) -> list[dict[str, object]]:
    """Set the CRL sources.

    Replaces the list of HTTP(S) URLs CRLs are downloaded from."""
    with as_principal(who):
        return [s.as_dict() for s in node_of(request).revocation.set_sources(body.urls)]


@router.post("/crl-sources/update", response_model=list[CrlSourceOut])
def sources_update(request: Request, who: Writer) -> list[dict[str, object]]:
    """Download the CRLs now.

    Fetches every CRL source at once; a failed fetch keeps the last good CRL. The answer
    is each source's status."""
    with as_principal(who):
        return [s.as_dict() for s in node_of(request).revocation.update_now()]


@router.put("/crl-schedule", response_model=CrlScheduleOut)
def schedule_set(request: Request, body: ScheduleBody, who: Writer) -> dict[str, object]:
    """Set the daily CRL update.

    The UTC time of day the server downloads the CRL sources, or off."""
    with as_principal(who):
        schedule = node_of(request).revocation.set_schedule(
            daily_at=body.daily_at, enabled=body.enabled
        )
    return schedule.as_dict()


@router.get("/revocation", response_model=PoliciesOut, response_model_by_alias=True)
def policies(request: Request, _who: Reader) -> dict[str, Any]:
    """Show the revocation policies.

    For each service (SIP TLS, admin HTTPS): the validation profile, whether revocation
    is checked, which methods (OCSP, CRLs, distribution points), the scope and the
    fallback when nothing decides."""
    node = node_of(request)
    services = ("sip-tls", "admin-https", "ldap")
    return {name: node.revocation.policy(name).as_dict() for name in services}


@router.put("/revocation/{service}", response_model=PolicyOut)
def policy_set(
    request: Request,
    service: Literal["sip-tls", "admin-https", "ldap"],
    body: PolicyBody,
    who: Writer,
) -> dict[str, object]:
    """Change a service's revocation policy.

    Only the fields given change; listeners apply the policy from their next handshake."""
    changes: dict[str, object] = {
        "enabled": None if body.mode is None else body.mode == "on",
        "ocsp": body.ocsp,
        "crl": body.crl,
        "cdp": body.cdp,
        "scope": body.scope,
        "fallback": body.fallback,
        "profile": body.profile,
    }
    with as_principal(who):
        return node_of(request).revocation.set_policy(service, **changes).as_dict()
