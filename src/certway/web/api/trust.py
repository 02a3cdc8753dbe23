"""``/trusted-cas`` and ``/check``: the trusted CA list, and client certificate testing."""

from __future__ import annotations

from typing import Any, Literal

from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from certway.trust.identity import certificate_text
from certway.web.api.common import Data, Out, Timestamp, blob, node_of, required
from certway.web.api.routing import ApiRoute, Reader, Writer, reads_only
from certway.web.context import as_principal

__all__ = ["CheckBody", "CheckOut", "TrustedCaOut", "router"]

router = APIRouter(route_class=ApiRoute, tags=["trust"])


class CheckBody(BaseModel):
    certificate: str
    purpose: Literal["client", "server"] = "client"
    name: str | None = None
    service: Literal["admin-https", "sip-tls"] = "admin-https"
    chain: str | None = None
    regex: str | None = None
    format: str | None = None


class TrustedCaOut(Out):
    fingerprint: str
    subject: str
    issuer: str
    not_before: Timestamp
    not_after: Timestamp
    origin: str


class TrustAddOut(Out):
    added: list[TrustedCaOut]
    skipped: list[str]
    warnings: list[str]
    crls: list[str] = Field(description="CRLs found in the file and stored")


class TrustedCaShown(Out):
    pem: str
    text: str


class RemovedOut(Out):
    removed: list[str] = Field(description="the subjects of the CAs removed")


class CheckStep(Out):
    check: str
    outcome: str
    text: str


class CertificateReportOut(Out):
    role: str = Field(description="peer, intermediate or anchor")
    subject: str
    issuer: str
    serial: str
    not_after: Timestamp
    status: str
    checks: list[CheckStep]


class CheckOut(Out):
    service: str
    valid: bool
    code: str | None
    reason: str
    validated_at: Timestamp | None
    failed_index: int | None
    certificates: list[CertificateReportOut]
    username: str | None = Field(
        default=None, description="present when a username was (or could not be) mapped"
    )
    groups: dict[str, str] | None = Field(
        default=None, description="the named groups of the mapping, with the username"
    )
    username_error: str | None = Field(
        default=None, description="why no username could be mapped, when none could"
    )


@router.get("/trusted-cas", response_model=list[TrustedCaOut])
def trusted(request: Request, _who: Reader) -> list[dict[str, object]]:
    """List the trusted CAs.

    The trusted CA list: fingerprint, subject, expiry and origin (user or factory)."""
    return [e.as_dict() for e in node_of(request).trusted_cas.entries()]


@router.post("/trusted-cas", response_model=TrustAddOut)
def trusted_add(request: Request, body: Data, who: Writer) -> dict[str, Any]:
    """Add trusted CAs.

    Appends the CA certificates of a file (PEM bundle, DER, PKCS#7); duplicates are
    skipped, non-CA certificates refuse the whole file. CRLs inside are stored as
    embedded CRLs."""
    with as_principal(who):
        report = node_of(request).trusted_cas.add(required(body.data, "CA file"))
    return {
        "added": [i.as_dict() for i in report.added],
        "skipped": report.skipped,
        "warnings": report.warnings,
        "crls": report.crls,
    }


@router.get("/trusted-cas/{fingerprint}", response_model=TrustedCaShown)
def trusted_show(request: Request, fingerprint: str, _who: Reader) -> dict[str, Any]:
    """Show a trusted CA.

    The CA certificate decoded; a unique fingerprint prefix of 8 or more hex digits is
    enough."""
    cert = node_of(request).trusted_cas.certificate(fingerprint)
    return {
        "pem": cert.public_bytes(serialization.Encoding.PEM).decode(),
        "text": certificate_text(cert),
    }


@router.delete("/trusted-cas/{fingerprint}", response_model=RemovedOut)
def trusted_remove(request: Request, fingerprint: str, who: Writer) -> dict[str, Any]:
    """Remove a trusted CA.

    Removes the CA from the trusted list; listeners stop accepting what only it vouched
    for at once."""
    with as_principal(who):
        return {"removed": node_of(request).trusted_cas.remove([fingerprint])}


@router.post("/trusted-cas/reset", response_model=list[TrustedCaOut])
def trusted_reset(request: Request, who: Writer) -> list[dict[str, object]]:
    """Reset the trusted CA list.

    Restores the factory list."""
    with as_principal(who):
        return [e.as_dict() for e in node_of(request).trusted_cas.reset()]


@router.post("/check", response_model=CheckOut)
@reads_only
def check(request: Request, body: CheckBody, _who: Reader) -> dict[str, Any]:
    """Check a client certificate.

    Validates a certificate as a service would: trust, revocation per the service's
    policy, then the username mapping; every check is listed. Changes nothing."""
    report = node_of(request).client_check.check(
        required(body.certificate, "certificate"),
        purpose=body.purpose,
        name=body.name,
        service=body.service,
        chain=blob(body.chain, "chain"),
        regex=body.regex,
        fmt=body.format,
    )
    return report.as_dict()
