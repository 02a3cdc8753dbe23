"""The admin UI in a real browser: Playwright driving Debian's Chromium against a real
``certway serve`` on 127.0.0.1. Screenshots of each page go to ``test-artifacts/``.

The flow of the HTTPS issue: log in, see the temporary-certificate alarm, generate a CSR,
sign it with an external openssl CA, upload it, see the alarm go and the new certificate
served (checked with ``openssl s_client``); upload a trusted CA; upload a CRL; test a client
certificate and read the resulting username.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certway.serve import NodeServer
from certway.services.node import Node

from browsing import ARTIFACTS, launch, playwright_api
from conftest import key_pem, write
from pkitools import Pki
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
def page(server: NodeServer) -> Iterator[object]:
    with playwright_api.sync_playwright() as p:
        browser = launch(p)
        context = browser.new_context(ignore_https_errors=True, base_url=base(server))
        page = context.new_page()
        page.set_default_timeout(15_000)
        try:
            yield page
        finally:
            context.close()
            browser.close()


def base(server: NodeServer) -> str:
    return f"https://127.0.0.1:{server.admin_port}"


def shot(page: object, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]


def external_ca(tmp_path: Path) -> tuple[Path, Path]:
    """A separate CA (a test PKI's root, not the node's), as files for openssl."""
    pki = Pki(root_cn="External Browser CA", at=dt.datetime.now(dt.UTC), index=700)
    ca_pem = write(tmp_path / "external-ca.pem", pki.root.public_bytes(serialization.Encoding.PEM))
    return ca_pem, write(tmp_path / "external-ca.key", key_pem(pki.root_key))


def served_subject(port: int, openssl: str) -> str:
    result = subprocess.run(
        [openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", FQDN],
        input=b"",
        capture_output=True,
        timeout=20,
    )
    return result.stdout.decode(errors="replace")


def test_expressway_flow_in_the_browser(
    page: object, server: NodeServer, node: Node, tmp_path: Path, openssl: str
) -> None:
    p = page  # a playwright Page
    # Log in.
    p.goto("/")  # type: ignore[attr-defined]
    shot(p, "01-login")
    p.fill("#user", "alice")  # type: ignore[attr-defined]
    p.fill("#password", PASSWORD)  # type: ignore[attr-defined]
    p.click("form[action='/login'] button[type=submit]")  # type: ignore[attr-defined]
    p.wait_for_url("**/")  # type: ignore[attr-defined]
    body = p.inner_text("body")  # type: ignore[attr-defined]
    assert "temporary" in body.lower()
    shot(p, "02-status-temporary-alarm")

    # Generate a CSR on the server-certificate page.
    p.goto("/server-certificate")  # type: ignore[attr-defined]
    p.select_option("#key_type", "ec:p256")  # type: ignore[attr-defined]
    p.fill("#add_san", "192.0.2.10")  # type: ignore[attr-defined]
    p.fill("#country", "GB")  # type: ignore[attr-defined]
    p.fill("#organization", "Acme")  # type: ignore[attr-defined]
    p.get_by_role("button", name="Generate CSR").click()  # type: ignore[attr-defined]
    p.wait_for_load_state()  # type: ignore[attr-defined]
    shot(p, "03-csr-pending")
    csr_text = p.request.get("/server-certificate/csr.pem").text()  # type: ignore[attr-defined]
    assert "BEGIN CERTIFICATE REQUEST" in csr_text
    csr = tmp_path / "vcs.csr"
    csr.write_text(csr_text)

    # An external openssl CA signs it.
    ca_pem, ca_key = external_ca(tmp_path)
    signed = tmp_path / "vcs.pem"
    subprocess.run(
        [openssl, "x509", "-req", "-in", str(csr), "-CA", str(ca_pem), "-CAkey", str(ca_key),
         "-CAcreateserial", "-out", str(signed), "-days", "90", "-copy_extensions", "copy"],
        check=True, capture_output=True, cwd=tmp_path,
    )  # fmt: skip

    # Trust the external CA, then upload the certificate.
    p.goto("/trusted-cas")  # type: ignore[attr-defined]
    p.set_input_files("form[action='/trusted-cas'] input[type=file]", str(ca_pem))  # type: ignore[attr-defined]
    p.click("form[action='/trusted-cas'] button[type=submit]")  # type: ignore[attr-defined]
    p.wait_for_load_state()  # type: ignore[attr-defined]
    assert "External Browser CA" in p.inner_text("body")  # type: ignore[attr-defined]
    shot(p, "04-trusted-cas")

    p.goto("/server-certificate")  # type: ignore[attr-defined]
    p.set_input_files("#certificate", str(signed))  # type: ignore[attr-defined]
    p.get_by_role("button", name="Upload and activate").click()  # type: ignore[attr-defined]
    p.wait_for_load_state()  # type: ignore[attr-defined]
    shot(p, "05-certificate-uploaded")
    assert "External Browser CA" in p.inner_text("body")  # type: ignore[attr-defined]

    # The alarm is gone and the new certificate is served (openssl s_client).
    p.goto("/")  # type: ignore[attr-defined]
    assert "temporary certificate" not in p.inner_text("body").lower()  # type: ignore[attr-defined]
    shot(p, "06-status-after-upload")
    deadline = dt.datetime.now() + dt.timedelta(seconds=5)
    while True:
        output = served_subject(server.admin_port, openssl)
        if "External Browser CA" in output or dt.datetime.now() > deadline:
            break
    assert "issuer=CN = External Browser CA" in output

    # Upload a CRL of the external CA (empty, signed by it).
    crl = tmp_path / "external.crl"
    subprocess.run(
        [openssl, "ca", "-gencrl", "-keyfile", str(ca_key), "-cert", str(ca_pem),
         "-out", str(crl), "-config", str(_openssl_ca_config(tmp_path))],
        check=True, capture_output=True, cwd=tmp_path,
    )  # fmt: skip
    p.goto("/crls")  # type: ignore[attr-defined]
    p.set_input_files("#crl", str(crl))  # type: ignore[attr-defined]
    p.click("form[action='/crls/manual'] button[type=submit]")  # type: ignore[attr-defined]
    p.wait_for_load_state()  # type: ignore[attr-defined]
    assert "External Browser CA" in p.inner_text("body")  # type: ignore[attr-defined]
    shot(p, "07-crls")

    # Client certificate test: a client certificate from a local CA, mapped to a username.
    node.local_ca.create_root("users", "/CN=Browser Users")
    node.trusted_cas.add(
        node.local_ca.certificate("users").public_bytes(serialization.Encoding.PEM)
    )
    user_key = ec.generate_private_key(ec.SECP256R1())
    user_csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "carol")]))
        .sign(user_key, hashes.SHA256())
    )
    user_cert = node.local_ca.sign(
        "users", user_csr.public_bytes(serialization.Encoding.PEM), profile="client"
    )
    user_file = tmp_path / "carol.pem"
    user_file.write_bytes(user_cert.pem())
    p.goto("/client-certificate-test")  # type: ignore[attr-defined]
    p.set_input_files("#certificate", str(user_file))  # type: ignore[attr-defined]
    p.fill("#regex", r"/Subject:.*CN=(?<Group1>[^,]*)/")  # type: ignore[attr-defined]
    p.fill("#format", "user-#Group1#")  # type: ignore[attr-defined]
    p.click("form[action='/client-certificate-test'] button[type=submit]")  # type: ignore[attr-defined]
    p.wait_for_load_state()  # type: ignore[attr-defined]
    shot(p, "08-client-certificate-test")
    assert "user-carol" in p.inner_text("body")  # type: ignore[attr-defined]

    # Every other page renders (screenshots for the record).
    for path, name in [
        ("/server-certificate", "08b-server-certificate"),
        ("/domains", "09-domains"),
        ("/revocation", "10-revocation"),
        ("/certificate-auth", "11-certificate-auth"),
        ("/sip", "12-sip-zones"),
        ("/local-ca", "13-local-ca"),
        ("/audit", "14-audit"),
    ]:
        response = p.goto(path)  # type: ignore[attr-defined]
        assert response is not None and response.status == 200, path
        shot(p, name)


def _openssl_ca_config(tmp_path: Path) -> Path:
    """A minimal `openssl ca` configuration to sign an (empty) CRL."""
    (tmp_path / "index.txt").write_text("")
    (tmp_path / "crlnumber").write_text("01\n")
    config = tmp_path / "ca.cnf"
    config.write_text(
        "[ca]\ndefault_ca = ext\n[ext]\n"
        f"database = {tmp_path / 'index.txt'}\n"
        f"crlnumber = {tmp_path / 'crlnumber'}\n"
        "default_md = sha256\ndefault_crl_days = 7\n"
    )
    return config
