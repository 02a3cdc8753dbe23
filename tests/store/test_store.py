"""The store: master key file, encryption at rest, migrations, transactions."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from certway.errors import StoreError
from certway.pki.keys import private_key_der
from certway.store.db import Store
from certway.store.repositories import KeyRepository, SettingsRepository
from certway.store.schema import PrivateKeyRow
from certway.store.vault import KeyVault

from conftest import test_key


def test_create_makes_0600_master_key_and_0700_dir(tmp_path: Path) -> None:
    store = Store.create(tmp_path / "d")
    store.close()
    assert stat.S_IMODE((tmp_path / "d" / "master.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o700
    assert len((tmp_path / "d" / "master.key").read_bytes()) == 32


def test_create_twice_keeps_the_master_key(tmp_path: Path) -> None:
    Store.create(tmp_path / "d").close()
    first = (tmp_path / "d" / "master.key").read_bytes()
    Store.create(tmp_path / "d").close()
    assert (tmp_path / "d" / "master.key").read_bytes() == first


def test_open_refuses_group_readable_master_key(tmp_path: Path) -> None:
    Store.create(tmp_path / "d").close()
    os.chmod(tmp_path / "d" / "master.key", 0o644)
    with pytest.raises(StoreError, match="readable by other users"):
        Store.open(tmp_path / "d")


def test_open_missing_dir_explains_init(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="init"):
        Store.open(tmp_path / "none")


def test_key_is_sealed_and_round_trips(tmp_path: Path, clock: object) -> None:
    from conftest import NOW

    store = Store.create(tmp_path / "d")
    key = test_key("ec:p256")
    with store.transaction() as session:
        key_id = KeyRepository(session, store.vault).put(key, NOW)
    with store.transaction() as session:
        again = KeyRepository(session, store.vault).get(key_id)
        row = session.scalars(select(PrivateKeyRow)).one()
    assert private_key_der(again) == private_key_der(key)
    assert private_key_der(key) not in row.sealed
    store.close()
    raw = b"".join(p.read_bytes() for p in (tmp_path / "d").glob("certway.db*"))
    assert private_key_der(key) not in raw


def test_transaction_rolls_back_on_error(tmp_path: Path) -> None:
    from conftest import NOW

    store = Store.create(tmp_path / "d")
    with pytest.raises(RuntimeError), store.transaction() as session:
        KeyRepository(session, store.vault).put(test_key(), NOW)
        raise RuntimeError("boom")
    with store.transaction() as session:
        assert session.scalars(select(PrivateKeyRow)).all() == []
    store.close()


def test_vault_binds_blob_to_its_row() -> None:
    vault = KeyVault(b"k" * 32)
    blob = vault.seal(b"secret", b"row-1")
    assert vault.open(blob, b"row-1") == b"secret"
    with pytest.raises(StoreError, match="cannot be opened"):
        vault.open(blob, b"row-2")
    with pytest.raises(StoreError, match="cannot be opened"):
        KeyVault(b"x" * 32).open(blob, b"row-1")
    assert "secret" not in repr(vault) and "k" * 8 not in repr(vault)


def test_migrations_are_idempotent(tmp_path: Path) -> None:
    Store.create(tmp_path / "d").close()
    Store.open(tmp_path / "d").close()
    import sqlite3

    with sqlite3.connect(tmp_path / "d" / "certway.db") as db:
        (version,) = db.execute("select version_num from alembic_version").fetchone()
        tables = {r[0] for r in db.execute("select name from sqlite_master where type='table'")}
    from alembic.script import ScriptDirectory

    from certway.store.db import _alembic_config

    assert version == ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert {"cas", "private_keys", "issued_certificates", "revocations", "crls"} <= tables


def _increment_many(store: Store, times: int, start: threading.Barrier) -> None:
    start.wait()
    for _ in range(times):
        with store.transaction() as session:
            settings = SettingsRepository(session)
            value = settings.get("counter") or 0
            time.sleep(0.001)  # widen the read-modify-write window
            settings.set("counter", value + 1)


def test_read_modify_write_from_two_processes_loses_nothing(tmp_path: Path) -> None:
    # Two Store objects stand for two processes (the server and a CLI command): each has
    # its own engine and connections, so only SQLite's locking keeps them apart.
    stores = [Store.create(tmp_path / "d"), Store.open(tmp_path / "d")]
    start = threading.Barrier(2)
    workers = [
        threading.Thread(target=_increment_many, args=(store, 40, start)) for store in stores
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    with stores[0].reading() as session:
        assert SettingsRepository(session).get("counter") == 80
    for store in stores:
        store.close()


def test_readers_do_not_wait_for_a_writer(tmp_path: Path) -> None:
    writer, reader = Store.create(tmp_path / "d"), Store.open(tmp_path / "d")
    with writer.transaction() as session:
        SettingsRepository(session).set("k", 1)
    with writer.transaction() as session:  # holds the write lock for the whole block
        SettingsRepository(session).set("k", 2)
        with reader.reading() as other:  # would hit busy_timeout if it queued behind
            assert SettingsRepository(other).get("k") == 1  # the committed snapshot
    with reader.reading() as other:
        assert SettingsRepository(other).get("k") == 2
    writer.close()
    reader.close()


def test_a_write_in_a_reading_unit_is_refused(tmp_path: Path) -> None:
    store = Store.create(tmp_path / "d")
    with pytest.raises(StoreError, match="readonly"), store.reading() as session:
        SettingsRepository(session).set("k", 1)
    with store.transaction() as session:  # the pooled connection writes again afterwards
        SettingsRepository(session).set("k", 2)
    with store.reading() as session:
        assert SettingsRepository(session).get("k") == 2
    store.close()


def test_nested_write_transaction_is_a_programming_error(tmp_path: Path) -> None:
    store = Store.create(tmp_path / "d")
    with (
        store.transaction(),
        pytest.raises(RuntimeError, match="already open"),
        store.transaction(),
    ):
        pass
    with store.transaction() as session:  # the outer one ended normally: usable again
        SettingsRepository(session).set("k", 1)
    store.close()


def test_migration_0006_gives_held_crls_their_scope(tmp_path: Path) -> None:
    """A node upgraded from 0005 keeps its held CRLs, each with its scope (complete or
    delta), and then holds a delta beside its complete CRL; downgrading keeps one per key."""
    import datetime as dt
    import sqlite3

    from alembic import command
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from sqlalchemy import create_engine

    from certway.store.db import DB_FILE, _alembic_config
    from certway.store.vault import create_master_key

    key = test_key("ec:p256", 320)
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

    def crl_der(number: int, delta_base: int | None = None) -> bytes:
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(x509.Name.from_rfc4514_string("CN=Migrated CA"))
            .last_update(now)
            .next_update(now + dt.timedelta(days=7))
            .add_extension(x509.CRLNumber(number), critical=False)
        )
        if delta_base is not None:
            builder = builder.add_extension(x509.DeltaCRLIndicator(delta_base), critical=True)
        signed = builder.sign(key, hashes.SHA256())  # type: ignore[arg-type]
        return signed.public_bytes(serialization.Encoding.DER)

    data = tmp_path / "d"
    data.mkdir(mode=0o700)
    create_master_key(data)
    engine = create_engine(f"sqlite:///{data / DB_FILE}")
    config = _alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0005")
    engine.dispose()
    row = "INSERT INTO held_crls (kind, source, issuer_key, issuer, number, this_update, next_update, entries, crl_der, added_at) VALUES (?, ?, 'aa', 'CN=Migrated CA', ?, '2026-01-01 00:00:00', NULL, 0, ?, '2026-01-01 00:00:00')"
    with sqlite3.connect(data / DB_FILE) as db:
        db.execute(row, ("manual", "manual upload", 30, crl_der(30)))
        db.execute(row, ("url", "http://crl.example/delta.crl", 31, crl_der(31, 30)))

    Store.open(data).close()  # migrates to the newest revision
    with sqlite3.connect(data / DB_FILE) as db:
        scopes = db.execute("SELECT number, scope FROM held_crls ORDER BY number").fetchall()
        assert scopes == [(30, "complete"), (31, "delta")]
        db.execute(
            row.replace("(kind,", "(scope, kind,").replace("VALUES (", "VALUES ('delta', "),
            ("manual", "manual upload", 31, crl_der(31, 30)),
        )
        assert db.execute("SELECT count(*) FROM held_crls").fetchone() == (3,)

    engine = create_engine(f"sqlite:///{data / DB_FILE}")
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0005")
    engine.dispose()
    with sqlite3.connect(data / DB_FILE) as db:
        kept = db.execute("SELECT kind, number FROM held_crls ORDER BY id").fetchall()
    assert kept == [("url", 31), ("manual", 31)]
