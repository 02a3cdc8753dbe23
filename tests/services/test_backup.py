"""Backups: every table of the schema in the file, keys re-wrapped under the passphrase, a
restore that gives back the same rows under a new master key, and every bad file refused
with nothing written."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import create_engine

from certway.clock import FixedClock
from certway.errors import DecodeError, PassphraseError, PolicyViolation, StoreError
from certway.pki.csr import CsrForm, build_csr
from certway.services import backup as backups
from certway.services.identities.model import CsrOptions
from certway.services.local_ca import CaSettings
from certway.services.node import Node
from certway.store import backup as rows
from certway.store.db import key_check_value
from certway.store.repositories import TokenRepository
from certway.store.schema import Base, ClusterRow

from conftest import NOW, test_key

PASSPHRASE = b"backup passphrase 7c41d0"
FAST = backups.KdfParams(memory_kib=8192, time_cost=1, parallelism=1)


@pytest.fixture(autouse=True)
def fast_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2id at test strength (the default's 64 MiB x 3 passes is tested once, below)."""
    monkeypatch.setattr(backups, "DEFAULT_KDF", FAST)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


def populated(data_dir: Path, clock: FixedClock) -> Node:
    """A node with at least one row in every table of the schema."""
    node = Node.init(data_dir, clock, fqdn="vcs.example.com")
    node.admins.add("alice", "read-write", "correct horse battery")
    node.local_ca.create_root(
        "lab", "CN=Lab Root", settings=CaSettings(crl_urls=("http://127.0.0.1/lab.crl",))
    )
    csr, _ = build_csr(test_key("ec:p256", 3), CsrForm(common_name="a.example.com"))
    signed = node.local_ca.sign("lab", csr.public_bytes(serialization.Encoding.PEM), days=30)
    published = node.local_ca.revoke(
        "lab", f"{signed.certificate.serial_number:X}", reason="keyCompromise"
    )
    node.trusted_cas.add(node.local_ca.certificate("lab").public_bytes(serialization.Encoding.PEM))
    node.revocation.upload_manual(published.der)
    node.revocation.set_sources(["http://127.0.0.1:9/ca.crl"])
    node.identities.generate_csr("server", "", CsrOptions(key_type="ec:p256"))
    node.alarms.current()
    node.api_tokens.create("ci", "read-only")
    with node.store.transaction() as session:  # a registration whose PIN is sealed (no token)
        TokenRepository(session, node.store.vault).add(
            "hsm", "/nonexistent/libpkcs11.so", "ca-keys", "pin-2c9e71", NOW
        )
        # the cluster key's check value (a cluster node has one; bound to the master key)
        master = (data_dir / "master.key").read_bytes()
        session.add(ClusterRow(id=1, key_check=key_check_value(master), created_at=NOW))
    return node


@pytest.fixture
def node(tmp_path: Path, clock: FixedClock) -> Iterator[Node]:
    n = populated(tmp_path / "a", clock)
    yield n
    n.close()


def table_dump(node: Node) -> dict[str, list[list[Any]]]:
    return {table.name: table.rows for table in rows.read(node.store)}


def test_every_table_of_the_schema_has_rows_in_the_test_node(node: Node) -> None:
    """A new table fails here until the node above fills it: then check whether it holds
    secrets sealed with the master key (they go in ``certway.store.backup.SEALED``)."""
    counts = rows.row_counts(node.store)
    assert set(counts) == set(Base.metadata.tables)
    assert [name for name, count in counts.items() if count == 0] == []


def test_every_sealed_column_is_opened_for_the_backup() -> None:
    sealed = {
        (table.name, column.name)
        for table in Base.metadata.sorted_tables
        for column in table.columns
        if "sealed" in column.name
    }
    assert sealed == set(rows.SEALED)
    bound = {
        (table.name, column.name)
        for table in Base.metadata.sorted_tables
        for column in table.columns
        if "key_check" in column.name
    }
    assert bound == set(rows.KEY_BOUND)


def test_round_trip_gives_every_row_back_under_a_new_master_key(
    node: Node, tmp_path: Path, clock: FixedClock
) -> None:
    before = table_dump(node)
    data = node.backups.create(PASSPHRASE)
    plan = backups.open_backup(data, PASSPHRASE)
    assert plan.summary.node == "vcs.example.com"
    assert plan.summary.tables == {name: len(r) for name, r in before.items()}
    target = tmp_path / "b"
    assert plan.restore_into(target, clock, source="b.bak") == ()  # no token-backed CA
    restored = Node.open(target, clock)
    try:
        after = table_dump(restored)  # sealed values opened with the new master key
        new_key = (target / "master.key").read_bytes()
        assert after.pop("cluster")[0][1] == key_check_value(new_key)
        before.pop("cluster")
        audit, audit_before = after.pop("audit_log"), before.pop("audit_log")
        assert audit[: len(audit_before)] == audit_before
        assert [row[5] for row in audit[len(audit_before) :]] == ["backup.restore"]
        assert after == before
        assert (target / "master.key").read_bytes() != (
            node.store.data_dir / "master.key"
        ).read_bytes()
        assert (target / "master.key").stat().st_mode & 0o777 == 0o600
        # the keys work: the restored CA signs, the token PIN opens
        csr, _ = build_csr(test_key("ec:p256", 4), CsrForm(common_name="b.example.com"))
        restored.local_ca.sign("lab", csr.public_bytes(serialization.Encoding.PEM), days=30)
        with restored.store.reading() as session:
            repo = TokenRepository(session, restored.store.vault)
            token = repo.by_name("hsm")
            assert token is not None and repo.pin(token) == "pin-2c9e71"
    finally:
        restored.close()


def test_the_file_has_a_readable_header_and_no_key_in_clear(node: Node) -> None:
    data = node.backups.create(PASSPHRASE)
    first, second, _ = data.split(b"\n", 2)
    assert first == b"CERTWAY-BACKUP 1"
    header = json.loads(second)
    assert header["kdf"]["name"] == "argon2id" and header["cipher"] == "AES-256-GCM"
    assert header["node"] == "vcs.example.com" and header["schema"] == rows.head_revision()
    master = (node.store.data_dir / "master.key").read_bytes()
    assert master not in data
    assert b"pin-2c9e71" not in data and b"Lab Root" not in data


def test_the_passphrase_is_never_in_the_audit_log(node: Node, tmp_path: Path) -> None:
    data = node.backups.create(PASSPHRASE)
    node.backups.restore_new_node(data, PASSPHRASE, tmp_path / "b")
    with pytest.raises(PassphraseError):
        node.backups.restore_new_node(data, PASSPHRASE + b"x", tmp_path / "c")
    dump = json.dumps(table_dump(node)["audit_log"], default=str)
    assert "backup.create" in dump and "backup.restore-new-node" in dump
    assert PASSPHRASE.decode() not in dump and PASSPHRASE.hex() not in dump
    assert "wrong passphrase" in dump  # the refused restore is recorded, without it


def test_default_key_derivation_is_argon2id_64_mib(node: Node, monkeypatch: Any) -> None:
    monkeypatch.setattr(backups, "DEFAULT_KDF", backups.KdfParams())
    data = node.backups.create(PASSPHRASE)
    kdf = json.loads(data.split(b"\n")[1])["kdf"]
    assert (kdf["memory_kib"], kdf["time_cost"], kdf["parallelism"]) == (65536, 3, 4)
    assert backups.open_backup(data, PASSPHRASE).summary.rows > 0


def test_short_passphrase_is_refused(node: Node) -> None:
    with pytest.raises(PolicyViolation, match="at least 10 characters"):
        node.backups.create(b"short")


# -- bad files: a clear error, nothing written --------------------------------------------------
@pytest.fixture
def backup_file(node: Node) -> bytes:
    return node.backups.create(PASSPHRASE)


def refused(
    data: bytes, target: Path, clock: FixedClock, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        backups.open_backup(data, PASSPHRASE).restore_into(target, clock)
    assert not target.exists()
    assert [p.name for p in target.parent.iterdir() if "restoring" in p.name] == []


def test_wrong_passphrase(backup_file: bytes, tmp_path: Path, clock: FixedClock) -> None:
    with pytest.raises(PassphraseError, match="wrong passphrase"):
        backups.open_backup(backup_file, b"not the passphrase")
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("keep", [5, 20, 300, -1, -17, -5000])
def test_truncated_file(backup_file: bytes, tmp_path: Path, clock: FixedClock, keep: int) -> None:
    refused(backup_file[:keep], tmp_path / "b", clock, DecodeError, "truncated")


def test_extended_file(backup_file: bytes, tmp_path: Path, clock: FixedClock) -> None:
    refused(backup_file + b"\0", tmp_path / "b", clock, DecodeError, "bytes after its end")


@pytest.mark.parametrize("where", [-1, -20, -100])
def test_tampered_content(
    backup_file: bytes, tmp_path: Path, clock: FixedClock, where: int
) -> None:
    data = bytearray(backup_file)
    data[where] ^= 0x01
    refused(bytes(data), tmp_path / "b", clock, DecodeError, "damaged or was altered")


def test_tampered_header(backup_file: bytes, tmp_path: Path, clock: FixedClock) -> None:
    data = backup_file.replace(b'"node": "vcs.example.com"', b'"node": "vcs.example.org"', 1)
    assert data != backup_file
    refused(data, tmp_path / "b", clock, DecodeError, "damaged or was altered")


def test_newer_format_version(backup_file: bytes, tmp_path: Path, clock: FixedClock) -> None:
    data = backup_file.replace(b"CERTWAY-BACKUP 1\n", b"CERTWAY-BACKUP 2\n", 1)
    refused(data, tmp_path / "b", clock, PolicyViolation, "format 2, written by a newer certway")


def test_not_a_backup(tmp_path: Path, clock: FixedClock) -> None:
    refused(b"-----BEGIN CERTIFICATE-----\n", tmp_path / "b", clock, DecodeError, "not a certway")


def test_non_empty_target_is_refused(backup_file: bytes, tmp_path: Path, clock: FixedClock) -> None:
    target = tmp_path / "b"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    plan = backups.open_backup(backup_file, PASSPHRASE)
    with pytest.raises(StoreError, match="is not empty"):
        plan.restore_into(target, clock)
    assert [p.name for p in target.iterdir()] == ["notes.txt"]
    # a running node's own directory is not empty either
    with pytest.raises(StoreError, match="is not empty"):
        plan.restore_into(tmp_path / "a", clock)


def test_empty_target_directory_is_used(
    backup_file: bytes, tmp_path: Path, clock: FixedClock
) -> None:
    target = tmp_path / "b"
    target.mkdir()
    backups.open_backup(backup_file, PASSPHRASE).restore_into(target, clock)
    assert sorted(p.name for p in target.iterdir()) == ["certway.db", "master.key"]


def test_a_failing_load_leaves_nothing(
    backup_file: bytes, tmp_path: Path, clock: FixedClock
) -> None:
    """Rows that do not fit the schema (a failure half-way through the load) roll back and
    the half-built directory is removed."""
    plan = backups.open_backup(backup_file, PASSPHRASE)
    broken = [t for t in plan.tables]
    cas = next(t for t in broken if t.name == "cas")
    cas.rows.append(list(cas.rows[0]))  # a duplicate primary key
    refused_plan = backups.RestorePlan(plan.summary, tuple(broken))
    with pytest.raises(StoreError, match="cannot be loaded"):
        refused_plan.restore_into(tmp_path / "b", clock)
    assert not (tmp_path / "b").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["a"]


# -- PostgreSQL: a cluster restored into an empty database --------------------------------------
def test_restore_into_an_empty_postgresql_database(
    node: Node, tmp_path: Path, clock: FixedClock, pg_url: str
) -> None:
    before = table_dump(node)
    data = node.backups.create(PASSPHRASE)
    plan = backups.open_backup(data, PASSPHRASE)
    plan.restore_into(tmp_path / "c", clock, database=pg_url)
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["cluster.json", "master.key"]
    restored = Node.open(tmp_path / "c", clock)
    try:
        assert restored.store.clustered and restored.store.node_id == 1
        after = table_dump(restored)
        new_key = (tmp_path / "c" / "master.key").read_bytes()
        assert after.pop("cluster")[0][1] == key_check_value(new_key)
        before.pop("cluster")
        audit, audit_before = after.pop("audit_log"), before.pop("audit_log")
        assert audit[: len(audit_before)] == audit_before
        assert after == before
        csr, _ = build_csr(test_key("ec:p256", 4), CsrForm(common_name="c.example.com"))
        restored.local_ca.sign("lab", csr.public_bytes(serialization.Encoding.PEM), days=30)
        assert restored.identities.info("server").subject == node.identities.info("server").subject
    finally:
        restored.close()
    # the database is no longer empty: a second restore into it is refused, nothing written
    with pytest.raises(StoreError, match="is not empty"):
        plan.restore_into(tmp_path / "d", clock, database=pg_url)
    assert not (tmp_path / "d").exists()


def test_a_failing_load_leaves_the_postgresql_database_empty(
    backup_file: bytes, tmp_path: Path, clock: FixedClock, pg_url: str
) -> None:
    plan = backups.open_backup(backup_file, PASSPHRASE)
    cas = next(t for t in plan.tables if t.name == "cas")
    cas.rows.append(list(cas.rows[0]))  # a duplicate primary key, late in the load
    with pytest.raises(StoreError, match="cannot be loaded"):
        plan.restore_into(tmp_path / "c", clock, database=pg_url)
    assert not (tmp_path / "c").exists()
    engine = create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        assert rows.is_empty(engine)
    finally:
        engine.dispose()


def test_cluster_backup_restores_as_a_cluster(
    tmp_path: Path, clock: FixedClock, pg_server: Any
) -> None:
    with pg_server.database() as first_url, pg_server.database() as second_url:
        peer = Node.init(tmp_path / "p1", clock, database=first_url, fqdn="a.example.test")
        try:
            peer.local_ca.create_root("lab", "CN=Lab Root")
            crl = peer.local_ca.current_crl("lab").der
            data = peer.backups.create(PASSPHRASE)
        finally:
            peer.close()
        plan = backups.open_backup(data, PASSPHRASE)
        assert plan.summary.node_id == 1
        plan.restore_into(tmp_path / "r1", clock, database=second_url)
        restored = Node.open(tmp_path / "r1", clock)
        try:
            assert restored.store.clustered
            assert restored.local_ca.current_crl("lab").der == crl
        finally:
            restored.close()


def test_backup_of_another_peer_needs_a_database(
    backup_file: bytes, tmp_path: Path, clock: FixedClock
) -> None:
    plan = backups.open_backup(backup_file, PASSPHRASE)
    other = backups.RestorePlan(dataclasses.replace(plan.summary, node_id=3), plan.tables)
    with pytest.raises(PolicyViolation, match="made on peer 3 of a cluster"):
        other.restore_into(tmp_path / "b", clock)
    assert not (tmp_path / "b").exists()
