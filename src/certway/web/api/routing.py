"""How every API route is guarded: the caller is authenticated once per request, before the
body is read, and changes need a read-write account (``Reader`` / ``Writer``, ``reads_only``)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, TypeVar

from fastapi import Depends, HTTPException, Request, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from certway.web.context import Principal, WebContext, authenticate

__all__ = [
    "CHANGING_METHODS",
    "ApiRoute",
    "Reader",
    "Writer",
    "api_principal",
    "describe",
    "is_reads_only",
    "reads_only",
    "require_write",
    "writer",
]


def api_principal(request: Request) -> Principal:
    """The caller of an API route, authenticated once per request (``ApiRoute`` does it before
    the body is read; the ``Reader``/``Writer`` dependencies then find it here)."""
    known = getattr(request.state, "principal", None)
    if isinstance(known, Principal):
        return known
    context: WebContext = request.app.state.web
    principal = authenticate(request, context, via="api")
    request.state.principal = principal
    return principal


async def _principal(request: Request) -> Principal:
    """``api_principal`` as a dependency: async, so that finding the principal ``ApiRoute``
    already authenticated costs no trip to a worker thread (authenticating, which reads the
    store, still runs in one)."""
    known = getattr(request.state, "principal", None)
    if isinstance(known, Principal):
        return known
    return await run_in_threadpool(api_principal, request)


def require_write(principal: Principal) -> Principal:
    if not principal.can_write:
        raise HTTPException(403, f"account '{principal.name}' is read-only")
    return principal


async def writer(principal: Annotated[Principal, Depends(_principal)]) -> Principal:
    """Routes that change state: read-only accounts get 403."""
    return require_write(principal)


Reader = Annotated[Principal, Depends(_principal)]
Writer = Annotated[Principal, Depends(writer)]

CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
"""Methods that need a read-write account unless the route is marked ``reads_only``."""

F = TypeVar("F", bound=Callable[..., Any])


def reads_only(endpoint: F) -> F:
    """Mark a POST route that computes an answer without changing anything (a preview, a
    test): read-only accounts may call it."""
    endpoint.__certway_reads_only__ = True  # type: ignore[attr-defined]
    return endpoint


def is_reads_only(endpoint: Callable[..., Any]) -> bool:
    return bool(getattr(endpoint, "__certway_reads_only__", False))


def describe(endpoint: Callable[..., Any]) -> tuple[str, str]:
    """An operation's summary and description in the API's description: the first paragraph
    of the route's docstring, and the rest."""
    text = inspect.cleandoc(endpoint.__doc__ or "")
    summary, _, rest = text.partition("\n\n")
    return " ".join(summary.split()), rest.strip()


class ApiRoute(APIRoute):
    """Every API route authenticates the caller, and every POST/PUT/PATCH/DELETE route not
    marked ``reads_only`` requires a read-write account, *before* the body is read or
    validated: a refused caller gets 401/403, never a validation error, and a route that
    forgets its ``Writer`` dependency is still closed to read-only accounts.

    A route's response model describes its body and leaves out what the body leaves out
    (``response_model_exclude_unset``): a key that only some answers carry is not added as
    null to the others."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        kwargs["response_model_exclude_unset"] = True
        summary, description = describe(endpoint)
        if kwargs.get("summary") is None and summary:
            kwargs["summary"] = summary
        if kwargs.get("description") is None and description:
            kwargs["description"] = description
        super().__init__(path, endpoint, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        methods = self.methods or set()
        changes = bool(methods & CHANGING_METHODS) and not is_reads_only(self.endpoint)

        async def authorised(request: Request) -> Response:
            principal = await run_in_threadpool(api_principal, request)
            if changes:
                require_write(principal)
            return await handler(request)

        return authorised
