"""PKCS#11 tokens: a table of registered tokens (PIN sealed), and CAs whose key is an object
in a token (``cas.token_id`` + ``cas.token_key_id``) instead of a sealed key.

Revision ID: 0007
Revises: 0006
"""

from typing import Literal

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _recreate() -> Literal["always", "auto"]:
    # SQLite alters a table by copying it; PostgreSQL alters in place (dropping ``cas`` would
    # need the foreign keys that point to it dropped first).
    return "always" if op.get_bind().dialect.name == "sqlite" else "auto"


def upgrade() -> None:
    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("module", sa.Text(), nullable=False),
        sa.Column("token_label", sa.String(length=32), nullable=False),
        sa.Column("sealed_pin", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    with op.batch_alter_table("cas", recreate=_recreate()) as batch:
        batch.alter_column("key_id", existing_type=sa.String(length=32), nullable=True)
        batch.add_column(sa.Column("token_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("token_key_id", sa.String(length=64), nullable=True))
        batch.create_foreign_key("fk_cas_token_id_tokens", "tokens", ["token_id"], ["id"])


def downgrade() -> None:
    bind = op.get_bind()
    if bind.execute(sa.text("SELECT COUNT(*) FROM cas WHERE token_id IS NOT NULL")).scalar():
        raise RuntimeError("token-backed CAs exist: remove them before downgrading")
    with op.batch_alter_table("cas", recreate=_recreate()) as batch:
        batch.drop_constraint("fk_cas_token_id_tokens", type_="foreignkey")
        batch.drop_column("token_key_id")
        batch.drop_column("token_id")
        batch.alter_column("key_id", existing_type=sa.String(length=32), nullable=False)
    op.drop_table("tokens")
