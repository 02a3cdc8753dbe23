"""The web UI does what the CLI does and behaves like a finished web app (in process, httpx):
post/redirect/get after every form, a GET of a form's address leads to its page, HTML error
pages outside the API, a confirmation step before irreversible actions, node settings,
administrator accounts, intermediate and imported CAs, the client certificate page, a revoke
button per issued certificate, the chosen CA kept, and no lock-out by certificate validation
(UI and API)."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from fastapi.testclient import TestClient
from test_ui import CSRF_RE, csrf, login, post  # the UI tests' helpers

from certway.clock import FixedClock
from certway.pki.keys import private_key_pem
from certway.services import admins
from certway.services.node import Node
from certway.web.app import create_admin_app

from conftest import NOW, store_snapshot, test_key
from pkitools import Pki, name

FQDN = "vcs.example.com"
ALICE = ("alice", "a-long-password")
BOB = ("bob", "another-long-password")


@pytest.fixture(autouse=True)
def cheap_password_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2 at its minimum cost: these tests are about the UI, not the KDF's strength."""
    monkeypatch.setattr(
        admins, "_HASHER", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    )


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node.init(tmp_path / "d", FixedClock(NOW), fqdn=FQDN, factory=True)
    n.admins.add(ALICE[0], "read-write", ALICE[1])
    n.admins.add(BOB[0], "read-only", BOB[1])
    yield n
    n.close()


@pytest.fixture
def app(node: Node) -> Any:
    return create_admin_app(node, secure_cookies=False)


@pytest.fixture
def alice(app: Any) -> TestClient:
    return login(TestClient(app), *ALICE)


@pytest.fixture
def bob(app: Any) -> TestClient:
    return login(TestClient(app), *BOB)


def messages(page: str, kind: str) -> list[str]:
    return [
        html.unescape(re.sub(r"<[^>]+>", "", m).strip())
        for m in re.findall(rf'<p class="message {kind}"[^>]*>(.*?)</p>', page, re.S)
    ]


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def csr_pem(cn: str, index: int = 40) -> str:
    builder = x509.CertificateSigningRequestBuilder().subject_name(name(cn))
    return (
        builder.sign(test_key("ec:p256", index), hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )


class WithPeer:
    """ASGI wrapper that presents ``cert`` as the TLS client certificate (ASGI tls ext.)."""

    def __init__(self, app: Any, cert: x509.Certificate) -> None:
        self.app = app
        self.pem = pem(cert).decode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            extensions = {**scope.get("extensions", {}), "tls": {"client_cert_chain": [self.pem]}}
            scope = {**scope, "extensions": extensions}
        await self.app(scope, receive, send)


# -- post/redirect/get -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "data", "page", "notice"),
    [
        ("/domains", {"domain": "prg.example"}, "/domains", "domain prg.example added"),
        ("/node", {"fqdn": "edge1.example.com", "role": "edge"}, "/node", "node settings saved"),
        ("/tls/admin-https", {"profile": "modern"}, "/tls", "admin-https: TLS profile modern"),
        ("/crls/sources", {"urls": "http://crl.example.com/a.crl"}, "/crls", "1 CRL URL saved"),
        ("/local-ca/roots", {"name": "lab", "subject": "/CN=Lab"}, "/local-ca?ca=lab", "created"),
        ("/server-certificate/csr", {"key_type": "ec:p256"}, "/server-certificate", "CSR gen"),
        ("/sip/settings", {"mutual_tls": "off"}, "/sip", "SIP TLS settings saved"),
    ],
)
def test_a_form_redirects_to_its_page_which_shows_the_outcome_once(
    alice: TestClient, path: str, data: dict[str, str], page: str, notice: str
) -> None:
    response = post(alice, path, data, follow_redirects=False)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == page
    shown = alice.get(page)
    assert shown.status_code == 200
    assert any(m.startswith(notice) for m in messages(shown.text, "notice")), shown.text
    # a reload of the page (a GET) shows the page again, not the message, and changes nothing
    again = alice.get(page)
    assert not any(m.startswith(notice) for m in messages(again.text, "notice"))


def test_an_error_redirects_too_keeps_the_form_but_never_a_password(
    alice: TestClient, node: Node
) -> None:
    response = post(
        alice,
        "/admins",
        {"name": "carol", "access": "read-only", "password": "short", "password2": "short"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    page = alice.get(response.headers["location"])
    assert page.status_code == 422  # the page shows the refusal with its status
    assert messages(page.text, "error") == ["Error: the password must have at least 10 characters"]
    assert 'value="carol"' in page.text
    assert 'value="short"' not in page.text
    assert node.admins.get("carol") is None


def test_a_get_of_every_form_address_leads_to_a_page_not_405(alice: TestClient, app: Any) -> None:
    from test_ui import ui_post_routes  # the route walker of the UI tests

    for path in ui_post_routes(app):
        if path in ("/login", "/logout"):
            continue
        response = alice.get(path, follow_redirects=False)
        assert response.status_code in (200, 303), (path, response.status_code)
        final = alice.get(path)
        assert final.headers["content-type"].startswith("text/html"), path
        assert "Method Not Allowed" not in final.text, path
    assert alice.get("/local-ca/sign", follow_redirects=False).headers["location"] == "/local-ca"
    assert (
        alice.get("/domains/a.example/remove", follow_redirects=False).headers["location"]
        == "/domains"
    )
    assert (
        alice.get("/server-certificate/csr/preview", follow_redirects=False).headers["location"]
        == "/server-certificate"
    )


# -- HTML errors outside the API ---------------------------------------------------------------
def test_unknown_urls_get_an_html_page_and_the_api_keeps_json(alice: TestClient) -> None:
    page = alice.get("/no-such-page")
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "Page not found" in page.text
    assert 'href="/local-ca"' in page.text  # the menu, to go on from there
    anonymous = TestClient(alice.app).get("/nothing/here")
    assert anonymous.status_code == 404
    assert anonymous.headers["content-type"].startswith("text/html")
    api = alice.get("/api/v1/no-such-thing")
    assert api.status_code == 404
    assert api.headers["content-type"] == "application/problem+json"


def test_errors_of_ui_downloads_are_html(alice: TestClient) -> None:
    missing = alice.get("/local-ca/temporary-ca/issued/ABCDEF.pem")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("text/html")
    assert "ABCDEF" in missing.text
    assert alice.get("/client-certificate.pem").status_code == 200


# -- confirmation ------------------------------------------------------------------------------
def test_revoke_needs_a_confirmation_and_keeps_the_chosen_ca(alice: TestClient, node: Node) -> None:
    post(alice, "/local-ca/roots", {"name": "lab", "subject": "/CN=Lab Root"})
    post(alice, "/local-ca/roots", {"name": "lab2", "subject": "/CN=Lab Two"})
    signed = post(
        alice, "/local-ca/sign", {"ca": "lab2", "csr_text": csr_pem("dev.example.com")},
        follow_redirects=False,
    )  # fmt: skip
    assert signed.headers["location"] == "/local-ca?ca=lab2"
    page = alice.get("/local-ca?ca=lab2").text
    assert '<option value="lab2" selected>' in page  # the CA chosen stays chosen
    serial = re.search(r"issued serial ([0-9A-F]+) to CN=dev.example.com", page)
    assert serial is not None
    before = store_snapshot(node.store.data_dir)
    asked = post(
        alice, "/local-ca/revoke", {"ca": "lab2", "serial": serial.group(1), "reason": "superseded"}
    )
    assert asked.status_code == 200
    assert "Please confirm" in asked.text
    assert (
        f"Revoke the certificate with serial {serial.group(1)} of CA &#39;lab2&#39;" in asked.text
    )
    assert 'name="confirmed" value="yes"' in asked.text
    assert f'name="serial" value="{serial.group(1)}"' in asked.text  # the same form, again
    assert store_snapshot(node.store.data_dir) == before
    assert node.local_ca.issued("lab2")[0].status == "valid"
    token = CSRF_RE.search(asked.text)
    assert token is not None
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', asked.text))
    done = alice.post("/local-ca/revoke", data=fields, follow_redirects=False)
    assert done.headers["location"] == "/local-ca?ca=lab2"
    shown = alice.get("/local-ca?ca=lab2").text
    assert messages(shown, "notice")[0].startswith(f"revoked {serial.group(1)} (superseded); CRL #")
    assert messages(shown, "notice")[0].endswith("published with 1 entry")
    assert node.local_ca.issued("lab2")[0].status == "revoked"


def test_each_issued_certificate_has_a_revoke_button(alice: TestClient, node: Node) -> None:
    node.local_ca.create_root("lab", "/CN=Lab Root")
    serial = format(node.local_ca.sign("lab", csr_pem("a.example.com").encode()).certificate
                    .serial_number, "X")  # fmt: skip
    detail = alice.get("/local-ca/lab").text
    action = f'action="/local-ca/lab/issued/{serial}/revoke"'
    assert action in detail
    assert "data-confirm=" in detail
    response = post(
        alice,
        f"/local-ca/lab/issued/{serial}/revoke",
        {"reason": "keyCompromise", "confirmed": "yes"},
        follow_redirects=False,
    )
    assert response.headers["location"] == "/local-ca/lab"
    page = alice.get("/local-ca/lab").text
    assert f"revoked {serial} (keyCompromise)" in messages(page, "notice")[0]
    assert "revoked (keyCompromise" in page
    assert action not in page  # a revoked certificate has no button any more
    again = post(alice, f"/local-ca/lab/issued/{serial}/revoke", {"confirmed": "yes"})
    assert again.status_code == 409
    assert "was already revoked" in messages(again.text, "error")[0]


def test_unlisted_serials_are_revoked_without_cli_flags_in_messages(
    alice: TestClient, node: Node
) -> None:
    node.local_ca.create_root("lab", "/CN=Lab Root")
    refused = post(alice, "/local-ca/revoke", {"ca": "lab", "serial": "0BAD", "confirmed": "yes"})
    [error] = messages(refused.text, "error")
    assert "has issued no certificate with serial" in error
    assert "--" not in error
    done = post(
        alice,
        "/local-ca/revoke",
        {"ca": "lab", "serial": "0BAD", "unlisted": "on", "confirmed": "yes"},
    )
    assert "revoked 0BAD" in messages(done.text, "notice")[0]
    csr = post(alice, "/server-certificate/csr", {"cn": "cluster", "key_type": "ec:p256"})
    [error] = messages(csr.text, "error")
    assert error == (
        "Error: common name 'cluster' needs a cluster FQDN: set it in the node settings first"
    )


def test_irreversible_actions_ask_first(alice: TestClient, node: Node) -> None:
    node.identities.add_domain("keep.example")
    node.admins.add("carol", "read-only", "carol-password")
    before = store_snapshot(node.store.data_dir)
    for path, question in [
        ("/domains/keep.example/remove", "Remove domain keep.example and its certificate?"),
        ("/admins/carol/remove", "Delete the administrator account carol?"),
        ("/trusted-cas/reset", "Replace the trusted CA list with the factory list?"),
        ("/crls/manual/remove", "Remove the manually uploaded CRLs?"),
    ]:
        response = post(alice, path)
        assert response.status_code == 200, path
        assert question in response.text, path
        assert f'action="{path}"' in response.text
    assert store_snapshot(node.store.data_dir) == before


# -- node settings -----------------------------------------------------------------------------
def test_node_settings_name_the_next_csr(alice: TestClient, bob: TestClient, node: Node) -> None:
    page = alice.get("/node")
    assert page.status_code == 200
    assert 'value="vcs.example.com"' in page.text
    assert 'href="/node"' in alice.get("/").text  # linked from the status page
    saved = post(
        alice,
        "/node",
        {"fqdn": "expe.example.net", "role": "core", "cluster_fqdn": "cluster.example.net",
         "peers": "expe.example.net, expe2.example.net"},
    )  # fmt: skip
    [notice] = messages(saved.text, "notice")
    assert notice == (
        "node settings saved: system FQDN expe.example.net, role core, cluster "
        "cluster.example.net, peers expe.example.net, expe2.example.net, publication URL "
        "http://expe.example.net:8080 (default)"
    )
    [warning] = messages(saved.text, "warning")
    assert "the server certificate in use does not name expe.example.net" in warning
    config = node.settings.get()
    assert (config.fqdn, config.role, config.peers) == (
        "expe.example.net",
        "core",
        ("expe.example.net", "expe2.example.net"),
    )
    generated = post(alice, "/server-certificate/csr", {"key_type": "ec:p256"})
    assert "CSR generated for expe.example.net" in generated.text
    pending = node.identities.pending_csr("server")
    assert pending is not None and pending.common_name == "expe.example.net"
    before = node.settings.get()
    bad = post(alice, "/node", {"fqdn": "not a name", "role": "edge"})
    assert bad.status_code == 422
    assert "system FQDN" in messages(bad.text, "error")[0]
    assert 'value="not a name"' in bad.text
    assert node.settings.get() == before
    read_only = bob.get("/node").text
    assert 'action="/node"' not in read_only
    assert "expe.example.net" in read_only


# -- administrator accounts --------------------------------------------------------------------
def test_accounts_add_password_access_delete(app: Any, alice: TestClient, node: Node) -> None:
    page = alice.get("/admins").text
    assert "<td>alice <small>(you)</small></td><td>read-write</td>" in page
    differ = post(
        alice,
        "/admins",
        {"name": "carol", "access": "read-write", "password": "carol-password-1",
         "password2": "carol-password-2"},
    )  # fmt: skip
    assert messages(differ.text, "error") == [
        "Error: the two passwords differ: nothing was changed"
    ]
    assert node.admins.get("carol") is None
    added = post(
        alice,
        "/admins",
        {"name": "carol", "access": "read-only", "password": "carol-password-1",
         "password2": "carol-password-1"},
    )  # fmt: skip
    assert messages(added.text, "notice") == ["added account carol (read-only)"]
    changed = post(
        alice,
        "/admins/carol/password",
        {"password": "carol-password-2", "password2": "carol-password-2"},
    )
    assert messages(changed.text, "notice") == ["password of carol changed"]
    assert node.admins.verify("carol", "carol-password-2") is not None
    promoted = post(alice, "/admins/carol/access", {"access": "read-write"})
    assert messages(promoted.text, "notice") == ["carol is now read-write"]
    assert node.admins.get("carol") == admins.AdminInfo("carol", "read-write")
    removed = post(alice, "/admins/carol/remove", {"confirmed": "yes"})
    assert messages(removed.text, "notice") == ["deleted account carol"]
    assert node.admins.get("carol") is None
    actions = [e.action for e in node.audit.entries() if e.target == "carol"]
    assert actions == ["admin.add", "admin.passwd", "admin.access", "admin.remove"]
    assert all("password" not in str(e.detail) for e in node.audit.entries())


def test_own_password_change_keeps_the_browser_logged_in(
    app: Any, alice: TestClient, node: Node
) -> None:
    changed = post(
        alice,
        "/admins/alice/password",
        {"password": "a-new-long-password", "password2": "a-new-long-password"},
    )
    assert changed.status_code == 200
    assert messages(changed.text, "notice") == ["password of alice changed"]
    assert alice.get("/admins", follow_redirects=False).status_code == 200  # new session
    fresh = TestClient(app)
    refused = fresh.post("/login", data={"user": "alice", "password": ALICE[1]})
    assert refused.status_code == 401
    login(fresh, "alice", "a-new-long-password")


def test_the_last_read_write_account_stays(alice: TestClient, node: Node) -> None:
    node.admins.remove("bob")
    before = store_snapshot(node.store.data_dir)
    removed = post(alice, "/admins/alice/remove", {"confirmed": "yes"})
    assert removed.status_code == 409
    assert "this is the last read-write account" in messages(removed.text, "error")[0]
    demoted = post(alice, "/admins/alice/access", {"access": "read-only"})
    assert demoted.status_code == 409
    assert "this is the last read-write account" in messages(demoted.text, "error")[0]
    assert store_snapshot(node.store.data_dir) == before
    assert node.admins.get("alice") == admins.AdminInfo("alice", "read-write")


def test_read_only_sees_accounts_without_forms(bob: TestClient) -> None:
    page = bob.get("/admins")
    assert page.status_code == 200
    assert "alice" in page.text
    assert 'action="/admins"' not in page.text
    assert "/password" not in page.text


# -- local CA: intermediate and import ---------------------------------------------------------
def test_intermediate_and_imported_cas_from_the_ui(alice: TestClient, node: Node) -> None:
    post(alice, "/local-ca/roots", {"name": "root", "subject": "/CN=UI Root"})
    created = post(
        alice,
        "/local-ca/intermediates",
        {"name": "issuing", "parent": "root", "subject": "/CN=UI Issuing", "days": "900"},
        follow_redirects=False,
    )
    assert created.headers["location"] == "/local-ca?ca=issuing"
    page = alice.get(created.headers["location"]).text
    assert "created CA &#39;issuing&#39;: CN=UI Issuing" in page
    assert "signed by &#39;root&#39;" in page
    info = node.local_ca.info("issuing")
    assert (info.kind, info.parent) == ("intermediate", "root")
    duplicate = post(
        alice, "/local-ca/intermediates", {"name": "issuing", "parent": "root", "subject": "/CN=X"}
    )
    assert duplicate.status_code == 409

    external = Pki("Imported", index=50)
    wrong = alice.post(
        "/local-ca/import",
        data={"csrf": csrf(alice), "name": "ext"},
        files={
            "certificate": ("ca.pem", pem(external.root), "application/octet-stream"),
            "key": ("ca.key", private_key_pem(external.leaf_key), "application/octet-stream"),
        },
    )
    assert wrong.status_code == 422
    assert "the private key does not match the CA certificate" in messages(wrong.text, "error")[0]
    assert [c.name for c in node.local_ca.cas() if c.name == "ext"] == []
    imported = alice.post(
        "/local-ca/import",
        data={"csrf": csrf(alice), "name": "ext"},
        files={
            "certificate": ("ca.pem", pem(external.root), "application/octet-stream"),
            "key": ("ca.key", private_key_pem(external.root_key), "application/octet-stream"),
        },
    )
    assert "imported CA &#39;ext&#39;: CN=Imported Root" in imported.text
    assert node.local_ca.info("ext").kind == "imported"


# -- client certificate ------------------------------------------------------------------------
def test_client_certificate_page(alice: TestClient, node: Node) -> None:
    status = alice.get("/").text
    assert '<a href="/client-certificate">Client certificate</a>' in status
    page = alice.get("/client-certificate")
    assert page.status_code == 200
    assert "server certificate (default)" in page.text
    copied = post(alice, "/client-certificate/copy-server")
    assert "the client certificate is now a copy of the server certificate" in copied.text
    assert node.identities.info("client").source == "copy of server certificate"
    server_only = Pki("Server only", index=60)
    leaf = server_only.leaf("vcs.example.com", profile="server")
    refused = alice.post(
        "/client-certificate/upload",
        data={"csrf": csrf(alice)},
        files={
            "certificate": ("c.pem", pem(leaf), "application/octet-stream"),
            "key": ("c.key", private_key_pem(server_only.leaf_key), "application/octet-stream"),
        },
    )
    assert refused.status_code == 422
    assert "lacks clientAuth" in messages(refused.text, "error")[0]
    assert node.identities.info("client").source == "copy of server certificate"
    download = alice.get("/client-certificate.pem")
    assert download.headers["content-type"] == "application/x-pem-file"


# -- no lock-out -------------------------------------------------------------------------------
def test_certificate_validation_from_a_browser_without_certificate_is_refused(
    alice: TestClient, node: Node
) -> None:
    response = post(
        alice, "/certificate-auth", {"mode": "certificate-validation", "confirmed": "yes"}
    )
    assert response.status_code == 422
    [error] = messages(response.text, "error")
    assert error == (
        "Error: refused: certificate validation would lock you out: the connection making "
        "this change presents no client certificate. Connect with a client certificate "
        "issued by a trusted CA (import it into the browser), then change the mode"
    )
    assert node.admin_security.get().mode.value == "not-required"
    assert "certway admin reset-security" in response.text  # how to recover, on the page


def test_certificate_validation_with_an_untrusted_certificate_is_refused(
    app: Any, node: Node
) -> None:
    stranger = Pki("Stranger", index=20)
    client = login(TestClient(WithPeer(app, stranger.leaf("alice", profile="client"))), *ALICE)
    response = post(
        client, "/certificate-auth", {"mode": "certificate-validation", "confirmed": "yes"}
    )
    assert response.status_code == 422
    assert "your client certificate would not be accepted (the client certificate was " \
        "rejected" in messages(response.text, "error")[0]  # fmt: skip
    assert node.admin_security.get().mode.value == "not-required"


def test_certificate_validation_with_an_accepted_certificate_is_saved(app: Any, node: Node) -> None:
    pki = Pki("Admins", index=21)
    node.trusted_cas.add(pem(pki.root, pki.intermediate))
    client = login(TestClient(WithPeer(app, pki.leaf("alice", profile="client"))), *ALICE)
    asked = post(client, "/certificate-auth", {"mode": "certificate-validation"})
    assert "Please confirm" in asked.text
    assert "certway admin reset-security" in asked.text
    assert node.admin_security.get().mode.value == "not-required"
    saved = post(
        client, "/certificate-auth", {"mode": "certificate-validation", "confirmed": "yes"}
    )
    assert saved.status_code == 200
    assert "client certificate security: Certificate validation" in saved.text
    assert node.admin_security.get().mode.value == "certificate-validation"
    refused = TestClient(app).get("/")
    assert refused.status_code == 403
    assert "certway admin reset-security" in refused.text


def test_the_api_refuses_the_lock_out_too(app: Any, node: Node) -> None:
    basic = base64.b64encode(f"{ALICE[0]}:{ALICE[1]}".encode()).decode()
    response = TestClient(app).put(
        "/api/v1/admin-security",
        json={"mode": "certificate-validation"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert response.status_code == 422
    assert response.json()["code"] == "lockout"
    assert "presents no client certificate" in response.json()["detail"]
    assert node.admin_security.get().mode.value == "not-required"


# -- messages name settings, not command-line options -----------------------------------------
@pytest.mark.parametrize(
    ("fields", "error"),
    [
        (
            {"url": "ldaps://ldap.example.com"},
            "a first LDAP configuration needs the base DN, the bind DN and the bind password",
        ),
        (
            {"url": "ldap://ldap.example.com", "starttls": "off"},
            "passwords are never sent in clear: use an ldaps:// URL, or an ldap:// URL with "
            "StartTLS",
        ),
        (
            {"url": "ldaps://ldap.example.com", "starttls": "on"},
            "ldaps:// is TLS from the start: StartTLS is for ldap:// URLs",
        ),
    ],
)
def test_ldap_refusals_name_the_settings_of_the_page(
    alice: TestClient, node: Node, fields: dict[str, str], error: str
) -> None:
    complete = {
        "base_dn": "dc=example,dc=com",
        "bind_dn": "cn=svc,dc=example,dc=com",
        "bind_password": "bind-secret-5a2c",
        "verify": "on",
    }
    data = fields if len(fields) == 1 else {**complete, **fields}
    response = post(alice, "/ldap", data, follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (303, "/ldap")
    page = alice.get("/ldap")
    assert page.status_code == 422
    assert messages(page.text, "error") == [f"Error: {error}"]
    assert "--" not in messages(page.text, "error")[0]
    assert "bind-secret-5a2c" not in page.text
    assert node.ldap.get() is None


def test_ldap_source_without_a_server_names_no_command(alice: TestClient, node: Node) -> None:
    page = post(alice, "/admin-auth", {"source": "ldap"})
    assert page.status_code == 422
    assert messages(page.text, "error") == ["Error: configure the LDAP server first"]
    tested = post(alice, "/ldap/test", {"user": "carol"})
    assert messages(tested.text, "error") == ["Error: no LDAP server is configured"]


def test_acme_terms_refusal_names_no_option(
    alice: TestClient, node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    from acme import messages as acme_messages

    from certway.services import acme_client

    directory = acme_messages.Directory.from_json(
        {
            "newNonce": "https://acme.example/nonce",
            "newAccount": "https://acme.example/account",
            "newOrder": "https://acme.example/order",
            "meta": {"termsOfService": "https://acme.example/terms"},
        }
    )
    monkeypatch.setattr(
        acme_client.ClientV2, "get_directory", classmethod(lambda cls, url, net: directory)
    )
    data = {"directory": "https://acme.example/directory", "email": "admin@example.com"}
    page = post(alice, "/acme-client/account", data)
    assert page.status_code == 422
    assert messages(page.text, "error") == [
        "Error: the ACME server's terms of service (https://acme.example/terms) must be "
        "accepted: accept the terms of service to create the account"
    ]
    assert node.acme.account() is None


# -- local CA: the PKCS#12 form, the chosen CA, parents ----------------------------------------
@pytest.mark.parametrize(
    ("fields", "status", "error"),
    [
        ({"passphrase_again": "pass-7c1e9a-other"}, 422, "the two passphrases differ"),
        ({"passphrase": "q-7c1e", "passphrase_again": "q-7c1e"}, 422, "at least 8 characters"),
        ({"cn": "alice@example.com"}, 422, "is not a valid DNS name"),
        ({"days": "0"}, 422, "validity must be between 1 and"),
        ({"days": "a year"}, 422, "the validity in days must be a whole number"),
    ],
)
def test_a_refused_pkcs12_redirects_to_its_ca_and_shows_the_error_once(
    alice: TestClient, node: Node, fields: dict[str, str], status: int, error: str
) -> None:
    node.local_ca.create_root("lab", "/CN=Lab Root")
    node.local_ca.create_root("lab2", "/CN=Lab Two")
    data = {"ca": "lab2", "cn": "alice", "profile": "client", "key_type": "ec:p256",
            "passphrase": "pass-7c1e9a", "passphrase_again": "pass-7c1e9a", **fields}  # fmt: skip
    response = post(alice, "/local-ca/issue", data, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/local-ca?ca=lab2"
    page = alice.get("/local-ca?ca=lab2")
    assert page.status_code == status
    [shown] = messages(page.text, "error")
    assert error in shown
    assert f'value="{data["cn"]}"' in page.text  # the form is filled in again...
    assert "pass-7c1e9a" not in page.text and "q-7c1e" not in page.text  # ...no passphrase
    issuing = re.search(r'<select id="issue-ca" name="ca">(.*?)</select>', page.text)
    assert issuing is not None and '<option value="lab2" selected>' in issuing.group(1)
    again = alice.get("/local-ca?ca=lab2")  # a reload: the page, without the message
    assert again.status_code == 200
    assert messages(again.text, "error") == []
    assert node.local_ca.issued("lab2") == [] and node.local_ca.issued("lab") == []


def test_the_pkcs12_form_suggests_only_accepted_names(alice: TestClient, node: Node) -> None:
    node.local_ca.create_root("lab", "/CN=Lab Root")
    page = alice.get("/local-ca").text
    placeholder = re.search(r'id="issue-cn" name="cn" placeholder="([^"]+)"', page)
    assert placeholder is not None and placeholder.group(1) == "alice or host.example.com"
    for cn in ("alice", "host.example.com"):
        data = {
            "ca": "lab",
            "cn": cn,
            "passphrase": "pass-7c1e9a",
            "passphrase_again": "pass-7c1e9a",
        }
        response = post(alice, "/local-ca/issue", data)
        assert response.headers["content-type"] == "application/x-pkcs12", response.text
    assert sorted(i.subject for i in node.local_ca.issued("lab")) == [
        "CN=alice",
        "CN=host.example.com",
    ]


LOCAL_CA_FORMS = (
    "/local-ca/sign",
    "/local-ca/issue",
    "/local-ca/revoke",
    "/local-ca/roots",
    "/local-ca/intermediates",
    "/local-ca/import",
)


def form_posting_to(page: str, action: str) -> str:
    """The HTML of the page's form that posts to ``action``."""
    found = re.search(rf'<form method="post" action="{re.escape(action)}".*?</form>', page, re.S)
    assert found is not None, f"no form posting to {action}"
    return found.group(0)


@pytest.mark.parametrize(
    ("action", "data", "typed"),
    [
        (
            "/local-ca/roots",
            {"name": "typed-root", "subject": "/CN=Typed Root", "days": "4321000",
             "crl_urls": "http://typed.example/root.crl"},
            ['value="typed-root"', 'value="/CN=Typed Root"', 'value="4321000"',
             'value="http://typed.example/root.crl"'],
        ),
        (
            "/local-ca/intermediates",
            {"name": "typed-sub", "parent": "lab", "subject": "/CN=Typed Sub", "days": "4321000",
             "ocsp_url": "http://typed.example/ocsp"},
            ['value="typed-sub"', 'value="/CN=Typed Sub"', 'value="4321000"',
             'value="http://typed.example/ocsp"'],
        ),
        (
            "/local-ca/import",
            {"name": "typed-import", "crl_urls": "http://typed.example/imported.crl"},
            ['value="typed-import"', 'value="http://typed.example/imported.crl"'],
        ),
        (
            "/local-ca/sign",
            {"ca": "lab", "csr_text": "typed, not a CSR", "days": "4321"},
            [">typed, not a CSR</textarea>", 'value="4321"'],
        ),
        (
            "/local-ca/issue",
            {"ca": "lab", "cn": "typed.example.com", "sans": "DNS:alt.typed.example",
             "days": "4321", "passphrase": "short", "passphrase_again": "short"},
            ['value="typed.example.com"', 'value="DNS:alt.typed.example"', 'value="4321"'],
        ),
        (
            "/local-ca/revoke",
            {"ca": "lab", "serial": "0BADF00D", "confirmed": "yes"},
            ['value="0BADF00D"'],
        ),
    ],
)  # fmt: skip
def test_a_refused_local_ca_form_is_filled_in_again_and_no_other_form(
    alice: TestClient, node: Node, action: str, data: dict[str, str], typed: list[str]
) -> None:
    node.local_ca.create_root("lab", "/CN=Lab Root")
    cas = node.local_ca.cas()
    response = post(alice, action, data, follow_redirects=False)
    assert response.status_code == 303
    page = alice.get(response.headers["location"])
    assert page.status_code in (400, 404, 422), page.text
    assert len(messages(page.text, "error")) == 1  # the refusal, shown once above the forms
    for other in LOCAL_CA_FORMS:
        shown = [value for value in typed if value in form_posting_to(page.text, other)]
        assert shown == (typed if other == action else []), other
    assert node.local_ca.cas() == cas
    assert node.local_ca.issued("lab") == []


def test_a_refused_new_ca_keeps_the_ca_chosen_before(alice: TestClient, node: Node) -> None:
    node.local_ca.create_root("lab", "/CN=Lab Root")
    node.local_ca.create_root("lab2", "/CN=Lab Two")
    page = alice.get("/local-ca?ca=lab2").text
    assert page.count('<input type="hidden" name="ca" value="lab2">') == 3  # root, sub-CA, import
    external = Pki("Imported", index=50)
    refusals: list[tuple[str, dict[str, str], dict[str, Any]]] = [
        ("/local-ca/roots", {"name": "no spaces please", "subject": "/CN=X"}, {}),
        ("/local-ca/intermediates", {"name": "sub-x", "parent": "nope", "subject": "/CN=X"}, {}),
        ("/local-ca/import", {"name": "ext"}, {
            "certificate": ("ca.pem", pem(external.root), "application/octet-stream"),
            "key": ("ca.key", private_key_pem(external.leaf_key), "application/octet-stream"),
        }),
    ]  # fmt: skip
    for path, fields, files in refusals:
        response = alice.post(
            path,
            data={"csrf": csrf(alice), "ca": "lab2", **fields},
            files=files or None,
            follow_redirects=False,
        )
        assert response.headers["location"] == "/local-ca?ca=lab2", path
        shown = alice.get("/local-ca?ca=lab2").text
        assert len(messages(shown, "error")) == 1, path
        signing = re.search(r'<select id="sign-ca" name="ca">(.*?)</select>', shown)
        assert signing is not None and '<option value="lab2" selected>' in signing.group(1), path
        assert f'value="{fields["name"]}"' in shown  # the refused form, filled in again
    assert not {"no spaces please", "sub-x", "ext"} & {c.name for c in node.local_ca.cas()}
    # no CA chosen before: none chosen after
    unchosen = post(alice, "/local-ca/roots", {"name": "no spaces", "subject": "/CN=X", "ca": ""},
                    follow_redirects=False)  # fmt: skip
    assert unchosen.headers["location"] == "/local-ca"
    # created: the new CA is the one chosen
    created = post(alice, "/local-ca/roots", {"name": "lab3", "subject": "/CN=Lab 3", "ca": "lab2"},
                   follow_redirects=False)  # fmt: skip
    assert created.headers["location"] == "/local-ca?ca=lab3"


def test_only_cas_that_may_sign_a_sub_ca_are_offered_as_parents(
    alice: TestClient, node: Node
) -> None:
    node.local_ca.create_root("root", "/CN=Root")
    node.local_ca.create_intermediate("issuing", "root", "/CN=Issuing")
    assert node.local_ca.info("issuing").path_length == 0
    assert node.local_ca.info("root").can_sign_ca and not node.local_ca.info("issuing").can_sign_ca
    page = alice.get("/local-ca?ca=issuing").text
    parent = re.search(r'<select id="int-parent" name="parent">(.*?)</select>', page)
    assert parent is not None
    offered = re.findall(r'<option value="([^"]+)"', parent.group(1))
    assert "root" in offered and "issuing" not in offered
    signing = re.search(r'<select id="sign-ca" name="ca">(.*?)</select>', page)
    assert signing is not None and '<option value="issuing" selected>' in signing.group(1)
    # a form sent anyway is still refused by the service
    refused = post(
        alice, "/local-ca/intermediates", {"name": "sub", "parent": "issuing", "subject": "/CN=Sub"}
    )
    assert refused.status_code == 422
    assert (
        "can't create a child CA: this CA's path length is 0" in messages(refused.text, "error")[0]
    )
    assert [c.name for c in node.local_ca.cas() if c.name == "sub"] == []


def test_without_a_ca_that_may_sign_a_sub_ca_the_page_says_so(tmp_path: Path) -> None:
    node = Node.init(tmp_path / "bare", FixedClock(NOW), fqdn=FQDN, factory=False)
    try:
        node.admins.add(ALICE[0], "read-write", ALICE[1])
        client = login(TestClient(create_admin_app(node, secure_cookies=False)), *ALICE)
        assert "create or import a root CA first" in client.get("/local-ca").text
        external = Pki("Imported", index=50)
        node.local_ca.import_ca(
            "issuing", pem(external.intermediate), private_key_pem(external.int_key)
        )
        page = client.get("/local-ca").text
        assert 'action="/local-ca/intermediates"' not in page
        assert "None of these CAs can sign an intermediate: each has path length 0" in page
    finally:
        node.close()


# -- node settings: the publication URL --------------------------------------------------------
def test_node_settings_set_and_clear_the_publication_url(
    alice: TestClient, bob: TestClient, node: Node
) -> None:
    page = alice.get("/node").text
    assert "http://vcs.example.com:8080 (default: the system FQDN, port 8080)" in page
    assert (
        'id="publish_url" name="publish_url" placeholder="http://vcs.example.com:8080" value=""'
        in page
    )
    settings = {"fqdn": FQDN, "role": "edge", "cluster_fqdn": "", "peers": ""}
    saved = post(alice, "/node", {**settings, "publish_url": "http://ca.example.com:8081/"})
    [notice] = messages(saved.text, "notice")
    assert notice.endswith("publication URL http://ca.example.com:8081")
    assert node.settings.get().publish_url == "http://ca.example.com:8081"
    assert (
        'name="publish_url" placeholder="http://vcs.example.com:8080" value="http://ca.example.com:8081"'
        in saved.text
    )
    [entry] = [
        e
        for e in node.audit.entries()
        if e.action == "node.set" and e.detail.get("publish_url") == "http://ca.example.com:8081"
    ]
    assert entry.actor == "alice"
    # a CA created from now on without URLs of its own publishes there
    post(alice, "/local-ca/roots", {"name": "lab", "subject": "/CN=Lab"})
    lab = node.local_ca.info("lab")
    assert lab.crl_urls == ("http://ca.example.com:8081/crl/lab.crl",)
    assert lab.ocsp_url == "http://ca.example.com:8081/ocsp"
    # the same validation as the command line; nothing changed
    bad = post(alice, "/node", {**settings, "publish_url": "ftp://ca.example.com"})
    assert bad.status_code == 422
    assert messages(bad.text, "error") == [
        "Error: publication URL 'ftp://ca.example.com' is not of the form http://HOST:PORT "
        "(e.g. http://ca.example.com:8080)"
    ]
    assert 'value="ftp://ca.example.com"' in bad.text
    assert node.settings.get().publish_url == "http://ca.example.com:8081"
    # empty: back to the default
    cleared = post(alice, "/node", {**settings, "publish_url": ""})
    assert messages(cleared.text, "notice")[0].endswith(
        "publication URL http://vcs.example.com:8080 (default)"
    )
    assert node.settings.get().publish_url is None
    read_only = bob.get("/node").text
    assert "http://vcs.example.com:8080 (default" in read_only
    assert 'name="publish_url"' not in read_only
