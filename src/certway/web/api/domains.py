"""``/domains``: domain certificates (one certificate and CSR per hosted domain)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from certway.web.api.common import Out, Timestamp, node_of
from certway.web.api.identity import CsrRequest, IdentityOut, PendingCsrOut, Upload, upload
from certway.web.api.routing import ApiRoute, Reader, Writer
from certway.web.context import as_principal

__all__ = ["DomainBody", "DomainDetailOut", "DomainOut", "router"]

router = APIRouter(route_class=ApiRoute, tags=["domains"])


class DomainBody(BaseModel):
    name: str


class DomainOut(Out):
    """A domain in the list: whether it has a certificate (and its expiry), whether a CSR is
    pending."""

    name: str
    has_certificate: bool = Field(description="false until a certificate is uploaded")
    not_after: Timestamp | None = Field(description="the certificate's expiry; null without one")
    subject: str | None = Field(description="the certificate's subject; null without one")
    pending_csr: bool = Field(description="whether a CSR is pending (GET the domain for it)")


_CERT = "absent until the domain has a certificate"


class DomainDetailOut(Out):
    """One domain: its active certificate once it has one (the fields of a node certificate,
    absent until then), and its pending CSR. A domain made with the CSR flow has a pending
    CSR and no certificate until the signed certificate is uploaded."""

    kind: str = Field(description="always domain")
    name: str = Field(description="the domain")
    has_certificate: bool = Field(description="false until a certificate is uploaded")
    pending_csr: PendingCsrOut | None = Field(
        description="the pending CSR (a first one, or a renewal beside the certificate); "
        "null when none is pending"
    )
    version: int | None = Field(None, description=f"the certificate's version; {_CERT}")
    subject: str | None = Field(None, description=f"the certificate's subject; {_CERT}")
    issuer: str | None = Field(None, description=f"the certificate's issuer; {_CERT}")
    serial: str | None = Field(None, description=f"hexadecimal; {_CERT}")
    not_before: Timestamp | None = Field(None, description=f"valid from; {_CERT}")
    not_after: Timestamp | None = Field(None, description=f"expiry; {_CERT}")
    sha256_fingerprint: str | None = Field(None, description=f"of the certificate; {_CERT}")
    alt_names: list[str] | None = Field(None, description=f"the certificate's; {_CERT}")
    source: str | None = Field(None, description=f"how the certificate came; {_CERT}")
    warnings: list[str] | None = Field(None, description=f"the certificate's; {_CERT}")
    temporary: bool | None = Field(None, description=f"the factory CA's temporary one; {_CERT}")
    chain: list[str] | None = Field(None, description=f"subjects of the chain served; {_CERT}")
    pem: str | None = Field(None, description=f"the certificate and its chain; {_CERT}")
    text: str | None = Field(
        None, description=f"the certificate as `openssl x509 -text` shows it; {_CERT}"
    )


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


@router.get("/domains/{name}", response_model=DomainDetailOut)
def domain_get(request: Request, name: str, _who: Reader) -> dict[str, Any]:
    """Show a domain.

    Whether the domain has a certificate yet and its pending CSR, if any; once it has a
    certificate, the certificate decoded (subject, issuer, validity, names, chain, as
    openssl -text would). Only an unknown domain is not found."""
    return node_of(request).identities.domain_detail(name).as_dict(with_text=True)


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
