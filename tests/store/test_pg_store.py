"""The store on PostgreSQL: cluster creation and joining, key check, transaction semantics,
errors, migrations, and the test server fallback."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import psycopg
import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

import pgtools
from certway.errors import Conflict, StoreError
from certway.store.db import CLUSTER_FILE, Store, _alembic_config, _migrate
from certway.store.repositories import AdminRepository, KeyRepository, SettingsRepository
from certway.store.vault import MASTER_KEY_FILE

from conftest import test_key


def test_create_cluster_writes_node_files_and_schema(tmp_path: Path, pg_url: str) -> None:
    store = Store.create_cluster(tmp_path / "a", pg_url, fqdn="a.example.test")
    try:
        assert store.clustered and store.node_id == 1
        assert (tmp_path / "a" / MASTER_KEY_FILE).stat().st_mode & 0o777 == 0o600
        assert (tmp_path / "a" / CLUSTER_FILE).stat().st_mode & 0o777 == 0o600
        assert not (tmp_path / "a" / "certway.db").exists()  # the data is in PostgreSQL
    finally:
        store.close()
    with psycopg.connect(pg_url) as db:
        peers = db.execute("SELECT id, fqdn FROM peers").fetchall()
        check = db.execute("SELECT key_check FROM cluster").fetchone()
    assert peers == [(1, "a.example.test")]
    key = (tmp_path / "a" / MASTER_KEY_FILE).read_bytes()
    assert check is not None and key.hex() not in check[0]  # a check value, not the key


def test_second_init_on_a_cluster_database_is_refused(tmp_path: Path, pg_url: str) -> None:
    Store.create_cluster(tmp_path / "a", pg_url).close()
    with pytest.raises(StoreError, match=r"already holds a certway cluster.*--join"):
        Store.create_cluster(tmp_path / "b", pg_url)
    assert not (tmp_path / "b").exists()


def test_join_adds_a_peer_with_the_cluster_key(tmp_path: Path, pg_url: str, clock: object) -> None:
    first = Store.create_cluster(tmp_path / "a", pg_url, fqdn="a.example.test")
    with first.transaction() as session:
        key_id = KeyRepository(session, first.vault).put(test_key("ec:p256", 1), clock.now())  # type: ignore[attr-defined]
    key = (tmp_path / "a" / MASTER_KEY_FILE).read_bytes()
    second = Store.join_cluster(tmp_path / "b", pg_url, key, fqdn="b.example.test")
    try:
        assert second.node_id == 2
        with second.reading() as session:  # the sealed key opens on the other peer
            assert KeyRepository(session, second.vault).description(key_id) == "ECDSA P-256"
            KeyRepository(session, second.vault).get(key_id)
    finally:
        first.close()
        second.close()


def test_join_with_another_key_is_refused_and_creates_nothing(tmp_path: Path, pg_url: str) -> None:
    Store.create_cluster(tmp_path / "a", pg_url).close()
    with pytest.raises(StoreError, match="cluster key does not match"):
        Store.join_cluster(tmp_path / "b", pg_url, os.urandom(32), fqdn="b.example.test")
    assert not (tmp_path / "b" / MASTER_KEY_FILE).exists()
    assert not (tmp_path / "b" / CLUSTER_FILE).exists()
    with psycopg.connect(pg_url) as db:
        assert db.execute("SELECT count(*) FROM peers").fetchone() == (1,)


def test_node_whose_key_changed_gets_a_clear_error(tmp_path: Path, pg_url: str) -> None:
    Store.create_cluster(tmp_path / "a", pg_url).close()
    key_file = tmp_path / "a" / MASTER_KEY_FILE
    key_file.write_bytes(os.urandom(32))
    with pytest.raises(StoreError, match="cluster key does not match the database"):
        Store.open(tmp_path / "a")


def test_join_an_empty_database_is_refused(tmp_path: Path, pg_url: str) -> None:
    with pytest.raises(StoreError, match="holds no certway cluster"):
        Store.join_cluster(tmp_path / "b", pg_url, os.urandom(32), fqdn="b.example.test")
    assert not (tmp_path / "b" / CLUSTER_FILE).exists()


def test_bad_database_urls_are_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not a PostgreSQL database URL"):
        Store.create_cluster(tmp_path / "a", "mysql://u@h/db")
    with pytest.raises(StoreError, match="not valid"):
        Store.create_cluster(tmp_path / "a", "no url")
    assert not (tmp_path / "a").exists()


def test_unreachable_database_is_store_error_without_password(tmp_path: Path) -> None:
    port = pgtools._free_port()  # nothing listens there
    url = f"postgresql://certway:s3cret-pw@127.0.0.1:{port}/certway"
    with pytest.raises(StoreError, match="cannot use the database") as info:
        Store.create_cluster(tmp_path / "a", url)
    assert "s3cret-pw" not in str(info.value)
    assert not (tmp_path / "a").exists()


def _increment_many(store: Store, times: int, start: threading.Barrier) -> None:
    start.wait()
    for _ in range(times):
        with store.transaction() as session:
            settings = SettingsRepository(session)
            value = settings.get("counter") or 0
            time.sleep(0.001)  # widen the read-modify-write window
            settings.set("counter", value + 1)


def test_read_modify_write_from_three_peers_loses_nothing(tmp_path: Path, pg_url: str) -> None:
    first = Store.create_cluster(tmp_path / "a", pg_url)
    key = (tmp_path / "a" / MASTER_KEY_FILE).read_bytes()
    stores = [
        first,
        Store.join_cluster(tmp_path / "b", pg_url, key, fqdn="b.example.test"),
        Store.join_cluster(tmp_path / "c", pg_url, key, fqdn="c.example.test"),
    ]
    start = threading.Barrier(3)
    workers = [threading.Thread(target=_increment_many, args=(s, 30, start)) for s in stores]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    with first.reading() as session:
        assert SettingsRepository(session).get("counter") == 90
    for store in stores:
        store.close()


def test_readers_see_a_snapshot_and_do_not_wait(tmp_path: Path, pg_url: str) -> None:
    writer = Store.create_cluster(tmp_path / "a", pg_url)
    reader = Store.open(tmp_path / "a")
    with writer.transaction() as session:
        SettingsRepository(session).set("k", 1)
    with writer.transaction() as session:  # holds the write lock for the whole block
        SettingsRepository(session).set("k", 2)
        with reader.reading() as other:
            assert SettingsRepository(other).get("k") == 1
    with reader.reading() as other:
        assert SettingsRepository(other).get("k") == 2
    writer.close()
    reader.close()


def test_a_write_in_a_reading_unit_is_refused(tmp_path: Path, pg_url: str) -> None:
    store = Store.create_cluster(tmp_path / "a", pg_url)
    with pytest.raises(StoreError, match="read-only"), store.reading() as session:
        SettingsRepository(session).set("k", 1)
    with store.transaction() as session:
        SettingsRepository(session).set("k", 2)
    store.close()


def test_clash_is_conflict(tmp_path: Path, pg_url: str, clock: object) -> None:
    store = Store.create_cluster(tmp_path / "a", pg_url)
    now = clock.now()  # type: ignore[attr-defined]
    with store.transaction() as session:
        AdminRepository(session).add("alice", "read-write", "x", now)
    with pytest.raises(Conflict, match="clashes"), store.transaction() as session:
        AdminRepository(session).add("alice", "read-only", "y", now)
    store.close()


def test_per_peer_settings_are_the_peers_own(tmp_path: Path, pg_url: str) -> None:
    first = Store.create_cluster(tmp_path / "a", pg_url)
    key = (tmp_path / "a" / MASTER_KEY_FILE).read_bytes()
    second = Store.join_cluster(tmp_path / "b", pg_url, key, fqdn="b.example.test")
    with first.transaction() as session:
        SettingsRepository(session).set("node", {"fqdn": "a.example.test"})
        SettingsRepository(session).set("sip", {"shared": True})
    with second.reading() as session:
        assert SettingsRepository(session).get("node") is None  # per peer
        assert SettingsRepository(session).get("sip") == {"shared": True}  # cluster-wide
    first.close()
    second.close()


def test_migrations_down_and_up_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    Store.create_cluster(tmp_path / "a", pg_url).close()
    engine = create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
    config = _alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0005")
    with psycopg.connect(pg_url) as db:
        tables = {r[0] for r in db.execute("SELECT tablename FROM pg_tables")}
    assert "peers" not in tables and "tokens" not in tables
    _migrate(engine)
    engine.dispose()
    with psycopg.connect(pg_url) as db:
        (version,) = db.execute("SELECT version_num FROM alembic_version").fetchone() or ("",)
    assert version == ScriptDirectory.from_config(config).get_current_head()


def test_throwaway_server_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a server at 127.0.0.1:5432 the tests start their own (forced here); a server
    that goes away is 'the database is unavailable', not a crash."""
    monkeypatch.setenv("CERTWAY_TEST_PG", "throwaway")
    server = pgtools.find_or_start_server()
    try:
        assert server.throwaway and ":5432/" not in server.admin_url
        name = server.create_database()
        store = Store.create_cluster(tmp_path / "a", server.url(name))
        with store.transaction() as session:
            SettingsRepository(session).set("k", 7)
        with store.reading() as session:
            assert SettingsRepository(session).get("k") == 7
        server.stop()
        unavailable = pytest.raises(StoreError, match="database is unavailable")
        with unavailable, store.transaction() as session:
            SettingsRepository(session).set("k", 8)
        unavailable = pytest.raises(StoreError, match="database is unavailable")
        with unavailable, store.reading() as session:
            SettingsRepository(session).get("k")
        store.close()
    finally:
        server.stop()
    assert not pgtools._answers(server.admin_url)  # stopped
