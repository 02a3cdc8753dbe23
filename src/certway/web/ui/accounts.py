"""Administrator accounts: add, change a password or an access level, delete (never the last
read-write account: the services refuse it)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from certway.errors import PolicyViolation
from certway.services.admins import ACCESS_LEVELS, MIN_PASSWORD, AdminInfo
from certway.web.context import SESSION_COOKIE, as_principal
from certway.web.ui.kit import Form, UiRoute, View, form_action, page_view, web_context

__all__ = ["router"]

router = APIRouter(include_in_schema=False, route_class=UiRoute)


def _accounts_page(view: View, form: Form | None = None, **_path: str) -> HTMLResponse:
    with as_principal(view.principal):
        accounts = view.node.admins.accounts()
        security = view.node.admin_security.get()
    return view.render(
        "accounts.html",
        title="Administrator accounts",
        accounts=accounts,
        access_levels=ACCESS_LEVELS,
        min_password=MIN_PASSWORD,
        security=security,
        form=(form or view.form).values(),
    )


@router.get("/admins")
def accounts_page(request: Request) -> Response:
    return _accounts_page(page_view(request))


def _new_password(form: Form) -> str:
    password = form.raw("password")
    if not password:
        raise PolicyViolation("password", "type the new password twice")
    if password != form.raw("password2"):
        raise PolicyViolation("password", "the two passwords differ: nothing was changed")
    return password


def _renew_own_session(view: View, account: AdminInfo) -> None:
    """A change of the caller's own password or access level ends the caller's sessions;
    the browser that made it goes on in a new one."""
    if view.principal.name != account.name:
        return
    context = web_context(view.request)
    context.end_session(view.request.cookies.get(SESSION_COOKIE))
    view.new_session, view.csrf = context.new_session(account)


@router.post("/admins")
@form_action(_accounts_page, keep_form="on-error", to="/admins")
def account_add(view: View, form: Form) -> str:
    info = view.node.admins.add(form.get("name"), form.get("access"), _new_password(form))
    return f"added account {info.name} ({info.access})"


@router.post("/admins/{name}/password")
@form_action(_accounts_page, to="/admins")
def account_password(view: View, form: Form, name: str) -> str:
    view.node.admins.set_password(name, _new_password(form))
    account = view.node.admins.get(name)
    if account is not None:
        _renew_own_session(view, account)
    return f"password of {name} changed"


@router.post("/admins/{name}/access")
@form_action(_accounts_page, to="/admins")
def account_access(view: View, form: Form, name: str) -> str:
    info = view.node.admins.set_access(name, form.get("access"))
    _renew_own_session(view, info)
    return f"{info.name} is now {info.access}"


@router.post("/admins/{name}/remove")
@form_action(
    _accounts_page,
    to="/admins",
    confirm=lambda _view, _form, name: f"Delete the administrator account {name}?",
)
def account_remove(view: View, form: Form, name: str) -> str:
    view.node.admins.remove(name)
    return f"deleted account {name}"
