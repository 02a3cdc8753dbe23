"""The API's description is for authenticated readers only, and its page loads nothing from
outside the server.

The attack: ``/api/v1/openapi.json`` and ``/api/v1/docs`` answered anyone, even with
certificate-based authentication on (where nothing else answers without a certificate), and
the docs page loaded Swagger UI from a CDN with no Content-Security-Policy.

Each security mode is checked against a real ``certway serve`` over TLS; the page itself in
Debian's Chromium, recording every request it makes.
"""

from __future__ import annotations

import re
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from certway.pki.csr import CsrForm, build_csr
from certway.pki.keys import private_key_pem
from certway.serve import NodeServer
from certway.services.node import Node
from certway.web.docs import DOCS_CSP

from conftest import test_key
from serving import running

PASSWORD = "correct horse battery"
FQDN = "vcs.example.com"
DESCRIPTION = ("/api/v1/openapi.json", "/api/v1/docs")
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node.init(tmp_path / "d", fqdn=FQDN)
    n.admins.add("alice", "read-write", PASSWORD)
    n.admins.add("bob", "read-only", PASSWORD)
    yield n
    n.close()


@pytest.fixture
def server(node: Node) -> Iterator[NodeServer]:
    with running(node, publish=False, sip=False) as srv:
        yield srv


def tls(node: Node, client: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    pem = b"".join(
        c.public_bytes(serialization.Encoding.PEM) for c in node.trusted_cas.snapshot().certificates
    )
    context = ssl.create_default_context(cadata=pem.decode())
    context.check_hostname = False
    if client is not None:
        context.load_cert_chain(str(client[0]), str(client[1]))
    return context


def client_certificate(node: Node, tmp_path: Path, cn: str) -> tuple[Path, Path]:
    key = test_key("ec:p256", 140 + len(cn))
    csr, _ = build_csr(key, CsrForm(common_name=cn))
    csr_pem = csr.public_bytes(serialization.Encoding.PEM)
    signed = node.local_ca.sign("users", csr_pem, profile="client")
    cert, key_file = tmp_path / f"{cn}.pem", tmp_path / f"{cn}.key"
    cert.write_bytes(signed.pem(with_chain=True))
    key_file.write_bytes(private_key_pem(key))
    return cert, key_file


def eventually(check: Callable[[], bool]) -> None:
    """Wait for the server's hot reload to apply a security change (polls, no timing)."""
    deadline = time.monotonic() + 30
    while not check():
        assert time.monotonic() < deadline, "the change never reached the server"
        time.sleep(0.1)


def test_description_needs_an_account_in_every_security_mode(
    node: Node, server: NodeServer, tmp_path: Path
) -> None:
    base = f"https://127.0.0.1:{server.admin_port}"

    def status(path: str, *, cert: tuple[Path, Path] | None = None, **kw: object) -> int:
        return httpx.get(base + path, verify=tls(node, cert), **kw).status_code  # type: ignore[arg-type]

    # Not required: HTTP Basic (a read-only account is enough) or a UI session.
    for path in DESCRIPTION:
        assert status(path) == 401
        assert status(path, auth=("bob", "not the password")) == 401
        assert status(path, auth=("bob", PASSWORD)) == 200
    with httpx.Client(base_url=base, verify=tls(node)) as browser:
        login = browser.post("/login", data={"user": "bob", "password": PASSWORD})
        assert login.status_code == 303
        for path in DESCRIPTION:
            assert browser.get(path).status_code == 200
        browser.cookies.clear()
        for path in DESCRIPTION:
            assert browser.get(path).status_code == 401

    # Certificate validation: a valid certificate and an account.
    node.local_ca.create_root("users", "/CN=Users Root")
    node.trusted_cas.add(
        node.local_ca.certificate("users").public_bytes(serialization.Encoding.PEM)
    )
    node.revocation.upload_manual(node.local_ca.current_crl("users").pem)
    alice_cert = client_certificate(node, tmp_path, "alice")
    node.admin_security.set(mode="certificate-validation")
    eventually(lambda: status(DESCRIPTION[0], cert=alice_cert, auth=("bob", PASSWORD)) == 200)
    for path in DESCRIPTION:
        assert status(path) == 403
        assert status(path, auth=("bob", PASSWORD)) == 403  # no certificate
        assert status(path, cert=alice_cert) == 401  # no account
        assert status(path, cert=alice_cert, auth=("bob", PASSWORD)) == 200

    # Certificate-based authentication: the certificate names the account.
    node.admin_security.set(
        mode="certificate-based-authentication",
        current_certificate=alice_cert[0].read_bytes(),
    )
    eventually(lambda: status(DESCRIPTION[0], cert=alice_cert) == 200)
    for path in DESCRIPTION:
        assert status(path) == 403
        assert status(path, auth=("bob", PASSWORD)) == 403  # password login is off
        assert status(path, cert=alice_cert) == 200
    node.admin_security.reset()


def test_docs_page_references_only_this_server(node: Node, server: NodeServer) -> None:
    base = f"https://127.0.0.1:{server.admin_port}"
    with httpx.Client(base_url=base, verify=tls(node), auth=("bob", PASSWORD)) as reader:
        page = reader.get("/api/v1/docs")
        assert page.status_code == 200
        csp = page.headers["content-security-policy"]
        assert csp == DOCS_CSP
        assert "default-src 'self'" in csp and "script-src 'self';" in csp
        assert "http" not in csp and "*" not in csp and "unsafe" not in csp
        assert "<script>" not in page.text  # no inline script (the CSP would refuse it)
        references = re.findall(r'(?:src|href)="([^"]*)"', page.text)
        assert len(references) == 4
        assert not re.search(r"https?://|//", page.text)
        for reference in references:
            if reference.startswith("data:"):
                continue
            assert reference.startswith("/api/v1/docs/")
            asset = reader.get(reference)
            assert asset.status_code == 200 and asset.content
            assert reader.get(reference, auth=None).status_code == 401
        script = reader.get("/api/v1/docs/certway-docs.js").text
        assert 'url: "/api/v1/openapi.json"' in script and "validatorUrl: null" in script


@pytest.mark.interop
def test_docs_page_in_a_browser_makes_no_request_off_the_server(
    node: Node, server: NodeServer
) -> None:
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():  # pragma: no cover - make test installs it
        pytest.skip("Debian chromium is not installed (make test installs it)")
    origin = f"https://127.0.0.1:{server.admin_port}"
    requests: list[str] = []
    console: list[str] = []
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            context = browser.new_context(
                ignore_https_errors=True,
                http_credentials={"username": "bob", "password": PASSWORD},
            )
            page = context.new_page()
            page.set_default_timeout(30_000)
            page.on("request", lambda request: requests.append(request.url))
            page.on("console", lambda message: console.append(message.text))
            page.goto(origin + "/api/v1/docs")
            page.wait_for_selector(".opblock")  # the operations are listed: it really ran
            operations = page.locator(".opblock").count()
            page.locator(".opblock").first.click()  # expanding one renders its schema too
            page.wait_for_timeout(500)
        finally:
            browser.close()
    assert operations >= 40
    assert origin + "/api/v1/openapi.json" in requests
    off_server = [url for url in requests if not url.startswith(origin + "/")]
    assert off_server == []
    assert not [m for m in console if "Content Security Policy" in m], console
