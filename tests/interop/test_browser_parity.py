"""The admin UI's new pages and behaviour in a real browser: Playwright driving Debian's
Chromium against a real ``certway serve`` on 127.0.0.1. Screenshots go to
``test-artifacts/browser/``.

Node settings name the next CSR; administrator accounts (add, password, delete behind a real
confirm dialog); intermediate CA, signing and the revoke button of an issued certificate;
post/redirect/get (a reload does not submit again), also for a refused PKCS#12 or new CA,
which keep the chosen CA and fill in again the refused form only; parents of a sub-CA; the publication URL in the node settings;
HTML 404 page; the audit log fits a 1366 px window; and no lock-out: certificate
validation is refused from a browser without a certificate, accepted from one whose
certificate is valid, and a browser without one then gets the 403 page with the recovery
command.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certway.pki.keys import private_key_pem
from certway.serve import NodeServer
from certway.services.node import Node

from browsing import ARTIFACTS, launch, playwright_api
from serving import running

pytestmark = pytest.mark.interop

PASSWORD = "correct horse battery"
FQDN = "vcs.example.com"


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node.init(tmp_path / "d", fqdn=FQDN)
    n.admins.add("alice", "read-write", PASSWORD)
    yield n
    n.close()


@pytest.fixture
def server(node: Node) -> Iterator[NodeServer]:
    with running(node) as srv:
        yield srv


@pytest.fixture
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        chromium = launch(p)
        try:
            yield chromium
        finally:
            chromium.close()


def base(server: NodeServer) -> str:
    return f"https://127.0.0.1:{server.admin_port}"


def new_page(browser: Any, server: NodeServer, **options: Any) -> Any:
    context = browser.new_context(
        ignore_https_errors=True,
        base_url=base(server),
        viewport={"width": 1366, "height": 768},
        **options,
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    return page


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def log_in(page: Any) -> None:
    page.goto("/login")
    page.fill("#user", "alice")
    page.fill("#password", PASSWORD)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url("**/")


def submit(page: Any, form: str) -> None:
    """Submit ``form`` (a selector) and wait for the page the redirect leads to."""
    with page.expect_navigation():
        page.click(f"{form} button[type=submit]")


def notices(page: Any) -> list[str]:
    return [t.strip() for t in page.locator("p.message.notice").all_inner_texts()]


def errors(page: Any) -> list[str]:
    return [t.strip() for t in page.locator("p.message.error").all_inner_texts()]


def test_new_pages_prg_confirmation_and_errors(
    browser: Any, server: NodeServer, node: Node
) -> None:
    page = new_page(browser, server)
    log_in(page)

    # Node settings: the system FQDN names the next CSR (not the machine's vm.local).
    page.goto("/node")
    page.fill("#fqdn", "expe.example.org")
    page.select_option("#role", "core")
    submit(page, "form[action='/node']")
    assert page.url.endswith("/node")
    assert notices(page)[0].startswith("node settings saved: system FQDN expe.example.org")
    shot(page, "20-node-settings")
    page.goto("/server-certificate")
    assert "FQDN of this node (expe.example.org)" in page.inner_text("#cn")
    assert "DNS:expe.example.org" in page.inner_text("#preview")

    # Post/redirect/get: the page after a form is a GET; reloading it submits nothing.
    page.goto("/domains")
    page.fill("#domain", "prg.example.org")
    submit(page, "form[action='/domains']")
    assert page.url.endswith("/domains")
    assert notices(page) == ["domain prg.example.org added: generate its CSR on its page"]
    page.reload()
    assert errors(page) == []  # no "already exists": the form was not sent again
    assert notices(page) == []
    assert [e.action for e in node.audit.entries()].count("domain.add") == 1

    # Administrator accounts: add, change the password, delete behind a confirm dialog.
    page.goto("/admins")
    page.fill("#name", "carol")
    page.select_option("#access", "read-only")
    page.fill("#password", "carol-password-1")
    page.fill("#password2", "carol-password-1")
    submit(page, "form[action='/admins']")
    assert notices(page) == ["added account carol (read-only)"]
    form = "form[action='/admins/carol/password']"
    page.fill(f"{form} input[name=password]", "carol-password-2")
    page.fill(f"{form} input[name=password2]", "carol-password-2")
    submit(page, form)
    assert notices(page) == ["password of carol changed"]
    assert node.admins.verify("carol", "carol-password-2") is not None
    shot(page, "21-accounts")
    questions: list[str] = []

    def dismiss(dialog: Any) -> None:
        questions.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    page.click("form[action='/admins/carol/remove'] button[type=submit]")
    assert questions == ["Delete the administrator account carol?"]
    assert node.admins.get("carol") is not None  # "Cancel": nothing was sent
    page.once("dialog", lambda dialog: dialog.accept())
    submit(page, "form[action='/admins/carol/remove']")
    assert notices(page) == ["deleted account carol"]
    assert node.admins.get("carol") is None

    # Local CA: root and intermediate from the UI, a signed CSR, the revoke button.
    page.goto("/local-ca")
    page.fill("#ca-name", "root")
    page.fill("#subject", "/CN=Browser Root")
    submit(page, "form[action='/local-ca/roots']")
    page.fill("#int-name", "issuing")
    page.select_option("#int-parent", "root")
    page.fill("#int-subject", "/CN=Browser Issuing")
    submit(page, "form[action='/local-ca/intermediates']")
    assert "created CA 'issuing': CN=Browser Issuing" in notices(page)[0]
    assert page.url.endswith("/local-ca?ca=issuing")
    assert page.input_value("#sign-ca") == "issuing"  # the CA just made stays chosen
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dev.example.org")]))
        .sign(key, hashes.SHA256())
    )
    page.fill("#csr_text", csr.public_bytes(serialization.Encoding.PEM).decode())
    submit(page, "form[action='/local-ca/sign']")
    assert page.input_value("#sign-ca") == "issuing"
    assert "Issued certificate" in page.inner_text("main")
    shot(page, "22-local-ca-signed")
    [issued] = node.local_ca.issued("issuing")
    page.goto("/local-ca/issuing")
    row = page.locator("tr", has_text=issued.serial)
    row.locator("select[name=reason]").select_option("keyCompromise")
    page.once("dialog", lambda dialog: dialog.accept())
    with page.expect_navigation():
        row.locator("button", has_text="Revoke").click()
    assert page.url.endswith("/local-ca/issuing")
    assert notices(page)[0].startswith(f"revoked {issued.serial} (keyCompromise); CRL #")
    assert node.local_ca.issued("issuing")[0].status == "revoked"
    shot(page, "23-local-ca-revoked")

    # The client certificate row of the status page leads to its page.
    page.goto("/")
    with page.expect_navigation():
        page.click("a[href='/client-certificate']")
    assert "server certificate (default)" in page.inner_text("main")
    shot(page, "24-client-certificate")

    # HTML pages for an unknown URL and for a GET of a form's address.
    response = page.goto("/no-such-page")
    assert response is not None and response.status == 404
    assert "Page not found" in page.inner_text("main")
    shot(page, "25-not-found")
    response = page.goto("/local-ca/sign")
    assert response is not None and response.status == 200
    assert page.url.endswith("/local-ca")

    # The audit log fits a 1366 px window: no horizontal scroll bar.
    node.revocation.set_sources(["http://crl.example.org/" + "long-path-segment/" * 12 + "a.crl"])
    page.goto("/audit")
    widths = page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert widths[0] <= widths[1], widths
    shot(page, "26-audit-1366")


def test_local_ca_forms_keep_the_chosen_ca_and_node_publication_url(
    browser: Any, server: NodeServer, node: Node
) -> None:
    node.local_ca.create_root("root", "/CN=Browser Root")
    node.local_ca.create_intermediate("issuing", "root", "/CN=Browser Issuing")
    page = new_page(browser, server)
    log_in(page)
    page.goto("/local-ca?ca=issuing")
    # Only a CA whose path length allows it is offered as a parent.
    parents = page.locator("#int-parent option").all_inner_texts()
    assert "root" in parents and "issuing" not in parents

    # A refused PKCS#12: back on the page of the chosen CA, the message once, no passphrase.
    page.fill("#issue-cn", "alice")
    page.fill("#issue-days", "400")
    page.fill("#issue-passphrase", "passphrase-one")
    page.fill("#issue-passphrase-again", "passphrase-two")
    submit(page, "form[action='/local-ca/issue']")
    assert page.url.endswith("/local-ca?ca=issuing")
    assert errors(page) == ["Error: the two passphrases differ"]
    assert page.input_value("#issue-ca") == "issuing"
    assert page.input_value("#issue-cn") == "alice"
    assert page.input_value("#issue-passphrase") == ""
    assert page.input_value("#issue-days") == "400"  # its own values; not the other forms'
    assert (page.input_value("#sign-days"), page.input_value("#int-days")) == ("365", "1825")
    shot(page, "30-local-ca-p12-refused")
    page.reload()  # a GET: nothing is sent again, the message is gone
    assert errors(page) == []
    assert node.local_ca.issued("issuing") == []

    # A refused new CA: the CA chosen before stays chosen.
    page.fill("#ca-name", "not a name")
    page.fill("#subject", "/CN=Refused")
    submit(page, "form[action='/local-ca/roots']")
    assert page.url.endswith("/local-ca?ca=issuing")
    assert len(errors(page)) == 1
    assert page.input_value("#sign-ca") == "issuing"
    assert (page.input_value("#ca-name"), page.input_value("#subject")) == (
        "not a name",
        "/CN=Refused",
    )
    for other in ("#int-name", "#int-subject", "#imp-name", "#issue-cn"):
        assert page.input_value(other) == "", other

    # Node settings: the publication URL of new CAs' CRLs and OCSP.
    page.goto("/node")
    assert f"http://{FQDN}:8080 (default" in page.inner_text("main")
    page.fill("#publish_url", "http://ca.example.org:8081")
    submit(page, "form[action='/node']")
    assert notices(page)[0].endswith("publication URL http://ca.example.org:8081")
    assert page.input_value("#publish_url") == "http://ca.example.org:8081"
    assert node.settings.get().publish_url == "http://ca.example.org:8081"
    shot(page, "31-node-publication-url")


def client_certificate(node: Node, tmp_path: Path) -> tuple[Path, Path]:
    """A client certificate for alice from a local CA that the node trusts (files)."""
    node.local_ca.create_root("admins", "/CN=Admin Users")
    node.trusted_cas.add(
        node.local_ca.certificate("admins").public_bytes(serialization.Encoding.PEM)
    )
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "alice")]))
        .sign(key, hashes.SHA256())
    )
    signed = node.local_ca.sign(
        "admins", csr.public_bytes(serialization.Encoding.PEM), profile="client"
    )
    cert_path = tmp_path / "alice.pem"
    key_path = tmp_path / "alice.key"
    cert_path.write_bytes(signed.pem())
    key_path.write_bytes(private_key_pem(key))
    return cert_path, key_path


def test_no_lock_out_by_certificate_validation(
    browser: Any, server: NodeServer, node: Node, tmp_path: Path
) -> None:
    # A browser without a client certificate is refused, with the reason.
    page = new_page(browser, server)
    log_in(page)
    page.goto("/certificate-auth")
    page.check("input[name=mode][value=certificate-validation]")
    questions: list[str] = []

    def accept(dialog: Any) -> None:
        questions.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    submit(page, "form[action='/certificate-auth']")
    assert "certway admin reset-security" in questions[0]
    assert errors(page) == [
        "Error: refused: certificate validation would lock you out: the connection making "
        "this change presents no client certificate. Connect with a client certificate "
        "issued by a trusted CA (import it into the browser), then change the mode"
    ]
    assert node.admin_security.get().mode.value == "not-required"
    shot(page, "27-lockout-refused")

    # A browser presenting a valid certificate may switch it on.
    cert_path, key_path = client_certificate(node, tmp_path)
    with_cert = new_page(
        browser,
        server,
        client_certificates=[
            {"origin": base(server), "certPath": str(cert_path), "keyPath": str(key_path)}
        ],
    )
    log_in(with_cert)
    with_cert.goto("/certificate-auth")
    assert "your certificate is valid" in with_cert.inner_text("main")
    with_cert.check("input[name=mode][value=certificate-validation]")
    with_cert.once("dialog", lambda dialog: dialog.accept())
    submit(with_cert, "form[action='/certificate-auth']")
    assert errors(with_cert) == []
    assert notices(with_cert)[0].startswith("client certificate security: Certificate validation")
    assert node.admin_security.get().mode.value == "certificate-validation"
    shot(with_cert, "28-certificate-validation-on")

    # Now a browser without a certificate gets the 403 page with the recovery command.
    stranger = new_page(browser, server)
    response = stranger.goto("/")
    assert response is not None and response.status == 403
    assert "certway admin reset-security" in stranger.inner_text("main")
    shot(stranger, "29-refused-with-recovery")
    node.admin_security.reset()
