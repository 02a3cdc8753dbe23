"""The remote syslog page: receivers of the audit log, alarms and TLS refusals, how delivery
to each goes, adding and removing them, and a test message."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from certway.outbound.syslog import send_tests
from certway.web.ui.kit import Form, UiRoute, View, form_action, page_view

__all__ = ["router"]

router = APIRouter(include_in_schema=False, route_class=UiRoute)


def _syslog_page(view: View, form: Form | None = None, **_params: str) -> HTMLResponse:
    return view.render(
        "syslog.html",
        title="Remote syslog",
        status=view.node.syslog.status(),
        form=(form or view.form).values(),
    )


@router.get("/syslog")
def syslog_page(request: Request) -> Response:
    return _syslog_page(page_view(request))


@router.post("/syslog")
@form_action(_syslog_page, keep_form="on-error")
def syslog_add(view: View, form: Form) -> str:
    transport = form.get("transport", "tls")
    added = view.node.syslog.add(
        form.get("address"), transport=transport, verify=form.get("verify", "on") != "off"
    )
    return f"added syslog receiver {added.address} over {added.transport.value}"


@router.post("/syslog/remove")
@form_action(
    _syslog_page,
    confirm=lambda _view, form: (
        f"Remove the syslog receiver {form.get('address')}? Messages still queued for it are "
        "discarded."
    ),
)
def syslog_remove(view: View, form: Form) -> str:
    gone = view.node.syslog.remove(form.get("address"))
    return f"removed syslog receiver {gone.address}; its queued messages were discarded"


@router.post("/syslog/test")
@form_action(_syslog_page)
def syslog_test(view: View, form: Form) -> str:
    results = [f"{d.address}: {error or 'sent'}" for d, error in send_tests(view.node)]
    return "test message: " + ("; ".join(results) or "no receiver configured")
