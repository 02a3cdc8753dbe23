"""The ACME page and the /api/v1/acme routes without an ACME server: what they show, the
schedule, and bad input refused with the service's message and nothing changed. (Signing
against a real ACME CA: tests/interop/test_acme_client.py.)"""

from __future__ import annotations

import base64
import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from certway.clock import FixedClock
from certway.services import admins
from certway.services.node import Node
from certway.web.app import create_admin_app

from conftest import NOW

FQDN = "vcs.example.com"
ALICE = ("alice", "a-long-password")
BOB = ("bob", "another-long-password")
CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


def login(client: TestClient, user: str, password: str) -> TestClient:
    response = client.post(
        "/login", data={"user": user, "password": password}, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    return client


def csrf(client: TestClient, page: str) -> str:
    found = CSRF_RE.search(client.get(page).text)
    assert found, f"no CSRF token on {page}"
    return found.group(1)


def messages(html: str, kind: str) -> list[str]:
    return [
        re.sub(r"<[^>]+>", "", m).strip()
        for m in re.findall(rf'<p class="message {kind}"[^>]*>(.*?)</p>', html, re.S)
    ]


@pytest.fixture(autouse=True)
def cheap_password_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        admins, "_HASHER", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    )


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node.init(tmp_path / "d", FixedClock(NOW), fqdn=FQDN)
    n.admins.add(ALICE[0], "read-write", ALICE[1])
    n.admins.add(BOB[0], "read-only", BOB[1])
    yield n
    n.close()


@pytest.fixture
def app(node: Node) -> Any:
    return create_admin_app(node, secure_cookies=False)


def auth(user: tuple[str, str]) -> dict[str, str]:
    token = base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_status_and_schedule_through_the_api(app: Any, node: Node) -> None:
    client = TestClient(app)
    status = client.get("/api/v1/acme", headers=auth(BOB))
    assert status.status_code == 200
    assert status.json() == {
        "account": None,
        "schedule": {
            "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
            "time": "00:00",
            "auto_deploy": True,
            "enabled": True,
        },
        "certificates": [],
        "pending": [],
    }
    assert client.get("/api/v1/acme/account", headers=auth(BOB)).status_code == 404
    changed = client.put(
        "/api/v1/acme/schedule",
        json={"days": ["sat", "sun"], "time": "03:30", "auto_deploy": False},
        headers=auth(ALICE),
    )
    assert changed.status_code == 200, changed.text
    assert changed.json() == {
        "days": ["sat", "sun"],
        "time": "03:30",
        "auto_deploy": False,
        "enabled": True,
    }
    assert node.acme.schedule().days == ("sat", "sun")
    assert node.audit.entries()[-1].action == "acme.schedule"
    refused = client.put("/api/v1/acme/schedule", json={"time": "25:00"}, headers=auth(ALICE))
    assert refused.status_code == 422
    assert refused.json()["detail"] == "'25:00' is not a time of day HH:MM (UTC)"
    assert (
        client.put("/api/v1/acme/schedule", json={"enabled": False}, headers=auth(BOB)).status_code
        == 403
    )
    assert node.acme.schedule().time == "03:30"


def test_bad_input_is_refused_and_changes_nothing(app: Any, node: Node) -> None:
    client = TestClient(app)
    cases = [
        ("/api/v1/acme/account", {"directory": "http://acme.example/dir", "email": "a@b.c"}),
        ("/api/v1/acme/account", {"directory": "https://127.0.0.1:1/dir", "email": "nobody"}),
        ("/api/v1/acme/sign", {}),  # no account
        ("/api/v1/acme/sign", {"domain": "unknown.example.com"}),
        ("/api/v1/acme/deploy", {}),
        ("/api/v1/acme/renew", {}),
    ]
    details = []
    for path, body in cases:
        response = client.post(path, json=body, headers=auth(ALICE))
        assert response.status_code in (404, 422), (path, response.text)
        details.append(response.json()["detail"])
    assert details[0] == "'http://acme.example/dir' is not an https:// ACME directory URL"
    assert details[1] == "'nobody' is not an e-mail address"
    assert details[2].startswith("no CSR is pending for the server certificate")
    assert details[3].startswith("no domain 'unknown.example.com'")
    assert details[4] == "no pending ACME certificate for the server certificate"
    assert details[5].startswith("the server certificate was never signed by the ACME CA")
    # Nothing was stored (the audit log records the refusals).
    assert node.acme.account() is None and node.acme.pending() == {}
    assert node.acme.managed() == {}


def test_sign_needs_an_account_once_a_csr_is_pending(node: Node) -> None:
    from certway.errors import NotFound
    from certway.services.identities import CsrOptions

    node.identities.generate_csr("server", "", CsrOptions(key_type="ec:p256"))
    with pytest.raises(NotFound, match="no ACME account"):
        node.acme.sign("server")
    with pytest.raises(Exception, match="the challenge must be one of http-01, tls-alpn-01"):
        node.acme.sign("server", challenge="dns-01")


def test_the_acme_page_shows_forms_to_writers_only(app: Any, node: Node) -> None:
    alice = login(TestClient(app), *ALICE)
    page = alice.get("/acme")
    assert page.status_code == 200
    assert 'href="/acme"' in page.text
    assert 'action="/acme/account"' in page.text
    assert 'action="/acme/schedule"' in page.text
    bob = login(TestClient(app), *BOB)
    read_only = bob.get("/acme").text
    assert 'action="/acme/account"' not in read_only
    assert "Automatic renewal: on, mon,tue,wed,thu,fri,sat,sun from 00:00 UTC" in read_only
    saved = alice.post(
        "/acme/schedule",
        data={
            "csrf": csrf(alice, "/acme"),
            "enabled": "on",
            "days": ["mon", "wed"],
            "time": "02:15",
            "auto_deploy": "off",
        },
    )
    assert messages(saved.text, "notice") == ["ACME renewal schedule saved"]
    schedule = node.acme.schedule()
    assert (schedule.days, schedule.time, schedule.auto_deploy) == (("mon", "wed"), "02:15", False)
    refused = alice.post(
        "/acme/account",
        data={"csrf": csrf(alice, "/acme"), "directory": "ftp://x", "email": "a@b.c"},
    )
    assert refused.status_code == 422
    assert "is not an https:// ACME directory URL" in messages(refused.text, "error")[0]
    assert node.acme.account() is None


def test_the_schedule_decides_when_a_due_renewal_may_run() -> None:
    from certway.services.acme_client import AcmeSchedule

    schedule = AcmeSchedule(days=("sat",), time="03:00")
    saturday = dt.datetime(2026, 10, 3, 3, 0, tzinfo=dt.UTC)
    assert schedule.allows(saturday)
    assert not schedule.allows(saturday - dt.timedelta(minutes=1))
    assert not schedule.allows(saturday + dt.timedelta(days=1))
