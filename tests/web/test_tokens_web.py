"""PKCS#11 tokens over the API and the UI: register (a system module only, the PIN never
answered back), test the login, create a CA whose key the token keeps and sign with it."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from certway.clock import FixedClock
from certway.pki.csr import CsrForm, build_csr
from certway.services.node import Node
from certway.web.app import create_admin_app

from conftest import NOW, PIN, SoftHsm, store_snapshot, test_key

pytestmark = [pytest.mark.interop, pytest.mark.usefixtures("quick_hashes")]

PASSWORD = "correct horse battery"
CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node.init(tmp_path / "d", FixedClock(NOW), factory=False)
    n.admins.add("alice", "read-write", PASSWORD)
    n.admins.add("bob", "read-only", PASSWORD)
    yield n
    n.close()


@pytest.fixture
def client(node: Node) -> Iterator[TestClient]:
    with TestClient(create_admin_app(node, secure_cookies=False)) as c:
        yield c


def auth(user: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{PASSWORD}".encode()).decode()}


def test_api_registers_a_token_tests_it_and_creates_a_ca_whose_key_it_keeps(
    client: TestClient, softhsm: SoftHsm
) -> None:
    body = {"name": "hsm", "module": softhsm.module, "token_label": softhsm.label, "pin": PIN}
    added = client.post("/api/v1/tokens", json=body, headers=auth("alice"))
    assert added.status_code == 201, added.text
    assert added.json() == {
        "name": "hsm",
        "module": softhsm.module,
        "token_label": softhsm.label,
        "cas": [],
    }
    root = client.post(
        "/api/v1/local-ca/roots",
        json={"name": "api-hsm", "subject": "/CN=API Token Root", "token": "hsm"},
        headers=auth("alice"),
    )
    assert root.status_code == 201, root.text
    csr, _ = build_csr(test_key("ec:p256", 3), CsrForm(common_name="leaf.example.com"))
    signed = client.post(
        "/api/v1/local-ca/api-hsm/sign",
        json={"csr": csr.public_bytes(serialization.Encoding.PEM).decode()},
        headers=auth("alice"),
    )
    assert signed.status_code == 200, signed.text
    leaf = x509.load_pem_x509_certificate(signed.json()["pem"].encode())
    ca = x509.load_pem_x509_certificate(
        client.get("/api/v1/local-ca/api-hsm/certificate", headers=auth("bob")).content
    )
    public = ca.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert leaf.signature_hash_algorithm is not None
    public.verify(
        leaf.signature, leaf.tbs_certificate_bytes, ec.ECDSA(leaf.signature_hash_algorithm)
    )
    listed = client.get("/api/v1/tokens", headers=auth("bob")).json()
    assert listed == [{**added.json(), "cas": ["api-hsm"]}]
    tested = client.post("/api/v1/tokens/hsm/test", headers=auth("bob"))  # a read
    assert tested.status_code == 200, tested.text
    assert {"api-hsm"} <= {k["ca"] for k in tested.json()["keys"]}
    for response in (added, root, signed, tested):
        assert PIN not in response.text


def test_api_refuses_a_module_outside_the_system_directories_and_read_only_accounts(
    client: TestClient, node: Node, softhsm: SoftHsm, tmp_path: Path
) -> None:
    copy = tmp_path / "libsofthsm2.so"
    copy.write_bytes(Path(softhsm.module).read_bytes())  # a real module, but anywhere on disk
    before = store_snapshot(node.store.data_dir)
    body = {"name": "hsm", "module": str(copy), "token_label": softhsm.label, "pin": PIN}
    refused = client.post("/api/v1/tokens", json=body, headers=auth("alice"))
    assert refused.status_code == 422, refused.text
    assert "not in a system module directory" in refused.json()["detail"]
    body["module"] = softhsm.module
    assert client.post("/api/v1/tokens", json=body, headers=auth("bob")).status_code == 403
    wrong = client.post("/api/v1/tokens", json={**body, "pin": "0000"}, headers=auth("alice"))
    assert "refused the PIN" in wrong.json()["detail"]
    assert store_snapshot(node.store.data_dir) == before


def test_ui_page_registers_a_token_without_showing_the_pin_and_offers_it_for_new_cas(
    client: TestClient, softhsm: SoftHsm
) -> None:
    login = client.post(
        "/login", data={"user": "alice", "password": PASSWORD}, follow_redirects=False
    )
    assert login.status_code == 303

    def post(path: str, data: dict[str, Any]) -> str:
        found = CSRF_RE.search(client.get("/tokens").text)
        assert found
        response = client.post(path, data={"csrf": found.group(1), **data})
        assert PIN not in response.text
        return html.unescape(response.text)

    form = {"name": "hsm", "module": softhsm.module, "token_label": softhsm.label}
    failed = post("/tokens", {**form, "pin": "0000"})
    assert "refused the PIN" in failed
    assert 'value="hsm"' in failed  # the form comes back filled in, without the PIN
    assert "registered token 'hsm'" in post("/tokens", {**form, "pin": PIN})
    assert "logged in" in post("/tokens/hsm/test", {})
    assert "PKCS#11 token 'hsm'" in html.unescape(client.get("/local-ca").text)
