"""REST API ``/api/v1/cluster`` in process (TestClient): the status as ``cluster status
--json`` gives it, removing a decommissioned peer (PostgreSQL) and its refusals, the encrypted
cluster key export, and what read-only accounts and tokens may do."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from test_api import PASSWORD, Api, ok, problem  # the API tests' helpers

from certway.clock import FixedClock
from certway.services.node import Node
from certway.store.keyexport import open_key
from certway.store.vault import MASTER_KEY_FILE, load_master_key
from certway.web.app import create_admin_app

from conftest import NOW, Cli

pytestmark = pytest.mark.usefixtures("quick_hashes")

KEY_PASSPHRASE = "a long cluster passphrase"


def _accounts(node: Node) -> None:
    node.admins.add("alice", "read-write", PASSWORD)
    node.admins.add("bob", "read-only", PASSWORD)


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Node]:
    n = Node.init(tmp_path / "d", FixedClock(NOW), factory=False, fqdn="vcs.example.com")
    _accounts(n)
    yield n
    n.close()


@pytest.fixture
def clustered(tmp_path: Path, pg_url: str) -> Iterator[Node]:
    """Peer 1 of a cluster whose peer 2 stopped an hour ago and whose peer 3 runs."""
    this = Node.init(
        tmp_path / "p1", FixedClock(NOW), factory=False, database=pg_url, fqdn="p1.example.com"
    )
    _accounts(this)
    key = (tmp_path / "p1" / MASTER_KEY_FILE).read_bytes()
    for name, seen in (("p2", NOW - dt.timedelta(hours=1)), ("p3", NOW - dt.timedelta(minutes=2))):
        Node.init(
            tmp_path / name,
            FixedClock(seen),
            factory=False,
            database=pg_url,
            join_key=key,
            fqdn=f"{name}.example.com",
        ).close()
    yield this
    this.close()


def _client(node: Node) -> TestClient:
    app: FastAPI = create_admin_app(node, secure_cookies=False)
    return TestClient(app)


def test_status_is_what_the_cli_shows(clustered: Node, tmp_path: Path) -> None:
    with _client(clustered) as client:
        body = ok(Api(client, "bob").get("/cluster"))
    cli = json.loads(Cli(tmp_path / "p1").ok("cluster", "status", "--json").stdout)
    assert body == cli
    assert body["clustered"] is True and body["node_id"] == 1 and body["max_peers"] == 6
    assert body["verification"] == "permissive"
    peers = {p["fqdn"]: p for p in body["peers"]}
    assert set(peers) == {"p1.example.com", "p2.example.com", "p3.example.com"}
    assert peers["p1.example.com"]["this_node"] and peers["p2.example.com"]["id"] == 2
    assert peers["p2.example.com"]["last_seen"] == (NOW - dt.timedelta(hours=1)).isoformat()
    assert peers["p3.example.com"]["tls_status"] == "not checked"


def test_remove_peer(clustered: Node) -> None:
    with _client(clustered) as client:
        alice, bob = Api(client, "alice"), Api(client, "bob")
        assert problem(bob.delete("/cluster/peers/2"), 403) == "account 'bob' is read-only"
        assert problem(alice.delete("/cluster/peers/3"), 409).startswith(
            "peer 3 (p3.example.com) was last seen 2 minutes ago: it is still running"
        )
        assert problem(alice.delete("/cluster/peers/1"), 409).startswith(
            "peer 1 (p1.example.com) is this node"
        )
        assert "no peer '9'" in problem(alice.delete("/cluster/peers/9"), 404)
        assert problem(alice.delete("/cluster/peers/0"), 422)
        assert [p["id"] for p in ok(alice.get("/cluster"))["peers"]] == [1, 2, 3]

        removed = ok(alice.delete("/cluster/peers/2"))
        assert removed["peer"]["fqdn"] == "p2.example.com" and removed["rows"]["peers"] == 1
        assert [p["id"] for p in ok(alice.get("/cluster"))["peers"]] == [1, 3]
        assert "no peer '2'" in problem(alice.delete("/cluster/peers/2"), 404)
    entries = [e for e in clustered.audit.entries() if e.action == "cluster.remove-peer"]
    assert [(e.actor, e.via, e.outcome) for e in entries][-2:] == [
        ("alice", "api", "ok"),
        ("alice", "api", "refused"),
    ]


def test_embedded_node(embedded: Node) -> None:
    with _client(embedded) as client:
        alice = Api(client, "alice")
        body = ok(alice.get("/cluster"))
        assert body["clustered"] is False and body["node_id"] == 1
        assert [p["this_node"] for p in body["peers"]] == [True]
        detail = problem(alice.delete("/cluster/peers/2"), 422)
        assert detail == (
            "this node is embedded (SQLite), a cluster of one: there are no peers to remove"
        )


def test_export_key_is_encrypted_and_audited(embedded: Node) -> None:
    with _client(embedded) as client:
        alice, bob = Api(client, "alice"), Api(client, "bob")
        body = {"passphrase": KEY_PASSPHRASE}
        assert problem(bob.post("/cluster/export-key", json=body), 403).endswith("read-only")
        short = problem(alice.post("/cluster/export-key", json={"passphrase": "short"}), 422)
        assert short == "the passphrase is too short: at least 12 characters"
        response = alice.post("/cluster/export-key", json=body)
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        assert 'filename="certway-cluster.key"' in response.headers["content-disposition"]
        key = load_master_key(embedded.store.data_dir)
        assert key.hex() not in response.text and open_key(response.content, KEY_PASSPHRASE) == key
        alice.assert_never_echoed(KEY_PASSPHRASE)
        bob.assert_never_echoed(KEY_PASSPHRASE)
    entries = [e for e in embedded.audit.entries() if e.action == "cluster.export-key"]
    assert [e.outcome for e in entries] == ["refused", "ok"]
    assert KEY_PASSPHRASE not in json.dumps([e.as_dict() for e in entries])


def test_a_read_only_token_reads_but_does_not_change(embedded: Node) -> None:
    token = embedded.api_tokens.create("monitor", "read-only").token
    with _client(embedded) as client:
        reader = Api(client, None)
        reader.headers = {"Authorization": f"Bearer {token}"}
        assert ok(reader.get("/cluster"))["node_id"] == 1
        refused = reader.post("/cluster/export-key", json={"passphrase": KEY_PASSPHRASE})
        assert refused.status_code == 403
        assert reader.delete("/cluster/peers/2").status_code == 403
        assert (
            reader.put("/cluster/tls-verification", json={"verification": "enforce"}).status_code
            == 403
        )
    assert embedded.cluster_tls.verification().value == "permissive"
