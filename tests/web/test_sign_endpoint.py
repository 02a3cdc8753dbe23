"""``POST /api/v1/local-ca/{name}/sign`` is answered ahead of the admin app's routing
(certway.web.api.sign_endpoint): every answer, refusals included, must be the one the routed
API gives. Each request is sent to the app as shipped and to the same app without that layer
(the route then answers), on two nodes in the same state, and the answers compared."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.types import ASGIApp

from certway.clock import FixedClock
from certway.errors import StoreError
from certway.pki.csr import CsrForm, build_csr
from certway.services.node import Node
from certway.store.db import DB_FILE, Store
from certway.web import app as app_module
from certway.web.api.sign_endpoint import MAX_BODY, SignEndpoint
from certway.web.context import MAX_UPLOAD
from waiting import wait_for

from conftest import NOW, test_key

pytestmark = pytest.mark.usefixtures("quick_hashes")  # argon2 at test strength

PASSWORD = "correct horse battery"


class Side:
    """One node and its admin app: with the sign layer (as shipped) or without (routed)."""

    def __init__(
        self,
        data_dir: Path,
        *,
        routed: bool,
        monkeypatch: pytest.MonkeyPatch,
        database: str | None = None,
    ) -> None:
        self.node = Node.init(data_dir, FixedClock(NOW), fqdn="vcs.example.com", database=database)
        self.node.admins.add("alice", "read-write", PASSWORD)
        self.node.admins.add("bob", "read-only", PASSWORD)
        self.node.local_ca.create_root("lab", "CN=Lab Root")
        self.rw = self.node.api_tokens.create("rw", "read-write").token
        self.ro = self.node.api_tokens.create("ro", "read-only").token
        self.set_up = len(self.node.audit.entries())
        with monkeypatch.context() as patch:
            if routed:  # the layer lets every request through to the app
                patch.setattr(app_module, "SignEndpoint", passing)
            self.app: FastAPI = app_module.create_admin_app(self.node, secure_cookies=False)
        self.client = TestClient(self.app)


def passing(app: ASGIApp, **_options: Any) -> ASGIApp:
    return app


@pytest.fixture
def sides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Side, Side]]:
    layer = Side(tmp_path / "layer", routed=False, monkeypatch=monkeypatch)
    routed = Side(tmp_path / "routed", routed=True, monkeypatch=monkeypatch)
    assert any(m.cls is SignEndpoint for m in layer.app.user_middleware)
    assert not any(m.cls is SignEndpoint for m in routed.app.user_middleware)
    yield layer, routed
    for side in (layer, routed):
        side.client.close()
        side.node.close()


CSR = (
    build_csr(test_key("ec:p256", 3), CsrForm(common_name="peer.example.com"))[0]
    .public_bytes(serialization.Encoding.PEM)
    .decode()
)
BAD_SIGNATURE = CSR.replace(CSR.splitlines()[5], CSR.splitlines()[5][:-4] + "AAAA")


def basic(user: str, password: str = PASSWORD) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# (what, path, headers (with the side's tokens), body)
Request = tuple[str, str, Callable[[Side], dict[str, str]], bytes]
JSON = {"Content-Type": "application/json"}
BODY = json.dumps({"csr": CSR}).encode()
CASES: list[Request] = [
    ("token", "/api/v1/local-ca/lab/sign", lambda s: {**JSON, "Authorization": f"Bearer {s.rw}"}, BODY),
    ("basic", "/api/v1/local-ca/lab/sign", lambda s: {**JSON, "Authorization": basic("alice")}, BODY),
    (
        "with chain, profile, days",
        "/api/v1/local-ca/lab/sign",
        lambda s: {**JSON, "Authorization": f"Bearer {s.rw}"},
        json.dumps({"csr": CSR, "chain": True, "profile": "server", "days": 30}).encode(),
    ),
    ("no credentials", "/api/v1/local-ca/lab/sign", lambda s: JSON, BODY),
    ("wrong password", "/api/v1/local-ca/lab/sign", lambda s: {**JSON, "Authorization": basic("alice", "nope")}, BODY),
    ("unknown token", "/api/v1/local-ca/lab/sign", lambda s: {**JSON, "Authorization": "Bearer certway_x_y"}, BODY),
    ("malformed Basic", "/api/v1/local-ca/lab/sign", lambda s: {**JSON, "Authorization": "Basic !!"}, BODY),
    ("read-only token", "/api/v1/local-ca/lab/sign", lambda s: {**JSON, "Authorization": f"Bearer {s.ro}"}, BODY),
    ("read-only account", "/api/v1/local-ca/lab/sign", lambda s: {**JSON, "Authorization": basic("bob")}, BODY),
    ("read-only, bad body", "/api/v1/local-ca/lab/sign", lambda s: {**JSON, "Authorization": f"Bearer {s.ro}"}, b"{"),
    ("unknown CA", "/api/v1/local-ca/nope/sign", lambda s: {**JSON, "Authorization": f"Bearer {s.rw}"}, BODY),
    ("not JSON", "/api/v1/local-ca/lab/sign", lambda s: {**JSON, "Authorization": f"Bearer {s.rw}"}, b"{csr"),
    ("empty body", "/api/v1/local-ca/lab/sign", lambda s: {**JSON, "Authorization": f"Bearer {s.rw}"}, b""),
    ("not UTF-8", "/api/v1/local-ca/lab/sign", lambda s: {**JSON, "Authorization": f"Bearer {s.rw}"}, b"\xff\xfe"),
    ("JSON array", "/api/v1/local-ca/lab/sign", lambda s: {**JSON, "Authorization": f"Bearer {s.rw}"}, b"[1]"),
    ("no content type", "/api/v1/local-ca/lab/sign", lambda s: {"Authorization": f"Bearer {s.rw}"}, BODY),
    (
        "problem+json content type",
        "/api/v1/local-ca/lab/sign",
        lambda s: {"Content-Type": "application/merge-patch+json; charset=utf-8", "Authorization": f"Bearer {s.rw}"},
        BODY,
    ),
    ("no csr", "/api/v1/local-ca/lab/sign", lambda s: {**JSON, "Authorization": f"Bearer {s.rw}"}, b"{}"),
    (
        "unknown profile",
        "/api/v1/local-ca/lab/sign",
        lambda s: {**JSON, "Authorization": f"Bearer {s.rw}"},
        json.dumps({"csr": CSR, "profile": "root"}).encode(),
    ),
    (
        "too many days",
        "/api/v1/local-ca/lab/sign",
        lambda s: {**JSON, "Authorization": f"Bearer {s.rw}"},
        json.dumps({"csr": CSR, "days": 10**6}).encode(),
    ),
    (
        "empty CSR",
        "/api/v1/local-ca/lab/sign",
        lambda s: {**JSON, "Authorization": f"Bearer {s.rw}"},
        json.dumps({"csr": ""}).encode(),
    ),
    (
        "garbage CSR",
        "/api/v1/local-ca/lab/sign",
        lambda s: {**JSON, "Authorization": f"Bearer {s.rw}"},
        json.dumps({"csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"}).encode(),
    ),
    (
        "CSR with a bad signature",
        "/api/v1/local-ca/lab/sign",
        lambda s: {**JSON, "Authorization": f"Bearer {s.rw}"},
        json.dumps({"csr": BAD_SIGNATURE}).encode(),
    ),
    (
        "over the layer's 64 KB: the route answers",
        "/api/v1/local-ca/lab/sign",
        lambda s: {**JSON, "Authorization": f"Bearer {s.rw}"},
        json.dumps({"csr": CSR, "note": "x" * (MAX_BODY + 1)}).encode(),
    ),
    (
        "too large",
        "/api/v1/local-ca/lab/sign",
        lambda s: {**JSON, "Authorization": f"Bearer {s.rw}"},
        b" " * (MAX_UPLOAD + 1),
    ),
]  # fmt: skip

COMPARED_HEADERS = (
    "content-type",
    "www-authenticate",
    "x-content-type-options",
    "x-frame-options",
    "referrer-policy",
    "strict-transport-security",
)


def answer(side: Side, case: Request) -> tuple[int, dict[str, str | None], Any]:
    _what, path, headers, body = case
    response = side.client.post(path, headers=headers(side), content=body)
    shown = {h: response.headers.get(h) for h in COMPARED_HEADERS}
    data = response.json() if response.content else None
    if response.status_code == 200:  # a new certificate each time: compare what it says
        cert = x509.load_pem_x509_certificate(data["pem"].encode())
        data = {
            "keys": sorted(data),
            "serial matches": data["serial"] == format(cert.serial_number, "X"),
            "subject": cert.subject.rfc4514_string(),
            "not_after": data["not_after"],
            "certificates": data["pem"].count("BEGIN CERTIFICATE"),
        }
    return response.status_code, shown, data


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_the_layer_answers_as_the_routed_api(sides: tuple[Side, Side], case: Request) -> None:
    layer, routed = sides
    assert answer(layer, case) == answer(routed, case)
    # ... and records the same: the inventory and the audit log
    records = [
        (
            [(i.subject, i.profile) for i in side.node.local_ca.issued("lab")],
            [
                (e.actor, e.via, e.action, e.target, e.outcome, sorted(e.detail))
                for e in side.node.audit.entries()[side.set_up :]
            ],
        )
        for side in (layer, routed)
    ]
    assert records[0] == records[1]


def test_other_requests_go_on_to_the_app(sides: tuple[Side, Side]) -> None:
    layer, _routed = sides
    headers = {"Authorization": f"Bearer {layer.rw}"}
    assert layer.client.get("/api/v1/local-ca/lab/sign", headers=headers).status_code == 405
    batch = layer.client.post(
        "/api/v1/local-ca/lab/sign-batch", headers=headers, json={"csrs": [CSR]}
    )
    assert batch.status_code == 200 and batch.json()["signed"] == 1
    assert layer.client.post("/api/v1/local-ca/lab/x/sign", headers=headers).status_code == 404


def test_a_client_gone_before_its_body_is_read_gets_no_answer(sides: tuple[Side, Side]) -> None:
    layer, _routed = sides
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "https",
        "path": "/api/v1/local-ca/lab/sign",
        "raw_path": b"/api/v1/local-ca/lab/sign",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"100")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 443),
    }
    asyncio.run(layer.app(scope, receive, send))
    assert sent == []
    assert layer.node.local_ca.issued("lab") == []


# -- answered on the event loop, or on a worker thread when something would wait ------------
def worker_thread_reasons(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "sign-on-worker-thread" in r.getMessage()]


def test_a_signature_waiting_for_the_write_lock_leaves_the_event_loop_free(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    side = Side(tmp_path / "n", routed=False, monkeypatch=monkeypatch)
    caplog.set_level(logging.DEBUG, logger="certway.web")
    token = {"Authorization": f"Bearer {side.rw}"}
    # another writer (another process) holds SQLite's write lock
    other = sqlite3.connect(side.node.store.data_dir / DB_FILE, check_same_thread=False)
    other.isolation_level = None
    other.execute("BEGIN IMMEDIATE")
    answers: dict[str, Any] = {}
    try:
        with TestClient(side.app) as client:  # one event loop for every request
            signing = threading.Thread(
                target=lambda: answers.update(
                    sign=client.post("/api/v1/local-ca/lab/sign", headers=token, json={"csr": CSR})
                )
            )
            signing.start()
            wait_for(lambda: worker_thread_reasons(caplog), "the signature handed to a thread")
            # the event loop answers others meanwhile: the signature waits on its thread
            assert client.get("/api/v1/local-ca", headers=token).status_code == 200
            assert signing.is_alive()
            other.execute("ROLLBACK")
            signing.join(30)
    finally:
        other.close()
        side.node.close()
    assert answers["sign"].status_code == 200
    assert worker_thread_reasons(caplog) == [
        'event=sign-on-worker-thread reason="the database\'s write lock, held by another writer"'
    ]
    assert len(side.node.local_ca.issued("lab")) == 1
    signed = [e for e in side.node.audit.entries() if e.action == "ca.sign"]
    assert [e.outcome for e in signed] == ["ok"]  # audited once, not also as a failure


def test_a_password_is_checked_on_a_worker_thread_then_remembered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    side = Side(tmp_path / "n", routed=False, monkeypatch=monkeypatch)
    caplog.set_level(logging.DEBUG, logger="certway.web")
    try:
        for _ in range(2):
            answered = side.client.post(
                "/api/v1/local-ca/lab/sign",
                headers={"Authorization": basic("alice")},
                json={"csr": CSR},
            )
            assert answered.status_code == 200
    finally:
        side.client.close()
        side.node.close()
    # the first request's password hash ran on a thread; the second was answered on the loop
    assert worker_thread_reasons(caplog) == [
        "event=sign-on-worker-thread reason='a password check'"
    ]


# -- PostgreSQL: the write awaited on the event loop -----------------------------------------
@pytest.fixture
def pg_side(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg_url: str, loop_statements: list[int]
) -> Iterator[tuple[Side, list[int]]]:
    """A node on PostgreSQL, and the statements sent on its event loop's connection."""
    side = Side(tmp_path / "pg", routed=False, monkeypatch=monkeypatch, database=pg_url)
    yield side, loop_statements
    side.node.close()


def test_on_postgresql_the_write_is_awaited_on_the_event_loop(
    pg_side: tuple[Side, list[int]], caplog: pytest.LogCaptureFixture
) -> None:
    side, sent = pg_side
    caplog.set_level(logging.DEBUG, logger="certway.web")
    token = {"Authorization": f"Bearer {side.rw}"}
    with TestClient(side.app) as client:
        answers = [
            client.post("/api/v1/local-ca/lab/sign", headers=token, json={"csr": CSR})
            for _ in range(3)
        ]
    assert [a.status_code for a in answers] == [200, 200, 200]
    # the first request read the token and the CA (PostgreSQL: on a worker thread); the
    # others found both known and only wrote, awaited on the loop
    assert worker_thread_reasons(caplog) == [
        "event=sign-on-worker-thread reason='the PostgreSQL database'"
    ]
    assert sent == [1, 1]
    serials = {a.json()["serial"] for a in answers}
    assert {i.serial for i in side.node.local_ca.issued("lab")} == serials
    signed = [e for e in side.node.audit.entries() if e.action == "ca.sign"]
    assert [(e.actor, e.via, e.outcome) for e in signed] == [("token:rw", "api", "ok")] * 3


def test_on_postgresql_a_failed_write_is_an_error_and_audited_once(
    pg_side: tuple[Side, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    side, _sent = pg_side
    token = {"Authorization": f"Bearer {side.rw}"}
    with TestClient(side.app) as client:
        assert (
            client.post("/api/v1/local-ca/lab/sign", headers=token, json={"csr": CSR}).status_code
            == 200
        )  # token and CA known from now on

        async def lost(store: Store, sql: str, parameters: Any) -> None:
            raise StoreError("the database is unavailable: connection lost")

        monkeypatch.setattr(Store, "statement_on_loop", lost)
        failed = client.post("/api/v1/local-ca/lab/sign", headers=token, json={"csr": CSR})
    assert failed.status_code == 503
    assert "connection lost" in failed.json()["detail"]
    assert len(side.node.local_ca.issued("lab")) == 1
    signed = [e for e in side.node.audit.entries() if e.action == "ca.sign"]
    assert [(e.actor, e.outcome) for e in signed] == [("token:rw", "ok"), ("token:rw", "refused")]
    assert signed[1].detail == {"error": "the database is unavailable: connection lost"}
