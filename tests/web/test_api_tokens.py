"""API tokens over the API and the UI, HTTP Basic's credential cache, batch signing, and the
API's description (summaries, descriptions, tags, security schemes), in process."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fastapi import FastAPI
from fastapi.testclient import TestClient

from certway.clock import FixedClock
from certway.pki.csr import CsrForm, build_csr
from certway.services.node import Node
from certway.web.app import create_admin_app

from conftest import NOW, test_key

pytestmark = pytest.mark.usefixtures("quick_hashes")  # argon2 at test strength

PASSWORD = "correct horse battery"
API = "/api/v1"
CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def node(tmp_path: Path, clock: FixedClock) -> Iterator[Node]:
    n = Node.init(tmp_path / "d", clock, fqdn="vcs.example.com")
    n.admins.add("alice", "read-write", PASSWORD)
    n.admins.add("bob", "read-only", PASSWORD)
    n.local_ca.create_root("lab", "CN=Lab Root")
    yield n
    n.close()


@pytest.fixture
def app(node: Node) -> FastAPI:
    return create_admin_app(node, secure_cookies=False)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def basic(user: str, password: str = PASSWORD) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def csr_pem(cn: str, index: int) -> str:
    csr, _ = build_csr(test_key("ec:p256", index), CsrForm(common_name=cn))
    return csr.public_bytes(serialization.Encoding.PEM).decode()


# -- tokens over the API --------------------------------------------------------------------
def test_token_created_over_the_api_signs_and_is_listed_without_its_secret(
    client: TestClient, node: Node
) -> None:
    created = ok(
        client.post(
            f"{API}/api-tokens",
            json={"name": "ci", "access": "read-write", "expires_days": 30},
            headers=basic("alice"),
        ),
        201,
    )
    token = created["token"]
    assert token.startswith("certway_") and len(token) > 60
    assert created["status"] == "active" and created["created_by"] == "alice"
    assert created["expires_at"] == (NOW + dt.timedelta(days=30)).isoformat()

    signed = ok(
        client.post(
            f"{API}/local-ca/lab/sign",
            json={"csr": csr_pem("a.example.com", 1)},
            headers=bearer(token),
        )
    )
    cert = x509.load_pem_x509_certificate(signed["pem"].encode())
    cert.verify_directly_issued_by(node.local_ca.certificate("lab"))
    assert [i.serial for i in node.local_ca.issued("lab")] == [signed["serial"]]

    listed = client.get(f"{API}/api-tokens", headers=bearer(token))
    assert [t["name"] for t in ok(listed)] == ["ci"]
    assert token not in listed.text and token.split("_")[-1] not in listed.text
    assert "token" not in ok(listed)[0]
    # the audit log names the token as the actor of the signature
    entries = [e for e in node.audit.entries() if e.action == "ca.sign"]
    assert entries[-1].actor == "token:ci" and entries[-1].via == "api"
    status = ok(client.get(f"{API}/status", headers=bearer(token)))
    assert status["you"] == {"name": "token:ci", "access": "read-write"}


def test_revoked_and_expired_tokens_are_refused_with_the_reason(
    client: TestClient, node: Node, clock: FixedClock
) -> None:
    revoked = node.api_tokens.create("old", "read-write").token
    expiring = node.api_tokens.create("short", "read-only", days=1).token
    assert client.get(f"{API}/status", headers=bearer(revoked)).status_code == 200

    gone = ok(client.delete(f"{API}/api-tokens/old", headers=basic("alice")))
    assert gone["status"] == "revoked"
    response = client.get(f"{API}/status", headers=bearer(revoked))
    assert response.status_code == 401
    assert response.json()["detail"] == "API token 'old' was revoked"
    conflict = client.delete(f"{API}/api-tokens/old", headers=basic("alice"))
    assert conflict.status_code == 409

    assert client.get(f"{API}/status", headers=bearer(expiring)).status_code == 200
    clock.advance(dt.timedelta(days=1, seconds=1))
    response = client.get(f"{API}/status", headers=bearer(expiring))
    assert response.status_code == 401
    assert response.json()["detail"].startswith("API token 'short' expired on ")
    listed = {
        t["name"]: t["status"] for t in ok(client.get(f"{API}/api-tokens", headers=basic("bob")))
    }
    assert listed == {"old": "revoked", "short": "expired"}

    # the name of a revoked token may be reused; the old token stays refused
    fresh = ok(
        client.post(
            f"{API}/api-tokens", json={"name": "old", "access": "read-only"}, headers=basic("alice")
        ),
        201,
    )["token"]
    assert client.get(f"{API}/status", headers=bearer(fresh)).status_code == 200
    assert client.get(f"{API}/status", headers=bearer(revoked)).status_code == 401


def test_token_management_needs_read_write_and_refuses_bad_input(
    client: TestClient, node: Node
) -> None:
    reader = node.api_tokens.create("reader", "read-only").token
    for headers in (basic("bob"), bearer(reader)):
        response = client.post(
            f"{API}/api-tokens", json={"name": "x", "access": "read-write"}, headers=headers
        )
        assert response.status_code == 403
    bad = [
        ({"name": "has space", "access": "read-only"}, 422),
        ({"name": "x", "access": "admin"}, 422),
        ({"name": "x", "access": "read-only", "expires_days": 0}, 422),
        ({"name": "reader", "access": "read-only"}, 409),
    ]
    for body, status in bad:
        response = client.post(f"{API}/api-tokens", json=body, headers=basic("alice"))
        assert response.status_code == status, (body, response.text)
    assert [t.name for t in node.api_tokens.tokens()] == ["reader"]
    missing = client.delete(f"{API}/api-tokens/nobody", headers=basic("alice"))
    assert missing.status_code == 404


# -- HTTP Basic: verified credentials are remembered briefly --------------------------------
def test_basic_credentials_are_verified_once_then_cached_until_the_account_changes(
    client: TestClient, node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks: list[str] = []
    verify = node.admins.verify

    def counting(name: str, password: str) -> Any:
        checks.append(name)
        return verify(name, password)

    monkeypatch.setattr(node.admins, "verify", counting)
    for _ in range(3):
        assert client.get(f"{API}/status", headers=basic("alice")).status_code == 200
    assert checks == ["alice"]
    # a wrong password is never answered from the cache
    assert client.get(f"{API}/status", headers=basic("alice", "wrong one!")).status_code == 401
    assert checks == ["alice", "alice"]

    node.admins.set_password("alice", "a brand new password")
    assert client.get(f"{API}/status", headers=basic("alice")).status_code == 401
    assert (
        client.get(f"{API}/status", headers=basic("alice", "a brand new password")).status_code
        == 200
    )
    assert checks == ["alice"] * 4

    # bob is read-only; once removed his cached credential no longer works
    assert client.get(f"{API}/status", headers=basic("bob")).status_code == 200
    assert client.get(f"{API}/status", headers=basic("bob")).status_code == 200
    assert checks.count("bob") == 1
    node.admins.remove("bob")
    assert client.get(f"{API}/status", headers=basic("bob")).status_code == 401


def test_a_blocked_account_stays_blocked_for_cached_credentials(
    client: TestClient,
) -> None:
    assert client.get(f"{API}/status", headers=basic("alice")).status_code == 200  # cached
    for _ in range(5):
        assert client.get(f"{API}/status", headers=basic("alice", "guess-guess")).status_code == 401
    response = client.get(f"{API}/status", headers=basic("alice"))
    assert response.status_code == 429
    assert "too many failed logins" in response.json()["detail"]


# -- batch signing --------------------------------------------------------------------------
def test_batch_signs_in_one_transaction_with_an_error_per_refused_csr(
    client: TestClient, node: Node
) -> None:

    token = node.api_tokens.create("ci", "read-write").token
    csrs = [
        csr_pem("a.example.com", 1),
        "not a CSR",
        csr_pem("b.example.com", 2),
        csr_pem("c.example.com", 3).replace("MII", "MIJ", 1),  # damaged
    ]
    answer = ok(
        client.post(
            f"{API}/local-ca/lab/sign-batch",
            json={"csrs": csrs, "profile": "server", "days": 30, "chain": True},
            headers=bearer(token),
        )
    )
    assert (answer["signed"], answer["refused"]) == (2, 2)
    results = answer["results"]
    assert [r["index"] for r in results] == [0, 1, 2, 3]
    assert "error" not in results[0] and "error" not in results[2]
    assert results[1]["error"] and results[3]["error"] and "pem" not in results[1]
    # text is reported as text, as `certway decode` and `certway ca sign` do
    assert results[1]["error"] == "not a CSR: no PEM BEGIN line, and text is not DER"
    root = node.local_ca.certificate("lab")
    for item in (results[0], results[2]):
        cert = x509.load_pem_x509_certificate(item["pem"].encode())
        cert.verify_directly_issued_by(root)
        assert item["serial"] in {i.serial for i in node.local_ca.issued("lab")}
    assert len(node.local_ca.issued("lab")) == 2
    rows = [e for e in node.audit.entries() if e.action == "ca.sign-batch"]
    assert len(rows) == 1 and rows[0].detail["signed"] == 2 and rows[0].detail["refused"] == 2
    assert sorted(rows[0].detail["serials"]) == sorted([results[0]["serial"], results[2]["serial"]])

    # an unknown CA or profile refuses the whole batch and signs nothing
    for url, body in (
        (f"{API}/local-ca/nope/sign-batch", {"csrs": csrs[:1]}),
        (f"{API}/local-ca/lab/sign-batch", {"csrs": []}),
    ):
        response = client.post(url, json=body, headers=bearer(token))
        assert response.status_code in (404, 422), response.text
    assert len(node.local_ca.issued("lab")) == 2


# -- the API's description ------------------------------------------------------------------
def test_every_operation_has_summary_description_and_tags(client: TestClient) -> None:
    document = ok(client.get(f"{API}/openapi.json", headers=basic("bob")))
    schemes = document["components"]["securitySchemes"]
    assert schemes["basic"] == {
        "type": "http",
        "scheme": "basic",
        "description": schemes["basic"]["description"],
    }
    assert schemes["bearer"]["scheme"] == "bearer"
    assert schemes["mutualTLS"]["type"] == "mutualTLS"
    assert {next(iter(s)) for s in document["security"]} == {"basic", "bearer", "mutualTLS"}
    declared = {t["name"] for t in document["tags"]}
    missing = []
    count = 0
    for path, item in document["paths"].items():
        for method, operation in item.items():
            count += 1
            summary = operation.get("summary", "")
            # FastAPI's own summary would be the function name in title case ("Ca Sign")
            generated = operation["operationId"].split("_api_v1")[0].replace("_", " ").title()
            if (
                not summary
                or summary == generated
                or not operation.get("description")
                or not operation.get("tags")
                or not set(operation["tags"]) <= declared
                or not any(s.startswith("2") for s in operation["responses"])
            ):
                missing.append((method.upper(), path))
    assert count > 60
    assert missing == []
    sign = document["paths"][f"{API}/local-ca/{{name}}/sign-batch"]["post"]
    assert sign["summary"] == "Sign many CSRs at once."
    assert sign["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/SignBatchOut"
    }


def test_docs_page_serves_its_assets_itself(client: TestClient) -> None:
    page = client.get(f"{API}/docs", headers=basic("bob"))
    assert page.status_code == 200
    assert not re.search(r"https?://|//", page.text)
    references = [r for r in re.findall(r'(?:src|href)="([^"]*)"', page.text) if r != "data:,"]
    assert len(references) == 3
    for reference in references:
        assert reference.startswith(f"{API}/docs/")
        asset = client.get(reference, headers=bearer_of(client))
        assert asset.status_code == 200 and len(asset.content) > 100
    bundle = client.get(f"{API}/docs/swagger-ui-bundle.js", headers=basic("bob"))
    assert "SwaggerUIBundle" in bundle.text


def bearer_of(client: TestClient) -> dict[str, str]:
    """A read-only token of the client's node (the docs take tokens like any API route)."""
    node: Node = client.app.state.web.node  # type: ignore[attr-defined]
    return bearer(
        node.api_tokens.create(f"docs-{len(node.api_tokens.tokens())}", "read-only").token
    )


# -- the UI page ----------------------------------------------------------------------------
def ui_login(app: FastAPI, user: str) -> TestClient:
    client = TestClient(app)
    response = client.post(
        "/login", data={"user": user, "password": PASSWORD}, follow_redirects=False
    )
    assert response.status_code == 303
    return client


def test_ui_creates_a_token_shown_once_and_revokes_it(app: FastAPI, node: Node) -> None:
    alice = ui_login(app, "alice")
    page = alice.get("/api-tokens")
    assert page.status_code == 200 and "No API tokens yet." in page.text
    assert 'href="/api-tokens"' in page.text  # in the navigation
    csrf = CSRF_RE.search(page.text)
    assert csrf
    created = alice.post(
        "/api-tokens",
        data={"csrf": csrf.group(1), "name": "deploy", "access": "read-write", "expires": "7"},
    )
    assert created.status_code == 200
    shown = re.search(r'<pre class="pem" id="new-token">([^<]+)</pre>', created.text)
    assert shown
    token = shown.group(1)
    assert TestClient(app).get(f"{API}/status", headers=bearer(token)).status_code == 200
    again = alice.get("/api-tokens")
    assert token not in again.text and "deploy" in again.text
    assert "read-write" in again.text

    revoked = alice.post("/api-tokens/deploy/revoke", data={"csrf": csrf.group(1)})
    assert revoked.status_code == 200 and "revoked" in revoked.text
    assert TestClient(app).get(f"{API}/status", headers=bearer(token)).status_code == 401

    bad = alice.post("/api-tokens", data={"csrf": csrf.group(1), "name": "", "access": "read-only"})
    assert bad.status_code == 422 and "token name" in bad.text

    bob = ui_login(app, "bob")
    view = bob.get("/api-tokens")
    assert "deploy" in view.text and 'action="/api-tokens"' not in view.text
    bob_csrf = CSRF_RE.search(view.text)
    refused = bob.post(
        "/api-tokens",
        data={"csrf": bob_csrf.group(1) if bob_csrf else "", "name": "x", "access": "read-write"},
    )
    assert refused.status_code == 403
    assert [t.name for t in node.api_tokens.tokens()] == ["deploy"]
    assert json.dumps([t.as_dict() for t in node.api_tokens.tokens()]).count(token) == 0
