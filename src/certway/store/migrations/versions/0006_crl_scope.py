"""Held CRLs keep their scope: a delta CRL no longer replaces its complete CRL, nor one
partition (issuing distribution point) another, when they come from the same source.

Revision ID: 0006
Revises: 0005
"""

import hashlib
from typing import Literal

import sqlalchemy as sa
from alembic import op
from cryptography import x509

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Names for the unnamed UNIQUE constraint of 0002, so that batch mode can drop it.
NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def _scope(der: bytes) -> str:
    """As ``certway.trust.revocation.scope_label``: 'complete', 'delta', '…/<IDP digest>'."""
    crl = x509.load_der_x509_crl(der)
    kind = "complete"
    idp = b""
    for ext in crl.extensions:
        if isinstance(ext.value, x509.DeltaCRLIndicator):
            kind = "delta"
        elif isinstance(ext.value, x509.IssuingDistributionPoint):
            idp = ext.value.public_bytes()
    return f"{kind}/{hashlib.sha256(idp).hexdigest()[:16]}" if idp else kind


def _recreate() -> Literal["always", "auto"]:
    # SQLite alters a table by copying it; PostgreSQL alters it in place.
    return "always" if op.get_bind().dialect.name == "sqlite" else "auto"


def _old_unique() -> str:
    """The name of 0002's unnamed UNIQUE (kind, source, issuer_key): the naming convention's
    on SQLite, the server's own on PostgreSQL."""
    if op.get_bind().dialect.name == "sqlite":
        return "uq_held_crls_kind"
    for constraint in sa.inspect(op.get_bind()).get_unique_constraints("held_crls"):
        if constraint["column_names"] == ["kind", "source", "issuer_key"]:
            return str(constraint["name"])
    return "uq_held_crls_kind"


def upgrade() -> None:
    old_unique = _old_unique()
    with op.batch_alter_table("held_crls", naming_convention=NAMING, recreate=_recreate()) as batch:
        batch.add_column(
            sa.Column("scope", sa.String(length=64), nullable=False, server_default="complete")
        )
        batch.drop_constraint(old_unique, type_="unique")
        batch.create_unique_constraint(
            "uq_held_crls_scope", ["kind", "source", "issuer_key", "scope"]
        )
    bind = op.get_bind()
    for row_id, der in bind.execute(sa.text("SELECT id, crl_der FROM held_crls")).all():
        bind.execute(
            sa.text("UPDATE held_crls SET scope = :scope WHERE id = :id"),
            {"scope": _scope(der), "id": row_id},
        )


def downgrade() -> None:
    bind = op.get_bind()
    # Only one CRL per kind, source and issuer fits the old table: keep the newest row.
    bind.execute(
        sa.text(
            "DELETE FROM held_crls WHERE id NOT IN "
            "(SELECT MAX(id) FROM held_crls GROUP BY kind, source, issuer_key)"
        )
    )
    with op.batch_alter_table("held_crls", recreate=_recreate()) as batch:
        batch.drop_constraint("uq_held_crls_scope", type_="unique")
        batch.drop_column("scope")
        batch.create_unique_constraint("uq_held_crls_kind", ["kind", "source", "issuer_key"])
