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
    return [d.as_dict() for d in node_of(request).identities.domains()]


@router.post("/domains", status_code=201, response_model=DomainOut)
def domain_add(request: Request, body: DomainBody, who: Writer) -> dict[str, Any]:
    with as_principal(who):
        return node_of(request).identities.add_domain(body.name).as_dict()


@router.delete("/domains/{name}", status_code=204)
def domain_remove(request: Request, name: str, who: Writer) -> None:
    with as_principal(who):
        node_of(request).identities.remove_domain(name)


@router.get("/domains/{name}", response_model=IdentityOut)
def domain_get(request: Request, name: str, _who: Reader) -> dict[str, Any]:
    return node_of(request).identities.info("domain", name).as_dict()


@router.post("/domains/{name}/certificate", response_model=IdentityOut)
def domain_upload(request: Request, name: str, body: Upload, who: Writer) -> dict[str, Any]:
    return upload(request, "domain", name, body, who)


@router.get("/domains/{name}/csr", response_model=PendingCsrOut | None)
def domain_csr(request: Request, name: str, _who: Reader) -> dict[str, Any] | None:
    pending = node_of(request).identities.pending_csr("domain", name)
    return pending.as_dict() if pending else None


@router.post("/domains/{name}/csr", response_model=PendingCsrOut)
def domain_csr_generate(
    request: Request, name: str, body: CsrRequest, who: Writer
) -> dict[str, Any]:
    with as_principal(who):
        return node_of(request).identities.generate_csr("domain", name, body.options()).as_dict()


@router.delete("/domains/{name}/csr", status_code=204)
def domain_csr_discard(request: Request, name: str, who: Writer) -> None:
    with as_principal(who):
        node_of(request).identities.discard_csr("domain", name)
