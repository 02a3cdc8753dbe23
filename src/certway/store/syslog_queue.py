"""The on-disk queue of syslog messages waiting for each remote destination.

One SQLite file per node (``syslog-queue.db`` in the data directory, beside the node's own
store, also in a cluster: what a node has to send is its own). Messages are kept in order
per destination until the destination has taken them; the queue of a destination is bounded
(the oldest messages go first when it is full, and are counted). It also keeps where the
forwarding of the audit log got to, and each destination's delivery status.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["QUEUE_FILE", "DestinationState", "SyslogQueue"]

QUEUE_FILE = "syslog-queue.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS message (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    destination TEXT NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS message_destination ON message (destination, id);
CREATE TABLE IF NOT EXISTS destination (
    name TEXT PRIMARY KEY,
    dropped INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    error_since TEXT,
    sent INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS cursor (
    name TEXT PRIMARY KEY,
    position INTEGER NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class DestinationState:
    name: str
    queued: int
    dropped: int
    sent: int
    error: str | None
    error_since: str | None  # ISO 8601


class SyslogQueue:
    """Thread-safe; each call is one short SQLite transaction (other processes of the node,
    such as CLI commands, may write to the same file)."""

    def __init__(self, data_dir: Path, *, max_messages: int = 100_000) -> None:
        self.path = data_dir / QUEUE_FILE
        self.max_messages = max_messages
        self._lock = threading.Lock()
        if not self.path.exists():
            self.path.touch(mode=0o600)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def _unit(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def put(
        self,
        destinations: list[str],
        bodies: list[bytes],
        *,
        cursor: tuple[str, int] | None = None,
    ) -> None:
        """Queue ``bodies`` (in order) for each destination; a full queue drops its oldest.
        ``cursor`` (name, position) is moved in the same transaction, so what it counts is
        queued exactly once."""
        with self._unit() as db:
            if cursor is not None:
                db.execute(
                    "INSERT INTO cursor (name, position) VALUES (?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET position = excluded.position",
                    cursor,
                )
            if not bodies:
                return
            for name in destinations:
                db.execute("INSERT OR IGNORE INTO destination (name) VALUES (?)", (name,))
                db.executemany(
                    "INSERT INTO message (destination, body) VALUES (?, ?)",
                    [(name, body) for body in bodies],
                )
                (count,) = db.execute(
                    "SELECT count(*) FROM message WHERE destination = ?", (name,)
                ).fetchone()
                excess = count - self.max_messages
                if excess > 0:
                    db.execute(
                        "DELETE FROM message WHERE id IN (SELECT id FROM message "
                        "WHERE destination = ? ORDER BY id LIMIT ?)",
                        (name, excess),
                    )
                    db.execute(
                        "UPDATE destination SET dropped = dropped + ? WHERE name = ?",
                        (excess, name),
                    )

    def peek(self, name: str, limit: int) -> list[tuple[int, bytes]]:
        """The oldest ``limit`` messages waiting for ``name``: (id, body)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, body FROM message WHERE destination = ? ORDER BY id LIMIT ?",
                (name, limit),
            ).fetchall()
        return [(int(i), bytes(b)) for i, b in rows]

    def delivered(self, name: str, up_to: int, count: int) -> None:
        """The messages of ``name`` up to id ``up_to`` were sent: forget them, clear the
        destination's error."""
        with self._unit() as db:
            db.execute("DELETE FROM message WHERE destination = ? AND id <= ?", (name, up_to))
            db.execute(
                "UPDATE destination SET sent = sent + ?, error = NULL, error_since = NULL "
                "WHERE name = ?",
                (count, name),
            )

    def failed(self, name: str, error: str, at: str) -> None:
        with self._unit() as db:
            db.execute("INSERT OR IGNORE INTO destination (name) VALUES (?)", (name,))
            db.execute(
                "UPDATE destination SET error = ?, error_since = coalesce(error_since, ?) "
                "WHERE name = ?",
                (error, at, name),
            )

    def forget(self, name: str) -> None:
        """A destination removed: its queue and status go."""
        with self._unit() as db:
            db.execute("DELETE FROM message WHERE destination = ?", (name,))
            db.execute("DELETE FROM destination WHERE name = ?", (name,))

    def state(self, name: str) -> DestinationState:
        with self._lock:
            row = self._db.execute(
                "SELECT dropped, sent, error, error_since FROM destination WHERE name = ?",
                (name,),
            ).fetchone()
            (queued,) = self._db.execute(
                "SELECT count(*) FROM message WHERE destination = ?", (name,)
            ).fetchone()
        dropped, sent, error, since = row if row is not None else (0, 0, None, None)
        return DestinationState(name, int(queued), int(dropped), int(sent), error, since)

    def cursor(self, name: str) -> int | None:
        with self._lock:
            row = self._db.execute("SELECT position FROM cursor WHERE name = ?", (name,)).fetchone()
        return None if row is None else int(row[0])

    def set_cursor(self, name: str, position: int) -> None:
        with self._unit() as db:
            db.execute(
                "INSERT INTO cursor (name, position) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET position = excluded.position",
                (name, position),
            )
