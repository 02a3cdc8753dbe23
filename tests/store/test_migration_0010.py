"""Migration 0010 (API tokens): the table comes and goes; tokens work after an upgrade."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from alembic import command
from sqlalchemy import create_engine

from certway.services.node import Node
from certway.store.db import DB_FILE, _alembic_config


def _downgrade(data: Path, revision: str) -> None:
    engine = create_engine(f"sqlite:///{data / DB_FILE}")
    config = _alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)
    engine.dispose()


def _tables(data: Path) -> set[str]:
    with sqlite3.connect(data / DB_FILE) as db:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def test_api_tokens_table_down_and_up(tmp_path: Path) -> None:
    data = tmp_path / "d"
    node = Node.init(data, factory=False)
    node.api_tokens.create("before", "read-only")
    node.close()
    assert "api_tokens" in _tables(data)

    _downgrade(data, "0007")
    assert "api_tokens" not in _tables(data)

    node = Node.open(data)  # migrates to the newest revision
    try:
        assert node.api_tokens.tokens() == []  # the downgrade dropped them
        token = node.api_tokens.create("after", "read-write").token
        assert node.api_tokens.authenticate(token).name == "after"
    finally:
        node.close()
