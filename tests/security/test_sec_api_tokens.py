"""API tokens as an attacker sees them: guessed, altered, expired, revoked and under-privileged
tokens are refused with 401/403 and change nothing; the secret is compared in constant time
against a hash; the token never reaches the store, the audit log, the logs or any listing."""

from __future__ import annotations

import base64
import datetime as dt
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from certway.clock import FixedClock
from certway.services import api_tokens as api_tokens_module
from certway.services.api_tokens import TokenRefused
from certway.services.node import Node
from certway.web.app import create_admin_app

from conftest import NOW, store_snapshot

API = "/api/v1"


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def node(tmp_path: Path, clock: FixedClock) -> Iterator[Node]:
    n = Node.init(tmp_path / "d", clock, fqdn="vcs.example.com")
    n.local_ca.create_root("lab", "CN=Lab Root")
    yield n
    n.close()


@pytest.fixture
def client(node: Node) -> Iterator[TestClient]:
    with TestClient(create_admin_app(node, secure_cookies=False)) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def altered(token: str) -> str:
    last = token[-1]
    return token[:-1] + ("A" if last != "A" else "B")


def test_wrong_altered_and_malformed_tokens_are_refused(
    client: TestClient, node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    token = node.api_tokens.create("ci", "read-write").token
    prefix, key_id, secret = token.split("_", 2)
    other_key = "0" * 16 if key_id != "0" * 16 else "1" * 16
    cases = {
        altered(token): "unknown API token",  # right key id, wrong secret
        f"{prefix}_{other_key}_{secret}": "unknown API token",  # right secret, other key id
        token[:-1]: "malformed API token",
        "": "malformed API token",
        "certway_zz_zz": "malformed API token",
        base64.b64encode(b"alice:password").decode(): "malformed API token",
    }
    with caplog.at_level(logging.WARNING, logger="certway.web"):
        for presented, reason in cases.items():
            response = client.post(
                f"{API}/local-ca/lab/revoke", json={"serial": "01"}, headers=bearer(presented)
            )
            assert response.status_code == 401, presented
            assert response.json()["detail"] == reason
    assert node.local_ca.info("lab").revoked == 0
    refused = [e for e in node.audit.entries() if e.action == "api-token.login"]
    assert len(refused) == 6 and {e.outcome for e in refused} == {"refused"}
    logged = caplog.text + repr([e.as_dict() for e in node.audit.entries()])
    assert secret not in logged and altered(token) not in logged
    assert "event=token-refused" in caplog.text


def test_expired_and_revoked_tokens_are_refused(
    client: TestClient, node: Node, clock: FixedClock
) -> None:
    short = node.api_tokens.create("short", "read-write", days=2).token
    revoked = node.api_tokens.create("gone", "read-write").token
    node.api_tokens.revoke("gone")
    refused = client.get(f"{API}/alarms", headers=bearer(revoked))
    assert refused.status_code == 401
    assert refused.json()["detail"] == "API token 'gone' was revoked"
    assert client.get(f"{API}/alarms", headers=bearer(short)).status_code == 200
    clock.advance(dt.timedelta(days=2))
    refused = client.get(f"{API}/alarms", headers=bearer(short))
    assert refused.status_code == 401
    assert refused.json()["detail"] == "API token 'short' expired on 2026-11-29 12:00 UTC"


def test_read_only_token_cannot_change_anything(client: TestClient, node: Node) -> None:
    token = node.api_tokens.create("reader", "read-only").token
    before = store_snapshot(node.store.data_dir)
    attempts = [
        ("POST", "/local-ca/lab/sign", {"csr": "x"}),
        ("POST", "/local-ca/lab/sign-batch", {"csrs": ["x"]}),
        ("POST", "/api-tokens", {"name": "mine", "access": "read-write"}),
        ("DELETE", "/api-tokens/reader", None),
        ("POST", "/admins", {"name": "eve", "access": "read-write", "password": "x" * 12}),
    ]
    for method, path, body in attempts:
        response = client.request(method, API + path, json=body, headers=bearer(token))
        assert response.status_code == 403, (method, path)
        assert response.json()["detail"] == "account 'token:reader' is read-only"
    assert client.get(f"{API}/local-ca", headers=bearer(token)).status_code == 200
    assert store_snapshot(node.store.data_dir) == before


def test_the_secret_is_compared_in_constant_time_against_its_hash(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = node.api_tokens.create("ci", "read-write").token
    compared: list[tuple[str, str]] = []
    real = api_tokens_module.hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(api_tokens_module.hmac, "compare_digest", spy)
    assert node.api_tokens.authenticate(token).name == "ci"
    with pytest.raises(TokenRefused, match="unknown API token"):
        node.api_tokens.authenticate(altered(token))
    with pytest.raises(TokenRefused, match="unknown API token"):  # unknown key id: compared too
        node.api_tokens.authenticate("certway_" + "f" * 16 + token[-44:])
    assert len(compared) == 3
    secret = token.rsplit("_", 1)[1]
    for presented, stored in compared:
        # hex SHA-256 digests on both sides: the secret itself is never compared or stored
        assert len(presented) == len(stored) == 64
        assert secret not in (presented, stored)


def test_the_token_is_never_stored_audited_or_listed(node: Node, client: TestClient) -> None:
    created = node.api_tokens.create("ci", "read-write", days=5)
    secret = created.token.rsplit("_", 1)[1]
    assert client.get(f"{API}/status", headers=bearer(created.token)).status_code == 200
    database = b"".join(p.read_bytes() for p in node.store.data_dir.rglob("*") if p.is_file())
    assert secret.encode() not in database and created.token.encode() not in database
    text = repr([e.as_dict() for e in node.audit.entries()]) + repr(node.api_tokens.tokens())
    assert secret not in text
    assert [e.action for e in node.audit.entries() if e.action.startswith("api-token")] == [
        "api-token.create"
    ]


def test_tokens_do_not_open_the_ui(client: TestClient, node: Node) -> None:
    token = node.api_tokens.create("ci", "read-write").token
    response = client.get("/local-ca", headers=bearer(token), follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login"
