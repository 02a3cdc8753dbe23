"""LDAP admin authentication: the directory, its groups, where admin logins are checked, and a
test lookup of one user."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from certway.services.ldap_settings import RECOVERY_ACCOUNT
from certway.web.ui.kit import Form, UiRoute, View, form_action, page_view, web_context

__all__ = ["router"]

router = APIRouter(include_in_schema=False, route_class=UiRoute)


def _ldap_page(view: View, form: Form | None = None) -> HTMLResponse:
    return view.render(
        "ldap.html",
        title="LDAP admin authentication",
        ldap=view.node.ldap.view(),
        recovery=RECOVERY_ACCOUNT,
        tested=view.result,
    )


@router.get("/ldap")
def ldap_page(request: Request) -> Response:
    return _ldap_page(page_view(request))


@router.post("/ldap")
@form_action(_ldap_page)
def ldap_set(view: View, form: Form) -> str:
    password = form.raw("bind_password")
    view.node.ldap.set(
        url=form.opt("url"),
        starttls=form.on("starttls"),
        base_dn=form.opt("base_dn"),
        bind_dn=form.opt("bind_dn"),
        bind_password=password or None,
        user_filter=form.opt("user_filter"),
        verify=form.get("verify", "on") == "on",
    )
    return "LDAP server saved"


@router.post("/ldap/groups")
@form_action(_ldap_page)
def ldap_group_add(view: View, form: Form) -> str:
    group = view.node.ldap.add_group(form.get("dn"), access=form.get("access"))
    return f"group {group.dn} → {group.access} added"


@router.post("/ldap/groups/remove")
@form_action(_ldap_page)
def ldap_group_remove(view: View, form: Form) -> str:
    dn = form.get("dn")
    view.node.ldap.remove_group(dn)
    return f"group {dn} removed"


@router.post("/admin-auth")
@form_action(_ldap_page)
def admin_auth_set(view: View, form: Form) -> str:
    chosen = view.node.ldap.set_source(form.get("source"))
    return f"admin authentication: {chosen.value}"


@router.post("/ldap/test")
@form_action(_ldap_page)
def ldap_test(view: View, form: Form) -> str:
    directory = web_context(view.request).directory
    view.result = directory.test(form.get("user"), form.raw("password") or None).as_dict()
    return f"user '{view.result['user']}' looked up"
