"""Opening a node's store: data directory, master key, database, migrations, transactions."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Protocol

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    BigInteger,
    create_engine,
    event,
    func,
    insert,
    inspect,
    literal,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    IntegrityError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import QueuePool
from sqlalchemy.sql import Select

from certway.errors import Conflict, StoreError
from certway.store.on_loop import LoopConnection
from certway.store.schema import ClusterRow, PeerRow
from certway.store.vault import (
    MASTER_KEY_FILE,
    KeyVault,
    create_master_key,
    load_master_key,
    write_master_key,
)
from certway.waiting import WouldWait, may_wait

__all__ = [
    "CLUSTER_FILE",
    "DB_FILE",
    "MAX_PEERS",
    "CommitHook",
    "Session",
    "Store",
    "default_data_dir",
    "pg_write_lock",
    "redact_url",
    "sqlite_engine",
]
# ``Session`` is exported as the type of a unit of work: services hand it on to repositories
# (certway.store.repositories) and never query it themselves.

DB_FILE = "certway.db"
MAX_PEERS = 6
"""The most peers a cluster has (as an Expressway cluster): a seventh node cannot join."""
CLUSTER_FILE = "cluster.json"  # a cluster peer: its node id and the database URL (0600)
_READ_ONLY = "certway_read_only"
_QUERY_ONLY = "certway_query_only"  # the pooled connection's PRAGMA query_only, as last set
# Every write transaction on PostgreSQL takes this transaction-level advisory lock first:
# writers run one after the other across all peers, as SQLite's BEGIN IMMEDIATE makes them
# within one node, so a read-modify-write never works on a stale read.
_WRITE_LOCK = 0x63657274776179  # "certway"
_LOCK_TIMEOUT_MS = 10_000  # as SQLite's busy_timeout
_BUSY_TIMEOUT_MS = 10_000  # SQLite: how long a writer waits for another's write lock
# Connections per engine: at most this many units of work run at once (others wait, which a
# unit tried without waiting does not: certway.waiting).
_POOL_SIZE = 5
_POOL_OVERFLOW = 10
# SQLSTATEs: serialization failure, deadlock (a clash: try again); lock timeout (busy).
_CLASH = {"40001", "40P01"}
_BUSY = {"55P03"}
_READ_ONLY_REFUSED = "25006"
_MIGRATIONS = Path(__file__).parent / "migrations"


def default_data_dir() -> Path:
    return Path(os.environ.get("CERTWAY_DATA_DIR", "./certway-data"))


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
    cursor.close()
    # SQLAlchemy emits BEGIN itself (below): the driver's implicit BEGIN would start a
    # transaction only at the first write, leaving earlier reads outside it.
    dbapi_connection.isolation_level = None


def _sqlite_begin(connection: Connection) -> None:
    """Writers take SQLite's write lock when they start, so a read-modify-write in one
    process waits for another's instead of overwriting it; readers get one snapshot."""
    read_only = bool(connection.get_execution_options().get(_READ_ONLY))
    if connection.info.get(_QUERY_ONLY) is not read_only:
        # a write in a reading unit is a bug: refuse it (the pooled connection keeps the
        # setting: sent only when it changes)
        connection.exec_driver_sql(f"PRAGMA query_only={'ON' if read_only else 'OFF'}")
        connection.info[_QUERY_ONLY] = read_only
    if read_only or may_wait():
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
        return
    # Tried without waiting (certway.waiting): the write lock now, or WouldWait. The busy
    # timeout is set on the driver's connection itself (no statement machinery for a pragma).
    dbapi = connection.connection.dbapi_connection
    assert dbapi is not None
    dbapi.execute("PRAGMA busy_timeout=0")
    try:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    except OperationalError as exc:
        if getattr(exc.orig, "sqlite_errorcode", None) != sqlite3.SQLITE_BUSY:
            raise
        raise WouldWait("the database's write lock, held by another writer") from None
    finally:
        dbapi.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")


def sqlite_engine(db_path: Path) -> Engine:
    """The engine of a node's SQLite database file, with certway's connection settings."""
    engine = create_engine(
        f"sqlite:///{db_path}", pool_size=_POOL_SIZE, max_overflow=_POOL_OVERFLOW
    )
    event.listen(engine, "connect", _sqlite_pragmas)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


_PG_SETUP = (f"SET lock_timeout = {_LOCK_TIMEOUT_MS}", "SET TIME ZONE 'UTC'")
_PG_CONNECT_TIMEOUT = 10  # seconds


def _pg_connect(dbapi_connection: Any, _record: Any) -> None:
    with dbapi_connection.cursor() as cursor:
        for statement in _PG_SETUP:
            cursor.execute(statement)
    dbapi_connection.commit()


def _pg_begin(connection: Connection) -> None:
    """Readers get one snapshot and cannot write; writers queue on the cluster's write lock."""
    if connection.get_execution_options().get(_READ_ONLY):
        connection.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    else:
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_WRITE_LOCK})")


def pg_write_lock() -> Select[Any]:
    """What ``_pg_begin`` runs for a writer, as a query: for a write made of one statement
    in autocommit mode (``Store.direct_statement``), which must take the lock itself, before
    its first row (every insert of it selects from this query)."""
    return select(func.pg_advisory_xact_lock(literal(_WRITE_LOCK, BigInteger)).label("locked"))


def redact_url(url: str) -> str:
    """The database URL without its password (for messages)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<not a database URL>"


def _check_database_url(url: str) -> str:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(
            "the database URL is not valid: expected postgresql://user@host:port/database"
        ) from None
    if parsed.get_backend_name() != "postgresql" or not parsed.database:
        raise StoreError(
            f"the database URL {redact_url(url)} is not a PostgreSQL database URL: expected "
            "postgresql://user@host:port/database"
        )
    return url


def _pg_engine(url: str) -> Engine:
    parsed = make_url(_check_database_url(url)).set(drivername="postgresql+psycopg")
    engine = create_engine(
        parsed,
        pool_pre_ping=True,
        pool_size=_POOL_SIZE,
        max_overflow=_POOL_OVERFLOW,
        connect_args={"connect_timeout": _PG_CONNECT_TIMEOUT},
    )
    event.listen(engine, "connect", _pg_connect)
    event.listen(engine, "begin", _pg_begin)
    return engine


def key_check_value(key: bytes) -> str:
    """What the database keeps to tell whether a node has the cluster's key (not the key)."""
    return hmac.new(key, b"certway/cluster-key-check", hashlib.sha256).hexdigest()


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

    def __init__(self, data_dir: Path, engine: Engine, vault: KeyVault, node_id: int = 1) -> None:
        self.data_dir = data_dir
        self.engine = engine
        self.vault = vault
        self.node_id = node_id
        """This peer's id in the cluster (an embedded node is peer 1)."""
        info = {"node_id": node_id}  # repositories scope per-peer state by it
        self._sessions = sessionmaker(engine, expire_on_commit=False, info=info)
        self._writing = threading.local()
        self._direct: Connection | None = None  # direct_transaction's connection
        self._direct_lock = threading.Lock()
        self._on_loop: LoopConnection | None = None  # statement_on_loop's connection
        self._read_sessions = sessionmaker(
            engine.execution_options(**{_READ_ONLY: True}), expire_on_commit=False, info=info
        )

    @property
    def clustered(self) -> bool:
        """Whether the database is a shared PostgreSQL database (not the embedded SQLite)."""
        return self.engine.dialect.name == "postgresql"

    @property
    def database_url(self) -> str:
        """The database, without password."""
        return self.engine.url.render_as_string(hide_password=True)

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
    def create_cluster(cls, data_dir: Path, url: str, *, fqdn: str = "") -> Store:
        """A new cluster in an empty PostgreSQL database: its schema, a new cluster key in
        ``data_dir`` and this node as peer 1."""
        _check_database_url(url)
        _refuse_used_data_dir(data_dir)
        engine = _pg_engine(url)
        try:
            if _has_cluster(engine):
                raise StoreError(
                    f"the database {redact_url(url)} already holds a certway cluster: add this "
                    "node to it with --join (the cluster key exported with 'cluster export-key')"
                )
            key = os.urandom(32)
            _migrate(engine)
            with engine.begin() as connection:
                connection.execute(
                    insert(ClusterRow).values(
                        id=1, key_check=key_check_value(key), created_at=dt.datetime.now(dt.UTC)
                    )
                )
                if fqdn:
                    connection.execute(update(PeerRow).where(PeerRow.id == 1).values(fqdn=fqdn))
                # Written before the key check commits: if the files cannot be written, the
                # database stays without a cluster key and a new 'init' may start again.
                _write_node_files(data_dir, key, url, node_id=1)
        except SQLAlchemyError as exc:
            engine.dispose()
            _remove_node_files(data_dir)
            raise StoreError(f"cannot use the database {redact_url(url)}: {_reason(exc)}") from None
        except BaseException:
            engine.dispose()
            raise
        engine.dispose()
        return cls.open(data_dir)

    @classmethod
    def join_cluster(cls, data_dir: Path, url: str, key: bytes, *, fqdn: str) -> Store:
        """Add this node to the cluster in ``url`` as a new peer, with the cluster key."""
        _check_database_url(url)
        _refuse_used_data_dir(data_dir)
        engine = _pg_engine(url)
        try:
            if not _has_cluster(engine):
                raise StoreError(
                    f"the database {redact_url(url)} holds no certway cluster: create one with "
                    "'certway --data-dir DIR init --database URL' first"
                )
            with engine.execution_options(**{_READ_ONLY: True}).begin() as connection:
                _verify_key(connection, key)  # before anything changes
            _migrate(engine)
            with engine.begin() as connection:
                # The peers' write lock: two nodes joining at once are counted one by one.
                connection.execute(pg_write_lock())
                if connection.execute(select(PeerRow.id).where(PeerRow.fqdn == fqdn)).first():
                    raise StoreError(f"the cluster already has a peer named {fqdn}")
                peers = connection.execute(select(func.count()).select_from(PeerRow)).scalar_one()
                if peers >= MAX_PEERS:
                    raise StoreError(
                        f"the cluster already has {peers} peers, the most it can have is "
                        f"{MAX_PEERS}: to add this node, first remove a decommissioned peer "
                        "(stopped for good) with 'certway cluster remove-peer NODE' on one "
                        "of the peers, or with Remove on its Cluster page"
                    )
                node_id = connection.execute(
                    insert(PeerRow)
                    .values(fqdn=fqdn, joined_at=dt.datetime.now(dt.UTC))
                    .returning(PeerRow.id)
                ).scalar_one()
                # The files are written inside the transaction: if they cannot be, the peer
                # is not added either.
                _write_node_files(data_dir, key, url, node_id=node_id)
        except SQLAlchemyError as exc:
            engine.dispose()
            _remove_node_files(data_dir)
            raise StoreError(f"cannot use the database {redact_url(url)}: {_reason(exc)}") from None
        except BaseException:
            engine.dispose()
            raise
        engine.dispose()
        return cls.open(data_dir)

    @classmethod
    def open(cls, data_dir: Path) -> Store:
        if (data_dir / CLUSTER_FILE).exists():
            return cls._open_cluster(data_dir)
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

    @classmethod
    def _open_cluster(cls, data_dir: Path) -> Store:
        node_id, url = read_cluster_file(data_dir)
        key = load_master_key(data_dir)
        engine = _pg_engine(url)
        try:
            _migrate(engine)
            with engine.execution_options(**{_READ_ONLY: True}).begin() as connection:
                _verify_key(connection, key)
                if (
                    connection.execute(select(PeerRow.id).where(PeerRow.id == node_id)).first()
                    is None
                ):
                    raise StoreError(
                        f"this node (peer {node_id}) is not a peer of the cluster in "
                        f"{redact_url(url)}: it was removed, or the data directory belongs to "
                        "another cluster"
                    )
        except SQLAlchemyError as exc:
            engine.dispose()
            raise StoreError(
                f"cannot open the database {redact_url(url)}: {_reason(exc)}"
            ) from None
        except BaseException:
            engine.dispose()
            raise
        return cls(data_dir, engine, KeyVault(key), node_id)

    @contextmanager
    def transaction(self, *, hooks: bool | Sequence[CommitHook] = True) -> Iterator[Session]:
        """A unit of work: committed when the block ends, rolled back if it raises. It holds
        the database's write lock from the start (other writers wait, readers do not).
        The hooks of the enclosing ``hooked`` blocks join it (``hooks=False``: none; a
        sequence: those, gathered by ``joining_hooks`` where the work comes from)."""
        self.check_not_writing()
        self._check_may_start()
        if isinstance(hooks, bool):
            joining = list(self.joining_hooks()) if hooks else []
        else:
            joining = list(hooks)
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

    def check_not_writing(self) -> None:
        """Refuse a second write transaction in a thread that holds one open."""
        if getattr(self._writing, "active", False):
            # SQLite has one write lock: a second writer in the same thread would wait for
            # itself until busy_timeout. Callers pass the open session down instead.
            raise RuntimeError("a write transaction is already open in this thread")

    def _check_may_start(self) -> None:
        """Tried without waiting (certway.waiting): refuse a unit of work that would wait to
        start, or whose every statement would (a PostgreSQL server is a network round trip
        away; SQLite's file is here, and its readers never wait for a writer)."""
        if may_wait():
            return
        if self.clustered:
            raise WouldWait("the PostgreSQL database")
        pool = self.engine.pool
        if isinstance(pool, QueuePool) and pool.checkedout() >= _POOL_SIZE + _POOL_OVERFLOW:
            raise WouldWait("a free database connection")

    @contextmanager
    def _direct_held(self) -> Iterator[None]:
        """The direct-write connection's lock (without waiting: now, or ``WouldWait``)."""
        if not self._direct_lock.acquire(blocking=may_wait()):
            raise WouldWait("the direct-write connection, in use by another writer")
        try:
            yield
        finally:
            self._direct_lock.release()

    def joining_hooks(self) -> tuple[CommitHook, ...]:
        """The hooks that join a write transaction opened here (of the enclosing ``hooked``
        blocks, in this thread or task)."""
        return tuple(hook for store, hook in _HOOKS.get() if store is self)

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
        self._check_may_start()
        with self._unit(self._read_sessions()) as session:
            yield session

    @contextmanager
    def _unit(self, session: Session) -> Iterator[Session]:
        try:
            with store_errors(), session.begin():
                yield session
        finally:
            session.close()

    @contextmanager
    def direct_transaction(self) -> Iterator[Connection]:
        """A write transaction on this store's direct-write connection, for the few hot
        writes that run their statements on its DBAPI cursor (``certway.store.direct``): the
        same write lock as ``transaction`` (the begin events take it) and the same errors.
        One transaction at a time: others wait for the connection."""
        self.check_not_writing()
        self._check_may_start()
        self._writing.active = True
        try:
            with self._direct_held():
                connection = self._direct_connection()
                try:
                    with store_errors(), connection.begin():
                        yield connection
                except BaseException:
                    self._drop_direct()  # whatever broke, the next transaction starts afresh
                    raise
        finally:
            self._writing.active = False

    @contextmanager
    def direct_statement(self) -> Iterator[Any]:
        """The direct-write connection's DBAPI connection in autocommit mode (PostgreSQL), for
        a write made of one statement, which is then its own transaction: one round trip
        where ``direct_transaction`` takes six (begin, lock, statements, commit). The
        statement takes the write lock itself (``pg_write_lock``). Errors as
        ``direct_transaction``'s, once the caller wrapped the driver's in ``DBAPIError``."""
        if not self.clustered:
            raise RuntimeError("a direct statement needs PostgreSQL (SQLite: direct_transaction)")
        self.check_not_writing()
        self._check_may_start()
        self._writing.active = True
        try:
            with self._direct_held():
                dbapi = self._direct_connection().connection.dbapi_connection
                assert dbapi is not None
                try:
                    with store_errors():
                        dbapi.autocommit = True
                        yield dbapi
                        dbapi.autocommit = False  # for direct_transaction's next begin
                except BaseException:  # the connection is dropped, whatever its mode
                    self._drop_direct()
                    raise
        finally:
            self._writing.active = False

    async def statement_on_loop(self, sql: str, parameters: Any) -> None:
        """A write made of one statement (as ``direct_statement`` runs it) awaited on the event
        loop, on PostgreSQL (certway.store.on_loop): the loop serves others meanwhile and no
        thread is involved. The statement takes the write lock itself. Errors as
        ``direct_statement``'s."""
        if not self.clustered:
            raise RuntimeError("a statement on the event loop needs PostgreSQL")
        if self._on_loop is None:
            self._on_loop = LoopConnection(
                self.engine.url, setup=_PG_SETUP, connect_timeout=_PG_CONNECT_TIMEOUT
            )
        with store_errors():
            await self._on_loop.run(sql, parameters)

    async def close_on_loop(self) -> None:
        """Close ``statement_on_loop``'s connection, on its event loop (``serve`` stopping)."""
        if self._on_loop is not None:
            await self._on_loop.close()

    def _direct_connection(self) -> Connection:
        if self._direct is None or self._direct.closed or self._direct.invalidated:
            self._drop_direct()
            self._direct = self.engine.connect()
        return self._direct

    def _drop_direct(self) -> None:
        if self._direct is not None:
            with contextlib.suppress(SQLAlchemyError):
                self._direct.close()
            self._direct = None

    def close(self) -> None:
        with self._direct_lock:
            self._drop_direct()
        if self._on_loop is not None:
            self._on_loop.close_now()
        self.engine.dispose()


@contextmanager
def store_errors() -> Iterator[None]:
    """The database's errors as certway's: a clash is a ``Conflict`` (try again), a busy or
    unreachable database a ``StoreError`` saying so."""
    try:
        yield
    except IntegrityError:
        raise Conflict("the change clashes with one made at the same moment: try again") from None
    except DBAPIError as exc:
        state = getattr(exc.orig, "sqlstate", None)
        if state in _CLASH:
            raise Conflict(
                "the change clashes with one made at the same moment: try again"
            ) from None
        if state == _READ_ONLY_REFUSED:  # a write in a reading unit is a bug: refuse it
            raise StoreError(f"the database refused a write: {_reason(exc)}") from None
        if state in _BUSY:
            raise StoreError(
                "the database is busy: another change holds it too long; try again"
            ) from None
        if isinstance(exc, OperationalError) or exc.connection_invalidated:
            raise StoreError(f"the database is unavailable: {_reason(exc)}") from None
        raise


def _reason(exc: SQLAlchemyError) -> str:
    """The driver's message, first line (never the URL's password: psycopg leaves it out)."""
    detail = str(getattr(exc, "orig", None) or exc).strip()
    return detail.splitlines()[0] if detail else type(exc).__name__


def _has_schema(engine: Engine) -> bool:
    with engine.connect() as connection:
        return "alembic_version" in inspect(connection).get_table_names()


def _has_cluster(engine: Engine) -> bool:
    """Whether the database holds a cluster: its schema and the cluster key's check value."""
    with engine.execution_options(**{_READ_ONLY: True}).connect() as connection:
        if "cluster" not in inspect(connection).get_table_names():
            return _has_schema(engine)  # an older certway's schema: not empty either
        return connection.execute(select(ClusterRow.id)).first() is not None


def _verify_key(connection: Connection, key: bytes) -> None:
    stored = connection.execute(select(ClusterRow.key_check).where(ClusterRow.id == 1)).scalar()
    if stored is None:
        raise StoreError("the database holds no cluster key check value: it is not a cluster")
    if not hmac.compare_digest(stored, key_check_value(key)):
        raise StoreError(
            "this node's cluster key does not match the database's: it belongs to another "
            "cluster, or the key file is not this cluster's"
        )


def _refuse_used_data_dir(data_dir: Path) -> None:
    for name in (DB_FILE, MASTER_KEY_FILE, CLUSTER_FILE):
        if (data_dir / name).exists():
            raise StoreError(
                f"{data_dir} is already a certway data directory ({name} exists): use an "
                "empty directory for a cluster node"
            )


def read_cluster_file(data_dir: Path) -> tuple[int, str]:
    """(node id, database URL) of a cluster node's data directory."""
    path = data_dir / CLUSTER_FILE
    try:
        raw = json.loads(path.read_text())
        return int(raw["node_id"]), _check_database_url(str(raw["database_url"]))
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror}") from None
    except (ValueError, KeyError, TypeError):
        raise StoreError(f"{path} is damaged: expected node_id and database_url") from None


def write_cluster_file(data_dir: Path, url: str, node_id: int) -> None:
    """Write (atomically, 0600: the URL may hold a password) the node's cluster file."""
    path = data_dir / CLUSTER_FILE
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, json.dumps({"node_id": node_id, "database_url": url}, indent=1).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)


def _write_node_files(data_dir: Path, key: bytes, url: str, *, node_id: int) -> None:
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_master_key(data_dir, key)
        write_cluster_file(data_dir, url, node_id)
    except OSError as exc:
        _remove_node_files(data_dir)
        raise StoreError(f"cannot write the data directory {data_dir}: {exc.strerror}") from None


def _remove_node_files(data_dir: Path) -> None:
    for name in (CLUSTER_FILE, MASTER_KEY_FILE):
        with contextlib.suppress(OSError):
            (data_dir / name).unlink()


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
    with schema_transaction(
        engine, "the database upgrade would break {} references: nothing was changed"
    ) as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


@contextmanager
def schema_transaction(engine: Engine, broken_references: str) -> Iterator[Connection]:
    """One transaction that may change tables (migrations, loading a backup). On SQLite, whose
    way to change a table is a copy, foreign keys are off outside the transaction (dropping
    the old copy of a table others point to would fail otherwise) and every reference is
    checked before it commits: ``broken_references`` (with ``{}`` for the count) is the
    error when one is broken, and nothing is committed."""
    sqlite_db = engine.dialect.name == "sqlite"
    with engine.connect() as connection:
        raw = connection.connection.dbapi_connection
        if sqlite_db and raw is not None:
            _pragma(raw, "PRAGMA foreign_keys=OFF")
        try:
            with connection.begin():
                yield connection
                if sqlite_db:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise StoreError(broken_references.format(len(broken)))
        finally:
            if sqlite_db and raw is not None:
                _pragma(raw, "PRAGMA foreign_keys=ON")


def _pragma(raw: Any, statement: str) -> None:
    cursor = raw.cursor()
    try:
        cursor.execute(statement)
    finally:
        cursor.close()
