"""The ACME server's HTTP side: ``/acme/<CA>/...`` on the admin listener (RFC 8555).

ACME requests authenticate themselves (JWS signed by the account key), so these routes take
no login, session or CSRF token. The route only translates: it reads the request, hands it
to ``AcmeServer.handle`` on a worker thread (signing and the store never block the event
loop) and sends back the answer as it is, problem documents included.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from certway.services.acme_server import AcmeRequest
from certway.web.context import client_address

__all__ = ["router"]

router = APIRouter()


@router.api_route(
    "/acme/{ca}/{path:path}",
    methods=["GET", "HEAD", "POST"],
    include_in_schema=False,
    response_class=Response,
)
async def acme(request: Request, ca: str, path: str) -> Response:
    body = await request.body() if request.method == "POST" else b""
    base = str(request.base_url).rstrip("/") + f"/acme/{ca}"
    acme_request = AcmeRequest(
        ca=ca,
        method=request.method,
        path=path,
        base=base,
        content_type=request.headers.get("content-type"),
        body=body,
        address=client_address(request),
    )
    reply = await run_in_threadpool(request.app.state.web.node.acme_server.handle, acme_request)
    return Response(
        content=reply.body if request.method != "HEAD" else b"",
        status_code=reply.status,
        media_type=reply.content_type,
        headers=reply.headers,
    )
