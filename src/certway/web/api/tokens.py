"""``/tokens``: PKCS#11 tokens (HSMs) that keep local CAs' keys. The PIN is sent once, sealed
in the store and never answered back; over the API a token's module must be a system
PKCS#11 module (see ``services.tokens.SYSTEM_MODULE_DIRS``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from certway.services.tokens import TokenInfo
from certway.web.api.common import Out, node_of
from certway.web.api.routing import ApiRoute, Reader, Writer, reads_only
from certway.web.context import as_principal

__all__ = ["TokenOut", "router"]

router = APIRouter(route_class=ApiRoute, tags=["tokens"])


class TokenBody(BaseModel):
    name: str
    module: str = Field(description="path of the PKCS#11 module (a system module)")
    token_label: str
    pin: str = Field(description="the user PIN (stored encrypted, never answered back)")


class TokenOut(Out):
    name: str
    module: str
    token_label: str
    cas: list[str] = Field(description="the local CAs whose key this token keeps")


class TokenKeyOut(Out):
    label: str
    id: str = Field(description="the key object's id (CKA_ID), hexadecimal")
    type: str
    ca: str | None = Field(description="the local CA using this key, if any")


class TokenTestOut(Out):
    name: str
    ok: bool
    keys: list[TokenKeyOut]


def _token(info: TokenInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "module": info.module,
        "token_label": info.token_label,
        "cas": list(info.cas),
    }


@router.get("/tokens", response_model=list[TokenOut])
def tokens(request: Request, _who: Reader) -> list[dict[str, Any]]:
    """List the PKCS#11 tokens.

    Any account may read it. Each registered token (HSM) with its module, its token label
    and the local CAs whose signing key it keeps; the PIN is never answered back."""
    return [_token(t) for t in node_of(request).tokens.tokens()]


@router.post("/tokens", status_code=201, response_model=TokenOut)
def token_add(request: Request, body: TokenBody, who: Writer) -> dict[str, Any]:
    """Register a PKCS#11 token.

    Needs a read-write account. The module must be a system PKCS#11 module; certway logs in
    to the token once with the PIN to check module, label and PIN together, then stores the
    PIN encrypted. Answers the registered token (201); a module, label or PIN that does not
    work is refused and nothing is stored."""
    with as_principal(who):
        info = node_of(request).tokens.add(
            body.name,
            module=body.module,
            token_label=body.token_label,
            pin=body.pin,
            remote=True,
        )
    return _token(info)


@router.post("/tokens/{name}/test", response_model=TokenTestOut)
@reads_only
def token_test(request: Request, name: str, _who: Reader) -> dict[str, Any]:
    """Test a token and list its keys.

    Any account may call it (it changes nothing). Logs in to the token (or reuses the open
    session) and answers its private keys: label, id, type and the local CA using each."""
    result = node_of(request).tokens.test(name)
    return {
        "name": result.name,
        "ok": True,
        "keys": [
            {
                "label": k.label,
                "id": k.id_hex,
                "type": k.key_type,
                "ca": result.used_by.get(k.id_hex),
            }
            for k in result.keys
        ],
    }
