"""Opening a node's store: data directory, master key, database, migrations, transactions."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from certway.errors import Conflict, StoreError
from certway.store.vault import KeyVault, create_master_key, load_master_key

__all__ = ["DB_FILE", "Store", "default_data_dir"]

DB_FILE = "certway.db"
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

    @classmethod
    def create(cls, data_dir: Path) -> Store:
        """Create (or reuse) a data directory: 0700 folder, 0600 master key, migrated DB."""
        try:
            data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the data directory {data_dir}: {exc.strerror}"
            ) from None
        create_master_key(data_dir)
        return cls.open(data_dir)

    @classmethod
    def open(cls, data_dir: Path) -> Store:
        if not (data_dir / DB_FILE).exists() and not (data_dir / "master.key").exists():
            raise StoreError(
                f"{data_dir} is not a certway data directory: run 'certway --data-dir "
                f"{data_dir} init' first"
            )
        vault = KeyVault(load_master_key(data_dir))
        engine = create_engine(f"sqlite:///{data_dir / DB_FILE}")
        event.listen(engine, "connect", _sqlite_pragmas)
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
    def transaction(self) -> Iterator[Session]:
        """A unit of work: committed when the block ends, rolled back if it raises."""
        session = self._sessions()
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


def _migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (cheap no-op when already there)."""
    config = _alembic_config()
    head = ScriptDirectory.from_config(config).get_current_head()
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    if current == head:
        return
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
