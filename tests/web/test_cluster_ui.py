"""The Cluster page in process (httpx): the peers with their status, the TLS verification
form, remove-peer behind a confirmation with post/redirect/get and errors on the page, the
cluster key download; read-only accounts see no forms."""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from test_ui import csrf, login, post  # the UI tests' helpers

from certway.clock import FixedClock
from certway.services.node import Node
from certway.store.keyexport import open_key
from certway.store.vault import MASTER_KEY_FILE, load_master_key
from certway.web.app import create_admin_app

from conftest import NOW

pytestmark = pytest.mark.usefixtures("quick_hashes")

ALICE = ("alice", "a-long-password")
BOB = ("bob", "another-long-password")
PASSPHRASE = "a long cluster passphrase"


def _node(node: Node) -> Node:
    node.admins.add(*ALICE[:1], "read-write", ALICE[1])
    node.admins.add(*BOB[:1], "read-only", BOB[1])
    return node


@pytest.fixture
def clustered(tmp_path: Path, pg_url: str) -> Iterator[Node]:
    """Peer 1 of a cluster whose peer 2 stopped an hour ago."""
    this = Node.init(
        tmp_path / "p1", FixedClock(NOW), factory=False, database=pg_url, fqdn="p1.example.com"
    )
    Node.init(
        tmp_path / "p2",
        FixedClock(NOW - dt.timedelta(hours=1)),
        factory=False,
        database=pg_url,
        join_key=(tmp_path / "p1" / MASTER_KEY_FILE).read_bytes(),
        fqdn="p2.example.com",
    ).close()
    yield _node(this)
    this.close()


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Node]:
    node = Node.init(tmp_path / "d", FixedClock(NOW), factory=False, fqdn="vcs.example.com")
    yield _node(node)
    node.close()


def _text(page: str) -> str:
    """The page's text, without tags (the words a user reads)."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def messages(page: str, kind: str) -> list[str]:
    return [
        html.unescape(re.sub(r"<[^>]+>", "", m).strip())
        for m in re.findall(rf'<p class="message {kind}"[^>]*>(.*?)</p>', page, re.S)
    ]


def _client(node: Node, who: tuple[str, str]) -> TestClient:
    return login(TestClient(create_admin_app(node, secure_cookies=False)), *who)


def test_peers_and_remove_with_confirmation(clustered: Node, pg_url: str) -> None:
    alice = _client(clustered, ALICE)
    page = alice.get("/cluster")
    assert page.status_code == 200
    text = _text(page.text)
    assert 'href="/cluster" aria-current="page"' in page.text  # in the menu
    assert "p1.example.com (this node)" in text and "p2.example.com" in text
    assert "not checked" in text and "currently permissive" in text
    assert 'action="/cluster/peers/2/remove"' in page.text
    assert 'action="/cluster/peers/1/remove"' not in page.text  # never this node
    assert "--" not in text  # no command-line options in the page

    # Without the script's dialog, the server asks first.
    asked = post(alice, "/cluster/peers/2/remove")
    assert asked.status_code == 200 and "Please confirm" in asked.text
    assert "Remove peer 2 (p2.example.com) from the cluster" in _text(asked.text)
    assert [p.id for p in clustered.cluster.peers()] == [1, 2]

    done = post(alice, "/cluster/peers/2/remove", {"confirmed": "yes"}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/cluster"
    shown = alice.get("/cluster").text
    assert messages(shown, "notice") == [
        "removed peer 2 (p2.example.com) from the cluster with its own state"
    ]
    assert "p2.example.com" not in shown.split("<h2>Peers</h2>")[1]
    with psycopg.connect(pg_url) as db:
        assert db.execute("SELECT count(*) FROM peers").fetchone() == (1,)

    # Removing it again (an old page): the error on the page, after a redirect.
    again = post(alice, "/cluster/peers/2/remove", {"confirmed": "yes"})
    assert "the cluster has no peer '2'" in _text(again.text)
    assert again.url.path == "/cluster"


def test_a_running_peer_is_not_removed(clustered: Node, pg_url: str) -> None:
    with psycopg.connect(pg_url) as db:
        db.execute("UPDATE peers SET last_seen = %s WHERE id = 2", (NOW,))
    alice = _client(clustered, ALICE)
    page = post(alice, "/cluster/peers/2/remove", {"confirmed": "yes"})
    assert messages(page.text, "error") == [
        "Error: peer 2 (p2.example.com) was last seen 0 seconds ago: it is still running; stop "
        "certway on it first, then remove it once it has been silent for 5 minutes"
    ]
    assert [p.id for p in clustered.cluster.peers()] == [1, 2]


def test_tls_verification_form(embedded: Node) -> None:
    alice = _client(embedded, ALICE)
    asked = post(alice, "/cluster/tls-verification", {"verification": "enforce"})
    assert "Enforce cluster TLS verification?" in _text(asked.text)
    assert embedded.cluster_tls.verification() == "permissive"
    page = post(alice, "/cluster/tls-verification", {"verification": "enforce", "confirmed": "yes"})
    assert messages(page.text, "notice") == ["cluster TLS verification: enforce"]
    assert embedded.cluster_tls.verification() == "enforce"
    back = post(alice, "/cluster/tls-verification", {"verification": "permissive"})
    assert messages(back.text, "notice") == ["cluster TLS verification: permissive"]
    wrong = post(alice, "/cluster/tls-verification", {"verification": "strict"})
    assert messages(wrong.text, "error") == [
        "Error: cluster TLS verification must be permissive or enforce, not 'strict'"
    ]


def test_export_key_download_and_refusals(embedded: Node) -> None:
    alice = _client(embedded, ALICE)
    page = alice.get("/cluster").text
    assert "embedded" in page and "a cluster of one" in _text(page)
    assert 'action="/cluster/peers/' not in page  # no peers to remove
    assert 'action="/cluster/export-key"' in page
    key = load_master_key(embedded.store.data_dir)

    got = post(
        alice, "/cluster/export-key", {"passphrase": PASSPHRASE, "passphrase_again": PASSPHRASE}
    )
    assert got.status_code == 200 and got.headers["cache-control"] == "no-store"
    assert 'filename="certway-cluster.key"' in got.headers["content-disposition"]
    assert open_key(got.content, PASSPHRASE) == key and key.hex() not in got.text

    for data, error in (
        ({"passphrase": "short", "passphrase_again": "short"}, "the passphrase is too short"),
        ({"passphrase": PASSPHRASE, "passphrase_again": PASSPHRASE + "!"}, "passphrases differ"),
    ):
        refused = post(alice, "/cluster/export-key", data, follow_redirects=False)
        assert refused.status_code == 303 and refused.headers["location"] == "/cluster"
        shown = alice.get("/cluster").text
        assert error in messages(shown, "error")[0] and PASSPHRASE not in shown
    actions = [(e.action, e.outcome) for e in embedded.audit.entries()]
    assert actions.count(("cluster.export-key", "ok")) == 1


def test_read_only_sees_the_peers_but_no_forms(embedded: Node) -> None:
    bob = _client(embedded, BOB)
    page = bob.get("/cluster").text
    assert "vcs.example.com" in page or "(this node)" in page
    assert '<form method="post" action="/cluster' not in page
    token = csrf(bob, "/")
    data: dict[str, Any] = {"csrf": token, "verification": "enforce", "confirmed": "yes"}
    assert bob.post("/cluster/tls-verification", data=data).status_code == 403
    data = {"csrf": token, "passphrase": PASSPHRASE, "passphrase_again": PASSPHRASE}
    refused = bob.post("/cluster/export-key", data=data)
    assert refused.status_code == 403 and b"cluster-key" not in refused.content
    assert embedded.cluster_tls.verification() == "permissive"
