"""Opening a node's store: data directory, master key, database, migrations, transactions."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Protocol

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from certway.errors import Conflict, StoreError
from certway.store.vault import MASTER_KEY_FILE, KeyVault, create_master_key, load_master_key

__all__ = ["DB_FILE", "CommitHook", "Session", "Store", "default_data_dir", "sqlite_engine"]
# ``Session`` is exported as the type of a unit of work: services hand it on to repositories
# (certway.store.repositories) and never query it themselves.

DB_FILE = "certway.db"
_READ_ONLY = "certway_read_only"
_MIGRATIONS = Path(__file__).parent / "migrations"


def default_data_dir() -> Path:
    return Path(os.environ.get("CERTWAY_DATA_DIR", "./certway-data"))


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()
    # SQLAlchemy emits BEGIN itself (below): the driver's implicit BEGIN would start a
    # transaction only at the first write, leaving earlier reads outside it.
    dbapi_connection.isolation_level = None


def _sqlite_begin(connection: Connection) -> None:
    """Writers take SQLite's write lock when they start, so a read-modify-write in one
    process waits for another's instead of overwriting it; readers get one snapshot."""
    if connection.get_execution_options().get(_READ_ONLY):
        connection.exec_driver_sql("PRAGMA query_only=ON")  # a write here is a bug: refuse it
        connection.exec_driver_sql("BEGIN")
    else:
        connection.exec_driver_sql("PRAGMA query_only=OFF")
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def sqlite_engine(db_path: Path) -> Engine:
    """The engine of a node's SQLite database file, with certway's connection settings."""
    engine = create_engine(f"sqlite:///{db_path}")
    event.listen(engine, "connect", _sqlite_pragmas)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


class CommitHook(Protocol):
    """Work that joins the write transactions opened inside ``Store.hooked``."""

    def before_commit(self, session: Session) -> None:
        """The last statements of the unit, in its session (raising rolls it back)."""

    def committed(self) -> None:
        """The unit committed (not called when it rolled back)."""


_HOOKS: ContextVar[tuple[tuple[Store, CommitHook], ...]] = ContextVar(
    "certway_commit_hooks", default=()
)


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


class Store:
    """One node's persistent state. Build with ``Store.create`` (init) or ``Store.open``."""

    def __init__(self, data_dir: Path, engine: Engine, vault: KeyVault) -> None:
        self.data_dir = data_dir
        self.engine = engine
        self.vault = vault
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._writing = threading.local()
        self._read_sessions = sessionmaker(
            engine.execution_options(**{_READ_ONLY: True}), expire_on_commit=False
        )

    @classmethod
    def create(cls, data_dir: Path) -> Store:
        """Create (or reuse) a data directory: 0700 folder, 0600 master key, migrated DB."""
        try:
            data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the data directory {data_dir}: {exc.strerror}"
            ) from None
        _refuse_lost_master_key(data_dir)  # a new key over a database would be the end of it
        create_master_key(data_dir)
        return cls.open(data_dir)

    @classmethod
    def open(cls, data_dir: Path) -> Store:
        if not (data_dir / DB_FILE).exists() and not (data_dir / MASTER_KEY_FILE).exists():
            raise StoreError(
                f"{data_dir} is not a certway data directory: run 'certway --data-dir "
                f"{data_dir} init' first"
            )
        _refuse_lost_master_key(data_dir)
        vault = KeyVault(load_master_key(data_dir))
        engine = sqlite_engine(data_dir / DB_FILE)
        try:
            db_path = data_dir / DB_FILE
            if not db_path.exists():
                db_path.touch(mode=0o600)
            _migrate(engine)
        except SQLAlchemyError as exc:
            engine.dispose()
            detail = getattr(exc, "orig", None) or exc
            raise StoreError(f"cannot open the database in {data_dir}: {detail}") from None
        return cls(data_dir, engine, vault)

    @contextmanager
    def transaction(self, *, hooks: bool = True) -> Iterator[Session]:
        """A unit of work: committed when the block ends, rolled back if it raises. It holds
        the database's write lock from the start (other writers wait, readers do not).
        The hooks of the enclosing ``hooked`` blocks join it (unless ``hooks=False``)."""
        if getattr(self._writing, "active", False):
            # SQLite has one write lock: a second writer in the same thread would wait for
            # itself until busy_timeout. Callers pass the open session down instead.
            raise RuntimeError("a write transaction is already open in this thread")
        joining = [hook for store, hook in _HOOKS.get() if store is self] if hooks else []
        self._writing.active = True
        try:
            with self._unit(self._sessions()) as session:
                yield session
                for hook in joining:
                    hook.before_commit(session)
        finally:
            self._writing.active = False
        for hook in joining:
            hook.committed()

    @contextmanager
    def hooked(self, hook: CommitHook) -> Iterator[None]:
        """Let ``hook`` join every write transaction of this store opened inside the block
        (in this thread or task): how an audited change writes its audit row in the same
        transaction as the change."""
        token = _HOOKS.set((*_HOOKS.get(), (self, hook)))
        try:
            yield
        finally:
            _HOOKS.reset(token)

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A read-only unit of work: one consistent snapshot, no write lock, so hot paths
        (handshakes, OCSP answers, the reload poller) never wait for a writer."""
        with self._unit(self._read_sessions()) as session:
            yield session

    @contextmanager
    def _unit(self, session: Session) -> Iterator[Session]:
        try:
            with session.begin():
                yield session
        except IntegrityError:
            raise Conflict(
                "the change clashes with one made at the same moment: try again"
            ) from None
        except OperationalError as exc:
            raise StoreError(f"the database is unavailable: {exc.orig or exc}") from None
        finally:
            session.close()

    def close(self) -> None:
        self.engine.dispose()


def _refuse_lost_master_key(data_dir: Path) -> None:
    """A database without its master key: the private keys in it are sealed with that key,
    which only a backup can bring back. Creating a new one would make them unreadable for
    good, so say what is missing and how to restore it instead."""
    key_path = data_dir / MASTER_KEY_FILE
    db_path = data_dir / DB_FILE
    if key_path.exists() or not db_path.exists():
        return
    count = _sealed_key_count(db_path)
    if count is None:
        holds = "holds private keys sealed with it"
    elif count == 0:
        holds = "was created with it"
    else:
        holds = f"holds {count} private key{'s' if count > 1 else ''} sealed with it"
    what = f"the database {db_path} {holds}"
    raise StoreError(
        f"the master key {key_path} is missing and {what}: put back master.key from your "
        f"backup of this data directory, then 'chmod 600 {key_path}'. certway will not "
        "create a new master key over an existing database: it would make every sealed key "
        "unreadable"
    )


def _sealed_key_count(db_path: Path) -> int | None:
    """How many sealed private keys the database holds (None when it cannot be read)."""
    try:
        with contextlib.closing(
            sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True)
        ) as db:
            row = db.execute("SELECT count(*) FROM private_keys").fetchone()
    except sqlite3.Error:
        return None
    return int(row[0])


def _migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (cheap no-op when already there)."""
    config = _alembic_config()
    head = ScriptDirectory.from_config(config).get_current_head()
    with engine.execution_options(**{_READ_ONLY: True}).connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    if current == head:
        return
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
