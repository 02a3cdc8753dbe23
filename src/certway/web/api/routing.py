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
    "PEER_ERRORS",
    "PROBLEM",
    "ApiRoute",
    "Reader",
    "Writer",
    "api_principal",
    "describe",
    "error_responses",
    "error_statuses",
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


PROBLEM = "application/problem+json"
"""The media type of every error answer of the API (``web.context.problem``); its schema is
``Problem`` in the description's components (``web.docs.PROBLEM_SCHEMAS``)."""

_ERRORS: dict[str, str] = {
    "400": "Bad input: the body holds something unreadable (not a certificate, key, CSR or "
    "CRL; a wrong passphrase; bad base64).",
    "401": "No credentials, or wrong ones (WWW-Authenticate names the scheme).",
    "401-peer": "No client certificate: a peer presents its server certificate.",
    "403": "The client certificate is refused (certificate validation on).",
    "403-change": "A read-only account or token; or the client certificate is refused "
    "(certificate validation on).",
    "403-peer": "The peer's certificate fails and cluster TLS verification is enforced.",
    "404": "What the request names does not exist (or no longer does).",
    "409": "The change conflicts with the current state (it exists already, is in use, was "
    "already done).",
    "413": "The request body is larger than the server takes.",
    "422": "The request does not match this description (errors says where), or a rule "
    "refuses it (detail says why, code names the rule).",
    "429": "Too many failed password logins for this account or address: Retry-After says "
    "when to try again.",
    "default": "Any other error, in the same shape: 500 a fault of the server (its log has "
    "the details), 502 a fetch or the LDAP server failed, 503 the store, a key token or "
    "password checking is unavailable for now.",
}


def _problem(key: str) -> dict[str, Any]:
    return {
        "description": _ERRORS[key],
        "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def error_statuses(route: APIRoute) -> list[str]:
    """The error answers an API operation can give, by what it takes and does: it
    authenticates its caller (401, 403, 429), a body may be unreadable (400) or too large
    (413), a request with parameters or a body may be invalid (422), a path names something
    (404), a change may be refused or conflict (404, 409, 422); the rest is ``default``."""
    dependant = route.dependant
    has_body = route.body_field is not None
    statuses = {"401", "403", "429"}
    if has_body:
        statuses |= {"400", "413"}
    if has_body or dependant.path_params or dependant.query_params:
        statuses.add("422")
    if dependant.path_params:
        statuses.add("404")
    if _changes(route):
        statuses |= {"404", "409", "422"}
    return sorted(statuses)


def error_responses(route: APIRoute) -> dict[int | str, dict[str, Any]]:
    """The description of the operation's error answers (``error_statuses``), problem+json."""
    answers: dict[int | str, dict[str, Any]] = {}
    for status in error_statuses(route):
        changing_403 = status == "403" and _changes(route)
        answers[int(status)] = _problem("403-change" if changing_403 else status)
    answers["default"] = _problem("default")
    return answers


PEER_ERRORS: dict[int | str, dict[str, Any]] = {
    401: _problem("401-peer"),
    403: _problem("403-peer"),
    "default": _problem("default"),
}
"""The error answers of the peers' health check (a certificate, no account)."""


def _changes(route: APIRoute) -> bool:
    return bool((route.methods or set()) & CHANGING_METHODS) and not is_reads_only(route.endpoint)


class ApiRoute(APIRoute):
    """Every API route authenticates the caller, and every POST/PUT/PATCH/DELETE route not
    marked ``reads_only`` requires a read-write account, *before* the body is read or
    validated: a refused caller gets 401/403, never a validation error, and a route that
    forgets its ``Writer`` dependency is still closed to read-only accounts.

    A route's response model describes its body and leaves out what the body leaves out
    (``response_model_exclude_unset``): a key that only some answers carry is not added as
    null to the others. Its error answers are described as they are (``error_responses``)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        kwargs["response_model_exclude_unset"] = True
        summary, description = describe(endpoint)
        if kwargs.get("summary") is None and summary:
            kwargs["summary"] = summary
        if kwargs.get("description") is None and description:
            kwargs["description"] = description
        super().__init__(path, endpoint, **kwargs)
        # after the base class has found the body and the parameters
        self.responses = {**error_responses(self), **self.responses}

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
