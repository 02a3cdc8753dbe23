"""An immutable snapshot of the trusted CA list, ready for path building.

Snapshots are rebuilt when the list changes and swapped in one assignment, so validations
in progress keep the snapshot they started with.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import Store

from certway.trust.pkix import PkixAnchors

__all__ = ["TrustSnapshot", "key_id"]


@functools.lru_cache(maxsize=4096)
def key_id(cert: x509.Certificate) -> bytes:
    """SHA-256 of the certificate's SubjectPublicKeyInfo: identifies an issuer's key.

    Cached: the same CA certificates come back on every validation."""
    return hashlib.sha256(
        cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).digest()


@dataclass(frozen=True)
class TrustSnapshot:
    """Trusted CA certificates plus the indexes validation needs."""

    certificates: tuple[x509.Certificate, ...]
    store: Store | None = field(default=None, compare=False)
    by_subject: dict[bytes, tuple[x509.Certificate, ...]] = field(
        default_factory=dict, compare=False
    )
    paths: dict[object, object] = field(default_factory=dict, compare=False, repr=False)
    """Validated paths, kept by ``trust.validate`` for as long as this list is current."""

    @classmethod
    def of(cls, certificates: Iterable[x509.Certificate]) -> TrustSnapshot:
        certs = tuple(certificates)
        by_subject: dict[bytes, list[x509.Certificate]] = {}
        for cert in certs:
            by_subject.setdefault(cert.subject.public_bytes(), []).append(cert)
        return cls(
            certificates=certs,
            store=Store(list(certs)) if certs else None,
            by_subject={k: tuple(v) for k, v in by_subject.items()},
        )

    @functools.cached_property
    def pkix(self) -> PkixAnchors:
        """The list as RFC 5280 trust anchors (built on first use)."""
        return PkixAnchors(self.certificates)

    @functools.cached_property
    def _ders(self) -> frozenset[bytes]:
        return frozenset(c.public_bytes(serialization.Encoding.DER) for c in self.certificates)

    def is_anchor(self, cert: x509.Certificate) -> bool:
        """Whether exactly this certificate is on the trusted list."""
        return cert.public_bytes(serialization.Encoding.DER) in self._ders

    def issuers_of(self, cert: x509.Certificate) -> tuple[x509.Certificate, ...]:
        """Trusted certificates whose subject is ``cert``'s issuer."""
        return self.by_subject.get(cert.issuer.public_bytes(), ())

    def __len__(self) -> int:
        return len(self.certificates)
