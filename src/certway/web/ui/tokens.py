"""The PKCS#11 tokens page: registered tokens, the CAs whose key each keeps, a login test,
and registering a token (a system PKCS#11 module only; the PIN is never shown again)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from certway.services.tokens import SYSTEM_MODULE_DIRS
from certway.web.ui.kit import Form, UiRoute, View, form_action, page_view

__all__ = ["router"]

router = APIRouter(include_in_schema=False, route_class=UiRoute)


def _tokens_page(view: View, form: Form | None = None, **_params: str) -> HTMLResponse:
    values = (form or view.form).values()  # never the PIN
    return view.render(
        "tokens.html",
        title="PKCS#11 tokens",
        tokens=view.node.tokens.tokens(),
        module_dirs=SYSTEM_MODULE_DIRS,
        form=values,
        tested=view.result,
    )


@router.get("/tokens")
def tokens_page(request: Request) -> Response:
    return _tokens_page(page_view(request))


@router.post("/tokens")
@form_action(_tokens_page, keep_form="on-error")
def token_add(view: View, form: Form) -> str:
    info = view.node.tokens.add(
        form.get("name"),
        module=form.get("module"),
        token_label=form.get("token_label"),
        pin=form.get("pin"),
        remote=True,
    )
    return f"registered token '{info.name}' (label '{info.token_label}' of {info.module})"


@router.post("/tokens/{name}/test")
@form_action(_tokens_page)
def token_test(view: View, form: Form, name: str) -> str:
    result = view.node.tokens.test(name)
    view.result = result
    count = len(result.keys)
    return f"token '{name}': logged in, {count} private key{'' if count == 1 else 's'}"
