"""The web UI (I3), in process: login, sessions, CSRF and read-only checks on every form, each
page and its key content, and the main flows (CSR → sign → upload, trusted CAs, CRLs, client
certificate testing, certificate-based authentication) with the services' own messages."""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from certway.clock import FixedClock
from certway.pki.issue import create_root
from certway.services import admins
from certway.services.node import Node
from certway.web.app import create_admin_app
from certway.web.ui import kit as ui

from conftest import NOW, store_snapshot, test_key
from pkitools import Pki, name

FQDN = "vcs.example.com"
ALICE = ("alice", "a-long-password")
BOB = ("bob", "another-long-password")
CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


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
def pki() -> Pki:
    return Pki("Web")


def login(client: TestClient, user: str, password: str) -> TestClient:
    response = client.post(
        "/login", data={"user": user, "password": password}, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/"
    return client


@pytest.fixture
def alice(app: Any) -> TestClient:
    return login(TestClient(app), *ALICE)


@pytest.fixture
def bob(app: Any) -> TestClient:
    return login(TestClient(app), *BOB)


def csrf(client: TestClient, page: str = "/") -> str:
    found = CSRF_RE.search(client.get(page).text)
    assert found, f"no CSRF token on {page}"
    return found.group(1)


def post(client: TestClient, path: str, data: dict[str, Any] | None = None, **kw: Any) -> Any:
    return client.post(path, data={"csrf": csrf(client), **(data or {})}, **kw)


def messages(html: str, kind: str) -> list[str]:
    return [
        re.sub(r"<[^>]+>", "", m).strip()
        for m in re.findall(rf'<p class="message {kind}"[^>]*>(.*?)</p>', html, re.S)
    ]


def all_routes(routes: Iterable[Any], prefix: str = "") -> Iterator[tuple[str, set[str]]]:
    """(path, methods) of every route, also inside included routers (FastAPI keeps them
    nested as ``_IncludedRouter`` with the original router and its include prefix)."""
    for route in routes:
        original = getattr(route, "original_router", None)
        if original is not None:
            yield from all_routes(original.routes, prefix + route.include_context.prefix)
        elif isinstance(route, APIRoute):
            yield prefix + route.path, set(route.methods)


def ui_post_routes(app: Any) -> list[str]:
    """Every POST route outside the API, with path parameters filled in."""
    paths = [
        path
        for path, methods in all_routes(app.routes)
        if "POST" in methods and not path.startswith("/api/")
    ]
    assert len(paths) > 20, paths
    return [re.sub(r"\{[^}]+\}", "x.example.com", p) for p in paths]


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


# -- login and sessions ------------------------------------------------------------------------
def test_pages_redirect_to_login_without_a_session(app: Any) -> None:
    client = TestClient(app)
    response = client.get("/trusted-cas", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login"
    assert 'name="password"' in client.get("/login").text


def test_login_sets_a_strict_http_only_cookie(node: Node) -> None:
    client = TestClient(create_admin_app(node, secure_cookies=True))
    response = client.post(
        "/login", data={"user": ALICE[0], "password": ALICE[1]}, follow_redirects=False
    )
    assert response.status_code == 303
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("certway_session=")
    assert "HttpOnly" in cookie
    assert "Secure" in cookie
    assert "samesite=strict" in cookie.lower()
    assert "Path=/" in cookie


def test_wrong_password_is_refused(app: Any) -> None:
    response = TestClient(app).post("/login", data={"user": "alice", "password": "wrong-one!"})
    assert response.status_code == 401
    assert "wrong user name or password" in response.text


def test_logout_ends_the_session(alice: TestClient) -> None:
    token = csrf(alice)
    response = alice.post("/logout", data={"csrf": token}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login"
    assert alice.get("/", follow_redirects=False).status_code == 303


def test_five_failed_logins_block_the_account(app: Any) -> None:
    client = TestClient(app)
    for _ in range(5):
        assert (
            client.post("/login", data={"user": "alice", "password": "nope-nope"}).status_code
            == 401
        )
    response = client.post("/login", data={"user": ALICE[0], "password": ALICE[1]})
    assert response.status_code == 429
    assert "too many failed logins: try again in" in response.text


def test_login_page_explains_certificate_login(node: Node, app: Any) -> None:
    node.admin_security.set(mode="certificate-based-authentication", force=True)
    page = TestClient(app).get("/login")
    assert "Login is by client certificate" in page.text
    assert 'name="password"' not in page.text
    response = TestClient(app).post("/login", data={"user": ALICE[0], "password": ALICE[1]})
    assert response.status_code == 403
    assert "certway_session" not in response.headers.get("set-cookie", "")


# -- authorisation of every form ---------------------------------------------------------------
def test_ui_post_routes_are_found(app: Any) -> None:
    routes = ui_post_routes(app)
    assert "/trusted-cas" in routes
    assert "/server-certificate/upload" in routes
    assert "/domains/x.example.com/csr" in routes
    assert len(routes) > 20


def test_read_only_account_is_refused_on_every_post_route(
    app: Any, bob: TestClient, node: Node
) -> None:
    token = csrf(bob)
    before = store_snapshot(node.store.data_dir)
    audit_before = len(node.audit.entries())
    for path in ui_post_routes(app):
        if path in ("/login", "/logout"):
            continue
        response = bob.post(path, data={"csrf": token})
        assert response.status_code == 403, path
        assert "read-only" in response.text, path
    assert store_snapshot(node.store.data_dir) == before
    assert len(node.audit.entries()) == audit_before


def test_read_only_account_sees_pages_without_forms(bob: TestClient) -> None:
    page = bob.get("/trusted-cas").text
    assert "Your account is read-only" in page
    assert 'action="/trusted-cas"' not in page
    assert 'action="/trusted-cas/reset"' not in page
    assert 'action="/server-certificate/csr"' not in bob.get("/server-certificate").text


def test_csrf_token_is_checked_on_every_post_route(app: Any, alice: TestClient, node: Node) -> None:
    before = store_snapshot(node.store.data_dir)
    for path in ui_post_routes(app):
        if path == "/login":
            continue
        for data in ({"csrf": "forged"}, {}):
            response = alice.post(path, data=data)
            assert response.status_code == 403, path
            assert "CSRF" in response.text, path
    assert store_snapshot(node.store.data_dir) == before
    assert alice.get("/", follow_redirects=False).status_code == 200  # still logged in


def test_csrf_token_of_another_session_is_refused(app: Any, alice: TestClient) -> None:
    other = login(TestClient(app), *ALICE)
    response = alice.post("/domains", data={"csrf": csrf(other), "domain": "forged.example"})
    assert response.status_code == 403
    assert "forged.example" not in alice.get("/domains").text


# -- pages -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/", "The temporary certificate is in use"),
        ("/server-certificate", "Alternative name as it will appear"),
        ("/domains", "Add a domain"),
        ("/trusted-cas", "certway temporary CA"),
        ("/crls", "CRL distribution URLs"),
        ("/revocation", "Admin HTTPS client certificates"),
        ("/tls", "Outbound HTTPS: CRL and OCSP downloads"),
        ("/client-certificate-test", "Use my browser's certificate"),
        ("/certificate-auth", "Certificate-based authentication"),
        ("/sip", "Neighbour zones"),
        ("/local-ca", "temporary-ca"),
        ("/local-ca/temporary-ca", "Issued certificates"),
        ("/audit", "admin.add"),
    ],
)
def test_page_renders_with_navigation(alice: TestClient, path: str, expected: str) -> None:
    response = alice.get(path)
    assert response.status_code == 200
    assert expected in response.text
    assert response.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    for href in ("/server-certificate", "/trusted-cas", "/crls", "/sip", "/local-ca", "/audit"):
        assert f'href="{href}"' in response.text


def test_status_shows_alarms_and_expiries(alice: TestClient) -> None:
    page = alice.get("/").text
    assert "the server certificate is the temporary one issued by the factory CA" in page
    assert "2026-11-27 12:00 UTC" in page  # the alarm's "since"
    assert "Server certificate" in page
    assert "2027-11-27" in page  # factory certificate: 365 days


def test_static_files_are_served_locally(alice: TestClient) -> None:
    css = alice.get("/static/certway.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    assert alice.get("/static/certway.js").headers["content-type"].startswith("text/javascript")
    assert alice.get("/static/..%2Fui.py").status_code == 404
    assert "http" not in re.sub(
        r"https?://[^\"']*testserver", "", alice.get("/").text.split("<body>")[0]
    )


# -- server certificate ------------------------------------------------------------------------
def test_csr_form_has_every_sc2_field(alice: TestClient) -> None:
    page = alice.get("/server-certificate").text
    for field in (
        "cn", "alt_names", "add_san", "ucm_domains", "ucm_domain_format", "xmpp_domains",
        "chat_aliases", "phone_security_profiles", "key_type", "digest", "country", "state",
        "locality", "organization", "organizational_unit", "email",
    ):  # fmt: skip
        assert f'name="{field}"' in page, field
    assert "CollabEdgeDNS" in page
    assert '<option value="sha1"' not in page
    assert "(core role only)" in page  # this node is edge: the core field is disabled
    assert "DNS:vcs.example.com" in page  # the preview of the default form


def test_csr_preview_shows_names_as_they_will_appear(alice: TestClient) -> None:
    response = post(
        alice,
        "/server-certificate/csr/preview",
        {"add_san": "b.example.com, 10.0.0.1, a.example.com", "ucm_domains": "example.org",
         "ucm_domain_format": "collab-edge"},
    )  # fmt: skip
    assert response.status_code == 200
    preview = re.search(r'<output id="preview"[^>]*>(.*?)</output>', response.text, re.S)
    assert preview is not None
    assert preview.group(1).split(", ")[0] == "DNS:vcs.example.com"
    assert "DNS:collab-edge.example.org" in preview.group(1)
    assert 'value="b.example.com, 10.0.0.1, a.example.com"' in response.text  # form kept
    live = alice.get("/csr-preview", params={"kind": "server", "add_san": "*.example.com"})
    assert "wildcard" in live.json()["error"].lower()


def test_csr_generate_download_and_discard(alice: TestClient, node: Node) -> None:
    response = post(
        alice,
        "/server-certificate/csr",
        {"key_type": "ec:p256", "add_san": "alt.example.com", "organization": "Example"},
    )
    assert response.status_code == 200
    assert "CSR generated for vcs.example.com" in response.text
    assert "A CSR is pending since" in response.text
    assert "DNS:alt.example.com" in response.text
    download = alice.get("/server-certificate/csr.pem")
    assert download.headers["content-type"] == "application/x-pem-file"
    assert "attachment" in download.headers["content-disposition"]
    csr = x509.load_pem_x509_csr(download.content)
    assert csr.subject.rfc4514_string() == "CN=vcs.example.com,O=Example"
    response = post(alice, "/server-certificate/csr/discard", {"confirmed": "yes"})
    assert "pending CSR discarded" in response.text
    assert node.identities.pending_csr("server") is None
    assert 'action="/server-certificate/csr"' in response.text


def test_csr_error_is_the_service_message_and_keeps_the_form(alice: TestClient, node: Node) -> None:
    response = post(
        alice,
        "/server-certificate/csr",
        {"key_type": "ec:p256", "chat_aliases": "chat.example.com", "add_san": "bad_name!"},
    )
    assert response.status_code in (400, 422)
    errors = messages(response.text, "error")
    assert errors and errors[0].startswith("Error:")
    assert 'value="chat.example.com"' in response.text
    assert node.identities.pending_csr("server") is None


def test_csr_sign_with_local_ca_and_upload_replaces_the_temporary_certificate(
    alice: TestClient, node: Node, pki: Pki
) -> None:
    post(alice, "/server-certificate/csr", {"key_type": "ec:p256"})
    # a certificate made elsewhere (not from the CSR), with no key: the CSR is what it misses
    foreign = alice.post(
        "/server-certificate/upload",
        data={"csrf": csrf(alice)},
        files={"certificate": ("other.crt", pem(pki.leaf(FQDN)), "application/octet-stream")},
    )
    assert foreign.status_code == 422
    (error,) = messages(html.unescape(foreign.text), "error")
    assert error.startswith("Error: the certificate does not match the pending CSR (its public")
    csr_pem = alice.get("/server-certificate/csr.pem").content
    created = post(
        alice, "/local-ca/roots", {"name": "lab", "subject": "/O=Lab/CN=Lab Root", "days": "3650"}
    )
    assert "created CA &#39;lab&#39;" in created.text
    signed = alice.post(
        "/local-ca/sign",
        data={"csrf": csrf(alice), "ca": "lab", "profile": "server-client", "days": "365"},
        files={"csr": ("server.csr", csr_pem, "application/octet-stream")},
    )
    assert signed.status_code == 200, signed.text
    link = re.search(r'href="(/local-ca/lab/issued/[0-9A-F]+\.pem)"', signed.text)
    assert link is not None
    cert_pem = alice.get(link.group(1)).content
    assert b"BEGIN CERTIFICATE" in cert_pem
    uploaded = alice.post(
        "/server-certificate/upload",
        data={"csrf": csrf(alice)},
        files={"certificate": ("server.crt", cert_pem, "application/octet-stream")},
    )
    assert uploaded.status_code == 200, uploaded.text
    assert "activated version 2: CN=vcs.example.com, issued by O=Lab, CN=Lab Root" in uploaded.text
    warnings = messages(uploaded.text, "warning")
    assert any("does not lead to a CA in the trusted CA list" in w for w in warnings)
    status = alice.get("/").text
    assert "The temporary certificate is in use" not in status
    assert "temporary one issued by the factory CA" not in status
    assert node.identities.info("server").issuer == "O=Lab, CN=Lab Root"


def test_upload_of_garbage_shows_the_cli_message(alice: TestClient, node: Node) -> None:
    before = store_snapshot(node.store.data_dir)
    response = alice.post(
        "/server-certificate/upload",
        data={"csrf": csrf(alice)},
        files={"certificate": ("x.pem", b"hello", "application/octet-stream")},
    )
    assert response.status_code == 400
    assert "Error:</strong> not a certificate or PKCS#7 bundle:" in response.text
    assert store_snapshot(node.store.data_dir) == before


def test_upload_over_the_size_limit_is_refused_clearly(
    alice: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ui, "MAX_UPLOAD", 1000)
    response = alice.post(
        "/trusted-cas",
        data={"csrf": csrf(alice)},
        files={"file": ("big.pem", b"x" * 1001, "application/octet-stream")},
    )
    assert response.status_code == 413
    assert "larger than the upload limit of 1000 bytes" in response.text


def test_server_certificate_download(alice: TestClient, node: Node) -> None:
    response = alice.get("/server-certificate.pem")
    assert response.headers["content-type"] == "application/x-pem-file"
    assert (
        response.headers["content-disposition"] == 'attachment; filename="server-certificate.pem"'
    )
    assert x509.load_pem_x509_certificates(response.content)[0].subject.rfc4514_string() == (
        f"CN={FQDN}"
    )


# -- domains -----------------------------------------------------------------------------------
def test_domain_add_csr_and_remove(alice: TestClient, node: Node) -> None:
    added = post(alice, "/domains", {"domain": "example.org"})
    assert "domain example.org added" in added.text
    page = alice.get("/domains/example.org")
    assert page.status_code == 200
    assert "DNS:example.org" in page.text  # preview: the domain and host label + domain
    assert "DNS:vcs.example.org" in page.text
    response = post(alice, "/domains/example.org/csr", {"key_type": "ec:p256"})
    assert "CSR generated for example.org" in response.text
    assert alice.get("/domains/example.org/csr.pem").content.startswith(
        b"-----BEGIN CERTIFICATE REQUEST"
    )
    # a CSR and no certificate yet: the domain's page and the list say so
    page = alice.get("/domains/example.org")
    assert page.status_code == 200
    assert "No certificate yet" in page.text and "A CSR is pending since" in page.text
    listed = alice.get("/domains").text
    row = re.search(r"example\.org</a></td>(.*?)</tr>", listed, re.S)
    assert row is not None
    assert re.findall(r"<td>([^<]*)</td>", row[1]) == ["none yet", "—", "pending"]
    duplicate = post(alice, "/domains", {"domain": "example.org"})
    assert "domain &#39;example.org&#39; already exists" in duplicate.text
    removed = post(alice, "/domains/example.org/remove", {"confirmed": "yes"})
    assert "domain example.org removed" in removed.text
    assert node.identities.domains() == []
    assert alice.get("/domains/example.org").status_code == 404


# -- trusted CAs -------------------------------------------------------------------------------
def upload_ca(client: TestClient, data: bytes) -> Any:
    return client.post(
        "/trusted-cas",
        data={"csrf": csrf(client)},
        files={"file": ("ca.pem", data, "application/octet-stream")},
    )


def test_trusted_ca_upload_view_download_delete_reset(
    alice: TestClient, node: Node, pki: Pki
) -> None:
    response = upload_ca(alice, pem(pki.root))
    assert "added CN=Web Root" in response.text
    entry = next(e for e in node.trusted_cas.entries() if e.subject == "CN=Web Root")
    compact = entry.fingerprint.replace(":", "")
    assert f'href="/trusted-cas/{compact}"' in response.text
    assert entry.fingerprint in response.text
    detail = alice.get(f"/trusted-cas/{compact}")
    assert "Issuer: CN=Web Root" in detail.text or "CN=Web Root" in detail.text
    assert "Signature Algorithm" in detail.text
    everything = alice.get("/trusted-cas.pem")
    assert len(x509.load_pem_x509_certificates(everything.content)) == 2
    assert "attachment" in everything.headers["content-disposition"]
    again = upload_ca(alice, pem(pki.root))
    assert "skipped: CN=Web Root is already trusted" in again.text
    removed = post(
        alice, "/trusted-cas/remove", {"fingerprint": [entry.fingerprint], "confirmed": "yes"}
    )
    assert "removed CN=Web Root" in removed.text
    upload_ca(alice, pem(pki.root))
    reset = post(alice, "/trusted-cas/reset", {"confirmed": "yes"})
    assert "reset to the factory list (1 CA)" in reset.text
    assert [e.origin for e in node.trusted_cas.entries()] == ["factory"]


def test_trusted_ca_upload_of_a_leaf_is_refused(alice: TestClient, node: Node, pki: Pki) -> None:
    before = node.trusted_cas.entries()
    response = upload_ca(alice, pem(pki.leaf()))
    assert response.status_code == 422
    assert "is not a CA certificate (no BasicConstraints CA:TRUE)" in response.text
    assert "nothing was added" in response.text
    assert node.trusted_cas.entries() == before


def test_html_is_escaped(alice: TestClient, node: Node) -> None:
    evil = create_root(
        test_key("ec:p256", 30),
        name("<script>alert(1)</script>"),
        not_before=NOW,
        not_after=NOW.replace(year=NOW.year + 5),
    )
    upload_ca(alice, pem(evil))
    page = alice.get("/trusted-cas").text
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert" not in alice.get("/audit").text


# -- CRLs and revocation settings --------------------------------------------------------------
def test_manual_crl_upload_and_remove(alice: TestClient, node: Node, pki: Pki) -> None:
    upload_ca(alice, pem(pki.root, pki.intermediate))
    crl = pki.crl([(pki.leaf(), "keyCompromise")])
    response = alice.post(
        "/crls/manual",
        data={"csrf": csrf(alice)},
        files={
            "crl": ("x.crl", crl.public_bytes(serialization.Encoding.DER), "application/pkix-crl")
        },
    )
    assert response.status_code == 200, response.text
    assert "stored CRL #1 of CN=Web Issuing with 1 entry" in response.text
    assert [h.kind for h in node.revocation.held()] == ["manual"]
    garbage = alice.post(
        "/crls/manual",
        data={"csrf": csrf(alice)},
        files={"crl": ("x.crl", b"not a crl", "application/pkix-crl")},
    )
    assert garbage.status_code == 400
    assert len(node.revocation.held()) == 1
    removed = post(alice, "/crls/manual/remove", {"confirmed": "yes"})
    assert "removed 1 manual CRL" in removed.text and "CRL(s)" not in removed.text


def test_crl_sources_and_schedule(alice: TestClient, node: Node) -> None:
    response = post(
        alice, "/crls/sources", {"urls": "http://crl.example.com/a.crl\nhttps://b.example/c.crl\n"}
    )
    assert "2 CRL URLs saved" in response.text
    assert [s.url for s in node.revocation.sources()] == [
        "http://crl.example.com/a.crl",
        "https://b.example/c.crl",
    ]
    bad = post(alice, "/crls/sources", {"urls": "ftp://nope"})
    assert "&#39;ftp://nope&#39; is not an http:// or https:// URL" in bad.text
    assert "ftp://nope</textarea>" in bad.text  # the user's text is kept
    schedule = post(alice, "/crls/schedule", {"enabled": "on", "daily_at": "03:30"})
    assert "automatic CRL updates: on, daily at 03:30 UTC" in schedule.text
    wrong = post(alice, "/crls/schedule", {"enabled": "on", "daily_at": "25:00"})
    assert "is not a time of day HH:MM (UTC)" in wrong.text


def test_revocation_policies_are_editable(alice: TestClient, node: Node) -> None:
    response = post(
        alice,
        "/revocation/admin-https",
        {"enabled": "on", "ocsp": "off", "crl": "on", "cdp": "off", "scope": "peer",
         "fallback": "revoked"},
    )  # fmt: skip
    assert "admin-https revocation policy saved" in response.text
    policy = node.revocation.policy("admin-https")
    assert (policy.scope.value, policy.fallback.value) == ("peer", "revoked")
    unknown = post(alice, "/revocation/smtp", {"enabled": "on"})
    assert "unknown service &#39;smtp&#39;" in unknown.text


# -- client certificate test and certificate-based authentication ------------------------------
def test_client_certificate_test_shows_checks_and_username(
    alice: TestClient, node: Node, pki: Pki
) -> None:
    upload_ca(alice, pem(pki.root, pki.intermediate))
    page = alice.get("/client-certificate-test").text
    assert 'value="/Subject:.*CN=(?&lt;Group1&gt;[^,]*)/"' in page  # prefilled, escaped
    leaf = pki.leaf("jane.doe.example.com", profile="client")
    response = alice.post(
        "/client-certificate-test",
        data={
            "csrf": csrf(alice),
            "regex": r"/CN=(?<user>[a-z]+)\.(?P<last>[a-z]+)/",
            "format": "#user#_#last#",
            "purpose": "client",
            "service": "admin-https",
        },
        files={"certificate": ("c.pem", pem(leaf), "application/octet-stream")},
    )
    assert response.status_code == 200, response.text
    assert "VALID" in response.text
    assert "CN=jane.doe.example.com" in response.text
    assert re.search(r'<output id="username"><strong>jane_doe</strong></output>', response.text)
    assert "<td>path</td>" in response.text  # each check of each certificate


def test_client_certificate_test_pasted_untrusted(alice: TestClient) -> None:
    stranger = Pki("Stranger", index=20)
    response = post(
        alice,
        "/client-certificate-test",
        {"pasted": pem(stranger.leaf()).decode(), "regex": "", "format": ""},
    )
    assert "REJECTED" in response.text
    assert "Resulting username" not in response.text


def test_client_certificate_test_without_input_or_browser_certificate(alice: TestClient) -> None:
    none = post(alice, "/client-certificate-test", {})
    assert "choose a certificate" in none.text
    browser = post(alice, "/client-certificate-test", {"use_browser": "on"})
    assert "your browser sent no client certificate" in browser.text


def test_certificate_auth_refuses_a_lock_out(alice: TestClient, node: Node) -> None:
    response = post(
        alice,
        "/certificate-auth",
        {"mode": "certificate-based-authentication", "regex": node.admin_security.get().regex,
         "format": "#Group1#", "confirmed": "yes"},
    )  # fmt: skip
    assert response.status_code == 422
    assert "certificate-based authentication turns password login off" in response.text
    assert node.admin_security.get().mode.value == "not-required"
    saved = post(alice, "/certificate-auth", {"mode": "not-required", "format": "x-#Group1#"})
    assert "client certificate security: Not required" in saved.text
    assert node.admin_security.get().format == "x-#Group1#"


def test_certificate_based_authentication_from_the_browser(app: Any, node: Node, pki: Pki) -> None:
    node.trusted_cas.add(pem(pki.root, pki.intermediate))
    client = login(TestClient(WithPeer(app, pki.leaf("alice", profile="client", sans=[]))), *ALICE)
    page = client.get("/certificate-auth").text
    assert "it maps to user &#39;alice&#39;: account &#39;alice&#39; (read-write)" in page
    switched = post(
        client,
        "/certificate-auth",
        {"mode": "certificate-based-authentication", "confirmed": "yes"},
    )
    assert switched.status_code == 200, switched.text
    assert "client certificate security: Certificate-based authentication" in switched.text
    # a new browser with the certificate is logged in without a password, and its forms work
    browser = TestClient(WithPeer(app, pki.leaf("alice", profile="client", sans=[])))
    assert browser.get("/login", follow_redirects=False).headers["location"] == "/"
    assert "alice" in browser.get("/").text
    added = post(browser, "/domains", {"domain": "cert.example"})
    assert "domain cert.example added" in added.text
    assert any(e.actor == "alice" and e.via == "ui" for e in node.audit.entries())


def test_refused_browser_certificate_gets_an_explanation(app: Any, node: Node) -> None:
    node.admin_security.set(mode="certificate-validation")
    response = TestClient(app).get("/")
    assert response.status_code == 403
    assert "Your browser's client certificate was refused" in response.text
    assert "this page needs a client certificate and none was sent" in response.text
    assert "certway admin reset-security" in response.text
    stranger = Pki("Stranger", index=20)
    refused = TestClient(WithPeer(app, stranger.leaf(profile="client"))).get("/login")
    assert refused.status_code == 403
    assert "the client certificate was rejected" in refused.text


# -- local CA ----------------------------------------------------------------------------------
def test_local_ca_revoke_and_crl_download(alice: TestClient, node: Node, pki: Pki) -> None:
    post(alice, "/local-ca/roots", {"name": "lab", "subject": "/CN=Lab Root"})
    csr = x509.CertificateSigningRequestBuilder().subject_name(name("dev.example.com"))
    csr_pem = csr.sign(pki.leaf_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    signed = post(
        alice, "/local-ca/sign", {"ca": "lab", "csr_text": csr_pem.decode(), "days": "30"}
    )
    serial = re.search(r"issued serial ([0-9A-F]+) to CN=dev.example.com", signed.text)
    assert serial is not None, signed.text
    revoked = post(alice, "/local-ca/revoke", {"ca": "lab", "serial": serial.group(1),
                                               "reason": "keyCompromise", "confirmed": "yes"})  # fmt: skip
    assert f"revoked {serial.group(1)} (keyCompromise); CRL #" in revoked.text
    again = post(
        alice, "/local-ca/revoke", {"ca": "lab", "serial": serial.group(1), "confirmed": "yes"}
    )
    assert again.status_code == 409
    assert "was already revoked" in again.text
    crl = alice.get("/local-ca/lab/crl.crl")
    assert crl.headers["content-type"] == "application/pkix-crl"
    assert x509.load_der_x509_crl(crl.content).get_revoked_certificate_by_serial_number(
        int(serial.group(1), 16)
    )
    detail = alice.get("/local-ca/lab").text
    assert "revoked (keyCompromise" in detail
    assert "Certificate Revocation List" in detail or "CRL" in detail


def test_audit_names_the_ui_account(alice: TestClient) -> None:
    post(alice, "/domains", {"domain": "audit.example"})
    page = alice.get("/audit").text
    assert re.search(r"<td>alice</td><td>ui</td><td>testclient</td>\s*<td>domain.add</td>", page)


def test_session_ends_when_the_account_changes(tmp_path: Path) -> None:
    """A browser session does not outlive a password change or the account's removal."""
    node = Node.init(tmp_path / "sess", fqdn="vcs.example.com")
    try:
        node.admins.add("carol", "read-write", "carol-password-1")
        node.admins.add("dave", "read-write", "dave-password-1")
        client = TestClient(create_admin_app(node, secure_cookies=False))
        for user, password in (("carol", "carol-password-1"), ("dave", "dave-password-1")):
            client.cookies.clear()
            client.post("/login", data={"user": user, "password": password})
            assert client.get("/", follow_redirects=False).status_code == 200
            if user == "carol":
                node.admins.set_password("carol", "carol-password-2")
            else:
                node.admins.remove("dave")
            assert client.get("/", follow_redirects=False).status_code == 303
    finally:
        node.close()


# -- TLS profiles ------------------------------------------------------------------------------
def test_tls_profile_is_chosen_on_its_page(alice: TestClient, bob: TestClient, node: Node) -> None:
    page = post(alice, "/tls/admin-https", {"profile": "modern"}).text
    assert messages(page, "notice") == [
        "admin-https: TLS profile modern saved; it applies from the next connection"
    ]
    assert node.tls.profile("admin-https").name.value == "modern"
    refused = post(alice, "/tls/zones", {"profile": "old"}).text
    assert "TLS profile must be intermediate or modern, not &#39;old&#39;" in refused
    assert node.tls.profile("zones").name.value == "intermediate"
    read_only = bob.get("/tls").text
    assert 'action="/tls/admin-https"' not in read_only
    assert "TLSv1.3" in read_only


# -- local CA: issue key + certificate → PKCS#12 download -------------------------------------
def test_local_ca_issue_downloads_a_pkcs12_that_openssl_opens(
    alice: TestClient, node: Node, tmp_path: Path
) -> None:
    import subprocess

    post(alice, "/local-ca/roots", {"name": "lab", "subject": "/CN=Lab Root"})
    assert "Issue a key and certificate" in alice.get("/local-ca").text
    passphrase = "correct horse battery"
    response = post(
        alice,
        "/local-ca/issue",
        {"ca": "lab", "cn": "alice", "profile": "client", "key_type": "ec:p256",
         "passphrase": passphrase, "passphrase_again": passphrase},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-pkcs12"
    assert 'filename="alice.p12"' in response.headers["content-disposition"]
    p12 = tmp_path / "alice.p12"
    p12.write_bytes(response.content)
    (tmp_path / "pass").write_text(passphrase + "\n")
    opened = subprocess.run(
        ["openssl", "pkcs12", "-in", str(p12), "-passin", f"file:{tmp_path / 'pass'}",
         "-nodes"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert opened.returncode == 0, opened.stderr
    assert "BEGIN PRIVATE KEY" in opened.stdout and "subject=CN=alice" in opened.stdout.replace(
        " = ", "="
    )
    leaf = x509.load_pem_x509_certificates(opened.stdout.encode())[0]
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "root.pem").write_bytes(pem(node.local_ca.certificate("lab")))
    verified = subprocess.run(
        ["openssl", "verify", "-purpose", "sslclient", "-CAfile", str(tmp_path / "root.pem"),
         str(tmp_path / "leaf.pem")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # in the inventory, attributed to alice; the key is nowhere in the store
    assert [i.subject for i in node.local_ca.issued("lab")] == ["CN=alice"]
    entry = next(e for e in node.audit.entries() if e.action == "ca.issue-with-key")
    assert entry.actor == "alice" and passphrase not in repr(entry)


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"passphrase": "", "passphrase_again": ""}, "give a passphrase"),
        ({"passphrase": "short", "passphrase_again": "short"}, "at least 8 characters"),
        ({"passphrase": "long enough 1", "passphrase_again": "long enough 2"}, "differ"),
        ({"ca": "nope"}, "no CA named 'nope'"),
        ({"cn": "*.example.com"}, "wildcard"),
    ],
)
def test_local_ca_issue_refusals_keep_the_form_but_not_the_passphrase(
    alice: TestClient, node: Node, fields: dict[str, str], error: str
) -> None:
    post(alice, "/local-ca/roots", {"name": "lab", "subject": "/CN=Lab Root"})
    data = {"ca": "lab", "cn": "bob.example.com", "passphrase": "pass-7c1e9a",
            "passphrase_again": "pass-7c1e9a", **fields}  # fmt: skip
    response = post(alice, "/local-ca/issue", data)
    assert response.status_code in (400, 404, 422), response.text
    assert response.headers["content-type"].startswith("text/html")
    assert error in " ".join(messages(response.text, "error")).replace("&#39;", "'")
    assert "pass-7c1e9a" not in response.text and "long enough" not in response.text
    assert 'value="' + data["cn"] + '"' in response.text
    assert node.local_ca.issued("lab") == []


def test_local_ca_issue_is_refused_to_read_only_accounts(bob: TestClient, node: Node) -> None:
    node.local_ca.create_root("lab", "/CN=Lab Root")
    response = post(bob, "/local-ca/issue", {"ca": "lab", "cn": "x", "passphrase": "12345678",
                                              "passphrase_again": "12345678"})  # fmt: skip
    assert response.status_code == 403
    assert node.local_ca.issued("lab") == []
