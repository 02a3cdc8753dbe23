"""Group commit: writes of several threads share one transaction, each keeps its own result,
error and commit hooks (certway.store.group), on SQLite and PostgreSQL (where a group
without hooks is written as one statement)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from certway.services.node import Node
from certway.store.db import Session, Store
from certway.store.direct import AUDIT, DirectUnit
from certway.store.group import GroupCommit
from certway.store.repositories import AuditRepository, column_values
from certway.store.schema import AuditRow
from waiting import wait_for

from conftest import NOW


@pytest.fixture
def store(tmp_path: Path, node_database: str | None) -> Iterator[Store]:
    node = Node.init(tmp_path / "d", factory=False, database=node_database)
    yield node.store
    node.close()


def row(action: str) -> AuditRow:
    return AuditRow(at=NOW, actor="test", via="cli", action=action, outcome="ok")


def add(action: str) -> Callable[[DirectUnit], str]:
    """A write inserting an audit row named ``action``: its result is ``action``."""

    def write(unit: DirectUnit) -> str:
        unit.add(AUDIT, column_values(AuditRow, row(action)))
        return action

    return write


def actions(store: Store) -> list[str]:
    with store.reading() as session:
        rows = AuditRepository(session).newest(since=None, limit=100)
        return [r.action for r in rows if r.actor == "test"]  # not the node's own set-up


class Run(threading.Thread):
    """``group.run(write)`` on a thread of its own, keeping the result or the error."""

    def __init__(self, group: GroupCommit[str], write: Callable[[DirectUnit], str]) -> None:
        super().__init__()
        self.group, self.write = group, write
        self.result: str | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.group.run(self.write)
        except BaseException as exc:
            self.error = exc


def behind_a_busy_leader(group: GroupCommit[str], followers: list[Run]) -> Run:
    """A leader whose write waits until ``followers`` all queued behind it; all finished."""
    entered, release = threading.Event(), threading.Event()

    def slow(unit: DirectUnit) -> str:
        entered.set()
        release.wait(30)
        return add("leader")(unit)

    leader = Run(group, slow)
    leader.start()
    entered.wait(30)
    for follower in followers:
        follower.start()
    wait_for(lambda: len(group._queue) == len(followers), "the writes queued behind the leader")
    release.set()
    for thread in (leader, *followers):
        thread.join(30)
    return leader


def test_writes_queued_meanwhile_share_one_transaction(store: Store) -> None:
    transactions: list[int] = []
    group: GroupCommit[str] = GroupCommit(store, finish=lambda _s: transactions.append(1))
    followers = [Run(group, add(f"w{n}")) for n in range(3)]
    leader = behind_a_busy_leader(group, followers)
    assert leader.error is None and all(f.error is None for f in followers)
    assert [leader.result, *(f.result for f in followers)] == ["leader", "w0", "w1", "w2"]
    assert len(transactions) == 2  # the leader's, then one for the three queued behind it
    assert sorted(actions(store)) == ["leader", "w0", "w1", "w2"]


def test_a_failing_write_fails_alone_and_the_others_commit(store: Store) -> None:
    def bad(_unit: DirectUnit) -> str:
        raise ValueError("this write is refused")

    group: GroupCommit[str] = GroupCommit(store)
    first, failing, last = (Run(group, write) for write in (add("a"), bad, add("b")))
    behind_a_busy_leader(group, [first, failing, last])
    assert first.error is None and last.error is None
    assert isinstance(failing.error, ValueError) and str(failing.error) == "this write is refused"
    assert sorted(actions(store)) == ["a", "b", "leader"]


class Hook:
    """A commit hook that writes a row of its own, as the audit's does."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.committed_calls = 0

    def before_commit(self, session: Session) -> None:
        AuditRepository(session).add(row(f"hook-{self.name}"))

    def committed(self) -> None:
        self.committed_calls += 1


def test_each_callers_commit_hooks_join_the_shared_transaction(store: Store) -> None:
    group: GroupCommit[str] = GroupCommit(store)
    hooks = [Hook(str(n)) for n in range(3)]

    # the hooks are those of the submitting thread: store.hooked around each run
    class HookedRun(Run):
        def __init__(self, hook: Hook) -> None:
            super().__init__(group, add(f"w{hook.name}"))
            self.hook = hook

        def run(self) -> None:
            with store.hooked(self.hook):
                super().run()

    followers = [HookedRun(h) for h in hooks]
    behind_a_busy_leader(group, list(followers))
    assert all(f.error is None for f in followers)
    assert [h.committed_calls for h in hooks] == [1, 1, 1]
    assert sorted(actions(store)) == sorted(
        ["leader", "w0", "w1", "w2", "hook-0", "hook-1", "hook-2"]
    )


def test_a_thread_holding_a_write_transaction_is_refused(store: Store) -> None:
    group: GroupCommit[str] = GroupCommit(store)
    with store.transaction(), pytest.raises(RuntimeError, match="already open"):
        group.run(add("inner"))
    assert actions(store) == []


def test_one_caller_alone_commits_at_once(store: Store) -> None:
    transactions: list[int] = []
    group: GroupCommit[str] = GroupCommit(store, finish=lambda _s: transactions.append(1))
    first, second = group.run(add("one")), group.run(add("two"))
    assert first != second and len(transactions) == 2
    assert sorted(actions(store)) == ["one", "two"]


def leader_with_an_announced_signer(
    group: GroupCommit[str], signer: Callable[[threading.Event], None]
) -> tuple[Run, threading.Thread]:
    """``signer(go_on)`` announces a write (``coming``) and waits for ``go_on``; a leader's
    write queues meanwhile, then ``go_on`` is set. Both returned once finished."""
    announced, go_on = threading.Event(), threading.Event()

    def announcing() -> None:
        with group.coming():
            announced.set()
            signer(go_on)

    thread = threading.Thread(target=announcing)
    thread.start()
    announced.wait(30)
    leader = Run(group, add("leader"))
    leader.start()
    wait_for(lambda: len(group._queue) == 1, "the leader's write queued")
    go_on.set()
    leader.join(30)  # MAX_WAIT is patched long: a leader that waited for ever fails here
    thread.join(30)
    return leader, thread


def test_a_leader_waits_for_an_announced_write_and_commits_it_too(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A caller that announced a write (``coming``: it is still signing) is waited for, so
    writes prepared together share one commit."""
    monkeypatch.setattr("certway.store.group.MAX_WAIT", 30.0)
    transactions: list[int] = []
    group: GroupCommit[str] = GroupCommit(store, finish=lambda _s: transactions.append(1))
    results: dict[str, str] = {}

    def slow_signer(go_on: threading.Event) -> None:
        go_on.wait(30)  # its own work (a signature) before its write
        results["announced"] = group.run(add("announced"))

    leader, _signer = leader_with_an_announced_signer(group, slow_signer)
    assert leader.error is None and leader.result is not None and "announced" in results
    assert transactions == [1]  # one commit for both
    assert sorted(actions(store)) == ["announced", "leader"]


def test_an_announcement_given_up_releases_the_leader(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("certway.store.group.MAX_WAIT", 3600.0)
    group: GroupCommit[str] = GroupCommit(store)
    refused: list[str] = []

    def failing_signer(go_on: threading.Event) -> None:
        go_on.wait(30)
        refused.append("the CSR was refused: no write")  # leaves ``coming`` without a write

    leader, _signer = leader_with_an_announced_signer(group, failing_signer)
    assert not leader.is_alive() and leader.error is None  # an hour's wait otherwise
    assert refused and actions(store) == ["leader"]
