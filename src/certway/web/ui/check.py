"""Client certificate testing: judge a certificate (uploaded, pasted, or the browser's own)
as a service would, and show the username it maps to."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from certway.errors import PolicyViolation
from certway.services.revocation import SERVICES
from certway.web.context import peer_certificate
from certway.web.ui.kit import Form, UiRoute, View, form_action, page_view

__all__ = ["router"]

router = APIRouter(include_in_schema=False, route_class=UiRoute)


def _client_test_page(view: View, form: Form | None = None) -> HTMLResponse:
    config = view.node.admin_security.get()
    values = {"regex": config.regex, "format": config.format, **(form or view.form).values()}
    return view.render(
        "client_test.html",
        title="Client certificate testing",
        form=values,
        report=view.result,
        services=tuple(SERVICES),
        has_peer=peer_certificate(view.request) is not None,
    )


@router.get("/client-certificate-test")
def client_test_page(request: Request) -> Response:
    return _client_test_page(page_view(request))


@router.post("/client-certificate-test")
@form_action(_client_test_page, keep_form="always")
def client_test(view: View, form: Form) -> None:
    if form.on("use_browser"):
        peer = peer_certificate(view.request)
        if peer is None:
            raise PolicyViolation(
                "input",
                "your browser sent no client certificate on this connection: import "
                "one into the browser (and turn on certificate validation) or upload it",
            )
        data: bytes | None = peer
    else:
        data = form.file("certificate", "certificate file")
        if data is None and form.get("pasted"):
            data = form.get("pasted").encode()
    if data is None:
        raise PolicyViolation(
            "input",
            "choose a certificate: upload a file, paste it, or use your browser's",
        )
    view.result = view.node.client_check.check(
        data,
        purpose=form.get("purpose", "client"),
        name=form.opt("name"),
        service=form.get("service", "admin-https"),
        chain=form.file("chain", "chain file"),
        regex=form.opt("regex"),
        fmt=form.opt("format"),
    )
