"""Accepting an outside CRL into the store: issuer found among trusted CAs, signature
verified, not expired, CRL number not going backwards. Shared by manual uploads,
embedded CRLs of CA files and URL sources. Complete and delta CRLs are both accepted and
held side by side (a delta is used on top of its complete CRL)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy.orm import Session

from certway.errors import PolicyViolation
from certway.pki.text import format_name, plural
from certway.store.repositories import HeldCrlRepository
from certway.store.schema import HeldCrlRow
from certway.trust.revocation import IndexedCrl, index_crl, scope_label

__all__ = ["AcceptedCrl", "accept_crl", "find_issuer", "store_crl", "vet_crl"]


@dataclass(frozen=True, slots=True)
class AcceptedCrl:
    issuer: str
    number: int | None
    next_update: dt.datetime | None
    entries: int
    delta_base: int | None = None

    def describe(self) -> str:
        number = f"#{self.number}" if self.number is not None else "(no number)"
        until = f", next update {self.next_update:%Y-%m-%d %H:%M} UTC" if self.next_update else ""
        if self.delta_base is not None:
            return (
                f"delta CRL {number} (on base #{self.delta_base}) of {self.issuer} with "
                f"{plural(self.entries, 'entry')}{until}"
            )
        return f"CRL {number} of {self.issuer} with {plural(self.entries, 'entry')}{until}"


def find_issuer(
    crl: x509.CertificateRevocationList, trusted: Sequence[x509.Certificate], source: str
) -> IndexedCrl:
    """Index ``crl`` against the trusted CA that issued it (name match + signature)."""
    candidates = [c for c in trusted if c.subject == crl.issuer]
    if not candidates:
        raise PolicyViolation(
            "crl-issuer",
            f"the CRL issuer {format_name(crl.issuer)} is not in the trusted CA list: "
            "add its CA certificate first",
        )
    last: PolicyViolation | None = None
    for issuer in candidates:
        try:
            return index_crl(crl, issuer, source=source)
        except PolicyViolation as exc:
            last = exc
    assert last is not None
    raise last


def vet_crl(
    session: Session,
    crl: x509.CertificateRevocationList,
    *,
    source: str,
    trusted: Sequence[x509.Certificate],
    at: dt.datetime,
) -> IndexedCrl:
    """Every check before a CRL is stored: issuer, signature, expiry, CRL number."""
    indexed = find_issuer(crl, trusted, source)
    if indexed.next_update is not None and indexed.next_update <= at:
        raise PolicyViolation(
            "crl-expired",
            f"{indexed.label()} expired on {indexed.next_update:%Y-%m-%d %H:%M} UTC: an expired "
            "CRL is not used; get a current one",
        )
    if indexed.number is not None:
        # Complete and delta CRLs, and CRLs of different scopes, are numbered apart.
        issuer_key, scope = _issuer_key(indexed).hex(), scope_label(indexed)
        held = [
            r.number
            for r in HeldCrlRepository(session).all()
            if r.issuer_key == issuer_key and r.scope == scope and r.number is not None
        ]
        if held and indexed.number < max(held):
            kind = "delta CRL" if indexed.is_delta else "CRL"
            raise PolicyViolation(
                "crl-number",
                f"{indexed.label()} is older than {kind} #{max(held)} already held for "
                f"{indexed.issuer_name}: CRL numbers never go backwards",
            )
    return indexed


def _issuer_key(indexed: IndexedCrl) -> bytes:
    """The key of the trusted certificate that verified the CRL (``find_issuer``)."""
    if indexed.issuer_key is None:
        raise ValueError("the CRL was not verified against a trusted CA")
    return indexed.issuer_key


def store_crl(
    session: Session, indexed: IndexedCrl, *, kind: str, source: str, at: dt.datetime
) -> AcceptedCrl:
    """Store a vetted CRL, replacing the one of the same kind, source, issuer and scope."""
    HeldCrlRepository(session).put(
        HeldCrlRow(
            kind=kind,
            source=source,
            issuer_key=_issuer_key(indexed).hex(),
            issuer=indexed.issuer_name,
            scope=scope_label(indexed),
            number=indexed.number,
            this_update=indexed.this_update,
            next_update=indexed.next_update,
            entries=indexed.entries,
            crl_der=indexed.crl.public_bytes(serialization.Encoding.DER),
            added_at=at,
        )
    )
    return AcceptedCrl(
        indexed.issuer_name,
        indexed.number,
        indexed.next_update,
        indexed.entries,
        indexed.delta_base,
    )


def accept_crl(
    session: Session,
    crl: x509.CertificateRevocationList,
    *,
    kind: str,
    source: str,
    trusted: Sequence[x509.Certificate],
    at: dt.datetime,
) -> AcceptedCrl:
    """Check ``crl`` and store it (replacing the same kind/source/issuer). Raises when refused."""
    indexed = vet_crl(session, crl, source=source, trusted=trusted, at=at)
    return store_crl(session, indexed, kind=kind, source=source, at=at)
