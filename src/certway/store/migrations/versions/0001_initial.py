"""Initial schema: sealed private keys, local CAs, issued certificates, revocations, CRLs.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "private_keys",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("description", sa.String(length=32), nullable=False),
        sa.Column("public_sha256", sa.String(length=64), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_private_keys_public_sha256"), "private_keys", ["public_sha256"], unique=False
    )
    op.create_table(
        "cas",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("certificate_der", sa.LargeBinary(), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("not_after", sa.DateTime(), nullable=False),
        sa.Column("crl_urls", sa.Text(), nullable=False),
        sa.Column("ocsp_url", sa.Text(), nullable=True),
        sa.Column("crl_days", sa.Integer(), nullable=False),
        sa.Column("last_crl_number", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["key_id"], ["private_keys.id"]),
        sa.ForeignKeyConstraint(["parent_id"], ["cas.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "crls",
        sa.Column("ca_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("this_update", sa.DateTime(), nullable=False),
        sa.Column("next_update", sa.DateTime(), nullable=False),
        sa.Column("covers_revocation_id", sa.Integer(), nullable=False),
        sa.Column("crl_der", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["ca_id"], ["cas.id"]),
        sa.PrimaryKeyConstraint("ca_id"),
    )
    op.create_table(
        "issued_certificates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ca_id", sa.Integer(), nullable=False),
        sa.Column("serial", sa.String(length=42), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("alt_names", sa.Text(), nullable=False),
        sa.Column("profile", sa.String(length=16), nullable=False),
        sa.Column("not_before", sa.DateTime(), nullable=False),
        sa.Column("not_after", sa.DateTime(), nullable=False),
        sa.Column("certificate_der", sa.LargeBinary(), nullable=False),
        sa.Column("issued_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["ca_id"], ["cas.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("ca_id", "serial"),
    )
    op.create_index(
        op.f("ix_issued_certificates_ca_id"), "issued_certificates", ["ca_id"], unique=False
    )
    op.create_index(
        op.f("ix_issued_certificates_not_after"),
        "issued_certificates",
        ["not_after"],
        unique=False,
    )
    op.create_table(
        "revocations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ca_id", sa.Integer(), nullable=False),
        sa.Column("serial", sa.String(length=42), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.Column("invalidity_date", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["ca_id"], ["cas.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("ca_id", "serial"),
    )
    op.create_index(op.f("ix_revocations_ca_id"), "revocations", ["ca_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_revocations_ca_id"), table_name="revocations")
    op.drop_table("revocations")
    op.drop_index(op.f("ix_issued_certificates_not_after"), table_name="issued_certificates")
    op.drop_index(op.f("ix_issued_certificates_ca_id"), table_name="issued_certificates")
    op.drop_table("issued_certificates")
    op.drop_table("crls")
    op.drop_table("cas")
    op.drop_index(op.f("ix_private_keys_public_sha256"), table_name="private_keys")
    op.drop_table("private_keys")
