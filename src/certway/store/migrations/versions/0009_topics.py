"""Change topics: one counter per topic (certway.store.topics) replaces the string-keyed
``version.*`` counters of the settings table; each peer's admin address (``peers``), where the
other peers' mutual-TLS health checks call it.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0011"
branch_labels = None
depends_on = None

_OLD = {
    "version.trust": "trusted-cas",
    "version.crl": "revocation",
    "version.identity": "identity",
    "version.sip": "sip",
    "version.security": "admin-security",
    "version.tls": "tls",
}


def upgrade() -> None:
    table = op.create_table(
        "change_topics",
        sa.Column("topic", sa.String(length=32), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("topic"),
    )
    bind = op.get_bind()
    settings = sa.table("settings", sa.column("key", sa.String), sa.column("value", sa.Text))
    rows = bind.execute(sa.select(settings.c.key, settings.c.value)).all()
    values = {key: value for key, value in rows if key in _OLD}
    op.bulk_insert(
        table, [{"topic": _OLD[key], "version": int(value)} for key, value in values.items()]
    )
    bind.execute(settings.delete().where(settings.c.key.in_(list(_OLD))))
    op.add_column("peers", sa.Column("admin_address", sa.String(length=300), nullable=True))


def downgrade() -> None:
    bind = op.get_bind()
    with op.batch_alter_table("peers") as batch:
        batch.drop_column("admin_address")
    topics = sa.table("change_topics", sa.column("topic", sa.String), sa.column("version"))
    columns = {c["name"] for c in sa.inspect(bind).get_columns("settings")}
    settings = sa.table(
        "settings",
        sa.column("key", sa.String),
        sa.column("value", sa.Text),
        *([sa.column("node_id", sa.Integer)] if "node_id" in columns else []),
    )
    cluster_wide = {"node_id": 0} if "node_id" in columns else {}
    back = {topic: key for key, topic in _OLD.items()}
    for topic, version in bind.execute(sa.select(topics.c.topic, topics.c.version)).all():
        if topic in back:
            bind.execute(
                settings.insert().values(key=back[topic], value=str(version), **cluster_wide)
            )
    op.drop_table("change_topics")
