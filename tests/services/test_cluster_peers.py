"""Cluster peers on PostgreSQL: removing a decommissioned peer deletes all of its own state in
one transaction and nothing of the others; refusals (this node, a peer still running, an
unknown peer, an embedded node) change nothing; a seventh node cannot join."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from certway.clock import FixedClock
from certway.errors import Conflict, NotFound, PolicyViolation, StoreError
from certway.services import audit as audit_module
from certway.services.cluster import MAX_PEERS, STOPPED_AFTER
from certway.services.identities import CsrOptions
from certway.services.node import Node
from certway.store.topics import TopicRepository
from certway.store.vault import MASTER_KEY_FILE

from conftest import NOW

EC = CsrOptions(key_type="ec:p256")
PER_PEER = {  # table → the column naming the peer
    "peers": "id",
    "cert_slots": "node_id",
    "settings": "node_id",
    "alarm_state": "node_id",
}


@dataclass
class Trio:
    url: str
    this: Node  # peer 1, where the administrator works
    gone: Node  # peer 2: stopped an hour ago (its last heartbeat)
    running: Node  # peer 3: seen a minute ago


def _join(tmp_path: Path, url: str, clock: FixedClock, name: str) -> Node:
    key = (tmp_path / "p1" / MASTER_KEY_FILE).read_bytes()
    return Node.init(
        tmp_path / name, clock, database=url, join_key=key, fqdn=f"{name}.example.test"
    )


@pytest.fixture
def trio(tmp_path: Path, pg_url: str) -> Iterator[Trio]:
    this = Node.init(tmp_path / "p1", FixedClock(NOW), database=pg_url, fqdn="p1.example.test")
    gone = _join(tmp_path, pg_url, FixedClock(NOW - dt.timedelta(hours=1)), "p2")
    # The decommissioned peer had a domain certificate slot, pending CSRs, alarms.
    gone.identities.add_domain("conf.example.test")
    gone.identities.generate_csr("server", "", EC)
    gone.identities.generate_csr("domain", "conf.example.test", EC)
    assert gone.alarms.current()  # the temporary certificate: an alarm state of its own
    running = _join(tmp_path, pg_url, FixedClock(NOW - dt.timedelta(minutes=1)), "p3")
    running.alarms.current()
    yield Trio(pg_url, this, gone, running)
    for node in (this, gone, running):
        node.close()


def _rows(url: str, node_id: int) -> dict[str, int]:
    """The rows of each per-peer table that belong to ``node_id``, and its certificate versions
    and keys."""
    with psycopg.connect(url) as db:
        counts = {
            table: db.execute(
                f"SELECT count(*) FROM {table} WHERE {column} = %s",  # noqa: S608 - fixed names
                (node_id,),
            ).fetchone()[0]  # type: ignore[index]
            for table, column in PER_PEER.items()
        }
        counts["cert_versions"] = db.execute(
            "SELECT count(*) FROM cert_versions v JOIN cert_slots s ON v.slot_id = s.id "
            "WHERE s.node_id = %s",
            (node_id,),
        ).fetchone()[0]  # type: ignore[index]
        counts["private_keys"] = db.execute(
            "SELECT count(*) FROM private_keys k WHERE k.id IN ("
            " SELECT v.key_id FROM cert_versions v JOIN cert_slots s ON v.slot_id = s.id"
            " WHERE s.node_id = %s UNION"
            " SELECT pending_key_id FROM cert_slots WHERE node_id = %s)",
            (node_id, node_id),
        ).fetchone()[0]  # type: ignore[index]
    return counts


def _dump(url: str) -> list[tuple[object, ...]]:
    """Every row of the state tables but the audit log (refusals are audited)."""
    with psycopg.connect(url) as db:
        tables = [
            r[0]
            for r in db.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename NOT IN ('audit_log', 'alembic_version') ORDER BY tablename"
            )
        ]
        return [
            (table, *row)
            for table in tables
            for row in sorted(db.execute(f"SELECT * FROM {table}").fetchall(), key=repr)  # noqa: S608
        ]


def test_removing_a_stopped_peer_deletes_all_its_own_state_and_nothing_else(trio: Trio) -> None:
    before_gone = _rows(trio.url, 2)
    assert all(before_gone.values()), before_gone  # there was something of each kind
    others = {1: _rows(trio.url, 1), 3: _rows(trio.url, 3)}

    removed = trio.this.cluster.remove_peer("p2.example.test")

    assert removed.peer.id == 2 and removed.peer.fqdn == "p2.example.test"
    assert removed.rows["peers"] == 1 and removed.rows["cert_slots"] == 2
    assert set(_rows(trio.url, 2).values()) == {0}
    assert {1: _rows(trio.url, 1), 3: _rows(trio.url, 3)} == others
    assert [p.id for p in trio.this.cluster.peers()] == [1, 3]
    assert trio.this.settings.get().peers == ("p3.example.test",)
    # The others keep working: the running peer still has its server certificate.
    assert trio.running.identities.active("server") is not None
    audit = [e for e in trio.this.audit.entries() if e.action == "cluster.remove-peer"]
    assert audit and audit[-1].outcome == "ok" and audit[-1].target == "peer p2.example.test"


def test_the_audit_row_commits_with_the_removal(
    trio: Trio, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As tests/security/test_sec_audit_atomic.py checks for every other audited change: the
    row is written in the change's own transaction, and the change bumps a change topic."""

    def separate_write(*_args: object, **_kw: object) -> None:
        raise AssertionError("an audit row written in a transaction of its own")

    monkeypatch.setattr(audit_module.Audit, "_settle", separate_write)
    with trio.this.store.reading() as session:
        topics = TopicRepository(session).versions()
    trio.this.cluster.remove_peer(2)
    mine = [e for e in trio.this.audit.entries() if e.action == "cluster.remove-peer"]
    assert [(e.outcome, e.detail["node_id"]) for e in mine] == [("ok", 2)]
    with trio.this.store.reading() as session:
        assert TopicRepository(session).versions() != topics


@pytest.mark.parametrize(
    ("peer", "error", "message"),
    [
        ("1", Conflict, "peer 1 (p1.example.test) is this node: a node cannot remove itself"),
        ("p1.example.test", Conflict, "is this node"),
        (
            "3",
            Conflict,
            "peer 3 (p3.example.test) was last seen 60 seconds ago: it is still running; stop "
            "certway on it first, then remove it once it has been silent for 5 minutes",
        ),
        ("9", NotFound, "the cluster has no peer '9'"),
        ("gone.example.test", NotFound, "the cluster has no peer 'gone.example.test'"),
    ],
)
def test_refused_removals_change_nothing(
    trio: Trio, peer: str, error: type[Exception], message: str
) -> None:
    before = _dump(trio.url)
    with pytest.raises(error, match=re.escape(message)):
        trio.this.cluster.remove_peer(peer)
    assert _dump(trio.url) == before
    refused = [e for e in trio.this.audit.entries() if e.action == "cluster.remove-peer"]
    assert refused and refused[-1].outcome != "ok"


def test_a_peer_silent_for_the_threshold_may_go(trio: Trio) -> None:
    later = FixedClock(NOW - dt.timedelta(minutes=1) + STOPPED_AFTER)
    this = Node.open(trio.this.store.data_dir, later)
    try:
        assert this.cluster.remove_peer(3).peer.fqdn == "p3.example.test"
    finally:
        this.close()


def test_an_embedded_node_has_no_peers_to_remove(tmp_path: Path) -> None:
    node = Node.init(tmp_path / "d", FixedClock(NOW), factory=False)
    try:
        with pytest.raises(PolicyViolation, match=r"embedded .*there are no peers to remove"):
            node.cluster.remove_peer("2")
        assert [p.id for p in node.cluster.peers()] == [1]
    finally:
        node.close()


def test_a_seventh_node_cannot_join(tmp_path: Path, pg_url: str) -> None:
    clock = FixedClock(NOW)
    first = Node.init(tmp_path / "p1", clock, factory=False, database=pg_url, fqdn="p1.t")
    nodes = [first] + [
        Node.init(
            tmp_path / f"p{i}",
            clock,
            factory=False,
            database=pg_url,
            join_key=(tmp_path / "p1" / MASTER_KEY_FILE).read_bytes(),
            fqdn=f"p{i}.t",
        )
        for i in range(2, MAX_PEERS + 1)
    ]
    try:
        assert MAX_PEERS == 6 and len(first.cluster.peers()) == 6
        before = _dump(pg_url)
        with pytest.raises(StoreError) as refused:
            _join(tmp_path, pg_url, clock, "p7")
        assert str(refused.value) == (
            "the cluster already has 6 peers, the most it can have is 6: to add this node, "
            "first remove a decommissioned peer (stopped for good) with 'certway cluster "
            "remove-peer NODE' on one of the peers, or with Remove on its Cluster page"
        )
        assert _dump(pg_url) == before
        assert not (tmp_path / "p7").exists() or not any((tmp_path / "p7").iterdir())
        # Once a decommissioned peer is gone, the node joins.
        later = Node.open(tmp_path / "p1", FixedClock(NOW + STOPPED_AFTER))
        try:
            later.cluster.remove_peer("p6.t")
        finally:
            later.close()
        _join(tmp_path, pg_url, clock, "p7").close()
        assert [p.fqdn for p in first.cluster.peers()][-1] == "p7.example.test"
    finally:
        for node in nodes:
            node.close()
