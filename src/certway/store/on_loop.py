"""Statements awaited on the event loop: PostgreSQL through psycopg's async connection.

A request answered on the event loop (certway.waiting) must not wait for the network, so on
PostgreSQL its write is not run but *awaited*: ``LoopConnection.run`` sends the one statement
of a ``DirectUnit`` (certway.store.direct) on a connection of the event loop's own and gives
the loop back until the answer arrives. Other connections are served meanwhile; nothing
blocks, and no thread is involved.

- One connection per store, made on first use with the same settings as the engine's (lock
  timeout, UTC) and in autocommit mode: each statement is its own transaction, and takes the
  cluster's write lock itself (``pg_write_lock``).
- One statement at a time on it (an ``asyncio.Lock``); a statement waits for the previous
  one's answer, which the loop does not.
- Any error drops the connection (the next statement connects afresh) and is raised as the
  store's errors are (``store_errors``: a clash is a ``Conflict``, an unreachable database a
  ``StoreError``).
- A connection belongs to the event loop that made it: a statement from another loop (a new
  ``certway serve`` in the same process, a test) closes it and makes its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import psycopg
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

__all__ = ["LoopConnection"]


class LoopConnection:
    """The event loop's connection to a PostgreSQL database (see the module docstring)."""

    def __init__(self, url: URL, *, setup: tuple[str, ...], connect_timeout: int) -> None:
        self._conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._setup = setup
        self._connect_timeout = connect_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock | None = None
        self._connection: psycopg.AsyncConnection[Any] | None = None

    async def run(self, sql: str, parameters: Any) -> None:
        """``sql`` with ``parameters`` (a driver statement: ``certway.store.direct``), awaited;
        the driver's errors as SQLAlchemy's (which ``store_errors`` maps)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a connection of another (finished) loop is no use here
            self.close_now()
            self._loop, self._lock = loop, asyncio.Lock()
        assert self._lock is not None
        async with self._lock:
            try:
                connection = self._connection or await self._connect()
                await connection.execute(sql, parameters)
            except psycopg.Error as exc:
                self.close_now()
                raise DBAPIError.instance(sql, parameters, exc, psycopg.Error) from exc
            except BaseException:  # cancelled mid-statement: its state is unknown
                self.close_now()
                raise

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        connection = await psycopg.AsyncConnection.connect(
            self._conninfo, autocommit=True, connect_timeout=self._connect_timeout
        )
        try:
            for statement in self._setup:
                await connection.execute(statement)
        except BaseException:
            await connection.close()
            raise
        self._connection = connection
        return connection

    async def close(self) -> None:
        """Close the connection (on its own loop: ``certway serve`` stopping)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(psycopg.Error):
                await connection.close()

    def close_now(self) -> None:
        """Close the connection from anywhere (its loop may be gone): the socket is closed
        without a goodbye to the server, which ends the session all the same."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.pgconn.finish()
