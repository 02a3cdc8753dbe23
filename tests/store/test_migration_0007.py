"""Migration 0007 (PKCS#11 tokens): CAs with sealed keys survive it both ways."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from alembic import command
from sqlalchemy import create_engine

from certway.pki.csr import CsrForm, build_csr
from certway.services.node import Node
from certway.store.db import DB_FILE, _alembic_config

from conftest import test_key


def _migrate(data: Path, revision: str) -> None:
    engine = create_engine(f"sqlite:///{data / DB_FILE}")
    config = _alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)
    engine.dispose()


def test_sealed_key_cas_survive_0007_down_and_up(tmp_path: Path) -> None:
    data = tmp_path / "d"
    node = Node.init(data, factory=False)
    node.local_ca.create_root("root", "/CN=Migrated Root")
    node.close()

    _migrate(data, "0006")
    with sqlite3.connect(data / DB_FILE) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        columns = {r[1]: r[3] for r in db.execute("PRAGMA table_info(cas)")}
    assert "tokens" not in tables
    assert "token_id" not in columns and columns["key_id"] == 1  # NOT NULL again

    node = Node.open(data)  # migrates to the newest revision
    try:
        csr, _ = build_csr(test_key("ec:p256", 7), CsrForm(common_name="m.example.com"))
        signed = node.local_ca.sign_checked("root", csr)
        signed.certificate.verify_directly_issued_by(node.local_ca.certificate("root"))
        assert node.local_ca.info("root").key == "ECDSA P-256"
    finally:
        node.close()
    with sqlite3.connect(data / DB_FILE) as db:
        columns = {r[1]: r[3] for r in db.execute("PRAGMA table_info(cas)")}
    assert columns["key_id"] == 0 and "token_key_id" in columns
