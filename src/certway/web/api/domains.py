"""``/domains``: domain certificates (one certificate and CSR per hosted domain)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from certway.web.api.common import Out, Timestamp, node_of
from certway.web.api.identity import CsrRequest, IdentityOut, PendingCsrOut, Upload, upload
from certway.web.api.routing import ApiRoute, Reader, Writer
from certway.web.context import as_principal

__all__ = ["DomainBody", "DomainOut", "router"]

router = APIRouter(route_class=ApiRoute, tags=["domains"])


class DomainBody(BaseModel):
    name: str


class DomainOut(Out):
    name: str
    has_certificate: bool
    not_after: Timestamp | None
    subject: str | None
    pending_csr: bool


@router.get("/domains", response_model=list[DomainOut])
def domains(request: Request, _who: Reader) -> list[dict[str, Any]]:
    """List the domain certificates.

    Every domain served with its own certificate (chosen by SNI), with its expiry."""
    return [d.as_dict() for d in node_of(request).identities.domains()]


@router.post("/domains", status_code=201, response_model=DomainOut)
def domain_add(request: Request, body: DomainBody, who: Writer) -> dict[str, Any]:
    """Add a domain.

    Registers a domain whose certificate is chosen by SNI; it serves the server
    certificate until one is uploaded."""
    with as_principal(who):
        return node_of(request).identities.add_domain(body.name).as_dict()


@router.delete("/domains/{name}", status_code=204)
def domain_remove(request: Request, name: str, who: Writer) -> None:
    """Remove a domain.

    The domain, its certificates and any pending CSR are removed; its SNI name falls
    back to the server certificate."""
    with as_principal(who):
        node_of(request).identities.remove_domain(name)


@router.get("/domains/{name}", response_model=IdentityOut)
def domain_get(request: Request, name: str, _who: Reader) -> dict[str, Any]:
    """Show a domain certificate.

    The domain's active certificate: subject, issuer, validity, names and chain."""
    return node_of(request).identities.info("domain", name).as_dict()


@router.post("/domains/{name}/certificate", response_model=IdentityOut)
def domain_upload(request: Request, name: str, body: Upload, who: Writer) -> dict[str, Any]:
    """Upload a domain certificate.

    A certificate for the domain's pending CSR (or with its key); the upload checks of
    the server certificate apply, and it is live at once."""
    return upload(request, "domain", name, body, who)


@router.get("/domains/{name}/csr", response_model=PendingCsrOut | None)
def domain_csr(request: Request, name: str, _who: Reader) -> dict[str, Any] | None:
    """Show the domain's pending CSR.

    The pending certificate signing request of the domain, or null when there is none."""
    pending = node_of(request).identities.pending_csr("domain", name)
    return pending.as_dict() if pending else None


@router.post("/domains/{name}/csr", response_model=PendingCsrOut)
def domain_csr_generate(
    request: Request, name: str, body: CsrRequest, who: Writer
) -> dict[str, Any]:
    """Generate a CSR for a domain.

    A new key (sealed in the store, never exported) and a CSR with the Expressway name
    rules; it replaces any pending CSR of the domain."""
    with as_principal(who):
        return node_of(request).identities.generate_csr("domain", name, body.options()).as_dict()


@router.delete("/domains/{name}/csr", status_code=204)
def domain_csr_discard(request: Request, name: str, who: Writer) -> None:
    """Discard the domain's pending CSR.

    The pending CSR and its key are deleted."""
    with as_principal(who):
        node_of(request).identities.discard_csr("domain", name)
