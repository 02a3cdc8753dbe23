"""Alembic environment: migrations run on the connection the store hands over."""

from __future__ import annotations

from alembic import context

from certway.store.schema import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only for `alembic` CLI use by developers
    raise RuntimeError("run migrations through certway.store.db.Store")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
