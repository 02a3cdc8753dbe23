"""Repositories added when the SQL of accounts, alarms and the audit log moved into the store."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from certway.store.db import Store
from certway.store.repositories import AdminRepository, AlarmStateRepository, AuditRepository
from certway.store.schema import AuditRow

from conftest import NOW


def test_alarm_state_keeps_the_first_time_an_alarm_was_seen(tmp_path: Path) -> None:
    store = Store.create(tmp_path / "d")
    later = NOW + dt.timedelta(hours=1)
    with store.transaction() as session:
        state = AlarmStateRepository(session)
        state.record("expired:server", NOW)
        state.record("expired:server", later)  # a second process records it too: ignored
        state.record("crl-stale:x", later)
    with store.transaction() as session:
        state = AlarmStateRepository(session)
        assert state.first_seen() == {"expired:server": NOW, "crl-stale:x": later}
        state.clear(["crl-stale:x", "never-raised"])
        state.clear([])
    with store.reading() as session:
        assert AlarmStateRepository(session).first_seen() == {"expired:server": NOW}
    store.close()


def test_admin_repository_knows_whether_another_account_can_write(tmp_path: Path) -> None:
    store = Store.create(tmp_path / "d")
    with store.transaction() as session:
        admins = AdminRepository(session)
        admins.add("bob", "read-only", "hash-b", NOW)
        admins.add("alice", "read-write", "hash-a", NOW)
        assert [row.name for row in admins.all()] == ["alice", "bob"]
        assert not admins.another_with_access("read-write", "alice")
        assert admins.another_with_access("read-write", "bob")
        row = admins.get("bob")
        assert row is not None
        admins.delete(row)
    with store.reading() as session:
        assert AdminRepository(session).get("bob") is None
    store.close()


def test_audit_repository_returns_the_newest_rows_oldest_first(tmp_path: Path) -> None:
    store = Store.create(tmp_path / "d")
    with store.transaction() as session:
        log = AuditRepository(session)
        ids = [
            log.add(
                AuditRow(
                    at=NOW + dt.timedelta(minutes=n),
                    actor="alice",
                    via="cli",
                    action=f"action.{n}",
                    outcome="ok",
                )
            )
            for n in range(4)
        ]
    with store.reading() as session:
        log = AuditRepository(session)
        assert [r.action for r in log.newest(since=None, limit=2)] == ["action.2", "action.3"]
        since = NOW + dt.timedelta(minutes=1)
        assert [r.id for r in log.newest(since=since, limit=10)] == ids[1:]
        assert log.get(ids[0]) is not None
    store.close()
