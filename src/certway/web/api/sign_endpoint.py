"""``POST /api/v1/local-ca/{name}/sign`` answered ahead of the admin app's routing.

Automation signs certificates one request after another, and for this request the admin app's
machinery (a dozen middleware layers, matching the path against every route, solving the
dependencies, two trips to a worker thread) cost more than the signature itself.
``SignEndpoint`` is an ASGI layer in front of the admin app, like the ACME server's: for a
JSON request of at most ``MAX_BODY`` bytes (a CSR is one or two) it reads the body and does in
one go exactly what the route does, with the same functions; any other request (larger,
chunked, another content type) goes on to the route itself, so no more than ``MAX_BODY``
bytes are ever held for a caller not yet authenticated.

The request is first tried on the event loop itself, without waiting (certway.waiting): the
two thread switches of a worker thread are a large share of its cost. What runs on the loop
is work of this process alone (checking and signing the CSR) and the write:

- on the embedded database (SQLite), a write without a busy timeout (WAL mode, no flush at
  commit; a checkpoint now and then flushes the log);
- on PostgreSQL, the write is one statement *awaited* on the loop's own connection
  (``LocalCA.record_on_loop``): the loop serves others until its answer arrives.

If any step would wait (the write lock held by another writer, a password to hash, a
PostgreSQL read, the network), it stops before changing anything and the request is answered
from the start on a worker thread:

- the caller is authenticated by ``api_principal`` (client certificate policy, API token or
  HTTP Basic) and must have read-write access (``require_write``) before the body is parsed;
- the body is validated by the route's own model (``SignBody``), the CSR signed by
  ``LocalCA.sign`` through the route's own function, the answer shaped by ``SignedOut``;
- every error is answered by the admin app's own exception handlers (problem+json), and
  every answer carries its security headers (its ``SecurityHeaders``).

The route stays declared in the app (``certway.web.api.local_ca.ca_sign``) for the API's
description, and answers the same should a request ever reach it.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from contextvars import copy_context
from typing import Any

from anyio import to_thread
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from certway.services.local_ca import PreparedSignature
from certway.waiting import WouldWait, without_waiting
from certway.web.api.common import node_of, required
from certway.web.api.local_ca import SignBody, SignedOut, sign_answer, signed_answer
from certway.web.api.routing import api_principal, require_write
from certway.web.context import Principal, as_principal

__all__ = ["MAX_BODY", "PATH", "SignEndpoint"]

PATH = re.compile(r"/api/v1/local-ca/(?P<name>[^/]+)/sign")
"""The path answered here (``{name}`` is one path segment, as in the route)."""

MAX_BODY = 64 * 1024
"""Largest body answered here (one CSR is a few KB); larger ones go to the route."""

log = logging.getLogger("certway.web")

Handler = Callable[[Request, Exception], Awaitable[Response] | Response]


class _Gone(Exception):
    pass


def _answered_here(headers: Headers) -> bool:
    """A JSON body whose Content-Length is given and at most ``MAX_BODY``."""
    length = headers.get("content-length")
    return (
        length is not None
        and length.isdigit()
        and int(length) <= MAX_BODY
        and _is_json(headers.get("content-type"))
    )


def _is_json(content_type: str | None) -> bool:
    """A JSON media type (``application/json``, ``application/*+json``), as FastAPI reads it."""
    if not content_type:
        return False
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _validated(body: bytes) -> SignBody:
    """The body as the route's model, or the route's 422 (same error types and locations as
    FastAPI gives: missing body, JSON decode error, model errors under ``body``)."""
    if not body:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ("body", exc.pos), "msg": "JSON decode error"}]
        ) from None
    except UnicodeDecodeError:
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ("body", 0), "msg": "JSON decode error"}]
        ) from None
    try:
        return SignBody.model_validate(data, from_attributes=True)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
        ) from None


class SignEndpoint:
    def __init__(
        self,
        app: ASGIApp,
        *,
        handlers: Mapping[Any, Handler],
        headers: Callable[[ASGIApp], ASGIApp],
    ) -> None:
        self.app = app
        self.handlers = handlers  # the admin app's exception handlers (read at each error)
        self.headers = headers  # the admin app's security headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = (
            PATH.fullmatch(scope["path"])
            if scope["type"] == "http" and scope["method"] == "POST"
            else None
        )
        headers = Headers(scope=scope) if found is not None else None
        if headers is None or found is None or not _answered_here(headers):
            # other content types, chunked or larger bodies: the route answers them
            await self.app(scope, receive, send)
            return
        scope.setdefault("path_params", {})["name"] = found["name"]
        request = Request(scope, receive)
        try:
            body = await self._body(receive)
            answer = await self._answered(request, found["name"], body)
        except _Gone:
            return  # the client closed the connection before its request was read: no answer
        except Exception as exc:  # answered as the admin app answers it
            answer = await self._error(request, exc)
        await self.headers(answer)(scope, receive, send)

    @staticmethod
    async def _body(receive: Receive) -> bytes:
        """The body (the server holds it to the Content-Length ``_answered_here`` accepted)."""
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                raise _Gone
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        return b"".join(chunks)

    async def _answered(self, request: Request, name: str, body: bytes) -> Response:
        """The answer: on the event loop if nothing waits on the way, else on a worker
        thread. The try runs in a copy of the context, so the thread starts afresh."""
        try:
            if not node_of(request).store.clustered:
                return copy_context().run(self._answer_here, request, name, body)
            who, parsed, prepared = copy_context().run(self._prepare_here, request, name, body)
        except WouldWait as wait:
            log.debug("event=sign-on-worker-thread reason=%r", str(wait))
            return await to_thread.run_sync(self._answer, request, name, body)
        with as_principal(who):  # a failed write is audited as this caller's
            result = await node_of(request).local_ca.record_on_loop(prepared)
        return self._response(signed_answer(result, parsed))

    @classmethod
    def _answer_here(cls, request: Request, name: str, body: bytes) -> Response:
        with without_waiting():
            return cls._answer(request, name, body)

    @staticmethod
    def _prepare_here(
        request: Request, name: str, body: bytes
    ) -> tuple[Principal, SignBody, PreparedSignature]:
        """PostgreSQL: who calls, the body, the signature, all but its write."""
        with without_waiting():
            who = require_write(api_principal(request))
            parsed = _validated(body)
            with as_principal(who):
                prepared = node_of(request).local_ca.prepare_sign(
                    name, required(parsed.csr, "CSR"), profile=parsed.profile, days=parsed.days
                )
            return who, parsed, prepared

    @staticmethod
    def _response(answer: dict[str, Any]) -> Response:
        out = SignedOut.model_validate(answer).model_dump(mode="json", exclude_unset=True)
        return JSONResponse(out)

    @staticmethod
    def _answer(request: Request, name: str, body: bytes) -> Response:
        """Who calls, the body, the signature, the answer."""
        who = require_write(api_principal(request))
        parsed = _validated(body)
        return SignEndpoint._response(sign_answer(node_of(request), name, parsed, who))

    async def _error(self, request: Request, exc: Exception) -> Response:
        handler = next(
            (self.handlers[kind] for kind in type(exc).__mro__ if kind in self.handlers), None
        )
        if handler is None:
            raise exc
        if handler is self.handlers.get(Exception):  # a bug: the server log has it
            log.error("event=request-failed path=%s", request.url.path, exc_info=exc)
        result = handler(request, exc)
        return await result if isinstance(result, Awaitable) else result
