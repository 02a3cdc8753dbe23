"""Migration 0008 (cluster): an embedded node's data becomes peer 1's, both ways."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from alembic import command
from sqlalchemy import create_engine, text

from certway.clock import FixedClock
from certway.services.node import Node
from certway.store.db import DB_FILE, _alembic_config

from conftest import NOW


def _migrate(data: Path, revision: str) -> None:
    engine = create_engine(f"sqlite:///{data / DB_FILE}")
    config = _alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)
    engine.dispose()


def test_single_node_data_becomes_peer_one(tmp_path: Path) -> None:
    data = tmp_path / "d"
    node = Node.init(data, FixedClock(NOW), fqdn="solo.example.test")
    node.sip.set(mutual_tls="require")
    node.identities.add_domain("conf.example.test")
    fingerprint = node.identities.info("server").fingerprint
    node.close()

    _migrate(data, "0007")
    with sqlite3.connect(data / DB_FILE) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        slot_columns = {r[1] for r in db.execute("PRAGMA table_info(cert_slots)")}
        keys = {r[0] for r in db.execute("SELECT key FROM settings")}
    assert "peers" not in tables and "cluster" not in tables
    assert "node_id" not in slot_columns and {"node", "sip"} <= keys

    node = Node.open(data, FixedClock(NOW))  # upgrades again
    try:
        assert node.identities.info("server").fingerprint == fingerprint
        assert [d.name for d in node.identities.domains()] == ["conf.example.test"]
        assert node.settings.get().fqdn == "solo.example.test"
        assert node.sip.get().mutual_tls.value == "require"
        [peer] = node.cluster.peers()
        assert (peer.id, peer.fqdn, peer.this_node) == (1, "solo.example.test", True)
    finally:
        node.close()
    with sqlite3.connect(data / DB_FILE) as db:
        scopes = dict(db.execute("SELECT key, node_id FROM settings").fetchall())
        slots = {r[0] for r in db.execute("SELECT DISTINCT node_id FROM cert_slots")}
    assert scopes["node"] == 1 and scopes["sip"] == 0  # per peer / cluster-wide
    assert slots == {1}


def test_node_with_issued_certificates_upgrades_from_0005(tmp_path: Path) -> None:
    """Tables other tables point to (cas) are copied by the upgrade: SQLite's foreign keys
    must not stop it, and every reference holds afterwards."""
    data = tmp_path / "d"
    node = Node.init(data, FixedClock(NOW), fqdn="old.example.test")
    node.local_ca.create_root("root", "/CN=Old Root")
    node.close()
    _migrate(data, "0005")
    node = Node.open(data, FixedClock(NOW))
    try:
        assert node.identities.info("server").subject == "CN=old.example.test"
        assert {ca.name for ca in node.local_ca.cas()} >= {"root"}
        with node.store.reading() as session:  # the upgrading connection enforces them again
            assert session.execute(text("PRAGMA foreign_keys")).scalar() == 1
    finally:
        node.close()
    with sqlite3.connect(data / DB_FILE) as db:
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
