"""Backup and restore over HTTP, and the round trip a user cares about: issue, revoke, back
up (API download from a running node), restore into a new node (API), start it, and compare
what the two nodes serve — the server certificate over TLS, the CRL over the publication
listener — and that the administrator accounts still log in."""

from __future__ import annotations

import base64
import re
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient

from certway.pki.csr import CsrForm, build_csr
from certway.services import backup as backups
from certway.services.local_ca import CaSettings
from certway.services.node import Node
from certway.web.app import create_admin_app

from conftest import store_snapshot, test_key
from serving import running

PASSWORD = "correct horse battery"
PASSPHRASE = "backup passphrase 7c41d0"
FQDN = "vcs.example.com"


def trust_context(node: Node) -> ssl.SSLContext:
    """A client context trusting the node's trusted CAs (its temporary CA among them)."""
    pem = b"".join(
        c.public_bytes(serialization.Encoding.PEM) for c in node.trusted_cas.snapshot().certificates
    )
    context = ssl.create_default_context(cadata=pem.decode())
    context.check_hostname = False
    return context


def peer_certificate(port: int, context: ssl.SSLContext, server_name: str) -> x509.Certificate:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


@pytest.fixture(autouse=True)
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        backups, "DEFAULT_KDF", backups.KdfParams(memory_kib=8192, time_cost=1, parallelism=1)
    )


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node.init(tmp_path / "a", fqdn=FQDN)
    n.admins.add("alice", "read-write", PASSWORD)
    n.admins.add("bob", "read-only", PASSWORD)
    yield n
    n.close()


def served(node: Node, server_port: int, publish_port: int) -> tuple[bytes, bytes]:
    """(server certificate DER over TLS, DER CRL of CA 'lab' over the publish listener)."""
    cert = peer_certificate(server_port, trust_context(node), FQDN)
    crl = httpx.get(f"http://127.0.0.1:{publish_port}/crl/lab.crl")
    assert crl.status_code == 200
    return cert.public_bytes(serialization.Encoding.DER), crl.content


def test_round_trip_serves_the_same_certificates_and_crl(node: Node, tmp_path: Path) -> None:
    node.local_ca.create_root(
        "lab", "CN=Lab Root", settings=CaSettings(crl_urls=("http://127.0.0.1/crl/lab.crl",))
    )
    issued = []
    for index in range(3):
        csr, _ = build_csr(
            test_key("ec:p256", 10 + index), CsrForm(common_name=f"p{index}.example.com")
        )
        issued.append(node.local_ca.sign("lab", csr.public_bytes(serialization.Encoding.PEM)))
    node.local_ca.revoke("lab", f"{issued[1].certificate.serial_number:X}", reason="keyCompromise")
    target = tmp_path / "restored"
    with running(node, sip=False) as server:
        before = served(node, server.admin_port, server.publish_port)
        base = f"https://127.0.0.1:{server.admin_port}/api/v1"
        context = trust_context(node)
        download = httpx.post(
            f"{base}/backup",
            json={"passphrase": PASSPHRASE},
            auth=("alice", PASSWORD),
            verify=context,
        )
        assert download.status_code == 200, download.text
        assert re.match(
            r'attachment; filename="certway-vcs\.example\.com-\d{8}T\d{6}Z\.bak"',
            download.headers["content-disposition"],
        )
        restored = httpx.post(
            f"{base}/backup/restore",
            json={
                "backup": base64.b64encode(download.content).decode(),
                "passphrase": PASSPHRASE,
                "data_dir": str(target),
            },
            auth=("alice", PASSWORD),
            verify=context,
            timeout=60,
        )
        assert restored.status_code == 200, restored.text
        answer = restored.json()
        assert answer["node"] == FQDN and answer["token_keys"] == []
        assert "this node is unchanged" in answer["next_step"]
    assert PASSPHRASE.encode() not in download.content
    new = Node.open(target)
    try:
        with running(new, sip=False) as server:
            after = served(new, server.admin_port, server.publish_port)
            status = httpx.get(
                f"https://127.0.0.1:{server.admin_port}/api/v1/status",
                auth=("alice", PASSWORD),
                verify=trust_context(new),
            )
            assert status.status_code == 200
            assert status.json()["you"] == {"name": "alice", "access": "read-write"}
            wrong = httpx.get(
                f"https://127.0.0.1:{server.admin_port}/api/v1/status",
                auth=("alice", "not the password"),
                verify=trust_context(new),
            )
            assert wrong.status_code == 401
        assert after == before  # the same server certificate, the same CRL bytes
        crl = x509.load_der_x509_crl(after[1])
        assert [r.serial_number for r in crl] == [issued[1].certificate.serial_number]
        assert [i.serial for i in new.local_ca.issued("lab")] == [
            i.serial for i in node.local_ca.issued("lab")
        ]
    finally:
        new.close()


@pytest.fixture
def client(node: Node) -> TestClient:
    return TestClient(create_admin_app(node, secure_cookies=False), base_url="https://testserver")


def test_read_only_accounts_cannot_back_up_or_restore(
    node: Node, client: TestClient, tmp_path: Path
) -> None:
    data = node.backups.create(PASSPHRASE.encode())
    before = store_snapshot(node.store.data_dir)
    answer = client.post("/api/v1/backup", json={"passphrase": PASSPHRASE}, auth=("bob", PASSWORD))
    assert answer.status_code == 403
    answer = client.post(
        "/api/v1/backup/restore",
        json={
            "backup": base64.b64encode(data).decode(),
            "passphrase": PASSPHRASE,
            "data_dir": str(tmp_path / "x"),
        },
        auth=("bob", PASSWORD),
    )
    assert answer.status_code == 403
    assert not (tmp_path / "x").exists()
    assert store_snapshot(node.store.data_dir) == before


def test_api_restore_refusals(node: Node, client: TestClient, tmp_path: Path) -> None:
    data = base64.b64encode(node.backups.create(PASSPHRASE.encode())).decode()
    alice = ("alice", PASSWORD)

    def restore(data_dir: str, passphrase: str = PASSPHRASE, backup: str = data) -> httpx.Response:
        return client.post(
            "/api/v1/backup/restore",
            json={"backup": backup, "passphrase": passphrase, "data_dir": data_dir},
            auth=alice,
        )

    wrong = restore(str(tmp_path / "b"), "another passphrase")
    assert wrong.status_code == 400 and "wrong passphrase" in wrong.json()["detail"]
    assert PASSPHRASE not in wrong.text and "another passphrase" not in wrong.text
    relative = restore("restored")
    assert relative.status_code == 422 and "absolute path" in relative.json()["detail"]
    own = restore(str(node.store.data_dir))
    assert own.status_code == 422 and "not this node's" in own.json()["detail"]
    garbage = restore(str(tmp_path / "b"), backup="not base64!")
    assert garbage.status_code == 400 and "not base64" in garbage.json()["detail"]
    assert not (tmp_path / "b").exists()
    short = client.post("/api/v1/backup", json={"passphrase": "short"}, auth=alice)
    assert short.status_code == 422 and "at least 10 characters" in short.json()["detail"]


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)


def login(client: TestClient, user: str) -> str:
    client.post("/login", data={"user": user, "password": PASSWORD}, follow_redirects=False)
    page = client.get("/backup").text
    return csrf_of(page) if 'name="csrf"' in page else ""


def test_ui_download_and_restore(node: Node, client: TestClient, tmp_path: Path) -> None:
    token = login(client, "alice")
    mismatch = client.post(
        "/backup", data={"csrf": token, "passphrase": PASSPHRASE, "passphrase2": PASSPHRASE + "x"}
    )
    assert "the two passphrases differ" in mismatch.text
    download = client.post(
        "/backup", data={"csrf": token, "passphrase": PASSPHRASE, "passphrase2": PASSPHRASE}
    )
    assert download.status_code == 200
    assert download.content.startswith(b"CERTWAY-BACKUP 1\n")
    target = tmp_path / "from-ui"
    page = client.post(
        "/backup/restore",
        data={"csrf": token, "passphrase": PASSPHRASE, "data_dir": str(target)},
        files={"file": ("node.bak", download.content, "application/octet-stream")},
    )
    assert page.status_code == 200
    assert f"into {target} with a new master key" in page.text
    assert PASSPHRASE not in page.text
    assert (target / "master.key").exists()
    again = client.post(
        "/backup/restore",
        data={"csrf": token, "passphrase": PASSPHRASE, "data_dir": str(target)},
        files={"file": ("node.bak", download.content, "application/octet-stream")},
    )
    assert "is not empty" in again.text


def test_ui_page_for_read_only_accounts(client: TestClient) -> None:
    login(client, "bob")
    page = client.get("/backup").text
    assert "read-write administrators" in page and 'action="/backup/restore"' not in page


def test_api_odd_input_is_a_clear_refusal(client: TestClient, tmp_path: Path) -> None:
    alice = ("alice", PASSWORD)
    lone = client.post(
        "/api/v1/backup",
        content=b'{"passphrase": "\\ud800 long enough passphrase"}',
        headers={"content-type": "application/json"},
        auth=alice,
    )
    assert lone.status_code == 422 and "not valid text" in lone.json()["detail"]
    for data_dir in ("/tmp/a\u0000b", "/" + "x" * 5000):
        answer = client.post(
            "/api/v1/backup/restore",
            json={"backup": "Q0VSVFdBWQ==", "passphrase": PASSPHRASE, "data_dir": data_dir},
            auth=alice,
        )
        assert answer.status_code in (400, 422, 503), answer.text
        assert "detail" in answer.json()
