"""The Cluster page in a real browser: Playwright driving Debian's Chromium against a real
``certway serve`` on 127.0.0.1, its node peer 1 of a cluster on PostgreSQL whose peer 2 was
decommissioned. From the menu: the peers with their status, enforcing TLS verification
behind a confirm dialog, removing the old peer behind one (cancel first, then accept), the
cluster key download and a refused export shown on the page. Screenshots go to
``test-artifacts/browser/``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from certway.clock import FixedClock
from certway.serve import NodeServer
from certway.services.node import Node
from certway.store.keyexport import open_key
from certway.store.vault import MASTER_KEY_FILE, load_master_key

from browsing import ARTIFACTS, launch, playwright_api
from serving import running

pytestmark = pytest.mark.interop

PASSWORD = "correct horse battery"
PASSPHRASE = "a long cluster passphrase"


@pytest.fixture
def node(tmp_path: Path, pg_url: str) -> Iterator[Node]:
    this = Node.init(tmp_path / "p1", database=pg_url, fqdn="p1.example.com")
    this.admins.add("alice", "read-write", PASSWORD)
    an_hour_ago = FixedClock(dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    Node.init(
        tmp_path / "p2",
        an_hour_ago,
        factory=False,
        database=pg_url,
        join_key=(tmp_path / "p1" / MASTER_KEY_FILE).read_bytes(),
        fqdn="p2.example.com",
    ).close()
    yield this
    this.close()


@pytest.fixture
def page(node: Node) -> Iterator[Any]:
    with running(node, publish=False, sip=False) as server, playwright_api.sync_playwright() as p:
        browser = launch(p)
        context = browser.new_context(
            ignore_https_errors=True,
            accept_downloads=True,
            base_url=base(server),
            viewport={"width": 1366, "height": 768},
        )
        page = context.new_page()
        page.set_default_timeout(15_000)
        try:
            yield page
        finally:
            context.close()
            browser.close()


def base(server: NodeServer) -> str:
    return f"https://127.0.0.1:{server.admin_port}"


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def submit(page: Any, form: str) -> None:
    with page.expect_navigation():
        page.click(f"{form} button[type=submit]")


def texts(page: Any, kind: str) -> list[str]:
    return [t.strip() for t in page.locator(f"p.message.{kind}").all_inner_texts()]


def test_cluster_page(page: Any, node: Node, tmp_path: Path) -> None:
    page.goto("/login")
    page.fill("#user", "alice")
    page.fill("#password", PASSWORD)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url("**/")
    page.click("nav >> text=Cluster")
    page.wait_for_url("**/cluster")
    assert "p1.example.com (this node)" in page.inner_text("#peer-1")
    old = page.inner_text("#peer-2")
    assert "p2.example.com" in old and "not checked" in old
    assert page.locator("#peer-1 button").count() == 0  # this node cannot be removed
    shot(page, "30-cluster")

    # TLS verification: enforcing asks first.
    questions: list[str] = []

    def accept(dialog: Any) -> None:
        questions.append(dialog.message)
        dialog.accept()

    page.select_option("#verification", "enforce")
    page.once("dialog", accept)
    submit(page, "form[action='/cluster/tls-verification']")
    assert questions[-1].startswith("Enforce cluster TLS verification?")
    assert texts(page, "notice") == ["cluster TLS verification: enforce"]
    assert node.cluster_tls.verification() == "enforce"

    # Remove the decommissioned peer: Cancel sends nothing; OK removes it.
    remove = "form[action='/cluster/peers/2/remove']"
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.click(f"{remove} button[type=submit]")
    assert [p.id for p in node.cluster.peers()] == [1, 2]
    page.once("dialog", accept)
    submit(page, remove)
    assert questions[-1].startswith("Remove peer 2 (p2.example.com) from the cluster")
    assert texts(page, "notice") == [
        "removed peer 2 (p2.example.com) from the cluster with its own state"
    ]
    assert page.locator("#peer-2").count() == 0
    assert [p.id for p in node.cluster.peers()] == [1]
    shot(page, "31-cluster-peer-removed")

    # The cluster key: two different passphrases are refused on the page, then a download.
    page.fill("#passphrase", PASSPHRASE)
    page.fill("#passphrase_again", PASSPHRASE + "!")
    submit(page, "form[action='/cluster/export-key']")
    assert page.url.endswith("/cluster")
    assert texts(page, "error") == ["Error: the two passphrases differ"]
    page.fill("#passphrase", PASSPHRASE)
    page.fill("#passphrase_again", PASSPHRASE)
    with page.expect_download() as downloading:
        page.click("form[action='/cluster/export-key'] button[type=submit]")
    download = downloading.value
    assert download.suggested_filename == "certway-cluster.key"
    saved = tmp_path / "cluster.key"
    download.save_as(saved)
    assert open_key(saved.read_bytes(), PASSPHRASE) == load_master_key(node.store.data_dir)
    shot(page, "32-cluster-key-exported")
    assert ARTIFACTS.exists()
