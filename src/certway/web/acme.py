"""The ACME server's HTTP side: ``/acme/<CA>/...`` on the admin listener (RFC 8555).

ACME requests authenticate themselves (JWS signed by the account key), so these paths take
no login, session or CSRF token. ``AcmeEndpoint`` is an ASGI layer in front of the admin
app: a request under ``/acme/`` is read (at most ``MAX_BODY`` bytes), handed to
``AcmeServer.handle`` on a worker thread (JWS checks, signing and the store never block the
event loop) and answered as the service says, problem documents included, with the admin
app's security headers; every other request goes on to the admin app. ACME clients poll, so
this path skips the admin app's routing and middleware.
"""

from __future__ import annotations

from anyio import to_thread
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from certway.services.acme_server import AcmeRequest, AcmeServer

__all__ = ["MAX_BODY", "PREFIX", "AcmeEndpoint"]

PREFIX = "/acme/"
MAX_BODY = 64 * 1024
"""Largest ACME request body accepted (a JWS with a CSR is a few KB); more gets 413."""


class AcmeEndpoint:
    def __init__(
        self, app: ASGIApp, *, server: AcmeServer, security_headers: dict[str, str]
    ) -> None:
        self.app = app
        self.server = server
        self.security_headers = [
            (k.lower().encode(), v.encode()) for k, v in security_headers.items()
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        ca, _, rest = path[len(PREFIX) :].partition("/")
        method = scope["method"]
        headers = Headers(scope=scope)
        body = b""
        if method == "POST":
            chunks: list[bytes] = []
            size = 0
            more = True
            while more:
                message = await receive()
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > MAX_BODY:
                    await self._send(send, 413, b"", [])
                    return
                chunks.append(chunk)
                more = message.get("more_body", False)
            body = b"".join(chunks)
        host = headers.get("host") or "localhost"
        client = scope.get("client")
        request = AcmeRequest(
            ca=ca,
            method=method,
            path=rest,
            base=f"{scope.get('scheme', 'https')}://{host}{PREFIX}{ca}",
            content_type=headers.get("content-type"),
            body=body,
            address=client[0] if client else None,
        )
        reply = await to_thread.run_sync(self.server.handle, request)
        extra = [(k.lower().encode(), v.encode()) for k, v in reply.headers.items()]
        if reply.content_type:
            extra.append((b"content-type", reply.content_type.encode()))
        await self._send(send, reply.status, b"" if method == "HEAD" else reply.body, extra)

    async def _send(
        self, send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
    ) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    *headers,
                    (b"content-length", str(len(body)).encode()),
                    *self.security_headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
