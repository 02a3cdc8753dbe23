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

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from certway.web.context import WebContext, authenticate

__all__ = ["DOCS_CSP", "router"]

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
