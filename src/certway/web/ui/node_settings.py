"""Node settings: the system FQDN (the common name of the server certificate's CSR), the
role (which Expressway-style CSR fields apply), the cluster FQDN and peers, and the
publication URL (the default CRL and OCSP URLs of new local CAs)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from certway.services.node_settings import DEFAULT_PUBLISH_PORT, NodeConfig
from certway.web.context import as_principal
from certway.web.ui.kit import Form, UiRoute, View, form_action, page_view
from certway.web.ui.status import identity_info

__all__ = ["router"]

router = APIRouter(include_in_schema=False, route_class=UiRoute)

ROLES = {
    "edge": "Edge (Expressway-E): Unified CM registration and XMPP federation domains",
    "core": "Core (Expressway-C): Unified CM phone security profile names",
}


def _node_page(view: View, form: Form | None = None) -> HTMLResponse:
    with as_principal(view.principal):
        config = view.node.settings.get()
        server = identity_info(view.node, "server")
    values = {
        "fqdn": config.fqdn,
        "role": config.role,
        "cluster_fqdn": config.cluster_fqdn or "",
        "peers": ", ".join(config.peers),
        "publish_url": config.publish_url or "",
        **(form or view.form).values(),
    }
    return view.render(
        "node.html",
        title="Node settings",
        config=config,
        form=values,
        roles=ROLES,
        server=server,
        default_publication=f"http://{config.fqdn}:{DEFAULT_PUBLISH_PORT}",
        default_port=DEFAULT_PUBLISH_PORT,
    )


@router.get("/node")
def node_page(request: Request) -> Response:
    return _node_page(page_view(request))


def _names_server_certificate(view: View, config: NodeConfig) -> bool:
    info = identity_info(view.node, "server")
    if info is None:
        return True
    return f"DNS:{config.fqdn}" in info.alt_names or f"CN={config.fqdn}" in info.subject


@router.post("/node")
@form_action(_node_page, keep_form="on-error", to="/node")
def node_set(view: View, form: Form) -> str:
    config = view.node.settings.set(
        fqdn=form.get("fqdn"),
        role=form.get("role"),
        cluster_fqdn=form.get("cluster_fqdn"),
        peers=list(form.split("peers")),
        publish_url=form.get("publish_url"),
    )
    if not _names_server_certificate(view, config):
        view.warnings.append(
            f"the server certificate in use does not name {config.fqdn}: generate a new CSR "
            "on the Server certificate page and upload its certificate"
        )
    cluster = config.cluster_fqdn or "none"
    publication = config.publication_base + ("" if config.publish_url else " (default)")
    return (
        f"node settings saved: system FQDN {config.fqdn}, role {config.role}, cluster "
        f"{cluster}, peers {', '.join(config.peers) or 'none'}, publication URL {publication}"
    )
