"""Writes awaited on the event loop (PostgreSQL): ``DirectUnit.commit_on_loop`` on the loop's
own connection (certway.store.on_loop), grouped while a statement is on its way; the loop
serves others while a statement waits for the write lock; errors as the store's."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from certway.clock import FixedClock
from certway.errors import Conflict, StoreError
from certway.services.node import Node
from certway.store.direct import AUDIT, ISSUED, DirectUnit
from certway.store.repositories import AuditRepository, column_values
from certway.store.schema import AuditRow
from certway.store.topics import Topic, TopicRepository

from conftest import NOW


@pytest.fixture
def pg_node(tmp_path: Path, pg_url: str) -> Iterator[Node]:
    n = Node.init(tmp_path / "pg", FixedClock(NOW), factory=False, database=pg_url)
    yield n
    n.close()


def audit_unit(action: str) -> DirectUnit:
    unit = DirectUnit()
    row = AuditRow(at=NOW, actor="test", via="cli", action=action, outcome="ok")
    unit.add(AUDIT, column_values(AuditRow, row))
    unit.bump(Topic.CA_ISSUED)
    return unit


def written(node: Node) -> list[tuple[int, str]]:
    """(id, action) of the test's audit rows, in id order."""
    with node.store.reading() as session:
        rows = AuditRepository(session).newest(since=None, limit=100)
        return sorted((r.id, r.action) for r in rows if r.actor == "test")


def test_units_arriving_together_share_one_statement(
    pg_node: Node, loop_statements: list[int]
) -> None:
    async def main() -> None:
        await asyncio.gather(*(audit_unit(f"u{n}").commit_on_loop(pg_node.store) for n in range(5)))
        await pg_node.store.close_on_loop()

    asyncio.run(main())
    assert loop_statements == [1]
    # one statement, one commit: the order of ids within it is PostgreSQL's to choose
    assert sorted(action for _, action in written(pg_node)) == [f"u{n}" for n in range(5)]
    with pg_node.store.reading() as session:  # one statement moved the topic once
        assert TopicRepository(session).versions((Topic.CA_ISSUED,)) == (1,)


def test_a_failing_unit_fails_alone_with_its_own_error(pg_node: Node) -> None:
    bad = DirectUnit()  # an inventory row of a CA that does not exist
    bad.add(
        ISSUED,
        {
            "ca_id": 999,
            "serial": "01",
            "subject": "CN=x",
            "alt_names": "",
            "profile": "server",
            "not_before": NOW,
            "not_after": NOW,
            "certificate_der": b"x",
            "issued_at": NOW,
            "acme_account": None,
        },
    )

    async def main() -> list[BaseException | None]:
        units = [audit_unit("a"), bad, audit_unit("b")]
        try:
            return await asyncio.gather(
                *(u.commit_on_loop(pg_node.store) for u in units), return_exceptions=True
            )
        finally:
            await pg_node.store.close_on_loop()

    outcomes = asyncio.run(main())
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], Conflict)
    assert sorted(action for _, action in written(pg_node)) == ["a", "b"]


def test_the_loop_serves_others_while_a_statement_waits_for_the_write_lock(
    pg_node: Node,
) -> None:
    holding, release = threading.Event(), threading.Event()

    def other_writer() -> None:  # a writer on a thread (or another peer) holds the lock
        with pg_node.store.transaction() as session:
            AuditRepository(session).add(
                AuditRow(at=NOW, actor="test", via="cli", action="other", outcome="ok")
            )
            session.flush()
            holding.set()
            release.wait(30)

    thread = threading.Thread(target=other_writer)
    thread.start()
    assert holding.wait(30)

    async def main() -> int:
        write = asyncio.create_task(audit_unit("mine").commit_on_loop(pg_node.store))
        turns = 0
        while turns < 50:  # the loop keeps turning: nothing blocks it
            await asyncio.sleep(0.01)
            turns += 1
        assert not write.done()  # the statement waits for the lock, not the loop
        release.set()
        await write
        await pg_node.store.close_on_loop()
        return turns

    try:
        assert asyncio.run(main()) == 50
    finally:
        release.set()
        thread.join(30)
    # it wrote after the lock was released: its id comes after the other writer's
    assert [action for _, action in written(pg_node)] == ["other", "mine"]


def test_a_lost_connection_is_an_error_then_made_again(pg_node: Node) -> None:
    async def main() -> None:
        await audit_unit("first").commit_on_loop(pg_node.store)
        loop_connection = pg_node.store._on_loop
        assert loop_connection is not None
        connection = loop_connection._loops[asyncio.get_running_loop()].connection
        assert connection is not None
        pid = connection.info.backend_pid
        url = pg_node.store.engine.url.set(drivername="postgresql")
        with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as c:
            c.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(StoreError, match="unavailable"):
            await audit_unit("lost").commit_on_loop(pg_node.store)
        await audit_unit("again").commit_on_loop(pg_node.store)  # a new connection
        await pg_node.store.close_on_loop()

    asyncio.run(main())
    assert [action for _, action in written(pg_node)] == ["first", "again"]
