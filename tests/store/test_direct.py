"""Issuance's direct writes (certway.store.direct): rows written on the driver's cursor read
back exactly as rows written through the ORM, on SQLite and PostgreSQL, and a refused write
is a Conflict that leaves nothing behind and the next write working. On PostgreSQL the
writes are one statement: it notifies as a transaction does and waits for the write lock."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import text

from certway.clock import FixedClock
from certway.errors import Conflict
from certway.pki.csr import CsrForm, build_csr
from certway.services.audit import Actor, acting_as
from certway.services.node import Node
from certway.store.db import Store
from certway.store.direct import ISSUED, DirectUnit
from certway.store.group import GroupCommit
from certway.store.repositories import AuditRepository
from certway.store.schema import AuditRow
from certway.store.topics import Topic, TopicRepository, listener_for
from waiting import wait_for

from conftest import NOW, test_key


@pytest.fixture
def node(tmp_path: Path, node_database: str | None) -> Iterator[Node]:
    n = Node.init(tmp_path / "d", FixedClock(NOW), factory=False, database=node_database)
    n.local_ca.create_root("root", "/CN=Root", days=3650)
    yield n
    n.close()


def csr_pem(name: str, index: int) -> bytes:
    form = CsrForm(common_name=name, additional_names=(name,))
    csr = build_csr(test_key("ec:p256", index), form)[0]
    return csr.public_bytes(serialization.Encoding.PEM)


def test_direct_rows_read_back_as_orm_rows(node: Node) -> None:
    subject = build_csr(test_key("ec:p256", 61), CsrForm(common_name="orm.example.com"))[0]
    with acting_as(Actor("alice", "api", "192.0.2.1")):
        by_orm = node.local_ca.issue_certificate(  # the ORM path
            "root", subject.public_key(), subject.subject, alt_names=[], days=30
        ).certificate
        direct = node.local_ca.sign("root", csr_pem("direct.example.com", 62), days=30)
    rows = {i.serial: i for i in node.local_ca.issued("root")}
    for cert in (by_orm, direct.certificate):
        row = rows[format(cert.serial_number, "X")]
        assert row.not_after == cert.not_valid_after_utc  # aware, UTC, to the second
        assert row.not_before == cert.not_valid_before_utc
        assert row.not_after.tzinfo is not None and row.status == "valid"
    signed = rows[format(direct.certificate.serial_number, "X")]
    assert (signed.subject, signed.alt_names, signed.profile) == (
        "CN=direct.example.com",
        "DNS:direct.example.com",
        "server-client",
    )
    assert node.local_ca.issued_certificate("root", signed.serial) == direct.certificate
    entry = next(e for e in node.audit.entries() if e.action == "ca.sign")
    assert (entry.at, entry.actor, entry.via, entry.address, entry.target, entry.outcome) == (
        NOW,
        "alice",
        "api",
        "192.0.2.1",
        "root",
        "ok",
    )
    assert entry.detail == {"serial": signed.serial, "subject": "CN=direct.example.com"}


def test_a_refused_direct_write_is_a_conflict_and_the_next_one_works(node: Node) -> None:
    group: GroupCommit[None] = GroupCommit(node.store)
    issued = node.local_ca.sign("root", csr_pem("a.example.com", 63))
    row = next(i for i in node.local_ca.issued("root"))
    clash = {
        "ca_id": 1,
        "serial": row.serial,  # (ca_id, serial) is unique: the same certificate twice
        "subject": row.subject,
        "alt_names": "",
        "profile": "server",
        "not_before": NOW,
        "not_after": NOW + dt.timedelta(days=1),
        "certificate_der": b"x",
        "issued_at": NOW,
        "acme_account": None,
    }

    def write(unit: DirectUnit) -> None:
        unit.add(ISSUED, clash)

    with pytest.raises(Conflict, match="clashes"):
        group.run(write)
    assert [i.serial for i in node.local_ca.issued("root")] == [row.serial]
    again = node.local_ca.sign("root", csr_pem("b.example.com", 64))
    assert len(node.local_ca.issued("root")) == 2
    assert again.certificate.serial_number != issued.certificate.serial_number


@pytest.fixture
def pg_node(tmp_path: Path, pg_url: str) -> Iterator[Node]:
    n = Node.init(tmp_path / "pg", FixedClock(NOW), factory=False, database=pg_url)
    n.local_ca.create_root("root", "/CN=Root", days=3650)
    yield n
    n.close()


def test_on_postgresql_a_signature_is_one_statement_and_its_topic_is_quiet(
    pg_node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without commit hooks, the rows and the topic are written as one statement in
    autocommit mode. Its topic (ca-issued) counts but sends no notification, which every
    peer's listener would wake for; an announced topic's reaches a listener."""
    statements: list[int] = []
    one_statement = type(pg_node.store).direct_statement

    def counted(store: Store) -> AbstractContextManager[Any]:
        statements.append(1)
        return one_statement(store)

    monkeypatch.setattr(Store, "direct_statement", counted)
    heard: list[frozenset[Topic]] = []
    listener = listener_for(pg_node.store.engine, heard.append)
    assert listener is not None
    listener.start()
    try:
        assert listener.connected.wait(15)
        wait_for(lambda: heard, "the listener's first read")
        heard.clear()
        signed = pg_node.local_ca.sign("root", csr_pem("one.example.com", 65))
        loud = DirectUnit()  # a topic that is announced, written the same way, after it
        loud.bump(Topic.LOCAL_CAS)
        loud.commit(pg_node.store)
        wait_for(lambda: frozenset({Topic.LOCAL_CAS}) in heard, "the local-cas notification")
    finally:
        listener.stop()
    # notifications arrive in commit order: the issuance's quiet topic sent none
    assert frozenset({Topic.CA_ISSUED}) not in heard
    assert statements == [1, 1]
    serial = format(signed.certificate.serial_number, "X")
    assert [i.serial for i in pg_node.local_ca.issued("root")] == [serial]
    assert [e.outcome for e in pg_node.audit.entries() if e.action == "ca.sign"] == ["ok"]
    with pg_node.store.reading() as session:
        assert TopicRepository(session).versions((Topic.CA_ISSUED,)) == (1,)


def test_on_postgresql_the_one_statement_waits_for_the_write_lock(pg_node: Node) -> None:
    """The statement takes the cluster's write lock before it writes a row: a signature made
    while another writer holds the lock commits after it, and its audit row's id comes after
    that writer's (the audit forwarding reads past the last id it sent)."""
    holding, release = threading.Event(), threading.Event()

    def other_writer() -> None:
        with pg_node.store.transaction() as session:
            AuditRepository(session).add(
                AuditRow(at=NOW, actor="test", via="cli", action="other", outcome="ok")
            )
            holding.set()
            release.wait(30)

    writer = threading.Thread(target=other_writer)
    writer.start()
    assert holding.wait(30)
    signer = threading.Thread(
        target=pg_node.local_ca.sign, args=("root", csr_pem("late.example.com", 66))
    )
    signer.start()
    try:
        wait_for(lambda: _waiting_for_advisory_locks(pg_node) == 1, "the signature to queue")
        assert pg_node.local_ca.issued("root") == []  # nothing written before the lock
    finally:
        release.set()
        writer.join(30)
        signer.join(30)
    assert len(pg_node.local_ca.issued("root")) == 1
    with pg_node.store.reading() as session:
        rows = AuditRepository(session).newest(since=None, limit=10)
    ids = {r.action: r.id for r in rows}
    assert ids["other"] < ids["ca.sign"]


def _waiting_for_advisory_locks(node: Node) -> int:
    with node.store.reading() as session:
        return int(
            session.execute(
                text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
            ).scalar_one()
        )
