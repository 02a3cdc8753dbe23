"""``POST /local-ca/{name}/issue``: a new key and a certificate for it in one call, the key
handed over once inside a PKCS#12 protected by the caller's passphrase (never in clear, never
stored). The same service as ``certway ca issue`` and the local CA page's PKCS#12 form."""

from __future__ import annotations

import base64
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from certway.errors import PolicyViolation
from certway.pki.text import serial_hex
from certway.web.api.common import Days, Out, Timestamp, node_of
from certway.web.api.routing import ApiRoute, Writer
from certway.web.context import as_principal

__all__ = ["IssueBody", "IssuedPkcs12Out", "router"]

router = APIRouter(route_class=ApiRoute, tags=["local CA"])

MIN_PASSPHRASE = 8


class IssueBody(BaseModel):
    common_name: str
    alt_names: list[str] = Field(default=[], description="DNS:name or IP:address")
    subject: str = Field(default="", description='other subject fields, e.g. "/C=GB/O=Acme"')
    profile: Literal["server-client", "server", "client"] = "client"
    key_type: str = "ec:p256"
    days: Days = 365
    passphrase: str = Field(description="protects the PKCS#12 (8 characters or more)")


class IssuedPkcs12Out(Out):
    serial: str = Field(description="hexadecimal")
    subject: str
    not_after: Timestamp
    pem: str = Field(description="the certificate and its CA chain (without the root), PEM")
    pkcs12: str = Field(description="base64 of the PKCS#12: key, certificate and chain")


@router.post(
    "/local-ca/{name}/issue",
    response_model=IssuedPkcs12Out,
    summary="Issue a new key and certificate as PKCS#12",
)
def ca_issue(request: Request, name: str, body: IssueBody, who: Writer) -> dict[str, Any]:
    """Issue a new key and certificate as PKCS#12.

    The key is generated here and leaves certway only inside the PKCS#12, encrypted under
    the passphrase given; it is never stored.
    """
    passphrase = body.passphrase.encode()
    if len(passphrase) < MIN_PASSPHRASE:
        raise PolicyViolation(
            "passphrase", f"the passphrase must be at least {MIN_PASSPHRASE} characters long"
        )
    with as_principal(who):
        issued = node_of(request).local_ca.issue_with_key(
            name,
            body.common_name,
            alt_names=tuple(body.alt_names),
            subject=body.subject,
            profile=body.profile,
            key_type=body.key_type,
            days=body.days,
        )
    cert = issued.certificate
    return {
        "serial": serial_hex(cert.serial_number),
        "subject": cert.subject.rfc4514_string(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "pem": issued.pem(with_chain=True).decode(),
        "pkcs12": base64.b64encode(issued.pkcs12(passphrase, body.common_name)).decode(),
    }
