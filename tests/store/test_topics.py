"""Change topics: counters that move with their change, in its transaction; on PostgreSQL a
notification that leaves only when the change commits; migration 0009 keeps the old counters."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session

from certway.errors import PolicyViolation
from certway.services.node import Node
from certway.store.db import DB_FILE, _alembic_config
from certway.store.topics import Topic, TopicRepository, listener_for
from waiting import wait_for


def versions(node: Node, *topics: Topic) -> tuple[int, ...]:
    with node.store.reading() as session:
        return TopicRepository(session).versions(topics)


@pytest.fixture
def node(tmp_path: Path) -> Node:
    n = Node.init(tmp_path / "d", fqdn="vcs.example.com", factory=False)
    yield n  # type: ignore[misc]
    n.close()


def test_a_change_moves_its_topics_and_only_them(node: Node) -> None:
    before = versions(node, *Topic)
    node.sip.set(mutual_tls="require")
    after = versions(node, *Topic)
    moved = {t for t, b, a in zip(Topic, before, after, strict=True) if a != b}
    assert moved == {Topic.SIP}
    assert after[list(Topic).index(Topic.SIP)] == before[list(Topic).index(Topic.SIP)] + 1


def test_a_refused_change_moves_no_topic(node: Node) -> None:
    before = versions(node, *Topic)
    with pytest.raises(PolicyViolation):
        node.sip.set(mutual_tls="sometimes")
    with pytest.raises(RuntimeError), node.store.transaction() as session:
        TopicRepository(session).bump(Topic.TRUSTED_CAS)
        raise RuntimeError("rolled back")
    assert versions(node, *Topic) == before


def test_bumps_from_many_threads_all_count(node: Node) -> None:
    (start,) = versions(node, Topic.ZONES)

    def bump() -> None:
        for _ in range(10):
            with node.store.transaction() as session:
                TopicRepository(session).bump(Topic.ZONES, Topic.ZONES)  # once per transaction

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert versions(node, Topic.ZONES) == (start + 40,)


def test_caches_declare_their_topics(node: Node) -> None:
    """A cache rebuilt from its declared topics: the trusted list's snapshot moves with
    TRUSTED_CAS, the CA records with a revocation."""
    from certway.pki.text import serial_hex
    from certway.serve import ADMIN_TOPICS
    from certway.services.sip_settings import SipSettings

    assert Topic.TRUSTED_CAS in ADMIN_TOPICS and Topic.ADMIN_SECURITY in ADMIN_TOPICS
    assert Topic.SIP in SipSettings.LISTENER_TOPICS
    node.local_ca.create_root("lab", "/CN=Topic Root")
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    from conftest import test_key

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "peer.example.com")])
    issued = node.local_ca.issue_certificate(
        "lab", test_key("ec:p256", 3).public_key(), name, alt_names=[]
    )
    serial = issued.certificate.serial_number
    records = node.local_ca.records()
    assert node.local_ca.records() is records  # nothing moved: the same object
    (before,) = versions(node, Topic.CA_RECORDS)
    node.local_ca.revoke("lab", serial_hex(serial))
    assert versions(node, Topic.CA_RECORDS) > (before,)
    fresh = node.local_ca.records()
    assert fresh is not records
    assert any(serial in r.revoked for r in fresh.by_key.values())


def test_migration_0009_keeps_the_old_counters(tmp_path: Path) -> None:
    data = tmp_path / "d"
    node = Node.init(data, factory=False)
    node.sip.set(mutual_tls="require")
    node.sip.set(mutual_tls="request")
    (sip,) = versions(node, Topic.SIP)
    node.close()
    engine = create_engine(f"sqlite:///{data / DB_FILE}")
    config = _alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0008")
    engine.dispose()
    with sqlite3.connect(data / DB_FILE) as db:
        old = dict(db.execute("SELECT key, value FROM settings WHERE key LIKE 'version.%'"))
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert old["version.sip"] == str(sip) and "change_topics" not in tables
    node = Node.open(data)  # upgrades again
    try:
        assert versions(node, Topic.SIP) == (sip,)
    finally:
        node.close()
    with sqlite3.connect(data / DB_FILE) as db:
        left = db.execute("SELECT count(*) FROM settings WHERE key LIKE 'version.%'").fetchone()
    assert left == (0,)


# -- PostgreSQL: NOTIFY at commit, heard by a listener --------------------------------------
@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[Engine]:
    from certway.store.schema import Base

    engine = create_engine(make_url(pg_url).set(drivername="postgresql+psycopg"))
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


def test_notifications_leave_at_commit_and_never_on_rollback(pg_engine: Engine) -> None:
    heard: list[frozenset[Topic]] = []
    states: list[bool] = []
    listener = listener_for(pg_engine, heard.append, states.append)
    assert listener is not None
    listener.start()
    try:
        wait_for(listener.connected.is_set, "the listener to connect")
        wait_for(lambda: heard, "the catch-up after connecting")  # every topic, once
        assert heard == [frozenset(Topic)] and states == [True]
        heard.clear()
        with pytest.raises(RuntimeError), Session(pg_engine) as session, session.begin():
            TopicRepository(session).bump(Topic.TRUSTED_CAS)
            raise RuntimeError("rolled back")
        with Session(pg_engine) as session, session.begin():
            TopicRepository(session).bump(Topic.REVOCATION, Topic.SIP)
            # not committed yet: nothing heard
            with Session(pg_engine) as other:
                assert TopicRepository(other).versions((Topic.REVOCATION,)) == (0,)
        wait_for(lambda: set().union(*heard) >= {Topic.REVOCATION, Topic.SIP}, "the notification")
        assert Topic.TRUSTED_CAS not in set().union(*heard)  # the rolled-back one never came
        with Session(pg_engine) as session:
            assert TopicRepository(session).versions((Topic.REVOCATION, Topic.SIP)) == (1, 1)
    finally:
        listener.stop()


def test_sqlite_has_no_listener(node: Node) -> None:
    assert listener_for(node.store.engine, lambda _t: None) is None
