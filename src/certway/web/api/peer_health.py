"""``/cluster``: the peers' mutual-TLS health endpoint and the cluster TLS verification setting.

``GET /cluster/health`` is called by the other peers (``tls.peer_check``) presenting their
server certificate as client certificate: it is judged through the node's one validation
path; with verification ``enforce`` a certificate that fails is refused (403), with
``permissive`` the answer says it failed.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel

from certway.web.api.common import Out, node_of
from certway.web.api.routing import PEER_ERRORS, ApiRoute, Reader, Writer
from certway.web.context import AuthRequired, CertificateRefused, as_principal, peer_certificate

__all__ = ["router"]

router = APIRouter(route_class=ApiRoute, tags=["cluster"])
# The health endpoint authenticates by the caller's certificate alone (not an account): the
# plain route class, not ApiRoute's account login. Included in ``router`` below.
_health = APIRouter()

Mode = Literal["permissive", "enforce"]


class PeerHealthOut(Out):
    fqdn: str
    verification: Mode
    caller_valid: bool
    reason: str


class VerificationOut(Out):
    verification: Mode


class VerificationBody(BaseModel):
    verification: Mode


@_health.get(
    "/cluster/health",
    response_model=PeerHealthOut,
    responses=PEER_ERRORS,
    summary="A cluster peer's health check.",
    description="Mutual TLS: the caller is another peer, authenticated by its server "
    "certificate alone (no account); under 'enforce' a certificate that fails is refused.",
)
def peer_health(request: Request) -> dict[str, Any]:
    """A peer's health check: authenticated by the caller's certificate only."""
    node = node_of(request)
    pem = peer_certificate(request)
    if pem is None:
        raise AuthRequired("log in first")  # a peer presents its server certificate
    mode = node.cluster_tls.verification()
    judgement = node.cluster_tls.judge(pem, as_server_for=None)
    if not judgement.valid and mode == "enforce":
        raise CertificateRefused(f"cluster TLS verification is enforced: {judgement.reason}")
    return {
        "fqdn": node.settings.get().fqdn,
        "verification": mode.value,
        "caller_valid": judgement.valid,
        "reason": judgement.reason,
    }


@router.get("/cluster/tls-verification", response_model=VerificationOut)
def verification(request: Request, _who: Reader) -> dict[str, Any]:
    """Show the cluster TLS verification.

    Any account may read it. How the cluster peers judge each other's certificates:
    permissive (a certificate that fails is reported) or enforce (it is refused)."""
    return {"verification": node_of(request).cluster_tls.verification().value}


@router.put("/cluster/tls-verification", response_model=VerificationOut)
def verification_set(request: Request, body: VerificationBody, who: Writer) -> dict[str, Any]:
    """Set the cluster TLS verification.

    Needs a read-write account. Permissive reports a peer whose certificate fails, enforce
    refuses it (check the peers first: an enforced failure cuts the peer off). Answers the
    mode now in force."""
    with as_principal(who):
        return {"verification": node_of(request).cluster_tls.set_verification(body.verification)}


router.include_router(_health)
