"""Cluster: several peers share one database. A ``peers`` table; per-peer state (certificate
slots, per-peer settings, alarm first-seen times) scoped by ``node_id``; the cluster key's
check value (``cluster``). Existing single-node data becomes node 1's.

Revision ID: 0008
Revises: 0007
"""

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# Settings that belong to one peer (as ``certway.store.repositories.PER_PEER_SETTINGS``).
PER_PEER_SETTINGS = ("node", "zones.status", "ocsp.failures")


def _unique_name(table: str, columns: list[str]) -> str:
    for constraint in sa.inspect(op.get_bind()).get_unique_constraints(table):
        if constraint["column_names"] == columns and constraint["name"]:
            return str(constraint["name"])
    return f"uq_{table}_{columns[0]}"


def upgrade() -> None:
    bind = op.get_bind()
    op.create_table(
        "peers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("fqdn", sa.String(length=253), nullable=False),
        sa.Column("joined_at", sa.DateTime(), nullable=False),
        sa.Column("last_seen", sa.DateTime(), nullable=True),
        sa.Column("server_cert_not_after", sa.DateTime(), nullable=True),
        sa.Column("tls_result", sa.Text(), nullable=True),
        sa.Column("tls_checked_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "cluster",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key_check", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("key_exported_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    # The node that had the database so far is node 1.
    raw = bind.execute(sa.text("SELECT value FROM settings WHERE key = 'node'")).scalar()
    fqdn = ""
    if raw:
        fqdn = str(json.loads(raw).get("fqdn") or "")
    bind.execute(
        sa.text("INSERT INTO peers (id, fqdn, joined_at) VALUES (1, :fqdn, CURRENT_TIMESTAMP)"),
        {"fqdn": fqdn},
    )
    if bind.dialect.name == "postgresql":
        bind.execute(sa.text("SELECT setval(pg_get_serial_sequence('peers', 'id'), 1)"))

    column = sa.Column("node_id", sa.Integer(), nullable=False, server_default="1")
    if bind.dialect.name == "sqlite":
        # Not a table copy: cert_versions' foreign key points to cert_slots, and SQLite checks
        # it when the old table is dropped. An embedded node is one peer, so its old
        # UNIQUE (kind, name) stays, beside the per-peer one.
        op.add_column("cert_slots", column)
        op.create_index(
            "uq_cert_slots_node", "cert_slots", ["node_id", "kind", "name"], unique=True
        )
    else:
        op.add_column("cert_slots", column)
        op.drop_constraint(
            _unique_name("cert_slots", ["kind", "name"]), "cert_slots", type_="unique"
        )
        op.create_unique_constraint("uq_cert_slots_node", "cert_slots", ["node_id", "kind", "name"])
    # settings and alarm_state: node_id joins the primary key (a new table, rows copied).
    _rebuild("settings", _settings_columns(with_node=True), ["node_id", "key"], "0, key, value")
    for key in PER_PEER_SETTINGS:
        bind.execute(sa.text("UPDATE settings SET node_id = 1 WHERE key = :k"), {"k": key})
    _rebuild(
        "alarm_state", _alarm_columns(with_node=True), ["node_id", "alarm_id"], "1, alarm_id, since"
    )


def _settings_columns(*, with_node: bool) -> list[sa.Column[Any]]:
    node = [sa.Column("node_id", sa.Integer(), nullable=False)] if with_node else []
    return [
        *node,
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
    ]


def _alarm_columns(*, with_node: bool) -> list[sa.Column[Any]]:
    node = [sa.Column("node_id", sa.Integer(), nullable=False)] if with_node else []
    return [
        *node,
        sa.Column("alarm_id", sa.String(length=200), nullable=False),
        sa.Column("since", sa.DateTime(), nullable=False),
    ]


def _rebuild(table: str, columns: list[sa.Column[Any]], key: list[str], select: str) -> None:
    """Replace ``table`` by a new one with ``columns`` and primary key ``key``, its rows
    copied with ``SELECT <select> FROM table``."""
    new = f"_new_{table}"
    op.create_table(new, *columns, sa.PrimaryKeyConstraint(*key, name=f"pk_{table}_{len(key)}"))
    names = ", ".join(column.name for column in columns)
    op.execute(f"INSERT INTO {new} ({names}) SELECT {select} FROM {table}")  # noqa: S608
    op.drop_table(table)
    op.rename_table(new, table)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.execute(sa.text("SELECT COUNT(*) FROM peers WHERE id <> 1")).scalar():
        raise RuntimeError("the database holds a cluster of several peers: cannot downgrade")
    bind.execute(sa.text("DELETE FROM settings WHERE node_id NOT IN (0, 1)"))
    bind.execute(sa.text("DELETE FROM alarm_state WHERE node_id <> 1"))
    _rebuild("settings", _settings_columns(with_node=False), ["key"], "key, value")
    _rebuild("alarm_state", _alarm_columns(with_node=False), ["alarm_id"], "alarm_id, since")
    if bind.dialect.name == "sqlite":
        op.drop_index("uq_cert_slots_node", "cert_slots")
    else:
        op.drop_constraint("uq_cert_slots_node", "cert_slots", type_="unique")
        op.create_unique_constraint("uq_cert_slots_kind", "cert_slots", ["kind", "name"])
    op.drop_column("cert_slots", "node_id")
    op.drop_table("cluster")
    op.drop_table("peers")
