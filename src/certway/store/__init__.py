"""Persistence: SQLAlchemy schema, Alembic migrations, repositories and the key vault."""
