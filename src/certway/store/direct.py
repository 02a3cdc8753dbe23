"""Direct writes: the hot inserts of issuance run on the DBAPI cursor, in one transaction.

Signing a certificate writes three small things (the inventory row, the audit row, the
``ca-issued`` change topic). Through the ORM session and SQLAlchemy's statement execution
that cost three times the signature itself; the SQL is the same either way. Here SQLAlchemy
still writes every statement (``Prepared``: a Core statement compiled once per dialect, its
values put through the columns' own bind processors, so they are stored exactly as the ORM
stores them) and takes the write lock (``Store.direct_transaction``: the engine's begin
events, the same error mapping); only the execution goes straight to the driver's cursor.

``DirectUnit`` is what such a transaction offers its writes. Work written for a ``Session``
(the commit hooks of an audited action that encloses the write: its audit row) gets one bound
to the same connection and transaction (``DirectUnit.session``), created only when asked for.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, insert
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

from certway.store.db import Session
from certway.store.schema import AuditRow, IssuedRow
from certway.store.topics import Topic, topic_statements

__all__ = ["AUDIT", "ISSUED", "DirectUnit", "Prepared"]


class Prepared:
    """A Core statement, compiled once per dialect, run on a DBAPI cursor. ``keys``: the
    values each execution gives (an insert's columns, an upsert's parameters)."""

    def __init__(self, statement: ClauseElement, table: Table | None, keys: Sequence[str]) -> None:
        self._statement = statement
        self._table = table
        self._keys = tuple(keys)
        self._compiled: dict[str, _Compiled] = {}
        self._lock = threading.Lock()

    def _for(self, dialect: Dialect) -> _Compiled:
        found = self._compiled.get(dialect.name)
        if found is None:
            compiled = cast(
                SQLCompiler,
                self._statement.compile(dialect=dialect, column_keys=list(self._keys)),
            )
            positional = bool(compiled.positional)
            names = tuple(compiled.positiontup or ()) if positional else tuple(compiled.binds)
            binds = [compiled.binds[name] for name in names]
            found = _Compiled(
                str(compiled),
                names,
                # a value of the statement itself (an upsert's 1) when the caller gives none
                tuple(bind.key if bind.key in self._keys else None for bind in binds),
                tuple(bind.effective_value for bind in binds),
                tuple(self._type(bind).bind_processor(dialect) for bind in binds),
                positional,
            )
            with self._lock:
                self._compiled[dialect.name] = found
        return found

    def _type(self, bind: Any) -> Any:
        table = self._table
        return table.c[bind.key].type if table is not None and bind.key in table.c else bind.type

    def parameters(self, dialect: Dialect, values: Mapping[str, Any]) -> tuple[str, Any]:
        """The SQL and the driver's parameters for ``values``."""
        c = self._for(dialect)
        given = [
            values[key] if key is not None else fixed
            for key, fixed in zip(c.keys, c.fixed, strict=True)
        ]
        converted = [
            process(value) if process is not None and value is not None else value
            for value, process in zip(given, c.processors, strict=True)
        ]
        return c.sql, converted if c.positional else dict(zip(c.names, converted, strict=True))


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]  # the bind parameters, in the SQL's order when positional
    keys: tuple[str | None, ...]  # the value each takes (None: its own, ``fixed``)
    fixed: tuple[Any, ...]
    processors: tuple[Any, ...]  # the column types' bind processors (None: as it is)
    positional: bool


class DirectUnit:
    """One direct write transaction (``Store.direct_transaction``'s connection)."""

    def __init__(self, connection: Connection, node_id: int) -> None:
        self._connection = connection
        self._dialect = connection.dialect
        self._node_id = node_id
        self._session: Session | None = None

    def execute(self, prepared: Prepared, values: Mapping[str, Any]) -> Any:
        """Run ``prepared`` with ``values``; the first column of its first row, if any."""
        sql, parameters = prepared.parameters(self._dialect, values)
        dbapi = self._connection.connection.dbapi_connection
        assert dbapi is not None
        cursor = dbapi.cursor()
        try:
            cursor.execute(sql, parameters)
            row = cursor.fetchone() if cursor.description else None
        except self._dialect.loaded_dbapi.Error as exc:
            raise DBAPIError.instance(
                sql, parameters, exc, self._dialect.loaded_dbapi.Error
            ) from exc
        finally:
            cursor.close()
        return row[0] if row else None

    def bump(self, *topics: Topic) -> None:
        """As ``TopicRepository.bump``: each topic's counter moves by one (and on PostgreSQL
        its notification leaves at commit)."""
        bump = _topic_statement(self._dialect.name)
        for topic in dict.fromkeys(topics):
            self.execute(bump, {"topic": topic.value})

    @property
    def session(self) -> Session:
        """A session in this transaction, for work written for one (commit hooks)."""
        if self._session is None:
            self._session = Session(
                bind=self._connection,
                expire_on_commit=False,
                info={"node_id": self._node_id},
            )
        return self._session

    def flush(self) -> None:
        """Write what work done through ``session`` left pending (before the commit)."""
        if self._session is not None:
            self._session.flush()

    def close(self) -> None:
        if self._session is not None:
            self._session.close()


_TOPICS: dict[str, Prepared] = {}


def _topic_statement(dialect: str) -> Prepared:
    found = _TOPICS.get(dialect)
    if found is None:
        found = _TOPICS[dialect] = Prepared(topic_statements(dialect), None, ("topic",))
    return found


ISSUED = Prepared(
    insert(cast(Table, IssuedRow.__table__)),
    cast(Table, IssuedRow.__table__),
    [c.key for c in cast(Table, IssuedRow.__table__).columns if not c.primary_key],
)
"""An inventory row (every column but the id)."""

AUDIT = Prepared(
    insert(cast(Table, AuditRow.__table__)).returning(cast(Table, AuditRow.__table__).c.id),
    cast(Table, AuditRow.__table__),
    [c.key for c in cast(Table, AuditRow.__table__).columns if not c.primary_key],
)
"""An audit row; its execution returns the row's id."""
