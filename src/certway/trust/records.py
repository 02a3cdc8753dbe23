"""The local CAs' own revocation records as a revocation source.

A certificate issued by one of the node's own CAs is judged from that CA's records: a
revocation counts the moment it is recorded, with no CRL to download or publish first.
The records are a snapshot (issuer → revoked serials) that the services layer refreshes
when a revocation is recorded, so a lookup is one dict access and never touches the
database. Revocations are append-only: a snapshot's serial maps only ever grow.

For a CA created here the records are complete: a serial not revoked in them is good. For an
imported CA they are not (the CA may have issued and revoked elsewhere before it was
imported): a revocation recorded here counts at once, otherwise the CA's CRLs and OCSP decide
as for any other CA.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography import x509

from certway.trust.anchors import key_id

__all__ = ["CaRecords", "IssuerRecords", "RecordedRevocation", "RecordsAnswer"]


@dataclass(frozen=True, slots=True)
class RecordedRevocation:
    revoked_at: dt.datetime
    reason: str | None


@dataclass(frozen=True, slots=True)
class IssuerRecords:
    """One local CA: its name and its revoked serials."""

    ca_name: str
    subject: bytes
    """DER of the CA certificate's subject."""
    revoked: Mapping[int, RecordedRevocation]
    complete: bool = True
    """Whether every revocation of this CA is recorded here (not so for an imported CA)."""


@dataclass(frozen=True, slots=True)
class RecordsAnswer:
    ca_name: str
    revocation: RecordedRevocation | None
    """None: not revoked."""


@dataclass(frozen=True)
class CaRecords:
    """Revocation records of the local CAs, by the CA's key."""

    by_key: Mapping[bytes, IssuerRecords] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.by_key)

    def lookup(self, cert: x509.Certificate, issuer: x509.Certificate) -> RecordsAnswer | None:
        """The records' answer for ``cert`` issued by ``issuer``, or None when ``issuer`` is
        not one of the local CAs."""
        if not self.by_key:
            return None
        records = self.by_key.get(key_id(issuer))
        if records is None or records.subject != issuer.subject.public_bytes():
            return None
        revocation = records.revoked.get(cert.serial_number)
        if revocation is None and not records.complete:
            return None
        return RecordsAnswer(records.ca_name, revocation)
