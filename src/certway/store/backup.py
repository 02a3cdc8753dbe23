"""The whole database as rows, and back: what a backup holds (``certway.services.backup``).

Every table of the schema (``Base.metadata``, so a new table is in every backup without
anyone remembering it) is read in foreign-key order, each row a list of Python values. The
secrets the key vault sealed with this node's master key (``SEALED``) are opened on the way
out and sealed again with the restoring node's master key on the way in: the backup file
encrypts them under its passphrase, and the master key itself is never in it.

Loading builds the schema of the backup's revision with the Alembic migrations, inserts the
rows, then migrates to the newest revision, all in one transaction: a failure leaves the
database as empty as it was.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Integer, MetaData, Table, func, insert, inspect, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from certway.errors import StoreError
from certway.store.acme import _eab_aad
from certway.store.db import (
    DB_FILE,
    Store,
    _alembic_config,
    _check_database_url,
    _pg_engine,
    _reason,
    key_check_value,
    redact_url,
    schema_transaction,
    sqlite_engine,
    write_cluster_file,
)
from certway.store.repositories import _aad as _key_aad
from certway.store.repositories import _token_aad
from certway.store.schema import Base, ClusterRow
from certway.store.vault import KeyVault, create_master_key, load_master_key

__all__ = [
    "KEY_BOUND",
    "SEALED",
    "TableRows",
    "check_new_data_dir",
    "head_revision",
    "is_empty",
    "known_revision",
    "load",
    "read",
    "restore_cluster",
    "restore_data_dir",
    "revision_of",
    "row_counts",
    "table_names",
]

Progress = Callable[[int], None]
"""Called with the number of rows just handled."""

SEALED: Mapping[tuple[str, str], Callable[[Mapping[str, Any]], bytes]] = {
    ("private_keys", "sealed"): lambda row: _key_aad(str(row["id"])),
    ("tokens", "sealed_pin"): lambda row: _token_aad(str(row["name"])),
    ("acme_eab_keys", "sealed_key"): lambda row: _eab_aad(str(row["key_id"])),
}
"""(table, column) of each value the key vault seals, with the associated data that binds it
to its row. A new sealed column must be listed here (tests/services/test_backup.py checks
that every table has rows in its test node and every column named ``sealed*`` is known)."""

KEY_BOUND: frozenset[tuple[str, str]] = frozenset({("cluster", "key_check")})
"""(table, column) of values computed from the master key itself: computed again from the
restored node's new key (``key_check_value``)."""


@dataclass
class TableRows:
    """One table of a backup: its columns and rows, sealed values opened (``opened``)."""

    name: str
    columns: list[str]
    opened: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)


def table_names() -> list[str]:
    """Every table of the schema, parents before the tables that refer to them."""
    return [table.name for table in Base.metadata.sorted_tables]


def _pk_order(table: Table) -> list[Any]:
    return list(table.primary_key.columns)


def row_counts(store: Store) -> dict[str, int]:
    with store.reading() as session:
        connection = session.connection()
        return {
            table.name: int(connection.scalar(select(func.count()).select_from(table)) or 0)
            for table in Base.metadata.sorted_tables
        }


def revision_of(store: Store) -> str:
    with store.reading() as session:
        revision = MigrationContext.configure(session.connection()).get_current_revision()
    if revision is None:
        raise StoreError("the database has no schema revision")
    return revision


def head_revision() -> str:
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    if head is None:
        raise StoreError("no database migrations found")
    return head


def known_revision(revision: str) -> bool:
    script = ScriptDirectory.from_config(_alembic_config())
    return any(rev.revision == revision for rev in script.walk_revisions())


def read(store: Store, progress: Progress | None = None) -> Iterator[TableRows]:
    """Every table's rows in one consistent snapshot, sealed values opened."""
    with store.reading() as session:
        connection = session.connection()
        for table in Base.metadata.sorted_tables:
            columns = [column.name for column in table.columns]
            opened = [c for c in columns if (table.name, c) in SEALED]
            out = TableRows(table.name, columns, opened)
            for row in connection.execute(select(table).order_by(*_pk_order(table))):
                values = dict(row._mapping)
                for column in opened:
                    blob = values[column]
                    values[column] = store.vault.open(blob, SEALED[(table.name, column)](values))
                out.rows.append([values[c] for c in columns])
                if progress is not None and len(out.rows) % 500 == 0:
                    progress(500)
            if progress is not None and len(out.rows) % 500:
                progress(len(out.rows) % 500)
            yield out


def is_empty(engine: Engine) -> bool:
    """True when the database has neither a certway table nor a schema revision."""
    names = set(inspect(engine).get_table_names())
    return not (names & (set(table_names()) | {"alembic_version"}))


def _utc_naive(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise StoreError("a backup row holds a date without a time zone")
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def load(
    engine: Engine,
    key: bytes,
    revision: str,
    tables: Sequence[TableRows],
    progress: Progress | None = None,
    *,
    cluster: bool = False,
) -> None:
    """Build the schema of ``revision`` in the empty database of ``engine``, insert every
    row (opened secrets sealed with the new master ``key``), then migrate to the newest
    revision. One transaction: on any error nothing stays behind."""
    if not known_revision(revision):
        raise StoreError(f"the backup's schema revision {revision} is unknown to this certway")
    config = _alembic_config()
    with schema_transaction(
        engine, "the backup's rows break {} references: nothing was restored"
    ) as connection:
        config.attributes["connection"] = connection
        _load_rows(connection, config, key, revision, tables, progress, cluster=cluster)


def _load_rows(
    connection: Connection,
    config: Config,
    key: bytes,
    revision: str,
    tables: Sequence[TableRows],
    progress: Progress | None,
    *,
    cluster: bool,
) -> None:
    vault = KeyVault(key)
    command.upgrade(config, revision)
    meta = MetaData()
    meta.reflect(bind=connection)
    for table in reversed(meta.sorted_tables):  # rows the migrations seed (peer 1, …)
        if table.name != "alembic_version":  # are the backup's to give
            connection.execute(table.delete())
    for rows in tables:
        _insert(connection, meta, vault, rows, progress)
    for table_name, column in KEY_BOUND:
        bound = meta.tables.get(table_name)
        if bound is not None:
            connection.execute(bound.update().values({column: key_check_value(key)}))
    if cluster and connection.execute(select(func.count()).select_from(ClusterRow)).scalar() == 0:
        # the backup of an embedded node becomes a cluster: its key's check value
        connection.execute(
            insert(ClusterRow).values(
                id=1, key_check=key_check_value(key), created_at=dt.datetime.now(dt.UTC)
            )
        )
    command.upgrade(config, "head")
    if connection.dialect.name == "postgresql":
        _advance_sequences(connection, meta)


def _insert(
    connection: Connection,
    meta: MetaData,
    vault: KeyVault,
    rows: TableRows,
    progress: Progress | None,
) -> None:
    table = meta.tables.get(rows.name)
    if table is None:
        raise StoreError(f"the backup has a table '{rows.name}' its schema revision does not")
    expected = {column.name for column in table.columns}
    if set(rows.columns) != expected:
        raise StoreError(
            f"the backup's table '{rows.name}' has columns {sorted(rows.columns)}, its schema "
            f"revision {sorted(expected)}"
        )
    for column in rows.opened:
        if (rows.name, column) not in SEALED:
            raise StoreError(f"the backup's column {rows.name}.{column} is not a sealed one")
    batch: list[dict[str, Any]] = []
    for values in rows.rows:
        if len(values) != len(rows.columns):
            raise StoreError(f"a row of the backup's table '{rows.name}' has the wrong width")
        record = dict(zip(rows.columns, values, strict=True))
        for column in rows.opened:
            plain = record[column]
            if not isinstance(plain, bytes):
                raise StoreError(f"a value of {rows.name}.{column} in the backup is not bytes")
            record[column] = vault.seal(plain, SEALED[(rows.name, column)](record))
        batch.append({key: _utc_naive(value) for key, value in record.items()})
        if len(batch) == 500:
            connection.execute(table.insert(), batch)
            if progress is not None:
                progress(len(batch))
            batch = []
    if batch:
        connection.execute(table.insert(), batch)
        if progress is not None:
            progress(len(batch))


def _advance_sequences(connection: Connection, meta: MetaData) -> None:
    """Rows came with their ids: move each serial column's sequence past the highest."""
    for table in meta.sorted_tables:
        for column in table.primary_key.columns:
            if not isinstance(column.type, Integer):
                continue
            highest = select(func.coalesce(func.max(column), 0) + 1).scalar_subquery()
            sequence = func.pg_get_serial_sequence(table.name, column.name)
            connection.execute(select(func.setval(sequence, highest, False)))


def check_new_data_dir(data_dir: Path) -> None:
    """A restore goes into a data directory that does not exist yet or is empty."""
    if "\0" in str(data_dir):
        raise StoreError("the data directory's path holds a NUL character")
    try:
        if data_dir.is_symlink() or (data_dir.exists() and not data_dir.is_dir()):
            raise StoreError(f"{data_dir} exists and is not a directory: give a new data directory")
        used = data_dir.is_dir() and any(data_dir.iterdir())
    except OSError as exc:
        raise StoreError(f"cannot use {data_dir} as a data directory: {exc.strerror}") from None
    if used:
        raise StoreError(
            f"{data_dir} is not empty: a backup is restored into a new or empty data "
            "directory, never over a node"
        )


def restore_data_dir(
    data_dir: Path,
    revision: str,
    tables: Sequence[TableRows],
    progress: Progress | None = None,
) -> None:
    """Build a new node's data directory from backup rows: a new master key, the database
    of the rows (secrets sealed with the new key). It is built beside ``data_dir`` and moved
    into place when complete, so a failure leaves nothing behind."""
    check_new_data_dir(data_dir)
    staging = _staging(data_dir)
    try:
        key = load_master_key(create_master_key(staging).parent)
        db_path = staging / DB_FILE
        db_path.touch(mode=0o600)
        engine = sqlite_engine(db_path)
        try:
            load(engine, key, revision, tables, progress)
        except SQLAlchemyError as exc:
            detail = getattr(exc, "orig", None) or exc
            raise StoreError(f"the backup's rows cannot be loaded: {detail}") from None
        finally:
            engine.dispose()
        check_new_data_dir(data_dir)  # nobody took the place meanwhile
        if data_dir.is_dir():
            data_dir.rmdir()
        staging.rename(data_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def restore_cluster(
    data_dir: Path,
    url: str,
    node_id: int,
    revision: str,
    tables: Sequence[TableRows],
    progress: Progress | None = None,
) -> None:
    """A cluster from backup rows: the empty PostgreSQL database ``url`` gets the rows (under
    a new cluster key) and ``data_dir`` becomes peer ``node_id`` of it (the peer the backup
    was made on). The data directory is built beside its place and moved there once the
    database is loaded; a failure leaves the database empty and no directory behind."""
    check_new_data_dir(data_dir)
    _check_database_url(url)
    if not any(t.name == "peers" and any(r[0] == node_id for r in t.rows) for t in tables):
        raise StoreError(f"the backup has no peer {node_id}")
    engine = _pg_engine(url)
    try:
        if not is_empty(engine):
            raise StoreError(
                f"the database {redact_url(url)} is not empty: a backup is restored into an "
                "empty database, never over a cluster"
            )
        staging = _staging(data_dir)
        try:
            key = load_master_key(create_master_key(staging).parent)
            write_cluster_file(staging, url, node_id)
            load(engine, key, revision, tables, progress, cluster=True)
            check_new_data_dir(data_dir)
            if data_dir.is_dir():
                data_dir.rmdir()
            staging.rename(data_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    except SQLAlchemyError as exc:
        raise StoreError(
            f"the backup cannot be loaded into {redact_url(url)}: {_reason(exc)}"
        ) from None
    finally:
        engine.dispose()


def _staging(data_dir: Path) -> Path:
    parent = data_dir.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{data_dir.name}.restoring-", dir=parent))
        os.chmod(staging, 0o700)
    except OSError as exc:
        raise StoreError(f"cannot create the data directory {data_dir}: {exc.strerror}") from None
    return staging
