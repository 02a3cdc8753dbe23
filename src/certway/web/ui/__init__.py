"""The web UI: server-rendered pages, readable without JavaScript.

``kit`` holds what every page shares (templates, the ``View`` of who is calling, forms and
CSRF, ``form_action`` for forms that change state); each other module is one area of pages.
"""

from __future__ import annotations

from fastapi import APIRouter

from certway.web.ui import (
    accounts,
    acme,
    admin_security,
    api_tokens,
    backup,
    certificates,
    check,
    cluster,
    ldap,
    local_ca,
    local_ca_issue,
    login,
    node_settings,
    revocation,
    sip,
    status,
    syslog,
    tls,
    tokens,
    trust,
)
from certway.web.ui.kit import form_get_redirects
from certway.web.ui.login import certificate_refused_page

__all__ = ["certificate_refused_page", "router"]

_AREAS = (
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
    local_ca_issue,
    accounts,
    node_settings,
    cluster,
    tokens,
    syslog,
    acme,
    backup,
    api_tokens,
)
router = APIRouter(include_in_schema=False)
router.include_router(form_get_redirects(a.router for a in _AREAS))  # first: see its doc
for _area in _AREAS:
    router.include_router(_area.router)
