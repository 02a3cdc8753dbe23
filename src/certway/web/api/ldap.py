"""``/ldap`` and ``/admin-auth``: LDAP admin authentication (the directory, its groups, where
admin logins are checked). The bind password goes in, never out."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from certway.web.api.common import Out, node_of
from certway.web.api.routing import ApiRoute, Reader, Writer
from certway.web.context import WebContext, as_principal

__all__ = ["router"]

router = APIRouter(route_class=ApiRoute, tags=["ldap"])

Access = Literal["read-write", "read-only"]


class LdapBody(BaseModel):
    url: str | None = Field(default=None, description="ldaps://HOST[:636] or ldap://HOST[:389]")
    starttls: bool | None = Field(default=None, description="StartTLS on an ldap:// URL")
    base_dn: str | None = None
    bind_dn: str | None = None
    bind_password: str | None = Field(default=None, description="stored encrypted; never echoed")
    user_filter: str | None = Field(
        default=None, description="finds a user; {user} is the login name, escaped (RFC 4515)"
    )
    verify: bool | None = Field(default=None, description="judge the server's certificate")


class GroupBody(BaseModel):
    dn: str
    access: Access


class SourceBody(BaseModel):
    source: Literal["local", "ldap", "both"]


class LdapTestBody(BaseModel):
    user: str
    password: str | None = Field(default=None, description="never echoed; omit to only look up")


class GroupOut(Out):
    dn: str
    access: str


class LdapOut(Out):
    url: str | None
    starttls: bool
    base_dn: str | None
    bind_dn: str | None
    user_filter: str
    verify: bool
    groups: list[GroupOut]
    source: str = Field(description="local, ldap or both")
    last_error: str | None = Field(description="why the LDAP server last could not be used")


class AdminAuthSourceOut(Out):
    source: str


class LdapTestOut(Out):
    user: str
    dn: str | None = Field(description="the user's entry; null when not found")
    groups: list[str]
    access: str | None = Field(description="what the mapped groups give; null: none")
    authenticated: bool = Field(description="the password was given and accepted")


def _context(request: Request) -> WebContext:
    context: WebContext = request.app.state.web
    return context


@router.get("/ldap", response_model=LdapOut)
def ldap_show(request: Request, _who: Reader) -> dict[str, Any]:
    """The LDAP settings.

    The server, TLS mode, base and bind DNs, user filter, mapped groups, the admin-auth source
    and the last error met using the directory. Never the bind password."""
    return node_of(request).ldap.view()


@router.put("/ldap", response_model=LdapOut)
def ldap_set(request: Request, body: LdapBody, who: Writer) -> dict[str, Any]:
    """Set the LDAP server.

    The first time needs the URL, base DN, bind DN and bind password; later calls change only
    what they give. The bind password is stored encrypted and never returned."""
    node = node_of(request)
    with as_principal(who):
        node.ldap.set(**body.model_dump())
    return node.ldap.view()


@router.get("/ldap/groups", response_model=list[GroupOut])
def ldap_groups(request: Request, _who: Reader) -> list[dict[str, str]]:
    """The mapped LDAP groups.

    Each group DN and the access level its members get (read-write wins over read-only)."""
    config = node_of(request).ldap.get()
    return [g.as_dict() for g in config.groups] if config else []


@router.post("/ldap/groups", status_code=201, response_model=GroupOut)
def ldap_group_add(request: Request, body: GroupBody, who: Writer) -> dict[str, str]:
    """Map an LDAP group to an access level.

    Members of the group (memberOf, or listed as member / uniqueMember) log in with it."""
    with as_principal(who):
        return node_of(request).ldap.add_group(body.dn, access=body.access).as_dict()


@router.delete("/ldap/groups", status_code=204)
def ldap_group_remove(
    request: Request, who: Writer, dn: str = Query(description="the group's DN")
) -> None:
    """Stop mapping an LDAP group.

    Its members can no longer log in through it (other mapped groups still count)."""
    with as_principal(who):
        node_of(request).ldap.remove_group(dn)


@router.post("/ldap/test", response_model=LdapTestOut)
def ldap_test(request: Request, body: LdapTestBody, _who: Writer) -> dict[str, Any]:
    """Look an LDAP user up.

    Finds the user with the service account, binds as them when a password is given, and
    answers their groups and access level. Read-write accounts only: it checks passwords."""
    return _context(request).directory.test(body.user, body.password).as_dict()


@router.get("/admin-auth", response_model=AdminAuthSourceOut)
def admin_auth(request: Request, _who: Reader) -> dict[str, str]:
    """Where admin logins are checked.

    local, ldap or both; the local 'admin' account always logs in locally."""
    return {"source": node_of(request).ldap.source().value}


@router.put("/admin-auth", response_model=AdminAuthSourceOut)
def admin_auth_set(request: Request, body: SourceBody, who: Writer) -> dict[str, str]:
    """Choose where admin logins are checked.

    local, ldap (directory accounts and the local recovery account 'admin') or both (local
    accounts first, then the directory)."""
    with as_principal(who):
        return {"source": node_of(request).ldap.set_source(body.source).value}
