"""The API's own description for authenticated readers: ``/api/v1/openapi.json`` and the
Swagger UI page ``/api/v1/docs``.

Both need an account like every other API route (any valid credential, read-only is enough:
HTTP Basic, the client certificate in certificate-based authentication, or a UI session, so a
logged-in administrator can open the page from the browser). The page loads nothing from
outside: the Swagger UI files come from the ``fastapi-offline`` package and are served here,
its start-up script is a file of ours (no inline script), and a Content-Security-Policy
allowing only this server keeps it so.
"""

from __future__ import annotations

import functools
import importlib.resources
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from certway.web.context import WebContext, authenticate

__all__ = [
    "DOCS_CSP",
    "PROBLEM_SCHEMAS",
    "SECURITY_SCHEMES",
    "TAGS",
    "describe_api",
    "router",
]

DOCS_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
"""Only this server: scripts, styles, the schema request (``img-src`` also allows the
``data:`` icons inside Swagger UI's stylesheet, which are no requests)."""

_PREFIX = "/api/v1/docs"
_PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>certway admin API</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{_PREFIX}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{_PREFIX}/swagger-ui-bundle.js"></script>
<script src="{_PREFIX}/certway-docs.js"></script>
</body>
</html>
"""
_ASSETS: dict[str, tuple[str, str]] = {
    # name served → (package, media type)
    "swagger-ui-bundle.js": ("fastapi_offline", "text/javascript"),
    "swagger-ui.css": ("fastapi_offline", "text/css"),
    "certway-docs.js": ("certway.web", "text/javascript"),
}


DESCRIPTION = """The admin REST API of a certway node: everything the command line and the web
UI do, with the same checks and messages. Errors are `application/problem+json` (RFC 9457).

**Authentication** (any one): an API token (`Authorization: Bearer certway_…`, made with
`certway api-token create` or `POST /api/v1/api-tokens`; the fast way for automation), HTTP
Basic with an admin account (for people; a verified password is remembered for a short
while), or, in certificate-based authentication mode, the TLS client certificate alone.
Read-only accounts and tokens get 403 on every change."""

TAGS: list[dict[str, str]] = [
    {"name": "status", "description": "Alarms, node status and the audit log."},
    {"name": "node", "description": "Node settings: FQDN, role, cluster."},
    {"name": "server certificate", "description": "The server certificate, its CSR, history."},
    {"name": "client certificate", "description": "The identity for outbound TLS."},
    {"name": "domains", "description": "Per-domain certificates chosen by SNI."},
    {"name": "trust", "description": "The trusted CA list and certificate checks."},
    {"name": "revocation", "description": "CRLs, CRL sources and revocation policies."},
    {"name": "local CA", "description": "The node's own CAs: create, sign, revoke, CRLs."},
    {"name": "admin", "description": "Admin accounts and the client-certificate policy."},
    {"name": "API tokens", "description": "Bearer tokens for automation."},
    {"name": "SIP TLS", "description": "The SIP TLS listener and its access rules."},
    {"name": "zones", "description": "Neighbour zones checked over SIP TLS."},
    {"name": "tls", "description": "TLS profiles of each service."},
    {"name": "tokens", "description": "PKCS#11 tokens (HSMs) that keep local CAs' keys."},
    {"name": "syslog", "description": "Remote syslog receivers of audit events and alarms."},
    {"name": "ldap", "description": "LDAP admin authentication: directory, groups, source."},
    {"name": "acme", "description": "The ACME client: account, signing, renewal."},
    {"name": "backup", "description": "Encrypted backups of the node and their restore."},
    {"name": "cluster", "description": "Cluster peers: TLS verification and health checks."},
]

SECURITY_SCHEMES: dict[str, dict[str, str]] = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API token (certway api-token create); read-only or read-write.",
    },
    "basic": {
        "type": "http",
        "scheme": "basic",
        "description": "An admin account's name and password (off in certificate-based "
        "authentication mode).",
    },
    "mutualTLS": {
        "type": "mutualTLS",
        "description": "A TLS client certificate: required in certificate-validation mode "
        "(with one of the other schemes), sufficient in certificate-based authentication "
        "mode (the certificate names the account).",
    },
}


PROBLEM_SCHEMAS: dict[str, dict[str, Any]] = {
    "Problem": {
        "title": "Problem",
        "description": "An error answer (RFC 9457 problem details): what the server sends "
        "for every refused or failed request.",
        "type": "object",
        "properties": {
            "type": {"type": "string", "enum": ["about:blank"]},
            "title": {
                "type": "string",
                "description": "the kind of error: Unauthorized, Refused, Not found, Conflict…",
            },
            "status": {"type": "integer", "description": "the HTTP status of the answer"},
            "detail": {
                "type": "string",
                "description": "what went wrong and, where it helps, what to do (the message "
                "the command line prints for the same request)",
            },
            "code": {
                "type": "string",
                "description": "the name of the rule a refused request broke, when it has one "
                "(csr-mismatch, expired, wildcard…)",
            },
            "errors": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/ProblemField"},
                "description": "an invalid request (422): each part that does not match "
                "this description",
            },
        },
        "required": ["type", "title", "status", "detail"],
        "additionalProperties": False,
    },
    "ProblemField": {
        "title": "ProblemField",
        "description": "A part of an invalid request and what is wrong with it.",
        "type": "object",
        "properties": {
            "type": {"type": "string", "description": "the kind of mistake (missing, …)"},
            "loc": {
                "type": "array",
                "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                "description": "where: body, query or path, then the field",
            },
            "msg": {"type": "string"},
        },
        "required": ["type", "loc", "msg"],
        "additionalProperties": False,
    },
}
"""The error answer's schema, in the document's components (FastAPI's own
HTTPValidationError describes an answer this API never sends)."""


def _describe_errors(schema: dict[str, Any]) -> None:
    """The error answers' schema (``PROBLEM_SCHEMAS``), which every operation's error answers
    refer to (``routing.ApiRoute``), in place of FastAPI's validation error."""
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas.update(PROBLEM_SCHEMAS)


def describe_api(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document of ``app``: its operations with their answers, errors included
    (problem+json, ``routing.error_responses``), the tags and the security schemes (any one
    scheme authenticates every operation)."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=DESCRIPTION,
            routes=app.routes,
            tags=TAGS,
        )
        _describe_errors(schema)
        schema["components"]["securitySchemes"] = SECURITY_SCHEMES
        schema["security"] = [{name: []} for name in SECURITY_SCHEMES]
        app.openapi_schema = schema
    return app.openapi_schema


class DocsRoute(APIRoute):
    """Authenticates the reader before answering: HTTP Basic or the client certificate as
    on every API route, and also the UI's session (these routes only read)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def authenticated(request: Request) -> Response:
            context: WebContext = request.app.state.web
            await run_in_threadpool(authenticate, request, context, via="api", session=True)
            return await handler(request)

        return authenticated


router = APIRouter(route_class=DocsRoute, include_in_schema=False)


@functools.cache
def _asset(name: str) -> bytes:
    package, _media = _ASSETS[name]
    return (importlib.resources.files(package) / "static" / name).read_bytes()


def _served(name: str) -> Response:
    return Response(
        _asset(name),
        media_type=_ASSETS[name][1],
        headers={"Cache-Control": "private, max-age=3600", "Content-Security-Policy": DOCS_CSP},
    )


@router.get("/openapi.json")
def openapi_document(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi(), headers={"Cache-Control": "no-store"})


@router.get("/docs")
def docs_page() -> HTMLResponse:
    return HTMLResponse(
        _PAGE, headers={"Content-Security-Policy": DOCS_CSP, "Cache-Control": "no-store"}
    )


@router.get("/docs/swagger-ui-bundle.js")
def swagger_script() -> Response:
    return _served("swagger-ui-bundle.js")


@router.get("/docs/swagger-ui.css")
def swagger_style() -> Response:
    return _served("swagger-ui.css")


@router.get("/docs/certway-docs.js")
def docs_script() -> Response:
    return _served("certway-docs.js")
