"""The TLS profile of each listener and outbound client (``tlsconf.policy``)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from certway.tlsconf.policy import TLS_SERVICES
from certway.web.ui.kit import Form, UiRoute, View, form_action, page_view

__all__ = ["router"]

router = APIRouter(include_in_schema=False, route_class=UiRoute)


def _tls_page(view: View, form: Form | None = None, *, service: str = "") -> HTMLResponse:
    policy = view.node.tls.policy()
    profiles = {name: policy.profile(name) for name in TLS_SERVICES}
    return view.render(
        "tls.html", title="TLS profiles", profiles=profiles, descriptions=TLS_SERVICES
    )


@router.get("/tls")
def tls_page(request: Request) -> Response:
    return _tls_page(page_view(request))


@router.post("/tls/{service}")
@form_action(_tls_page)
def tls_set(view: View, form: Form, service: str) -> str:
    chosen = view.node.tls.set(service, form.opt("profile") or "")
    return f"{service}: TLS profile {chosen.name.value} saved; it applies from the next connection"
