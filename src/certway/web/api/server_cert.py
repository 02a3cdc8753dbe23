"""``/server-cert``: the node's server certificate, its CSR and its version history."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from certway.web.api.common import PEM_FILE, Version, node_of, pem_download
from certway.web.api.identity import (
    CsrRequest,
    IdentityOut,
    IdentityTextOut,
    PendingCsrOut,
    PreviewOut,
    Upload,
    VersionOut,
    upload,
)
from certway.web.api.routing import ApiRoute, Reader, Writer, reads_only
from certway.web.context import as_principal

__all__ = ["router"]

router = APIRouter(route_class=ApiRoute, tags=["server certificate"])


@router.get("/server-cert", response_model=IdentityTextOut)
def server_get(request: Request, _who: Reader) -> dict[str, Any]:
    """Show the server certificate.

    The active server certificate decoded (as openssl -text would), with its chain,
    expiry and warnings."""
    return node_of(request).identities.info("server").as_dict(with_text=True)


@router.get("/server-cert/pem", **PEM_FILE)
def server_pem(request: Request, _who: Reader) -> Response:
    """Download the server certificate.

    The active server certificate and its chain as a PEM file."""
    return pem_download(node_of(request).identities.info("server").pem, "server-certificate.pem")


@router.post("/server-cert", response_model=IdentityOut)
def server_upload(request: Request, body: Upload, who: Writer) -> dict[str, Any]:
    """Upload a server certificate.

    A certificate for the pending CSR (or with its key) and its chain. Every upload
    check applies: errors refuse it and change nothing, warnings are returned. It is
    live at once, without restart."""
    return upload(request, "server", "", body, who)


@router.get("/server-cert/history", response_model=list[VersionOut])
def server_history(request: Request, _who: Reader) -> list[dict[str, Any]]:
    """List the server certificate history.

    Every certificate the node has had, newest first, with its version number."""
    return [v.as_dict() for v in node_of(request).identities.history("server")]


@router.post("/server-cert/restore/{version}", response_model=IdentityOut)
def server_restore(request: Request, version: Version, who: Writer) -> dict[str, Any]:
    """Restore an earlier server certificate.

    Makes a version from the history active again, as a new version."""
    with as_principal(who):
        return node_of(request).identities.restore("server", "", version).as_dict()


@router.get("/server-cert/csr", response_model=PendingCsrOut | None)
def server_csr(request: Request, _who: Reader) -> dict[str, Any] | None:
    """Show the pending server CSR.

    The pending certificate signing request, or null when there is none."""
    pending = node_of(request).identities.pending_csr("server")
    return pending.as_dict() if pending else None


@router.post("/server-cert/csr/preview", response_model=PreviewOut)
@reads_only
def server_csr_preview(request: Request, body: CsrRequest, _who: Reader) -> dict[str, Any]:
    """Preview a server CSR's names.

    The alternative names the CSR would carry, as Expressway's 'Alternative name as it
    will appear', without creating anything."""
    return {"alt_names": node_of(request).identities.preview("server", "", body.options())}


@router.post("/server-cert/csr", response_model=PendingCsrOut)
def server_csr_generate(request: Request, body: CsrRequest, who: Writer) -> dict[str, Any]:
    """Generate a server CSR.

    A new key (sealed in the store, never exported) and a CSR with every field of the
    Expressway CSR form; it replaces any pending CSR."""
    with as_principal(who):
        return node_of(request).identities.generate_csr("server", "", body.options()).as_dict()


@router.delete("/server-cert/csr", status_code=204)
def server_csr_discard(request: Request, who: Writer) -> None:
    """Discard the pending server CSR.

    The pending CSR and its key are deleted."""
    with as_principal(who):
        node_of(request).identities.discard_csr("server")
