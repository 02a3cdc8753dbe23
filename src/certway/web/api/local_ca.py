"""``/local-ca``: the node's own certificate authorities, what they issue and revoke."""

from __future__ import annotations

from typing import Any, Literal

from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from certway.errors import DecodeError
from certway.pki.text import serial_hex
from certway.services.local_ca import MAX_BATCH, CaInfo, CaSettings, SignResult
from certway.services.node import Node
from certway.web.api.common import (
    PEM_FILE,
    Days,
    Out,
    Timestamp,
    blob,
    file_answer,
    node_of,
    pem_download,
    required,
)
from certway.web.api.routing import ApiRoute, Reader, Writer
from certway.web.context import Principal, as_principal

__all__ = ["CaOut", "router"]

router = APIRouter(route_class=ApiRoute, tags=["local CA"])


class RootBody(BaseModel):
    name: str
    subject: str
    key_type: str = "ec:p256"
    days: Days = 3650
    crl_urls: list[str] = []
    ocsp_url: str | None = None
    token: str | None = Field(
        default=None, description="a registered PKCS#11 token that generates and keeps the key"
    )


class IntermediateBody(RootBody):
    parent: str
    days: Days = 1825


class SignBody(BaseModel):
    csr: str
    profile: Literal["server-client", "server", "client", "sub-ca"] = "server-client"
    days: Days = 365
    chain: bool = False


class SignBatchBody(BaseModel):
    csrs: list[str] = Field(
        max_length=MAX_BATCH, description=f"1 to {MAX_BATCH} CSRs, each PEM or base64 of DER"
    )
    profile: Literal["server-client", "server", "client", "sub-ca"] = "server-client"
    days: Days = 365
    chain: bool = False


class RevokeBody(BaseModel):
    serial: str
    reason: str | None = None


class CaOut(Out):
    name: str
    kind: str = Field(description="root or intermediate")
    parent: str | None
    subject: str
    not_after: Timestamp
    key: str
    sha256_fingerprint: str
    crl_urls: list[str]
    ocsp_url: str | None
    issued: int
    revoked: int
    crl_number: int


class SignedOut(Out):
    serial: str = Field(description="hexadecimal")
    not_after: Timestamp
    pem: str


class BatchItemOut(Out):
    index: int = Field(description="position of the CSR in the request, from 0")
    serial: str | None = Field(None, description="hexadecimal; absent when refused")
    not_after: Timestamp | None = None
    pem: str | None = None
    error: str | None = Field(None, description="why this CSR was not signed")


class SignBatchOut(Out):
    signed: int
    refused: int
    results: list[BatchItemOut] = Field(description="one per CSR, in the request's order")


class RevokedOut(Out):
    crl_number: int = Field(description="the number of the CRL published with the revocation")
    entries: int


class IssuedCertificateOut(Out):
    serial: str
    subject: str
    alt_names: str
    profile: str
    not_after: Timestamp
    status: str = Field(description="valid, expired or revoked")
    revoked_at: Timestamp | None
    reason: str | None


def _ca(info: CaInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "kind": info.kind,
        "parent": info.parent,
        "subject": info.subject,
        "not_after": info.not_after.isoformat(),
        "key": info.key,
        "sha256_fingerprint": info.fingerprint,
        "crl_urls": list(info.crl_urls),
        "ocsp_url": info.ocsp_url,
        "issued": info.issued,
        "revoked": info.revoked,
        "crl_number": info.crl_number,
    }


@router.get("/local-ca", response_model=list[CaOut])
def cas(request: Request, _who: Reader) -> list[dict[str, Any]]:
    """List the local CAs.

    Every certificate authority of this node (roots, intermediates, imported CAs) with
    its key, publication URLs, counts of issued and revoked certificates and CRL number."""
    return [_ca(c) for c in node_of(request).local_ca.cas()]


@router.post("/local-ca/roots", status_code=201, response_model=CaOut)
def ca_root(request: Request, body: RootBody, who: Writer) -> dict[str, Any]:
    """Create a root CA.

    A self-signed root CA with a new key (sealed in the store) and its first CRL."""
    settings = CaSettings(tuple(body.crl_urls), body.ocsp_url)
    with as_principal(who):
        info = node_of(request).local_ca.create_root(
            body.name,
            body.subject,
            key_type=body.key_type,
            days=body.days,
            settings=settings,
            token=body.token,
        )
    return _ca(info)


@router.post("/local-ca/intermediates", status_code=201, response_model=CaOut)
def ca_intermediate(request: Request, body: IntermediateBody, who: Writer) -> dict[str, Any]:
    """Create an intermediate CA.

    An intermediate CA (path length 0) signed by a local CA of this node."""
    settings = CaSettings(tuple(body.crl_urls), body.ocsp_url)
    with as_principal(who):
        info = node_of(request).local_ca.create_intermediate(
            body.name,
            body.parent,
            body.subject,
            key_type=body.key_type,
            days=body.days,
            settings=settings,
            token=body.token,
        )
    return _ca(info)


@router.get("/local-ca/{name}/certificate", **PEM_FILE)
def ca_certificate(request: Request, name: str, _who: Reader) -> Response:
    """Download a CA certificate.

    The CA certificate and the certificates above it, as a PEM file."""
    chain = node_of(request).local_ca.chain(name)
    text = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain).decode()
    return pem_download(text, f"{name}.pem")


@router.post("/local-ca/{name}/sign", response_model=SignedOut)
async def ca_sign(request: Request, name: str, body: SignBody, who: Writer) -> dict[str, Any]:
    """Sign a CSR.

    Checks a CSR (PEM or base64 of DER) and issues a certificate with the given profile
    and validity; it is recorded in the CA's inventory and audited. The fast path for
    automation: use an API token (Authorization: Bearer)."""
    # Answered by certway.web.api.sign_endpoint ahead of the routing, with sign_answer.
    return await run_in_threadpool(sign_answer, node_of(request), name, body, who)


def sign_answer(node: Node, name: str, body: SignBody, who: Principal) -> dict[str, Any]:
    """The route's work: ``body``'s CSR signed by CA ``name`` for ``who``."""
    with as_principal(who):
        result = node.local_ca.sign(
            name, required(body.csr, "CSR"), profile=body.profile, days=body.days
        )
    return signed_answer(result, body)


def signed_answer(result: SignResult, body: SignBody) -> dict[str, Any]:
    """The answer to a sign request ``body`` that was signed as ``result``."""
    cert = result.certificate
    return {
        "serial": serial_hex(cert.serial_number),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "pem": result.pem(with_chain=body.chain).decode(),
    }


@router.post("/local-ca/{name}/sign-batch", response_model=SignBatchOut)
async def ca_sign_batch(
    request: Request, name: str, body: SignBatchBody, who: Writer
) -> dict[str, Any]:
    """Sign many CSRs at once.

    Up to 1000 CSRs signed in one transaction with the same profile and validity. Each CSR
    gets its own result, in order: the certificate, or the reason it was refused (the others
    are signed all the same). An unknown CA, profile or validity refuses the whole batch."""
    return await run_in_threadpool(_sign_batch, node_of(request), name, body, who)


def _sign_batch(node: Node, name: str, body: SignBatchBody, who: Principal) -> dict[str, Any]:
    with as_principal(who):
        items = node.local_ca.sign_batch(
            name,
            [_csr_bytes(text, number) for number, text in enumerate(body.csrs)],
            profile=body.profile,
            days=body.days,
        )
    results: list[dict[str, Any]] = []
    for item in items:
        if item.result is None:
            results.append({"index": item.index, "error": item.error})
            continue
        cert = item.result.certificate
        results.append(
            {
                "index": item.index,
                "serial": serial_hex(cert.serial_number),
                "not_after": cert.not_valid_after_utc.isoformat(),
                "pem": item.result.pem(with_chain=body.chain).decode(),
            }
        )
    signed = sum(1 for item in items if item.result is not None)
    return {"signed": signed, "refused": len(items) - signed, "results": results}


def _csr_bytes(text: str, number: int) -> bytes:
    """A CSR's bytes; text that is neither PEM nor base64 is passed on as it is, so that its
    item, not the whole batch, reports it unreadable."""
    try:
        found = blob(text, f"CSR {number}")
    except DecodeError:
        found = None
    return found if found is not None else text.encode("utf-8", "replace")


@router.post("/local-ca/{name}/revoke", response_model=RevokedOut)
def ca_revoke(request: Request, name: str, body: RevokeBody, who: Writer) -> dict[str, Any]:
    """Revoke a certificate.

    Records the revocation and publishes a new CRL in the same transaction; every
    service refuses the certificate at once."""
    with as_principal(who):
        crl = node_of(request).local_ca.revoke(name, body.serial, reason=body.reason)
    return {"crl_number": crl.number, "entries": crl.entries}


@router.get("/local-ca/{name}/issued", response_model=list[IssuedCertificateOut])
def ca_issued(
    request: Request, name: str, _who: Reader, search: str | None = None
) -> list[dict[str, Any]]:
    """List issued certificates.

    The CA's inventory: serial, subject, names, profile, expiry and status (valid,
    expired, revoked); search filters on subject, names and serial."""
    return [
        {
            "serial": i.serial,
            "subject": i.subject,
            "alt_names": i.alt_names,
            "profile": i.profile,
            "not_after": i.not_after.isoformat(),
            "status": i.status,
            "revoked_at": i.revoked_at.isoformat() if i.revoked_at else None,
            "reason": i.reason,
        }
        for i in node_of(request).local_ca.issued(name, search=search)
    ]


@router.get("/local-ca/{name}/crl", **file_answer("application/pkix-crl", "DER CRL"))
def ca_crl(request: Request, name: str, who: Reader) -> Response:
    """Download the CA's CRL.

    The current CRL (DER), re-signed with the next number when revocations changed or
    half its life has passed."""
    with as_principal(who):
        crl = node_of(request).local_ca.current_crl(name)
    return Response(
        crl.der,
        media_type="application/pkix-crl",
        headers={"Content-Disposition": f'attachment; filename="{name}.crl"'},
    )
