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
- A connection belongs to the event loop that made it: each loop using the store (a second
  ``certway serve`` in the same process, a test's) gets its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
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
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _OfLoop] = (
            weakref.WeakKeyDictionary()
        )

    async def run(self, sql: str, parameters: Any) -> None:
        """``sql`` with ``parameters`` (a driver statement: ``certway.store.direct``), awaited;
        the driver's errors as SQLAlchemy's (which ``store_errors`` maps)."""
        loop = asyncio.get_running_loop()
        mine = self._loops.get(loop)
        if mine is None:
            mine = self._loops[loop] = _OfLoop()
        async with mine.lock:
            try:
                if mine.connection is None:
                    mine.connection = await self._connect()
                await mine.connection.execute(sql, parameters)
            except psycopg.Error as exc:
                mine.close_now()
                raise DBAPIError.instance(sql, parameters, exc, psycopg.Error) from exc
            except BaseException:  # cancelled mid-statement: its state is unknown
                mine.close_now()
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
        return connection

    async def close(self) -> None:
        """Close the running loop's connection (``certway serve`` stopping)."""
        mine = self._loops.pop(asyncio.get_running_loop(), None)
        if mine is not None and mine.connection is not None:
            connection, mine.connection = mine.connection, None
            with contextlib.suppress(psycopg.Error):
                await connection.close()

    def close_now(self) -> None:
        """Close every loop's connection from anywhere (their loops may be gone): the socket
        is closed without a goodbye to the server, which ends the session all the same."""
        for mine in list(self._loops.values()):
            mine.close_now()
        self._loops.clear()


class _OfLoop:
    """One event loop's connection, and its turn."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.connection: psycopg.AsyncConnection[Any] | None = None

    def close_now(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            connection.pgconn.finish()
