"""The server certificate page and the domain certificate pages: view, CSR (generate,
preview, download, discard), upload, version history."""

from __future__ import annotations

from typing import cast

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse

from certway.errors import CertwayError, NotFound, PolicyViolation
from certway.pki.csr import DIGESTS, SubjectFields
from certway.pki.keys import KEY_TYPES
from certway.services.identities import CsrOptions, IdentityKind
from certway.web.context import as_principal
from certway.web.ui.kit import (
    PEM_TYPE,
    Form,
    Refused,
    UiRoute,
    View,
    download,
    form_action,
    page_view,
)
from certway.web.ui.status import identity_info

__all__ = ["router"]

router = APIRouter(include_in_schema=False, route_class=UiRoute)


def _csr_options(form: Form) -> CsrOptions:
    return CsrOptions(
        cn=form.get("cn", "node"),
        alt_names=form.get("alt_names", "none"),
        add_san=form.split("add_san"),
        ucm_domains=form.split("ucm_domains"),
        ucm_domain_format=form.get("ucm_domain_format", "dns"),
        xmpp_domains=form.split("xmpp_domains"),
        chat_aliases=form.split("chat_aliases"),
        phone_security_profiles=form.split("phone_security_profiles"),
        key_type=form.get("key_type", "rsa:4096"),
        digest=form.get("digest", "sha256"),
        subject=SubjectFields(
            country=form.opt("country"),
            state=form.opt("state"),
            locality=form.opt("locality"),
            organization=form.opt("organization"),
            organizational_unit=form.opt("organizational_unit"),
            email=form.opt("email"),
        ),
    )


def _base(kind: IdentityKind, name: str) -> str:
    return "/server-certificate" if kind == "server" else f"/domains/{name}"


def _identity_page(
    view: View, kind: IdentityKind, name: str = "", form: Form | None = None
) -> HTMLResponse:
    """The server certificate page, or one domain's page: view, CSR, upload, history."""
    node = view.node
    csr_form = form or view.form
    with as_principal(view.principal):
        if kind == "domain":
            try:
                name = node.identities.domain(name).name
            except NotFound:
                raise Refused(404, "No such domain", f"no domain '{name}'") from None
        info = identity_info(node, kind, name)
        pending = node.identities.pending_csr(kind, name)
        history = node.identities.history(kind, name)
        config = node.settings.get()
        preview: list[str] = []
        preview_error: str | None = None
        try:
            preview = node.identities.preview(kind, name, _csr_options(csr_form))
        except CertwayError as exc:
            preview_error = str(exc)
    base = _base(kind, name)
    return view.render(
        "identity.html",
        title="Server certificate" if kind == "server" else f"Domain {name}",
        kind=kind,
        name=name,
        base=base,
        pem_url="/server-certificate.pem" if kind == "server" else f"{base}/certificate.pem",
        info=info,
        pending=pending,
        history=history,
        config=config,
        form=csr_form.values(),
        preview=preview,
        preview_error=preview_error,
        preview_url=f"/csr-preview?kind={kind}" + (f"&name={name}" if name else ""),
        key_types=KEY_TYPES,
        digests=tuple(DIGESTS),
    )


def _server_page(view: View, form: Form | None = None) -> HTMLResponse:
    return _identity_page(view, "server", "", form)


def _domain_page(view: View, form: Form | None = None, *, name: str) -> HTMLResponse:
    return _identity_page(view, "domain", name, form)


def _csr_download(view: View, kind: IdentityKind, name: str) -> Response:
    pending = view.node.identities.pending_csr(kind, name)
    if pending is None:
        raise Refused(404, "No pending CSR", "no CSR is pending: generate one first")
    filename = "server.csr.pem" if kind == "server" else f"{name}.csr.pem"
    return download(pending.pem.encode(), filename, PEM_TYPE)


# -- what the server and the domain pages do alike ---------------------------------------------
def _generate(view: View, form: Form, kind: IdentityKind, name: str) -> str:
    pending = view.node.identities.generate_csr(kind, name, _csr_options(form))
    return (
        f"CSR generated for {pending.common_name} ({pending.key} key, kept on this "
        "node): download it, have it signed, then upload the certificate"
    )


def _discard(view: View, kind: IdentityKind, name: str) -> str:
    view.node.identities.discard_csr(kind, name)
    return "pending CSR discarded"


def _upload(view: View, form: Form, kind: IdentityKind, name: str) -> str:
    cert = form.file("certificate", "certificate file")
    if cert is None:
        raise PolicyViolation("input", "choose the certificate file to upload")
    passphrase = form.raw("passphrase")
    result = view.node.identities.upload(
        kind,
        name,
        cert,
        chain_data=form.file("chain", "chain file"),
        key_data=form.file("key", "key file"),
        passphrase=passphrase.encode() if passphrase else None,
    )
    info = result.info
    view.warnings.extend(result.warnings)
    return (
        f"activated version {info.version}: {info.subject}, issued by {info.issuer}, "
        f"valid until {info.not_after:%Y-%m-%d}"
    )


# -- the server certificate --------------------------------------------------------------------
@router.get("/server-certificate")
def server_certificate(request: Request) -> Response:
    return _server_page(page_view(request))


@router.get("/server-certificate.pem")
def server_certificate_pem(request: Request) -> Response:
    view = page_view(request)
    info = view.node.identities.info("server")
    return download(info.pem.encode(), "server-certificate.pem", PEM_TYPE)


@router.get("/server-certificate/csr.pem")
def server_csr_pem(request: Request) -> Response:
    return _csr_download(page_view(request), "server", "")


@router.get("/csr-preview")
def csr_preview(request: Request) -> Response:
    """'Alternative name as it will appear' as JSON, for the live preview of the CSR forms."""
    view = page_view(request)
    form = Form.of_query(request.query_params.multi_items())
    kind = form.get("kind", "server")
    if kind not in ("server", "domain"):
        return JSONResponse({"error": f"unknown certificate kind '{kind}'"}, status_code=400)
    try:
        names = view.node.identities.preview(
            cast(IdentityKind, kind), form.get("name"), _csr_options(form)
        )
    except CertwayError as exc:
        return JSONResponse({"error": str(exc), "names": []})
    return JSONResponse({"names": names})


@router.post("/server-certificate/csr")
@form_action(_server_page, keep_form="on-error")
def server_csr_generate(view: View, form: Form) -> str:
    return _generate(view, form, "server", "")


@router.post("/server-certificate/csr/preview")
@form_action(_server_page, keep_form="always")
def server_csr_preview(view: View, form: Form) -> None:
    """Show the page again with the names the CSR would carry."""


@router.post("/server-certificate/csr/discard")
@form_action(_server_page, confirm="Discard the pending CSR and its private key?")
def server_csr_discard(view: View, form: Form) -> str:
    return _discard(view, "server", "")


@router.post("/server-certificate/upload")
@form_action(_server_page)
def server_upload(view: View, form: Form) -> str:
    return _upload(view, form, "server", "")


@router.post("/server-certificate/restore")
@form_action(_server_page)
def server_restore(view: View, form: Form) -> str:
    version = form.integer("version", "the version", 0)
    info = view.node.identities.restore("server", "", version)
    return f"version {version} is active again (as version {info.version})"


# -- domains -----------------------------------------------------------------------------------
def _domains_page(view: View, form: Form | None = None) -> HTMLResponse:
    with as_principal(view.principal):
        domains = view.node.identities.domains()
        config = view.node.settings.get()
    return view.render(
        "domains.html",
        title="Domain certificates",
        domains=domains,
        config=config,
        form=(form or view.form).values(),
    )


@router.get("/domains")
def domains_page(request: Request) -> Response:
    return _domains_page(page_view(request))


@router.post("/domains")
@form_action(_domains_page, keep_form="on-error")
def domain_add(view: View, form: Form) -> str:
    added = view.node.identities.add_domain(form.get("domain"))
    return f"domain {added.name} added: generate its CSR on its page"


@router.get("/domains/{name}")
def domain_page(request: Request, name: str) -> Response:
    return _domain_page(page_view(request), name=name)


@router.get("/domains/{name}/certificate.pem")
def domain_certificate_pem(request: Request, name: str) -> Response:
    view = page_view(request)
    info = view.node.identities.info("domain", name)
    return download(info.pem.encode(), f"{name}.pem", PEM_TYPE)


@router.get("/domains/{name}/csr.pem")
def domain_csr_pem(request: Request, name: str) -> Response:
    return _csr_download(page_view(request), "domain", name)


def _domains_list(view: View, form: Form | None = None, *, name: str) -> HTMLResponse:
    return _domains_page(view, form)


@router.post("/domains/{name}/remove")
@form_action(
    _domains_list,
    to="/domains",
    confirm=lambda _view, _form, name: f"Remove domain {name} and its certificate?",
)
def domain_remove(view: View, form: Form, name: str) -> str:
    view.node.identities.remove_domain(name)
    return f"domain {name} removed"


@router.post("/domains/{name}/csr")
@form_action(_domain_page, keep_form="on-error")
def domain_csr_generate(view: View, form: Form, name: str) -> str:
    return _generate(view, form, "domain", name)


@router.post("/domains/{name}/csr/preview")
@form_action(_domain_page, keep_form="always")
def domain_csr_preview(view: View, form: Form, name: str) -> None:
    """Show the page again with the names the CSR would carry."""


@router.post("/domains/{name}/csr/discard")
@form_action(_domain_page, confirm="Discard the pending CSR and its private key?")
def domain_csr_discard(view: View, form: Form, name: str) -> str:
    return _discard(view, "domain", name)


@router.post("/domains/{name}/upload")
@form_action(_domain_page)
def domain_upload(view: View, form: Form, name: str) -> str:
    return _upload(view, form, "domain", name)


# -- the client certificate (outbound TLS: zones, cluster peers) -------------------------------
def _client_page(view: View, form: Form | None = None) -> HTMLResponse:
    with as_principal(view.principal):
        info = identity_info(view.node, "client")
        history = view.node.identities.history("client")
    return view.render(
        "client_certificate.html",
        title="Client certificate",
        info=info,
        history=history,
        base="/client-certificate",
    )


@router.get("/client-certificate")
def client_certificate(request: Request) -> Response:
    return _client_page(page_view(request))


@router.get("/client-certificate.pem")
def client_certificate_pem(request: Request) -> Response:
    view = page_view(request)
    info = view.node.identities.info("client")
    return download(info.pem.encode(), "client-certificate.pem", PEM_TYPE)


@router.post("/client-certificate/upload")
@form_action(_client_page, to="/client-certificate")
def client_upload(view: View, form: Form) -> str:
    return _upload(view, form, "client", "")


@router.post("/client-certificate/copy-server")
@form_action(_client_page, to="/client-certificate")
def client_copy_server(view: View, form: Form) -> str:
    info = view.node.identities.copy_server_to_client()
    return f"the client certificate is now a copy of the server certificate: {info.subject}"


@router.post("/client-certificate/restore")
@form_action(_client_page, to="/client-certificate")
def client_restore(view: View, form: Form) -> str:
    version = form.integer("version", "the version", 0)
    info = view.node.identities.restore("client", "", version)
    return f"version {version} is active again (as version {info.version})"
