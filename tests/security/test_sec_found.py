"""Defects found while testing the hardening work:

(a) an OCSP request with two CertIDs got ``internalError`` and a logged traceback;
(b) ``GET /api/v1/domains/Example.NET`` was 404 while the CLI found the domain, and
    ``…/domains/nosuch.example/csr`` was 200 ``null``;
(c) the README named a SIP fallback log event the code never logs;
(d) switching straight from ``not-required`` to certificate-based authentication always
    got 422: the admin listener never asked for a client certificate in that mode, so the
    caller never had one to prove it would not lock itself out."""

from __future__ import annotations

import logging
import re
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient

from certway.clock import FixedClock
from certway.pki.csr import CsrForm, build_csr
from certway.pki.keys import private_key_pem
from certway.services.identities import CsrOptions
from certway.services.local_ca import CaSettings
from certway.services.node import Node
from certway.web.app import create_admin_app

from conftest import NOW, test_key, write
from serving import running

PEM = serialization.Encoding.PEM
PASSWORD = "correct horse battery"
FQDN = "vcs.example.com"
ROOT = Path(__file__).resolve().parents[2]


def _csr(index: int, cn: str) -> bytes:
    csr, _ = build_csr(test_key("ec:p256", index), CsrForm(common_name=cn))
    return csr.public_bytes(PEM)


# -- (a) OCSP request with two CertIDs ---------------------------------------------------------
@pytest.mark.interop
def test_an_ocsp_request_with_two_certids_is_malformed_not_an_internal_error(
    tmp_path: Path, openssl: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    node = Node.init(tmp_path / "d", fqdn=FQDN)  # the real clock: openssl checks real time
    try:
        node.local_ca.create_root("root", "/CN=Two CertID Root")
        with running(node, sip=False) as server:
            url = f"http://127.0.0.1:{server.publish_port}/ocsp"
            settings = CaSettings(ocsp_url=url)
            node.local_ca.create_intermediate("int", "root", "/CN=Two CertID CA", settings=settings)
            first = node.local_ca.sign("int", _csr(850, "one.example.com")).certificate
            second = node.local_ca.sign("int", _csr(851, "two.example.com")).certificate
            files = {
                "int.pem": node.local_ca.certificate("int"),
                "root.pem": node.local_ca.certificate("root"),
                "one.pem": first,
                "two.pem": second,
            }
            for name, cert in files.items():
                write(tmp_path / name, cert.public_bytes(PEM))

            def ocsp(*args: str) -> str:
                done = subprocess.run(
                    [openssl, "ocsp", *args],
                    cwd=tmp_path,
                    capture_output=True,
                    text=True,
                    timeout=30,
                    check=False,
                )
                return done.stdout + done.stderr

            # openssl builds one request with two CertIDs, then sends it as it is
            ocsp("-issuer", "int.pem", "-cert", "one.pem", "-cert", "two.pem", "-reqout", "two.der")
            out = ocsp("-reqin", "two.der", "-url", url, "-CAfile", "root.pem", "-resp_text")
            assert "malformedrequest" in out.lower(), out
            assert "internalerror" not in out.lower()
            # one CertID is still answered as before
            single = ocsp(
                "-issuer", "int.pem", "-cert", "one.pem", "-url", url, "-CAfile", "root.pem"
            )
            assert "Response verify OK" in single and "one.pem: good" in single, single
    finally:
        node.close()
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


# -- (b) domain names --------------------------------------------------------------------------
@pytest.fixture
def api_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Node]:
    monkeypatch.setattr(
        "certway.services.admins._HASHER",
        PasswordHasher(time_cost=1, memory_cost=8, parallelism=1),
    )
    n = Node.init(tmp_path / "api", FixedClock(NOW), fqdn=FQDN)
    n.admins.add("alice", "read-write", PASSWORD)
    yield n
    n.close()


@pytest.fixture
def api(api_node: Node) -> Iterator[TestClient]:
    with TestClient(create_admin_app(api_node, secure_cookies=False)) as client:
        client.auth = ("alice", PASSWORD)
        yield client


def test_a_domain_is_found_however_its_name_is_typed(api_node: Node, api: TestClient) -> None:
    assert api.post("/api/v1/domains", json={"name": "Example.NET"}).status_code == 201
    api_node.local_ca.create_root("dom", "/CN=Domain Issuer")
    pending = api_node.identities.generate_csr(
        "domain", "example.net", CsrOptions(key_type="ec:p256")
    )
    signed = api_node.local_ca.sign("dom", pending.pem.encode(), profile="server-client")
    api_node.identities.upload("domain", "EXAMPLE.net.", signed.pem())

    for spelling in ("Example.NET", "example.net", "EXAMPLE.NET."):
        shown = api.get(f"/api/v1/domains/{spelling}")
        assert shown.status_code == 200, (spelling, shown.text)
        assert shown.json()["name"] == "example.net"
        assert api.get(f"/api/v1/domains/{spelling}/csr").json() is None  # none pending
    # the service answers the same for every spelling (the CLI goes through it too)
    assert api_node.identities.info("domain", "Example.NET").name == "example.net"
    assert api_node.identities.domain("EXAMPLE.NET.").name == "example.net"
    assert api.delete("/api/v1/domains/Example.Net").status_code == 204
    assert api_node.identities.domains() == []


def test_every_domain_route_is_404_for_an_unknown_domain(api_node: Node, api: TestClient) -> None:
    temporary = api_node.identities.temporary_ca()
    assert temporary is not None
    some_certificate = temporary.public_bytes(PEM).decode()
    base = "/api/v1/domains/nosuch.example"
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", base, {}),
        ("DELETE", base, {}),
        ("GET", f"{base}/csr", {}),
        ("POST", f"{base}/csr", {"json": {"key_type": "ec:p256"}}),
        ("DELETE", f"{base}/csr", {}),
        ("POST", f"{base}/certificate", {"json": {"certificate": some_certificate}}),
    ]
    for method, path, extra in calls:
        response = api.request(method, path, **extra)
        assert response.status_code == 404, (method, path, response.text)
        assert "nosuch.example" in response.json()["detail"]


# -- (c) log events named in the README --------------------------------------------------------
def test_every_log_event_the_readme_names_is_logged_by_the_code() -> None:
    readme = (ROOT / "README.md").read_text()
    named = set(re.findall(r"event=([a-z][a-z0-9-]*)", readme))
    assert "tls-verify-fallback" in named
    source = "\n".join(p.read_text() for p in (ROOT / "src" / "certway").rglob("*.py"))
    missing = sorted(e for e in named if f"event={e}" not in source)
    assert missing == [], f"the README names log events the code never logs: {missing}"


# -- (d) not-required → certificate-based authentication ---------------------------------------
@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Node, Any]]:
    n = Node.init(tmp_path / "serve", fqdn=FQDN)
    n.admins.add("alice", "read-write", PASSWORD)
    n.admins.add("bob", "read-only", PASSWORD)
    n.local_ca.create_root("users", "/CN=Admin Users Root")
    n.trusted_cas.add(n.local_ca.certificate("users").public_bytes(PEM))
    with running(n, publish=False, sip=False) as server:
        yield n, server
    n.close()


def user_certificate(node: Node, tmp_path: Path, cn: str, index: int) -> tuple[Path, Path]:
    key = test_key("ec:p256", index)
    csr, _ = build_csr(key, CsrForm(common_name=cn))
    signed = node.local_ca.sign("users", csr.public_bytes(PEM), profile="client")
    return (
        write(tmp_path / f"{cn}.pem", signed.pem(with_chain=True)),
        write(tmp_path / f"{cn}.key", private_key_pem(key)),
    )


def client_context(node: Node, client: tuple[Path, Path] | None) -> ssl.SSLContext:
    pem = b"".join(c.public_bytes(PEM) for c in node.trusted_cas.snapshot().certificates)
    context = ssl.create_default_context(cadata=pem.decode())
    context.check_hostname = False
    if client is not None:
        context.load_cert_chain(str(client[0]), str(client[1]))
    return context


def test_switching_from_not_required_to_certificate_authentication(
    served: tuple[Node, Any], tmp_path: Path
) -> None:
    node, server = served
    assert node.admin_security.get().mode.value == "not-required"
    url = f"https://127.0.0.1:{server.admin_port}/api/v1/admin-security"
    wanted = {"mode": "certificate-based-authentication"}

    def switch(client: tuple[Path, Path] | None) -> httpx.Response:
        context = client_context(node, client)
        return httpx.put(url, json=wanted, auth=("alice", PASSWORD), verify=context, timeout=30)

    # still refused without a certificate, or with one that maps to a read-only account
    refused = switch(None)
    assert refused.status_code == 422 and refused.json()["code"] == "lockout"
    bob = user_certificate(node, tmp_path, "bob", 860)
    refused = switch(bob)
    assert refused.status_code == 422 and "read-write" in refused.json()["detail"]
    assert node.admin_security.get().mode.value == "not-required"

    # a certificate that logs its holder in as a read-write account: the switch is made
    alice = user_certificate(node, tmp_path, "alice", 861)
    switched = switch(alice)
    assert switched.status_code == 200, switched.text
    assert switched.json()["mode"] == "certificate-based-authentication"
    assert node.admin_security.get().mode.value == "certificate-based-authentication"
    node.admin_security.reset()
