"""Count of entries of each local CA's latest CRL (no need to parse a large CRL to tell).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op
from cryptography import x509

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("crls") as batch:
        batch.add_column(sa.Column("entries", sa.Integer(), nullable=False, server_default="0"))
    bind = op.get_bind()
    for ca_id, der in bind.execute(sa.text("SELECT ca_id, crl_der FROM crls")).all():
        count = len(x509.load_der_x509_crl(der))
        bind.execute(
            sa.text("UPDATE crls SET entries = :n WHERE ca_id = :id"), {"n": count, "id": ca_id}
        )


def downgrade() -> None:
    with op.batch_alter_table("crls") as batch:
        batch.drop_column("entries")
