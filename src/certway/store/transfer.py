"""Moving an embedded node up: copy its SQLite database into an empty PostgreSQL database,
verify the copy, and turn the data directory into a cluster node (peer 1) on it.

The master key becomes the cluster key: the sealed keys are copied as they are (they stay
sealed, nothing is decrypted). The SQLite file is kept, renamed, as a fallback.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable

from alembic import command
from sqlalchemy import Integer, Table, func, insert, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from certway.errors import Conflict, StoreError
from certway.store.db import (
    CLUSTER_FILE,
    DB_FILE,
    Store,
    _alembic_config,
    _has_schema,
    _pg_engine,
    _reason,
    key_check_value,
    redact_url,
    write_cluster_file,
)
from certway.store.schema import Base, ClusterRow, CrlRow, HeldCrlRow
from certway.store.vault import load_master_key

__all__ = ["MIGRATED_SUFFIX", "Progress", "migrate_to_postgresql"]

MIGRATED_SUFFIX = ".migrated"
_BATCH = 500

Progress = Callable[[str, int, int], None]
"""(table, rows copied so far, rows in the table)."""


def _tables() -> list[Table]:
    """Every table, parents before children (foreign keys)."""
    return [t for t in Base.metadata.sorted_tables]


def _crl_digests(connection: Connection, *, held: bool) -> list[tuple[int, str]]:
    if held:
        query = select(HeldCrlRow.id, HeldCrlRow.crl_der).order_by(HeldCrlRow.id)
    else:
        query = select(CrlRow.ca_id, CrlRow.crl_der).order_by(CrlRow.ca_id)
    return [(k, hashlib.sha256(der).hexdigest()) for k, der in connection.execute(query).all()]


def migrate_to_postgresql(
    store: Store, url: str, progress: Progress | None = None
) -> dict[str, int]:
    """Copy ``store`` (an embedded node, open) into the empty database ``url``; the counts of
    rows copied per table. Then the data directory uses the PostgreSQL database."""
    if store.clustered:
        raise StoreError("this node already keeps its data in PostgreSQL")
    data_dir = store.data_dir
    key = load_master_key(data_dir)
    target = _pg_engine(url)
    try:
        if _has_schema(target):
            raise Conflict(
                f"the database {redact_url(url)} is not empty (it holds a certway schema): "
                "migrate into a new, empty database"
            )
        with target.connect() as connection:
            others = connection.execute(
                text("SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()")
            ).scalar()
        if others:
            raise Conflict(
                f"the database {redact_url(url)} is not empty ({others} tables): migrate "
                "into a new, empty database"
            )
        counts: dict[str, int] = {}
        with store.reading() as session, target.begin() as destination:
            source = session.connection()
            # Schema and rows in one transaction: a failed copy leaves the database empty.
            config = _alembic_config()
            config.attributes["connection"] = destination
            command.upgrade(config, "head")
            # The tables the migrations filled (peer 1, defaults) are replaced by the node's.
            for table in reversed(_tables()):
                destination.execute(table.delete())
            for table in _tables():
                total = int(source.execute(select(func.count()).select_from(table)).scalar() or 0)
                counts[table.name] = total
                done = 0
                result = source.execution_options(yield_per=_BATCH).execute(select(table))
                for rows in result.partitions(_BATCH):
                    destination.execute(insert(table), [dict(row._mapping) for row in rows])
                    done += len(rows)
                    if progress is not None:
                        progress(table.name, done, total)
                if progress is not None and total == 0:
                    progress(table.name, 0, 0)
            _reset_sequences(destination)
            if not destination.execute(select(ClusterRow.id)).first():
                destination.execute(
                    insert(ClusterRow).values(
                        id=1, key_check=key_check_value(key), created_at=dt.datetime.now(dt.UTC)
                    )
                )
            _verify(source, destination, counts)
    except SQLAlchemyError as exc:
        target.dispose()
        raise StoreError(f"cannot copy into {redact_url(url)}: {_reason(exc)}") from None
    finally:
        target.dispose()
    store.close()
    write_cluster_file(data_dir, url, node_id=1)
    (data_dir / DB_FILE).rename(data_dir / (DB_FILE + MIGRATED_SUFFIX))
    for suffix in ("-wal", "-shm"):
        (data_dir / (DB_FILE + suffix)).unlink(missing_ok=True)
    assert (data_dir / CLUSTER_FILE).exists()
    return counts


def _reset_sequences(connection: Connection) -> None:
    """Rows came with their ids: each serial column's sequence continues after the largest.
    (Table and column names are the schema's own, never input.)"""
    for table in _tables():
        columns = list(table.primary_key.columns)
        if len(columns) != 1 or not isinstance(columns[0].type, Integer):
            continue
        column = columns[0].name
        sequence = connection.execute(
            text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table.name, "c": column}
        ).scalar()
        if sequence is None:
            continue
        largest = connection.execute(select(func.max(columns[0]))).scalar()
        connection.execute(
            text("SELECT setval(:s, :v, false)"), {"s": sequence, "v": int(largest or 0) + 1}
        )


def _verify(source: Connection, destination: Connection, counts: dict[str, int]) -> None:
    """The copy has every row of every table and the same CRL bytes."""
    for table in _tables():
        copied = int(destination.execute(select(func.count()).select_from(table)).scalar() or 0)
        if table.name == "cluster" and counts[table.name] == 0:
            continue
        if copied != counts[table.name]:
            raise StoreError(
                f"the copy of {table.name} has {copied} rows instead of {counts[table.name]}: "
                "nothing was changed"
            )
    for held in (False, True):
        if _crl_digests(source, held=held) != _crl_digests(destination, held=held):
            raise StoreError("the copied CRLs differ from the node's: nothing was changed")
