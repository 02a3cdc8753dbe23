"""ACME server: accounts and external account binding keys per local CA, and the ACME
account that ordered an issued certificate (``issued.acme_account``).

Revision ID: 0011
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "acme_accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ca_id", sa.Integer(), nullable=False),
        sa.Column("thumbprint", sa.String(length=64), nullable=False),
        sa.Column("jwk", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("contact", sa.Text(), nullable=False),
        sa.Column("eab_key_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["ca_id"], ["cas.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("ca_id", "thumbprint"),
    )
    op.create_index("ix_acme_accounts_ca_id", "acme_accounts", ["ca_id"])
    op.create_table(
        "acme_eab_keys",
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("ca_id", sa.Integer(), nullable=False),
        sa.Column("sealed_key", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["ca_id"], ["cas.id"]),
        sa.PrimaryKeyConstraint("key_id"),
    )
    op.create_index("ix_acme_eab_keys_ca_id", "acme_eab_keys", ["ca_id"])
    with op.batch_alter_table("issued_certificates") as batch:
        batch.add_column(sa.Column("acme_account", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("issued_certificates") as batch:
        batch.drop_column("acme_account")
    op.drop_index("ix_acme_eab_keys_ca_id", "acme_eab_keys")
    op.drop_table("acme_eab_keys")
    op.drop_index("ix_acme_accounts_ca_id", "acme_accounts")
    op.drop_table("acme_accounts")
