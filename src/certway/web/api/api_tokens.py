"""``/api-tokens``: tokens for automation (``Authorization: Bearer``). The token text is in the
answer to its creation only; listings never show it."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from certway.services.api_tokens import MAX_TOKEN_DAYS
from certway.web.api.common import Out, Timestamp, node_of
from certway.web.api.routing import ApiRoute, Reader, Writer
from certway.web.context import as_principal

__all__ = ["ApiTokenOut", "router"]

router = APIRouter(route_class=ApiRoute, tags=["API tokens"])


class ApiTokenBody(BaseModel):
    name: str = Field(description="1-64 letters, digits, . _ @ -")
    access: Literal["read-write", "read-only"]
    expires_days: int | None = Field(
        None, ge=1, le=MAX_TOKEN_DAYS, description="days until it expires; none: never"
    )


class ApiTokenOut(Out):
    name: str
    access: str = Field(description="read-write or read-only")
    created_by: str = Field(description="the account (or token) that created it")
    created_at: Timestamp
    expires_at: Timestamp | None
    revoked_at: Timestamp | None
    status: str = Field(description="active, expired or revoked")


class NewApiTokenOut(ApiTokenOut):
    token: str = Field(
        description="send as 'Authorization: Bearer <token>'; shown this once, never again"
    )


@router.get("/api-tokens", response_model=list[ApiTokenOut])
def api_tokens(request: Request, _who: Reader) -> list[dict[str, Any]]:
    """List the API tokens.

    Every token with its access level, creator, expiry and status (active, expired or
    revoked). The token text itself is never listed: it was shown once, when created."""
    return [t.as_dict() for t in node_of(request).api_tokens.tokens()]


@router.post("/api-tokens", status_code=201, response_model=NewApiTokenOut)
def api_token_create(request: Request, body: ApiTokenBody, who: Writer) -> dict[str, Any]:
    """Create an API token.

    The answer carries the token (``token``) this once: keep it in your automation's secret
    store. Only its hash is kept by the server. The name of a revoked or expired token may be
    reused; an active token of the same name is a conflict (409)."""
    with as_principal(who):
        created = node_of(request).api_tokens.create(body.name, body.access, days=body.expires_days)
    return {**created.info.as_dict(), "token": created.token}


@router.delete("/api-tokens/{name}", response_model=ApiTokenOut)
def api_token_revoke(request: Request, name: str, who: Writer) -> dict[str, Any]:
    """Revoke an API token.

    From now on the token is refused (401, saying it was revoked). It stays listed as
    revoked; its name may be given to a new token."""
    with as_principal(who):
        return node_of(request).api_tokens.revoke(name).as_dict()
