"""The ACME server's persistent state: accounts and external account binding keys.

Orders, authorizations and challenges live in memory (they are short-lived: an order has a
deadline); the certificates an ACME order produced are in the CA's inventory, with the
account (``issued_certificates.acme_account``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from certway.store.schema import AcmeAccountRow, AcmeEabKeyRow, IssuedRow
from certway.store.vault import KeyVault

__all__ = ["AcmeRepository"]


def _eab_aad(key_id: str) -> bytes:
    return b"certway/acme-eab/" + key_id.encode()


class AcmeRepository:
    def __init__(self, session: Session, vault: KeyVault | None = None) -> None:
        self._session = session
        self._vault = vault

    # accounts
    def account(self, account_id: int) -> AcmeAccountRow | None:
        return self._session.get(AcmeAccountRow, account_id)

    def account_by_thumbprint(self, ca_id: int, thumbprint: str) -> AcmeAccountRow | None:
        return self._session.scalars(
            select(AcmeAccountRow).where(
                AcmeAccountRow.ca_id == ca_id, AcmeAccountRow.thumbprint == thumbprint
            )
        ).first()

    def accounts(self, ca_id: int) -> Sequence[AcmeAccountRow]:
        return self._session.scalars(
            select(AcmeAccountRow).where(AcmeAccountRow.ca_id == ca_id).order_by(AcmeAccountRow.id)
        ).all()

    def add_account(self, row: AcmeAccountRow) -> AcmeAccountRow:
        self._session.add(row)
        self._session.flush()
        return row

    def issued_count(self, ca_id: int) -> dict[int, int]:
        """Certificates issued through ACME, per account."""
        rows = self._session.execute(
            select(IssuedRow.acme_account, func.count())
            .where(IssuedRow.ca_id == ca_id, IssuedRow.acme_account.is_not(None))
            .group_by(IssuedRow.acme_account)
        ).all()
        return {int(account or 0): int(count) for account, count in rows}

    # external account binding keys
    def add_eab_key(self, ca_id: int, key_id: str, hmac_key: bytes, at: dt.datetime) -> None:
        assert self._vault is not None
        self._session.add(
            AcmeEabKeyRow(
                key_id=key_id,
                ca_id=ca_id,
                sealed_key=self._vault.seal(hmac_key, _eab_aad(key_id)),
                created_at=at,
            )
        )
        self._session.flush()

    def eab_key(self, key_id: str) -> AcmeEabKeyRow | None:
        return self._session.get(AcmeEabKeyRow, key_id)

    def eab_keys(self, ca_id: int) -> Sequence[AcmeEabKeyRow]:
        return self._session.scalars(
            select(AcmeEabKeyRow)
            .where(AcmeEabKeyRow.ca_id == ca_id)
            .order_by(AcmeEabKeyRow.created_at)
        ).all()

    def eab_secret(self, row: AcmeEabKeyRow) -> bytes:
        assert self._vault is not None
        return self._vault.open(row.sealed_key, _eab_aad(row.key_id))
