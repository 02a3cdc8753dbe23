"""SIP TLS settings, access rules and neighbour zones in the REST API and the web UI (issue 6,
SPEC I2/I3 "SIP TLS & zones"): the routes change the services' state, refuse bad input with the
services' own messages, are closed to read-only accounts, and a zone "check now" against a dead
peer is a clean Failed status, never a server error."""

from __future__ import annotations

import base64
import html as htmllib
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from certway.clock import FixedClock
from certway.errors import CertwayError
from certway.services.node import Node
from certway.web.api import zones as api
from certway.web.app import create_admin_app
from certway.web.ui import sip as ui

from conftest import NOW, store_snapshot

pytestmark = pytest.mark.usefixtures("quick_hashes")  # argon2 at test strength

PASSWORD = "correct horse battery"
FQDN = "vcs.example.com"
API = "/api/v1"
PROBLEM = "application/problem+json"
CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


# -- fixtures and helpers ---------------------------------------------------------------------
@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node.init(tmp_path / "d", FixedClock(NOW), fqdn=FQDN, factory=True)
    n.admins.add("alice", "read-write", PASSWORD)
    n.admins.add("bob", "read-only", PASSWORD)
    yield n
    n.close()


@pytest.fixture
def app(node: Node) -> FastAPI:
    return create_admin_app(node, secure_cookies=False)


def basic(user: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{PASSWORD}".encode()).decode()}


class Api:
    """A TestClient calling /api/v1 as one account."""

    def __init__(self, client: TestClient, user: str) -> None:
        self.client = client
        self.headers = basic(user)

    def __call__(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.request(method, API + path, headers=self.headers, **kwargs)


@pytest.fixture
def alice(app: FastAPI) -> Iterator[Api]:
    with TestClient(app) as client:
        yield Api(client, "alice")


@pytest.fixture
def bob(app: FastAPI) -> Iterator[Api]:
    with TestClient(app) as client:
        yield Api(client, "bob")


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def problem(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status
    detail: str = body["detail"]
    return detail


def service_message(call: Any) -> str:
    """The message the CLI prints for the same input: the service's error."""
    with pytest.raises(CertwayError) as caught:
        call()
    return str(caught.value)


def closed_port() -> int:
    """A local TCP port nobody listens on (connections are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
def silent_peer() -> Iterator[int]:
    """A port that accepts TCP connections but never answers the TLS handshake."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s.getsockname()[1]


# -- API: SIP TLS settings and access rules ---------------------------------------------------
def test_sip_settings_get_and_put(node: Node, alice: Api) -> None:
    assert ok(alice("GET", "/sip")) == {"mutual_tls": "request", "eku_check": "on", "rules": []}
    changed = ok(alice("PUT", "/sip", json={"mutual_tls": "require", "eku_check": False}))
    assert changed == {"mutual_tls": "require", "eku_check": "off", "rules": []}
    config = node.sip.get()
    assert (config.mutual_tls.value, config.eku_check) == ("require", False)
    # a partial change keeps the rest; on/off as the GET shows it is accepted too
    ok(alice("PUT", "/sip", json={"eku_check": "on"}))
    assert (node.sip.get().mutual_tls.value, node.sip.get().eku_check) == ("require", True)
    assert node.audit.entries()[-1].action == "sip.set"
    assert node.audit.entries()[-1].actor == "alice"


def test_sip_rules_add_list_remove(node: Node, alice: Api) -> None:
    deny = ok(
        alice(
            "POST",
            "/sip/rules",
            json={"priority": 10, "type": "suffix", "pattern": ".bad.example", "action": "deny"},
        ),
        201,
    )
    allow = ok(
        alice(
            "POST",
            "/sip/rules",
            json={
                "priority": 5,
                "type": "regex",
                "pattern": r"edge\d+\.example",
                "action": "allow",
            },
        ),
        201,
    )
    assert deny == {
        "id": deny["id"],
        "priority": 10,
        "type": "suffix",
        "pattern": ".bad.example",
        "action": "deny",
    }
    assert [r.id for r in node.sip.rules()] == [allow["id"], deny["id"]]  # by priority
    assert ok(alice("GET", "/sip/rules")) == [allow, deny]
    assert ok(alice("GET", "/sip"))["rules"] == [allow, deny]

    assert ok(alice("DELETE", f"/sip/rules/{deny['id']}"), 204) is None
    assert [r.id for r in node.sip.rules()] == [allow["id"]]
    expected = service_message(lambda: node.sip.remove_rule(deny["id"]))
    assert problem(alice("DELETE", f"/sip/rules/{deny['id']}"), 404) == expected


def test_sip_bad_input_gives_the_services_message(node: Node, alice: Api) -> None:
    before = store_snapshot(node.store.data_dir)
    bad_rule = {"priority": 1, "type": "regex", "pattern": "(a+)+\\1", "action": "deny"}
    expected = service_message(lambda: node.sip.add_rule(**bad_rule))
    assert problem(alice("POST", "/sip/rules", json=bad_rule), 422) == expected

    unknown_type = {**bad_rule, "type": "glob", "pattern": "x"}
    expected = service_message(lambda: node.sip.add_rule(**unknown_type))
    assert problem(alice("POST", "/sip/rules", json=unknown_type), 422) == expected

    expected = service_message(lambda: node.sip.set(mutual_tls="mandatory"))
    assert "off, request or require" in expected
    assert problem(alice("PUT", "/sip", json={"mutual_tls": "mandatory"}), 422) == expected

    # out-of-range numbers stop at the schema (no overflow anywhere further in)
    big = {"priority": 2**70, "type": "exact", "pattern": "x", "action": "allow"}
    assert "priority" in problem(alice("POST", "/sip/rules", json=big), 422)
    problem(alice("DELETE", f"/sip/rules/{2**70}"), 422)
    assert store_snapshot(node.store.data_dir) == before


# -- API: zones --------------------------------------------------------------------------------
def test_zones_add_list_show_remove(node: Node, alice: Api) -> None:
    assert ok(alice("GET", "/zones")) == []
    body = {
        "name": "core",
        "peers": ["Core1.Example.com", "192.0.2.10"],
        "port": 5062,
        "tls_verify": True,
        "verify_subject": "core.example.com",
        "interval": 60,
    }
    added = ok(alice("POST", "/zones", json=body), 201)
    assert added["peers"] == ["core1.example.com", "192.0.2.10"]  # as the service stores them
    assert added["status"]["state"] == "Unknown"
    zone = node.zones.get("core")
    assert (zone.port, zone.tls_verify, zone.verify_subject, zone.interval) == (
        5062,
        True,
        "core.example.com",
        60,
    )
    plain = {"name": "plain", "peers": ["10.0.0.1"], "tls_verify": "off"}
    ok(alice("POST", "/zones", json=plain), 201)
    assert node.zones.get("plain").tls_verify is False
    assert node.zones.get("plain").port == 5061

    listed = ok(alice("GET", "/zones"))
    assert [z["name"] for z in listed] == ["core", "plain"]
    assert listed[0] == added
    shown = ok(alice("GET", "/zones/core"))
    assert shown == added
    assert shown["status"] == {
        "zone": "core",
        "state": "Unknown",
        "reason": None,
        "detail": "not checked yet",
        "checked_at": None,
        "peers": [],
    }

    expected = service_message(lambda: node.zones.add("core", peers=["10.0.0.2"]))
    assert problem(alice("POST", "/zones", json={"name": "core", "peers": ["10.0.0.2"]}), 409) == (
        expected
    )
    assert ok(alice("DELETE", "/zones/plain"), 204) is None
    assert [z.name for z in node.zones.entries()] == ["core"]
    expected = service_message(lambda: node.zones.get("plain"))
    assert problem(alice("GET", "/zones/plain"), 404) == expected
    assert problem(alice("DELETE", "/zones/plain"), 404) == expected
    assert problem(alice("POST", "/zones/plain/check"), 404) == expected
    removal = next(e for e in node.audit.entries() if e.action == "zone.remove")
    assert (removal.actor, removal.via, removal.outcome) == ("alice", "api", "ok")


def test_zone_bad_input_gives_the_services_message(node: Node, alice: Api) -> None:
    before = store_snapshot(node.store.data_dir)
    for peers in (["sip:core.example.com"], ["core.example.com:5061"], ["*.example.com"], []):
        expected = service_message(lambda p=peers: node.zones.add("z", peers=p))
        response = alice("POST", "/zones", json={"name": "z", "peers": peers})
        assert problem(response, 422) == expected
    expected = service_message(lambda: node.zones.add("bad name!", peers=["10.0.0.1"]))
    assert (
        problem(alice("POST", "/zones", json={"name": "bad name!", "peers": ["10.0.0.1"]}), 422)
        == expected
    )
    for field, value in (("port", 70000), ("interval", 1), ("interval", 2**80)):
        response = alice("POST", "/zones", json={"name": "z", "peers": ["10.0.0.1"], field: value})
        assert field in problem(response, 422)
    assert store_snapshot(node.store.data_dir) == before


def test_zone_check_of_a_refusing_peer_is_a_failed_status(node: Node, alice: Api) -> None:
    port = closed_port()
    ok(alice("POST", "/zones", json={"name": "dead", "peers": ["127.0.0.1"], "port": port}), 201)
    checked = ok(alice("POST", "/zones/dead/check"))
    status = checked["status"]
    assert status["state"] == "Failed"
    assert status["reason"] == "refused"
    assert f"127.0.0.1:{port}" in status["detail"]
    assert status["checked_at"] is not None
    # recorded: the list, the show and the service agree
    assert node.zones.status("dead").reason == "refused"
    assert ok(alice("GET", "/zones/dead"))["status"] == status
    assert ok(alice("GET", "/zones"))[0]["status"]["state"] == "Failed"


def test_zone_check_of_a_silent_peer_times_out_cleanly(
    node: Node, alice: Api, silent_peer: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api, "ZONE_CHECK_TIMEOUT", 0.3)
    mute = {"name": "mute", "peers": ["127.0.0.1"], "port": silent_peer}
    ok(alice("POST", "/zones", json=mute), 201)
    status = ok(alice("POST", "/zones/mute/check"))["status"]
    assert (status["state"], status["reason"]) == ("Failed", "timeout")
    assert "within 0.3 s" in status["detail"]


def test_read_only_account_reads_but_cannot_change(node: Node, alice: Api, bob: Api) -> None:
    ok(alice("POST", "/zones", json={"name": "core", "peers": ["127.0.0.1"], "port": 9}), 201)
    rule = ok(
        alice(
            "POST",
            "/sip/rules",
            json={"priority": 1, "type": "exact", "pattern": "a", "action": "allow"},
        ),
        201,
    )
    before = store_snapshot(node.store.data_dir)
    assert ok(bob("GET", "/sip"))["rules"] == [rule]
    assert ok(bob("GET", "/sip/rules")) == [rule]
    assert [z["name"] for z in ok(bob("GET", "/zones"))] == ["core"]
    assert ok(bob("GET", "/zones/core"))["name"] == "core"
    attempts: list[tuple[str, str, Any]] = [
        ("PUT", "/sip", {"mutual_tls": "off"}),
        ("POST", "/sip/rules", {"priority": 1, "type": "exact", "pattern": "b", "action": "deny"}),
        ("DELETE", f"/sip/rules/{rule['id']}", None),
        ("POST", "/zones", {"name": "other", "peers": ["10.0.0.1"]}),
        ("DELETE", "/zones/core", None),
        ("POST", "/zones/core/check", None),
    ]
    for method, path, body in attempts:
        response = bob(method, path, json=body)
        assert problem(response, 403) == "account 'bob' is read-only", (method, path)
    assert store_snapshot(node.store.data_dir) == before
    assert node.zones.status("core").state == "Unknown"  # the check did not run


def test_openapi_describes_the_new_routes(alice: Api) -> None:
    paths = ok(alice("GET", "/openapi.json"))["paths"]
    for path, methods in {
        f"{API}/sip": {"get", "put"},
        f"{API}/sip/rules": {"get", "post"},
        f"{API}/sip/rules/{{id}}": {"delete"},
        f"{API}/zones": {"get", "post"},
        f"{API}/zones/{{name}}": {"get", "delete"},
        f"{API}/zones/{{name}}/check": {"post"},
    }.items():
        assert methods <= set(paths[path]), path


# -- UI ----------------------------------------------------------------------------------------
def login(app: FastAPI, user: str) -> TestClient:
    client = TestClient(app)
    response = client.post(
        "/login", data={"user": user, "password": PASSWORD}, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    return client


@pytest.fixture
def alice_ui(app: FastAPI) -> TestClient:
    return login(app, "alice")


@pytest.fixture
def bob_ui(app: FastAPI) -> TestClient:
    return login(app, "bob")


def csrf(client: TestClient, page: str = "/sip") -> str:
    found = CSRF_RE.search(client.get(page).text)
    assert found, f"no CSRF token on {page}"
    return found.group(1)


def post(client: TestClient, path: str, data: dict[str, Any] | None = None) -> httpx.Response:
    return client.post(path, data={"csrf": csrf(client), **(data or {})})


def messages(html: str, kind: str) -> list[str]:
    return [
        htmllib.unescape(re.sub(r"<[^>]+>", "", m)).strip()
        for m in re.findall(rf'<p class="message {kind}"[^>]*>(.*?)</p>', html, re.S)
    ]


def test_sip_page_renders_with_navigation(alice_ui: TestClient) -> None:
    response = alice_ui.get("/sip")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    page = response.text
    assert "<title>SIP TLS &amp; zones · certway</title>" in page
    assert '<a href="/sip" aria-current="page">SIP TLS &amp; zones</a>' in page
    assert "<script>" not in page
    assert "style=" not in page
    for action in ("/sip/settings", "/sip/rules", "/sip/zones"):
        assert f'action="{action}"' in page
    assert "No access rules" in page
    assert "No zones defined" in page
    assert 'href="/sip"' in alice_ui.get("/").text  # in the navigation of every page


def test_ui_settings_and_rules(alice_ui: TestClient, node: Node) -> None:
    page = post(alice_ui, "/sip/settings", {"mutual_tls": "off", "eku_check": "off"}).text
    assert messages(page, "notice")[0].startswith("SIP TLS settings saved: mutual TLS off")
    assert (node.sip.get().mutual_tls.value, node.sip.get().eku_check) == ("off", False)

    response = post(
        alice_ui,
        "/sip/rules",
        {"priority": "7", "type": "suffix", "pattern": ".bad.example", "action": "deny"},
    )
    assert response.status_code == 200
    [rule] = node.sip.rules()
    assert (rule.priority, rule.type.value, rule.pattern, rule.action.value) == (
        7,
        "suffix",
        ".bad.example",
        "deny",
    )
    assert f"access rule {rule.id} added" in messages(response.text, "notice")[0]
    assert "<code>.bad.example</code>" in response.text
    assert f'action="/sip/rules/{rule.id}/remove"' in response.text

    # a bad regex: the service's message, the form filled in again, nothing stored
    bad = {"priority": "1", "type": "regex", "pattern": r"(a*)\1b", "action": "allow"}
    expected = service_message(
        lambda: node.sip.add_rule(priority=1, type="regex", pattern=r"(a*)\1b", action="allow")
    )
    assert "backreferences such as \\1 are not supported" in expected
    response = post(alice_ui, "/sip/rules", bad)
    assert response.status_code == 422
    assert messages(response.text, "error") == [f"Error: {expected}"]
    assert 'value="(a*)\\1b"' in response.text
    assert len(node.sip.rules()) == 1
    response = post(alice_ui, "/sip/settings", {"mutual_tls": "sometimes"})
    assert messages(response.text, "error") == [
        "Error: " + service_message(lambda: node.sip.set(mutual_tls="sometimes"))
    ]

    response = post(alice_ui, f"/sip/rules/{rule.id}/remove", {"confirmed": "yes"})
    assert messages(response.text, "notice") == [f"access rule {rule.id} removed"]
    assert node.sip.rules() == []
    response = post(alice_ui, f"/sip/rules/{rule.id}/remove", {"confirmed": "yes"})
    assert response.status_code == 404
    assert f"no SIP access rule has id {rule.id}" in messages(response.text, "error")[0]
    assert post(alice_ui, "/sip/rules/abc/remove", {"confirmed": "yes"}).status_code == 404


def test_ui_zones_add_check_remove(alice_ui: TestClient, node: Node) -> None:
    response = post(
        alice_ui,
        "/sip/zones",
        {"name": "core", "peers": "bad peer!", "port": "5061", "tls_verify": "on"},
    )
    expected = service_message(lambda: node.zones.add("core", peers=["bad peer!"]))
    assert response.status_code == 422
    assert messages(response.text, "error") == [f"Error: {expected}"]
    assert 'value="bad peer!"' in response.text  # the form is filled in again
    assert node.zones.entries() == []

    port = closed_port()
    response = post(
        alice_ui,
        "/sip/zones",
        {"name": "core", "peers": "127.0.0.1, ::1", "port": str(port), "tls_verify": "off"},
    )
    assert response.status_code == 200, messages(response.text, "error")
    zone = node.zones.get("core")
    assert (zone.peers, zone.port, zone.tls_verify) == (("127.0.0.1", "::1"), port, False)
    assert "added zone core" in messages(response.text, "notice")[0]
    assert "Unknown" in response.text

    response = post(alice_ui, "/sip/zones/core/check")
    assert response.status_code == 200
    [warning] = messages(response.text, "warning")
    assert warning.startswith("Warning: zone core: Failed, refused:")
    assert node.zones.status("core").state == "Failed"
    assert '<span class="badge critical">Failed</span>' in response.text
    assert "<strong>refused</strong>" in response.text

    response = post(alice_ui, "/sip/zones/core/remove", {"confirmed": "yes"})
    assert messages(response.text, "notice") == ["removed zone core"]
    assert node.zones.entries() == []
    response = post(alice_ui, "/sip/zones/core/check")
    assert response.status_code == 404
    assert messages(response.text, "error") == [
        "Error: " + service_message(lambda: node.zones.get("core"))
    ]


def test_ui_read_only_sees_no_forms_and_is_refused(
    app: FastAPI, alice_ui: TestClient, bob_ui: TestClient, node: Node
) -> None:
    node.zones.add("core", peers=["127.0.0.1"], port=closed_port())
    rule = node.sip.add_rule(priority=1, type="exact", pattern="a", action="allow")
    page = bob_ui.get("/sip").text
    assert "Your account is read-only" in page
    assert "core" in page
    assert "<code>a</code>" in page
    assert '<form method="post" action="/sip' not in page
    assert 'action="/sip' not in page

    token = csrf(bob_ui)
    before = store_snapshot(node.store.data_dir)
    paths = [
        "/sip/settings",
        "/sip/rules",
        f"/sip/rules/{rule.id}/remove",
        "/sip/zones",
        "/sip/zones/core/remove",
        "/sip/zones/core/check",
    ]
    for path in paths:
        response = bob_ui.post(path, data={"csrf": token, "mutual_tls": "off"})
        assert response.status_code == 403, path
        assert "read-only" in response.text, path
        # and a read-write session without the right token is refused too
        response = alice_ui.post(path, data={"csrf": "forged", "mutual_tls": "off"})
        assert response.status_code == 403, path
        assert "CSRF" in response.text, path
    assert store_snapshot(node.store.data_dir) == before
    assert node.zones.status("core").state == "Unknown"


def test_ui_check_timeout_is_short(
    alice_ui: TestClient, node: Node, silent_peer: int, monkeypatch: pytest.MonkeyPatch
) -> None:

    monkeypatch.setattr(ui, "ZONE_CHECK_TIMEOUT", 0.3)
    node.zones.add("mute", peers=["127.0.0.1"], port=silent_peer, tls_verify=False)
    response = post(alice_ui, "/sip/zones/mute/check")
    assert response.status_code == 200
    assert "timeout" in messages(response.text, "warning")[0]
    assert node.zones.status("mute").reason == "timeout"
