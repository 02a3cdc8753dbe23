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
    """List the admin accounts.

    Every local administrator account with its access level (read-write or read-only).
    Passwords are never shown."""
    return [a.as_dict() for a in node_of(request).admins.accounts()]


@router.post("/admins", status_code=201, response_model=AdminOut)
def admin_add(request: Request, body: AdminBody, who: Writer) -> dict[str, str]:
    """Add an admin account.

    Creates a local account with an access level and a password of at least 10
    characters (stored as an argon2id hash, never echoed). 409 when the name exists."""
    with as_principal(who):
        return node_of(request).admins.add(body.name, body.access, body.password).as_dict()


@router.put("/admins/{name}/password", status_code=204)
def admin_password(request: Request, name: str, body: PasswordBody, who: Writer) -> None:
    """Set an account's password.

    Replaces the password of an account. Sessions and remembered HTTP Basic logins of
    that account end at once."""
    with as_principal(who):
        node_of(request).admins.set_password(name, body.password)


@router.delete("/admins/{name}", status_code=204)
def admin_remove(request: Request, name: str, who: Writer) -> None:
    """Remove an admin account.

    The last read-write account cannot be removed (409): add another one first."""
    with as_principal(who):
        node_of(request).admins.remove(name)


@router.get("/admin-security", response_model=SecurityOut)
def security(request: Request, _who: Reader) -> dict[str, str]:
    """Show the client-certificate policy.

    The admin interface's client-certificate mode (not-required, certificate-validation,
    certificate-based-authentication) and the regex and format that map a certificate to
    an account."""
    return node_of(request).admin_security.get().as_dict()


@router.put("/admin-security", response_model=SecurityOut)
def security_set(request: Request, body: SecurityBody, who: Writer) -> dict[str, str]:
    """Change the client-certificate policy.

    Switching to certificate-based authentication is refused unless the certificate of
    this connection maps to a read-write account, so that the change cannot lock
    everyone out. Applies from the next connection."""
    with as_principal(who):
        config = node_of(request).admin_security.set(
            mode=body.mode,
            regex=body.regex,
            fmt=body.format,
            current_certificate=peer_certificate(request),
            guard=True,
        )
    return config.as_dict()
