"""The web UI: server-rendered pages, readable without JavaScript.

``kit`` holds what every page shares (templates, the ``View`` of who is calling, forms and
CSRF, ``form_action`` for forms that change state); each other module is one area of pages.
"""

from __future__ import annotations

from fastapi import APIRouter

from certway.web.ui import (
    admin_security,
    certificates,
    check,
    ldap,
    local_ca,
    login,
    revocation,
    sip,
    status,
    tls,
    trust,
)
from certway.web.ui.login import certificate_refused_page

__all__ = ["certificate_refused_page", "router"]

router = APIRouter(include_in_schema=False)
for _area in (
    login,
    status,
    certificates,
    trust,
    revocation,
    tls,
    check,
    admin_security,
    ldap,
    sip,
    local_ca,
):
    router.include_router(_area.router)
