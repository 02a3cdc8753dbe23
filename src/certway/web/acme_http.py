"""The ACME HTTP-01 responder (``certway serve --acme-http-listen``): plain HTTP, no
authentication, and nothing but ``GET|HEAD /.well-known/acme-challenge/<token>`` answered with
the key authorization of a challenge being validated (RFC 8555 §8.3). Every other request,
and every unknown token, is a 404."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from certway.services.node import Node

__all__ = ["CHALLENGE_PREFIX", "create_acme_http_app"]

CHALLENGE_PREFIX = "/.well-known/acme-challenge/"
_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _not_found() -> Response:
    return PlainTextResponse("not found\n", status_code=404)


def create_acme_http_app(node: Node) -> Starlette:
    async def answer(request: Request) -> Response:
        path = request.url.path
        if request.method not in ("GET", "HEAD") or not path.startswith(CHALLENGE_PREFIX):
            return _not_found()
        token = path.removeprefix(CHALLENGE_PREFIX)
        if not token or len(token) > 256 or not set(token) <= _TOKEN_CHARS:
            return _not_found()
        validation = await run_in_threadpool(node.acme.http_challenge, token)
        if validation is None:
            return _not_found()
        return PlainTextResponse(validation)

    async def anything(_request: Request) -> Response:
        return _not_found()

    return Starlette(
        routes=[
            Route("/.well-known/acme-challenge/{token:path}", answer, methods=["GET", "HEAD"]),
            Route(
                "/{rest:path}",
                anything,
                methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            ),
        ]
    )
