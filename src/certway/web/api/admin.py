"""``/admins`` and ``/admin-security``: administrator accounts and the client-certificate
policy of this admin interface."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from certway.web.api.common import Out, node_of
from certway.web.api.routing import ApiRoute, Reader, Writer
from certway.web.context import as_principal, peer_certificate

__all__ = ["AdminOut", "SecurityOut", "router"]

router = APIRouter(route_class=ApiRoute, tags=["admin"])


class AdminBody(BaseModel):
    name: str
    access: Literal["read-write", "read-only"]
    password: str = Field(description="at least 10 characters; never echoed")


class PasswordBody(BaseModel):
    password: str


class SecurityBody(BaseModel):
    mode: (
        Literal["not-required", "certificate-validation", "certificate-based-authentication"] | None
    ) = None
    regex: str | None = None
    format: str | None = None


class AdminOut(Out):
    name: str
    access: str = Field(description="read-write or read-only")


class SecurityOut(Out):
    mode: str = Field(
        description="not-required, certificate-validation or certificate-based-authentication"
    )
    regex: str = Field(description="how a username is found in the client certificate")
    format: str = Field(description="how the username is built from the regex's groups")


@router.get("/admins", response_model=list[AdminOut])
def admins(request: Request, _who: Reader) -> list[dict[str, str]]:
    return [a.as_dict() for a in node_of(request).admins.accounts()]


@router.post("/admins", status_code=201, response_model=AdminOut)
def admin_add(request: Request, body: AdminBody, who: Writer) -> dict[str, str]:
    with as_principal(who):
        return node_of(request).admins.add(body.name, body.access, body.password).as_dict()


@router.put("/admins/{name}/password", status_code=204)
def admin_password(request: Request, name: str, body: PasswordBody, who: Writer) -> None:
    with as_principal(who):
        node_of(request).admins.set_password(name, body.password)


@router.delete("/admins/{name}", status_code=204)
def admin_remove(request: Request, name: str, who: Writer) -> None:
    with as_principal(who):
        node_of(request).admins.remove(name)


@router.get("/admin-security", response_model=SecurityOut)
def security(request: Request, _who: Reader) -> dict[str, str]:
    return node_of(request).admin_security.get().as_dict()


@router.put("/admin-security", response_model=SecurityOut)
def security_set(request: Request, body: SecurityBody, who: Writer) -> dict[str, str]:
    with as_principal(who):
        config = node_of(request).admin_security.set(
            mode=body.mode,
            regex=body.regex,
            fmt=body.format,
            current_certificate=peer_certificate(request),
            guard=True,
        )
    return config.as_dict()
