"""REST API ``/api/v1``: every feature of the node, with the same checks and messages as the
CLI (the same services raise the same errors; the app maps them to problem+json).

One router per OpenAPI tag, each with its request models and the response models that
describe what its routes answer. Certificates, keys, CRLs and bundles travel as text in JSON:
PEM, or base64 of DER. Reads need an account; changes need a read-write account (``Writer``,
see ``routing``).
"""

from __future__ import annotations

from fastapi import APIRouter

from certway.web.api import (
    acme,
    admin,
    api_tokens,
    backup,
    client_cert,
    cluster,
    domains,
    ldap,
    local_ca,
    local_ca_issue,
    node,
    peer_health,
    revocation,
    server_cert,
    sip,
    status,
    syslog,
    tls,
    tokens,
    trust,
    zones,
)

__all__ = ["router"]

router = APIRouter()
for _part in (
    status,
    node,
    server_cert,
    client_cert,
    domains,
    trust,
    revocation,
    local_ca,
    local_ca_issue,
    tokens,
    admin,
    sip,
    zones,
    syslog,
    tls,
    acme,
    backup,
    api_tokens,
    peer_health,
    cluster,
    ldap,
):
    router.include_router(_part.router)
