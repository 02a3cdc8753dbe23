"""API tokens page: the list (never the token), creating one (its token shown once, on the
answer to the form) and revoking."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from certway.web.ui.kit import Form, UiRoute, View, form_action, page_view

__all__ = ["router"]

router = APIRouter(include_in_schema=False, route_class=UiRoute)


def _tokens_page(view: View, form: Form | None = None, **_: str) -> HTMLResponse:
    """The token list and forms; ``view.result``: a token just created (shown this once)."""
    return view.render(
        "api_tokens.html",
        title="API tokens",
        tokens=view.node.api_tokens.tokens(),
        created=view.result,
        form=form or Form(),
    )


@router.get("/api-tokens")
def api_tokens_page(request: Request) -> Response:
    return _tokens_page(page_view(request))


@router.post("/api-tokens")
@form_action(_tokens_page, keep_form="on-error")
def api_token_create(view: View, form: Form) -> str:
    expires = form.integer("expires", "the expiry (days)", 0)
    created = view.node.api_tokens.create(
        form.get("name"), form.get("access"), days=expires or None
    )
    view.result = {"name": created.info.name, "token": created.token}
    return (
        f"API token '{created.info.name}' created ({created.info.access}): copy it now, it "
        "is shown this once"
    )


@router.post("/api-tokens/{name}/revoke")
@form_action(_tokens_page)
def api_token_revoke(view: View, form: Form, name: str) -> str:
    view.node.api_tokens.revoke(name)
    return f"API token '{name}' revoked: it is refused from now on"
