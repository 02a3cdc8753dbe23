"""CRLs accepted and indexed for O(1) lookups (RV6, RV7).

A CRL enters the index only after its issuer is matched by name and its signature verified
with that issuer's key. The hashes of its serials go into a ``frozenset`` once, so a lookup
costs the same for 10 or 1,000,000 entries; a hit is confirmed against the CRL itself (exact
serial), which also reads that entry's date and reason, once. The index is immutable: a new
CRL produces a new index that is swapped in with one assignment, so loading never blocks
validations in progress.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from asn1crypto import parser as asn1_parser
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa

from certway.errors import PolicyViolation
from certway.pki.text import format_name
from certway.trust.anchors import key_id

__all__ = ["CLOCK_SKEW", "IndexedCrl", "RevocationIndex", "RevokedEntry", "index_crl"]

CLOCK_SKEW = dt.timedelta(minutes=5)

_REASON_NAMES = {
    x509.ReasonFlags.unspecified: "unspecified",
    x509.ReasonFlags.key_compromise: "keyCompromise",
    x509.ReasonFlags.ca_compromise: "cACompromise",
    x509.ReasonFlags.affiliation_changed: "affiliationChanged",
    x509.ReasonFlags.superseded: "superseded",
    x509.ReasonFlags.cessation_of_operation: "cessationOfOperation",
    x509.ReasonFlags.certificate_hold: "certificateHold",
    x509.ReasonFlags.privilege_withdrawn: "privilegeWithdrawn",
    x509.ReasonFlags.aa_compromise: "aACompromise",
    x509.ReasonFlags.remove_from_crl: "removeFromCRL",
}


@dataclass(frozen=True, slots=True)
class RevokedEntry:
    serial: int
    revoked_at: dt.datetime
    reason: str | None
    invalidity_date: dt.datetime | None


def _ext(crl: x509.CertificateRevocationList, kind: type[x509.ExtensionType]) -> object | None:
    try:
        return crl.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


@dataclass(eq=False)
class IndexedCrl:
    """One verified CRL with its serials indexed."""

    crl: x509.CertificateRevocationList
    issuer_key: bytes
    issuer_name: str
    source: str
    number: int | None
    this_update: dt.datetime
    next_update: dt.datetime | None
    delta_base: int | None
    only_user_certs: bool
    only_ca_certs: bool
    partial_reasons: bool
    serial_hashes: frozenset[int]
    """``hash(serial)`` of every entry: a 61-bit int, smaller than a 159-bit serial."""
    entries: int
    _details: dict[int, RevokedEntry] = field(default_factory=dict, repr=False)

    @property
    def is_delta(self) -> bool:
        return self.delta_base is not None

    def label(self) -> str:
        number = f"#{self.number}" if self.number is not None else "without number"
        return f"{'delta CRL' if self.is_delta else 'CRL'} {number} from {self.source}"

    @functools.cached_property
    def good_text(self) -> str:
        """'not revoked per CRL #n from …, next update …', formatted once per CRL."""
        until = f", next update {self.next_update:%Y-%m-%d}" if self.next_update else ""
        return f"not revoked per {self.label()}{until}"

    def is_current(self, at: dt.datetime) -> bool:
        if self.this_update > at + CLOCK_SKEW:
            return False
        return self.next_update is None or at < self.next_update

    def covers(self, *, is_ca: bool) -> bool:
        """Whether this CRL's scope includes such a certificate (issuing distribution point)."""
        if self.partial_reasons:
            return False
        if is_ca and self.only_user_certs:
            return False
        return not (not is_ca and self.only_ca_certs)

    def lookup(self, serial: int) -> RevokedEntry | None:
        """O(1) membership; the entry's details are read once on the first hit."""
        if hash(serial) not in self.serial_hashes:
            return None
        found = self._details.get(serial)
        if found is None:
            revoked = self.crl.get_revoked_certificate_by_serial_number(serial)
            if revoked is None:  # another serial with the same hash
                return None
            reason = None
            invalidity = None
            for ext in revoked.extensions:
                if isinstance(ext.value, x509.CRLReason):
                    reason = _REASON_NAMES.get(ext.value.reason, ext.value.reason.value)
                elif isinstance(ext.value, x509.InvalidityDate):
                    invalidity = ext.value.invalidity_date_utc
            found = RevokedEntry(serial, revoked.revocation_date_utc, reason, invalidity)
            self._details[serial] = found
        return found


_UNDERSTOOD_CRL_EXTENSIONS = {
    x509.AuthorityKeyIdentifier.oid,
    x509.CRLNumber.oid,
    x509.DeltaCRLIndicator.oid,
    x509.IssuingDistributionPoint.oid,
    x509.FreshestCRL.oid,
    x509.AuthorityInformationAccess.oid,
}


def _check_crl_extensions(crl: x509.CertificateRevocationList, source: str) -> None:
    """RFC 5280 §5.2: CRLNumber is mandatory and non-critical; an unknown critical
    extension makes the CRL unusable."""
    try:
        extensions = list(crl.extensions)
    except (ValueError, x509.DuplicateExtension) as exc:
        raise PolicyViolation("crl-malformed", f"CRL from {source} is malformed: {exc}") from None
    by_oid = {ext.oid: ext for ext in extensions}
    number = by_oid.get(x509.CRLNumber.oid)
    if number is None:
        raise PolicyViolation(
            "crl-number",
            f"CRL from {source} has no CRL number, which RFC 5280 requires: it is not used",
        )
    if number.critical:
        raise PolicyViolation(
            "crl-number", f"CRL from {source} marks its CRL number critical, which RFC 5280 forbids"
        )
    for ext in extensions:
        if ext.critical and ext.oid not in _UNDERSTOOD_CRL_EXTENSIONS:
            raise PolicyViolation(
                "crl-critical-extension",
                f"CRL from {source} has an unknown critical extension {ext.oid.dotted_string}",
            )


def _signature_valid(
    crl: x509.CertificateRevocationList, issuer: x509.Certificate, der: bytes | None
) -> bool:
    """The CRL's signature checked with the issuer's key.

    With the DER the CRL was loaded from, the signature is checked over the TBSCertList
    exactly as received, located by ``asn1crypto``'s parser without copying it:
    ``is_signature_valid`` re-encodes the whole list first (about a second and 50 MB for a
    million entries).
    """
    public_key = issuer.public_key()
    if der is None:
        try:
            return crl.is_signature_valid(public_key)  # type: ignore[arg-type]
        except (ValueError, TypeError):
            return False
    try:
        body, _end = asn1_parser._parse(der, len(der), 0, lengths_only=True)
        _header, tbs_end = asn1_parser._parse(der, len(der), body, lengths_only=True)
        tbs = memoryview(der)[body:tbs_end]
        params = crl.signature_algorithm_parameters
        digest = crl.signature_hash_algorithm
        if (
            isinstance(public_key, rsa.RSAPublicKey)
            and digest is not None
            and isinstance(params, padding.PKCS1v15 | padding.PSS)
        ):
            # cryptography takes any buffer here; its stub says bytes.
            public_key.verify(crl.signature, tbs, params, digest)  # type: ignore[arg-type]
        elif isinstance(public_key, ec.EllipticCurvePublicKey) and isinstance(params, ec.ECDSA):
            public_key.verify(crl.signature, tbs, params)
        elif isinstance(public_key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            public_key.verify(crl.signature, tbs)
        else:
            return False
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def index_crl(
    crl: x509.CertificateRevocationList,
    issuer: x509.Certificate,
    *,
    source: str,
    der: bytes | None = None,
) -> IndexedCrl:
    """Verify ``crl`` against ``issuer`` and index it. Raises PolicyViolation when refused.

    Pass ``der`` (the bytes ``crl`` was loaded from) to check a large CRL's signature
    without re-encoding it."""
    issuer_label = format_name(issuer.subject)
    if crl.issuer != issuer.subject:
        raise PolicyViolation(
            "crl-issuer",
            f"CRL from {source} is issued by {format_name(crl.issuer)}, not {issuer_label}",
        )
    try:
        usage = issuer.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.crl_sign:
            raise PolicyViolation(
                "crl-issuer", f"{issuer_label} may not sign CRLs (KeyUsage has no cRLSign)"
            )
    except x509.ExtensionNotFound:
        pass
    if not _signature_valid(crl, issuer, der):
        raise PolicyViolation(
            "crl-signature",
            f"CRL from {source} has a bad signature: it was not signed by {issuer_label}",
        )
    _check_crl_extensions(crl, source)
    count = 0

    def serial_hashes() -> Iterator[int]:
        nonlocal count
        for entry in crl:
            count += 1
            yield hash(entry.serial_number)

    hashes = frozenset(serial_hashes())
    number_ext = _ext(crl, x509.CRLNumber)
    delta_ext = _ext(crl, x509.DeltaCRLIndicator)
    idp = _ext(crl, x509.IssuingDistributionPoint)
    only_user = only_ca = partial = False
    if isinstance(idp, x509.IssuingDistributionPoint):
        if idp.indirect_crl:
            raise PolicyViolation(
                "crl-scope", f"CRL from {source} is an indirect CRL, which is not supported"
            )
        if idp.only_contains_attribute_certs:
            raise PolicyViolation(
                "crl-scope", f"CRL from {source} only covers attribute certificates"
            )
        only_user = idp.only_contains_user_certs
        only_ca = idp.only_contains_ca_certs
        partial = idp.only_some_reasons is not None
    return IndexedCrl(
        crl=crl,
        issuer_key=key_id(issuer),
        issuer_name=issuer_label,
        source=source,
        number=number_ext.crl_number if isinstance(number_ext, x509.CRLNumber) else None,
        this_update=crl.last_update_utc,
        next_update=crl.next_update_utc,
        delta_base=delta_ext.crl_number if isinstance(delta_ext, x509.DeltaCRLIndicator) else None,
        only_user_certs=only_user,
        only_ca_certs=only_ca,
        partial_reasons=partial,
        serial_hashes=hashes,
        entries=count,
    )


@dataclass(frozen=True)
class RevocationIndex:
    """All accepted CRLs, by issuer key. Immutable: changes return a new index."""

    by_issuer: dict[bytes, tuple[IndexedCrl, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, crls: Iterable[IndexedCrl]) -> RevocationIndex:
        index = cls()
        for crl in crls:
            index = index.with_crl(crl, check_number=False)
        return index

    def for_issuer(self, issuer: x509.Certificate) -> tuple[IndexedCrl, ...]:
        return self.by_issuer.get(key_id(issuer), ())

    def all(self) -> list[IndexedCrl]:
        return [crl for crls in self.by_issuer.values() for crl in crls]

    def newest_number(self, issuer_key: bytes, *, delta: bool = False) -> int | None:
        numbers = [
            c.number
            for c in self.by_issuer.get(issuer_key, ())
            if c.number is not None and c.is_delta == delta
        ]
        return max(numbers) if numbers else None

    def with_crl(self, crl: IndexedCrl, *, check_number: bool = True) -> RevocationIndex:
        """Add ``crl``, replacing older CRLs of the same issuer from the same source.

        A CRL whose number is lower than one already held for its issuer is refused: CRL
        numbers never go backwards (RV6).
        """
        held = self.by_issuer.get(crl.issuer_key, ())
        if check_number and crl.number is not None:
            newest = self.newest_number(crl.issuer_key, delta=crl.is_delta)
            if newest is not None and crl.number < newest:
                raise PolicyViolation(
                    "crl-number",
                    f"{crl.label()} is older than CRL #{newest} already held for "
                    f"{crl.issuer_name}: CRL numbers never go backwards",
                )
        kept = tuple(c for c in held if not (c.source == crl.source and c.is_delta == crl.is_delta))
        by_issuer = dict(self.by_issuer)
        by_issuer[crl.issuer_key] = (*kept, crl)
        return RevocationIndex(by_issuer)

    def without(self, predicate: object) -> RevocationIndex:
        """A copy without the CRLs for which ``predicate(crl)`` is true."""
        assert callable(predicate)
        by_issuer = {
            key: tuple(c for c in crls if not predicate(c)) for key, crls in self.by_issuer.items()
        }
        return RevocationIndex({k: v for k, v in by_issuer.items() if v})


def best_crls(
    crls: Sequence[IndexedCrl], at: dt.datetime, *, is_ca: bool
) -> tuple[IndexedCrl | None, IndexedCrl | None, list[IndexedCrl]]:
    """(newest current base CRL, a current delta on top of it, stale CRLs in scope)."""
    in_scope = [c for c in crls if c.covers(is_ca=is_ca)]
    bases = [c for c in in_scope if not c.is_delta]
    current = [c for c in bases if c.is_current(at)]
    stale = [c for c in bases if not c.is_current(at) and c.this_update <= at + CLOCK_SKEW]
    base = max(current, key=lambda c: (c.number or 0, c.this_update), default=None)
    delta = None
    if base is not None and base.number is not None:
        deltas = [
            c
            for c in in_scope
            if c.is_delta and c.is_current(at) and c.delta_base is not None
            and c.delta_base <= base.number and (c.number or 0) > base.number
        ]  # fmt: skip
        delta = max(deltas, key=lambda c: c.number or 0, default=None)
    return base, delta, stale
