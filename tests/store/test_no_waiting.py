"""Work tried without waiting (certway.waiting, as a request answered on the event loop):
where it would wait it raises ``WouldWait`` before changing anything, and the same work done
normally afterwards waits and succeeds as before."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from certway.clock import FixedClock
from certway.fetch import HttpFetcher
from certway.pki.csr import CsrForm, build_csr
from certway.services.node import Node
from certway.store.db import DB_FILE
from certway.store.direct import AUDIT, DirectUnit
from certway.store.group import GroupCommit
from certway.store.repositories import column_values
from certway.store.schema import AuditRow
from certway.waiting import WouldWait, check_may_wait, may_wait, without_waiting
from waiting import wait_for

from conftest import NOW, test_key


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node.init(tmp_path / "d", FixedClock(NOW), factory=False)
    n.local_ca.create_root("root", "/CN=Root", days=3650)
    yield n
    n.close()


@pytest.fixture
def held_lock(node: Node) -> Iterator[sqlite3.Connection]:
    """SQLite's write lock, held by a connection of its own (as another process would)."""
    other = sqlite3.connect(
        node.store.data_dir / DB_FILE, isolation_level=None, check_same_thread=False
    )
    other.execute("BEGIN IMMEDIATE")
    yield other
    if other.in_transaction:
        other.execute("ROLLBACK")
    other.close()


CSR = build_csr(test_key("ec:p256", 3), CsrForm(common_name="peer.example.com"))[0].public_bytes(
    serialization.Encoding.PEM
)


def counts(node: Node) -> tuple[int, int]:
    """(certificates issued, audit rows)."""
    return len(node.local_ca.issued("root")), len(node.audit.entries())


def test_the_signal_is_raised_only_inside_the_block() -> None:
    check_may_wait("anything")  # outside: waiting is fine
    assert may_wait()
    with without_waiting():
        assert not may_wait()
        with pytest.raises(WouldWait, match="a lock"):
            check_may_wait("a lock")
    assert may_wait()
    # a signal, not an error: an ``except Exception`` on its way lets it through
    assert not issubclass(WouldWait, Exception)


def test_a_write_lock_held_elsewhere_stops_a_sign_before_anything_is_written(
    node: Node, held_lock: sqlite3.Connection
) -> None:
    before = counts(node)
    with without_waiting(), pytest.raises(WouldWait, match="write lock"):
        node.local_ca.sign("root", CSR)
    held_lock.execute("ROLLBACK")
    assert counts(node) == before  # no certificate, and no audit row saying it failed
    # done normally, the same signature is made and audited once
    node.local_ca.sign("root", CSR)
    assert counts(node) == (before[0] + 1, before[1] + 1)


def test_a_normal_write_still_waits_for_the_lock_afterwards(
    node: Node, held_lock: sqlite3.Connection
) -> None:
    with without_waiting(), pytest.raises(WouldWait), node.store.transaction() as session:
        session.connection()  # the unit starts: BEGIN IMMEDIATE, tried without a busy timeout
    # every pooled connection waits again (busy timeout restored after the try)
    connections = [node.store.engine.raw_connection() for _ in range(5)]
    try:
        timeouts = {c.cursor().execute("PRAGMA busy_timeout").fetchone()[0] for c in connections}
    finally:
        for connection in connections:
            connection.close()
    assert timeouts == {10_000}
    threading.Timer(0.3, lambda: held_lock.execute("ROLLBACK")).start()
    node.local_ca.sign("root", CSR)  # waited for the lock, then wrote
    assert len(node.local_ca.issued("root")) == 1


def test_reads_do_not_wait_for_a_writer(node: Node, held_lock: sqlite3.Connection) -> None:
    with without_waiting():
        assert node.local_ca.issued("root") == []


def test_a_group_commit_led_by_another_thread_is_not_joined(node: Node) -> None:
    group: GroupCommit[str] = GroupCommit(node.store)
    entered, release = threading.Event(), threading.Event()
    written: list[str] = []

    def slow(unit: DirectUnit) -> str:
        entered.set()
        release.wait(30)
        return write("leader")(unit)

    def write(name: str) -> Callable[[DirectUnit], str]:
        def inner(unit: DirectUnit) -> str:
            written.append(name)
            row = AuditRow(at=NOW, actor="test", via="cli", action=name, outcome="ok")
            unit.add(AUDIT, column_values(AuditRow, row))
            return name

        return inner

    leader = threading.Thread(target=group.run, args=(slow,))
    leader.start()
    entered.wait(30)
    try:
        with without_waiting(), pytest.raises(WouldWait, match="group commit"):
            group.run(write("tried"))
        assert group._queue == []  # nothing queued behind the leader
    finally:
        release.set()
        leader.join(30)
    wait_for(lambda: not group._leading, "the leader to finish")
    with without_waiting():  # alone now: it leads and commits its own write at once
        assert group.run(write("alone")) == "alone"
    assert written == ["leader", "alone"]


def test_postgresql_work_is_never_tried_without_waiting(tmp_path: Path, pg_url: str) -> None:
    n = Node.init(tmp_path / "pg", FixedClock(NOW), factory=False, database=pg_url)
    try:
        with without_waiting(), pytest.raises(WouldWait, match="PostgreSQL"):
            n.local_ca.issued("root")
    finally:
        n.close()


def test_no_network_fetch_is_started() -> None:
    asked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        return httpx.Response(200, content=b"body")

    with HttpFetcher(transport=httpx.MockTransport(answer)) as fetcher:
        with without_waiting(), pytest.raises(WouldWait, match="network"):
            fetcher.get("http://127.0.0.1:8/crl")
        assert asked == []
        assert fetcher.get("http://127.0.0.1:8/crl") == b"body"  # done normally, it asks
    assert asked == ["http://127.0.0.1:8/crl"]
