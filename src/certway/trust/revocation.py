"""CRLs parsed and indexed for O(1) lookups.

A CRL is read once into an :class:`IndexedCrl`: its number, times, issuing distribution point
(scope) and delta indicator, and its entries. The entries of a direct CRL go into a
``frozenset`` of serial hashes, so a lookup costs the same for 10 or 1,000,000 entries; a hit
is confirmed against the CRL itself (exact serial), which also reads that entry's date and
reason, once. A CRL whose entries name other certificate issuers (``certificateIssuer``, in an
indirect CRL) is indexed by (issuer name, serial) instead, as RFC 5280 §5.3.3 attributes each
entry to the issuer named last.

Signatures are checked against a signer certificate and the outcome is remembered per signer
key, so a held CRL is verified once, not on every handshake. :func:`index_crl` verifies at
once with a given issuer (the services use it for held CRLs); :func:`parse_crl` leaves the
signer to be found when the CRL is used (``certway.trust.crl_check``).

The :class:`RevocationIndex` is immutable: a new CRL produces a new index that is swapped in
with one assignment, so loading never blocks validations in progress. It is keyed by the CRL
issuer's name (compared as RFC 5280 §7.1 compares names: case and inner spaces do not
matter), not by key, so CRLs signed by a separate CRL-signing key or for several CAs (indirect
CRLs) are found too.

About 730 lines: parsing a CRL once for O(1) lookups (direct and indirect entries, scope,
delta indicator, signature checked over the received bytes) is one job with many RFC 5280
details; what uses a parsed CRL lives in ``crl_check``.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from asn1crypto import parser as asn1_parser
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509.oid import CRLEntryExtensionOID

from certway.errors import PolicyViolation
from certway.pki.crl import REASON_NAMES
from certway.pki.load import error_reason
from certway.pki.text import format_name, serial_hex
from certway.trust.anchors import key_id

__all__ = [
    "ALL_REASONS",
    "CLOCK_SKEW",
    "IndexedCrl",
    "NameKey",
    "RevocationIndex",
    "RevokedEntry",
    "ScopeGroup",
    "SignerFacts",
    "general_name_key",
    "index_crl",
    "may_sign_crls",
    "name_key",
    "parse_crl",
    "per_certificate",
    "reason_names",
    "reason_set",
    "scope_label",
    "signer_facts",
    "subject_key",
]

CLOCK_SKEW = dt.timedelta(minutes=5)


ALL_REASONS = frozenset(
    {
        "keyCompromise",
        "cACompromise",
        "affiliationChanged",
        "superseded",
        "cessationOfOperation",
        "certificateHold",
        "privilegeWithdrawn",
        "aACompromise",
    }
)
"""The reasons a set of CRLs must cover between them (RFC 5280 §6.3.3 ``all-reasons``)."""

_REASON_ORDER = {name: n for n, name in enumerate(REASON_NAMES.values())}


def reason_names(reasons: Iterable[str]) -> str:
    """Reasons in the order RFC 5280 lists them: 'keyCompromise, cACompromise'."""
    return ", ".join(sorted(reasons, key=lambda r: _REASON_ORDER.get(r, 99)))


def reason_set(flags: Iterable[x509.ReasonFlags] | None) -> frozenset[str] | None:
    """A ReasonFlags set as reason names (the 'unused' bit and removeFromCRL dropped)."""
    if flags is None:
        return None
    return frozenset(REASON_NAMES[f] for f in flags) & ALL_REASONS


# -- names -----------------------------------------------------------------------------------
NameKey = str
"""A distinguished name folded for comparison (RFC 5280 §7.1: case-insensitive, inner
whitespace collapsed, attribute order inside an RDN irrelevant, string type irrelevant). A
``str`` so that its hash is computed once."""


def _fold(value: str | bytes) -> str:
    if isinstance(value, bytes):
        return "#" + value.hex()
    return " ".join(value.split()).casefold()


def name_key(name: x509.Name) -> NameKey:
    rdns = [
        sorted([attr.oid.dotted_string, _fold(attr.value)] for attr in rdn) for rdn in name.rdns
    ]
    return json.dumps(rdns, ensure_ascii=False, separators=(",", ":"))


def _relative_key(base: x509.Name, rdn: x509.RelativeDistinguishedName) -> NameKey:
    """nameRelativeToCRLIssuer resolved: ``rdn`` appended to ``base``."""
    return name_key(x509.Name([*base.rdns, rdn]))


GeneralNameKey = tuple[str, str]


def general_name_key(name: x509.GeneralName) -> GeneralNameKey:
    """A GeneralName for equality tests (directory names folded as in ``name_key``)."""
    if isinstance(name, x509.DirectoryName):
        return ("dirName", name_key(name.value))
    if isinstance(name, x509.DNSName):
        return ("DNS", name.value.casefold().rstrip("."))
    if isinstance(name, x509.OtherName):
        return ("otherName", f"{name.type_id.dotted_string}:{name.value.hex()}")
    if isinstance(name, x509.RegisteredID):
        return ("RID", name.value.dotted_string)
    return (type(name).__name__, str(name.value))


T = TypeVar("T")


def per_certificate(compute: Callable[[x509.Certificate], T]) -> Callable[[x509.Certificate], T]:
    """``compute`` remembered per certificate, found by identity first.

    Hashing a ``Certificate`` costs about a microsecond (its whole structure is hashed), and
    the chains validation hands over are mostly the same objects on every call (validated
    paths are cached), so an ``id`` lookup answers most calls; an equal certificate parsed
    anew is found through an ``lru_cache`` keyed by the certificate. The identity table keeps
    a reference to each certificate it holds, so an id cannot be reused while it is there."""
    by_value = functools.lru_cache(maxsize=4096)(compute)
    by_id: dict[int, tuple[x509.Certificate, T]] = {}

    def lookup(cert: x509.Certificate) -> T:
        hit = by_id.get(id(cert))
        if hit is not None and hit[0] is cert:
            return hit[1]
        value = by_value(cert)
        if len(by_id) >= 4096:
            by_id.clear()
        by_id[id(cert)] = (cert, value)
        return value

    return functools.update_wrapper(lookup, compute)


@dataclass(frozen=True, slots=True)
class SignerFacts:
    """What CRL processing needs of a (candidate) CRL signer certificate."""

    subject: NameKey
    key: bytes
    """``key_id``: SHA-256 of the SubjectPublicKeyInfo."""
    may_sign_crls: bool
    """RFC 5280 §6.3.3 (f): a keyUsage extension, when present, must assert cRLSign."""


def _crl_sign_allowed(cert: x509.Certificate) -> bool:
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return True
    except (ValueError, x509.DuplicateExtension):
        return False
    return usage.crl_sign


@per_certificate
def signer_facts(cert: x509.Certificate) -> SignerFacts:
    return SignerFacts(name_key(cert.subject), key_id(cert), _crl_sign_allowed(cert))


def subject_key(cert: x509.Certificate) -> NameKey:
    """``name_key`` of a certificate's subject, once per certificate."""
    return signer_facts(cert).subject


def may_sign_crls(cert: x509.Certificate) -> bool:
    """RFC 5280 §6.3.3 (f): a keyUsage extension, when present, must assert cRLSign."""
    return signer_facts(cert).may_sign_crls


# -- one CRL ---------------------------------------------------------------------------------
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


def _entry_details(revoked: x509.RevokedCertificate) -> RevokedEntry:
    reason = None
    invalidity = None
    for ext in revoked.extensions:
        if isinstance(ext.value, x509.CRLReason):
            reason = REASON_NAMES[ext.value.reason]
        elif isinstance(ext.value, x509.InvalidityDate):
            invalidity = ext.value.invalidity_date_utc
    return RevokedEntry(revoked.serial_number, revoked.revocation_date_utc, reason, invalidity)


@dataclass(eq=False)
class IndexedCrl:
    """One CRL with its entries indexed and its scope read."""

    crl: x509.CertificateRevocationList
    source: str
    issuer_name: str
    """The CRL issuer as shown in messages."""
    authority: NameKey
    """The CRL issuer's name, folded: the key the index files the CRL under."""
    number: int | None
    this_update: dt.datetime
    next_update: dt.datetime | None
    delta_base: int | None
    scope: bytes
    """The issuing distribution point extension as encoded (b"" without one): CRLs of one
    issuer with equal scope replace one another, and a delta only applies to a complete CRL
    of the same scope."""
    idp_names: frozenset[GeneralNameKey] | None
    """Names of the IDP's distribution point; None when the CRL names no distribution point."""
    only_user_certs: bool
    only_ca_certs: bool
    only_attribute_certs: bool
    reasons: frozenset[str] | None
    """onlySomeReasons of the IDP, None when the CRL covers every reason."""
    indirect: bool
    serial_hashes: frozenset[int]
    """``hash(serial)`` of every entry of a direct CRL: a 61-bit int, smaller than a 159-bit
    serial. Empty when the entries are indexed by issuer (``_by_issuer``)."""
    entries: int
    issuer_key: bytes | None = None
    """SHA-256 of the SubjectPublicKeyInfo that ``index_crl`` verified the CRL with."""
    _by_issuer: dict[tuple[NameKey, int], RevokedEntry] | None = field(default=None, repr=False)
    _details: dict[int, RevokedEntry] = field(default_factory=dict, repr=False)
    _signatures: dict[bytes, bool] = field(default_factory=dict, repr=False)

    @classmethod
    def expired_stand_in(
        cls,
        crl: x509.CertificateRevocationList,
        issuer: x509.Certificate,
        *,
        source: str,
        this_update: dt.datetime,
    ) -> IndexedCrl:
        """An entry without serials, of ``issuer`` for all its certificates, that expired
        when it was issued: it stands for a held CRL that can no longer be used, so that
        ``issuer``'s certificates count as revoked as with any expired CRL. It is taken as
        signed by ``issuer`` (its entries are never looked into)."""
        stand_in = cls(
            crl=crl,
            source=source,
            issuer_name=format_name(issuer.subject),
            authority=subject_key(issuer),
            number=None,
            this_update=this_update,
            next_update=this_update,
            delta_base=None,
            scope=b"",
            idp_names=None,
            only_user_certs=False,
            only_ca_certs=False,
            only_attribute_certs=False,
            reasons=None,
            indirect=False,
            serial_hashes=frozenset(),
            entries=0,
            issuer_key=key_id(issuer),
        )
        stand_in._signatures[key_id(issuer)] = True
        return stand_in

    @property
    def is_delta(self) -> bool:
        return self.delta_base is not None

    @property
    def partial_reasons(self) -> bool:
        return self.reasons is not None

    def label(self) -> str:
        number = f"#{self.number}" if self.number is not None else "without number"
        return f"{'delta CRL' if self.is_delta else 'CRL'} {number} from {self.source}"

    def delta_label(self, base: IndexedCrl) -> str:
        """'delta CRL #31 on base #30 from …'."""
        return f"delta CRL #{self.number} on base #{base.number} from {self.source}"

    @functools.cached_property
    def good_text(self) -> str:
        """'not revoked per CRL #n from …, next update …', formatted once per CRL."""
        until = f", next update {self.next_update:%Y-%m-%d}" if self.next_update else ""
        return f"not revoked per {self.label()}{until}"

    def is_current(self, at: dt.datetime) -> bool:
        if self.this_update > at + CLOCK_SKEW:
            return False
        return self.next_update is None or at < self.next_update

    def signed_by(self, signer: x509.Certificate, der: bytes | None = None) -> bool:
        """Whether ``signer``'s key verifies this CRL's signature; remembered per key."""
        key = signer_facts(signer).key
        known = self._signatures.get(key)
        if known is None:
            known = _signature_valid(self.crl, signer, der)
            self._signatures[key] = known
        return known

    def lookup(self, serial: int, issuer: NameKey | None = None) -> RevokedEntry | None:
        """The entry for the certificate ``serial`` of ``issuer`` (default: the CRL issuer).

        O(1); the entry's details are read once on the first hit."""
        if self._by_issuer is not None:
            return self._by_issuer.get((issuer or self.authority, serial))
        if issuer is not None and issuer != self.authority:
            return None
        if hash(serial) not in self.serial_hashes:
            return None
        found = self._details.get(serial)
        if found is None:
            revoked = _revoked(self.crl, serial)
            if revoked is None:  # another serial with the same hash
                return None
            found = _entry_details(revoked)
            self._details[serial] = found
        return found


def _revoked(crl: x509.CertificateRevocationList, serial: int) -> x509.RevokedCertificate | None:
    try:
        return crl.get_revoked_certificate_by_serial_number(serial)
    except ValueError:  # a negative serial (RFC 5280 forbids them, some CAs issued them)
        return next((r for r in crl if r.serial_number == serial), None)


_UNDERSTOOD_CRL_EXTENSIONS = {
    x509.AuthorityKeyIdentifier.oid,
    x509.CRLNumber.oid,
    x509.DeltaCRLIndicator.oid,
    x509.IssuingDistributionPoint.oid,
    x509.FreshestCRL.oid,
    x509.AuthorityInformationAccess.oid,
}

_UNDERSTOOD_ENTRY_EXTENSIONS = {
    CRLEntryExtensionOID.CRL_REASON,
    CRLEntryExtensionOID.INVALIDITY_DATE,
    CRLEntryExtensionOID.CERTIFICATE_ISSUER,
}


def _check_crl_extensions(crl: x509.CertificateRevocationList, source: str) -> None:
    """RFC 5280 §5.2: CRLNumber is mandatory and non-critical; an unknown critical
    extension makes the CRL unusable."""
    try:
        extensions = list(crl.extensions)
    except (ValueError, x509.DuplicateExtension) as exc:
        raise PolicyViolation(
            "crl-malformed", f"CRL from {source} is malformed: {error_reason(exc)}"
        ) from None
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


def _tbs(der: bytes) -> tuple[int, int, int]:
    """(start, start of contents, end) of the TBSCertList inside a CRL's DER."""
    body, _end = asn1_parser._parse(der, len(der), 0, lengths_only=True)
    contents, end = asn1_parser._parse(der, len(der), body, lengths_only=True)
    return body, contents, end


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
        start, _contents, end = _tbs(der)
        tbs = memoryview(der)[start:end]
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


_CRITICAL_EXTENSION = b"\x01\x01\xff\x04"
"""``critical TRUE`` followed by the extnValue OCTET STRING: how DER encodes every critical
extension. Where these bytes do not occur, no entry has a critical extension."""
_CERTIFICATE_ISSUER_OID = b"\x06\x03\x55\x1d\x1d"  # 2.5.29.29, in case one is not critical


def _entries_span(der: bytes) -> tuple[int, int] | None:
    """(start, end) of revokedCertificates in the DER; None when the CRL has no entries."""
    _start, pointer, end = _tbs(der)
    seen_time = False
    while pointer < end:
        tag = der[pointer]
        _contents, next_pointer = asn1_parser._parse(der, end, pointer, lengths_only=True)
        if tag in (0x17, 0x18):  # thisUpdate / nextUpdate
            seen_time = True
        elif tag == 0x30 and seen_time:
            return pointer, next_pointer
        elif tag == 0xA0:  # crlExtensions: no entries
            return None
        pointer = next_pointer
    return None


def _needs_entry_scan(der: bytes) -> bool:
    """Whether an entry may carry a critical or certificateIssuer extension (a byte search
    over the entries only: a few ms for 50 MB)."""
    span = _entries_span(der)
    if span is None:
        return False
    start, end = span
    return der.find(_CRITICAL_EXTENSION, start, end) != -1 or (
        der.find(_CERTIFICATE_ISSUER_OID, start, end) != -1
    )


def _scan_entries(
    crl: x509.CertificateRevocationList, authority: NameKey, source: str
) -> dict[tuple[NameKey, int], RevokedEntry] | None:
    """Every entry read: unknown critical entry extensions refuse the CRL (RFC 5280 §5.3);
    with certificateIssuer entries, the entries by (issuer, serial), else None."""
    by_issuer: dict[tuple[NameKey, int], RevokedEntry] = {}
    issuers: tuple[NameKey, ...] = (authority,)
    seen_issuer = False
    try:
        for revoked in crl:
            for ext in revoked.extensions:
                if isinstance(ext.value, x509.CertificateIssuer):
                    seen_issuer = True
                    names = ext.value.get_values_for_type(x509.DirectoryName)
                    # An issuer named otherwise than by a directory name issues no
                    # certificate we can match: its entries match nothing.
                    issuers = tuple(name_key(n) for n in names) or ("",)
                elif ext.critical and ext.oid not in _UNDERSTOOD_ENTRY_EXTENSIONS:
                    raise PolicyViolation(
                        "crl-critical-extension",
                        f"CRL from {source} has an entry (serial "
                        f"{serial_hex(revoked.serial_number)}) with an unknown critical extension "
                        f"{ext.oid.dotted_string}: the CRL is not used",
                    )
            entry = _entry_details(revoked)
            for issuer in issuers:
                by_issuer[(issuer, revoked.serial_number)] = entry
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        raise PolicyViolation(
            "crl-malformed", f"CRL from {source} is malformed: {error_reason(exc)}"
        ) from None
    return by_issuer if seen_issuer else None


def parse_crl(
    crl: x509.CertificateRevocationList, *, source: str, der: bytes | None = None
) -> IndexedCrl:
    """Read and index ``crl`` without checking its signature (see ``IndexedCrl.signed_by``).

    Raises PolicyViolation for a CRL that may not be used at all: malformed, without CRL
    number, or with an unknown critical extension (on the CRL or on an entry). Pass ``der``
    (the bytes ``crl`` was loaded from) to spare re-encoding a large CRL."""
    _check_crl_extensions(crl, source)
    if der is None:
        der = crl.public_bytes(serialization.Encoding.DER)
    authority = name_key(crl.issuer)
    try:
        by_issuer = _scan_entries(crl, authority, source) if _needs_entry_scan(der) else None
    except ValueError as exc:  # the DER walk: not a CRL after all
        raise PolicyViolation(
            "crl-malformed", f"CRL from {source} is malformed: {error_reason(exc)}"
        ) from None
    count = 0

    def serial_hashes() -> Iterator[int]:
        nonlocal count
        for entry in crl:
            count += 1
            yield hash(entry.serial_number)

    if by_issuer is None:
        hashes = frozenset(serial_hashes())
    else:
        hashes, count = frozenset(), len(crl)
    number_ext = _ext(crl, x509.CRLNumber)
    delta_ext = _ext(crl, x509.DeltaCRLIndicator)
    idp = _ext(crl, x509.IssuingDistributionPoint)
    scope = b""
    idp_names: frozenset[GeneralNameKey] | None = None
    only_user = only_ca = only_attr = indirect = False
    reasons = None
    if isinstance(idp, x509.IssuingDistributionPoint):
        scope = idp.public_bytes()
        if idp.full_name is not None:
            idp_names = frozenset(general_name_key(n) for n in idp.full_name)
        elif idp.relative_name is not None:
            idp_names = frozenset({("dirName", _relative_key(crl.issuer, idp.relative_name))})
        only_user = idp.only_contains_user_certs
        only_ca = idp.only_contains_ca_certs
        only_attr = idp.only_contains_attribute_certs
        indirect = idp.indirect_crl
        reasons = reason_set(idp.only_some_reasons)
    return IndexedCrl(
        crl=crl,
        source=source,
        issuer_name=format_name(crl.issuer),
        authority=authority,
        number=number_ext.crl_number if isinstance(number_ext, x509.CRLNumber) else None,
        this_update=crl.last_update_utc,
        next_update=crl.next_update_utc,
        delta_base=delta_ext.crl_number if isinstance(delta_ext, x509.DeltaCRLIndicator) else None,
        scope=scope,
        idp_names=idp_names,
        only_user_certs=only_user,
        only_ca_certs=only_ca,
        only_attribute_certs=only_attr,
        reasons=reasons,
        indirect=indirect,
        serial_hashes=hashes,
        entries=count,
        _by_issuer=by_issuer,
    )


def index_crl(
    crl: x509.CertificateRevocationList,
    issuer: x509.Certificate,
    *,
    source: str,
    der: bytes | None = None,
) -> IndexedCrl:
    """Verify ``crl`` against ``issuer`` and index it. Raises PolicyViolation when refused.

    ``issuer`` is the certificate that signed the CRL: the CA itself, or a separate
    CRL-signing certificate of the same name. Pass ``der`` (the bytes ``crl`` was loaded
    from) to check a large CRL's signature without re-encoding it."""
    issuer_label = format_name(issuer.subject)
    if name_key(crl.issuer) != subject_key(issuer):
        raise PolicyViolation(
            "crl-issuer",
            f"CRL from {source} is issued by {format_name(crl.issuer)}, not {issuer_label}",
        )
    if not may_sign_crls(issuer):
        raise PolicyViolation(
            "crl-issuer", f"{issuer_label} may not sign CRLs (KeyUsage has no cRLSign)"
        )
    if not _signature_valid(crl, issuer, der):
        raise PolicyViolation(
            "crl-signature",
            f"CRL from {source} has a bad signature: it was not signed by {issuer_label}",
        )
    indexed = parse_crl(crl, source=source, der=der)
    indexed.issuer_key = key_id(issuer)
    indexed._signatures[indexed.issuer_key] = True
    return indexed


# -- the index -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ScopeGroup:
    """The CRLs of one issuer and one scope: complete CRLs newest first, then deltas."""

    bases: tuple[IndexedCrl, ...]
    deltas: tuple[IndexedCrl, ...]

    @property
    def first(self) -> IndexedCrl:
        return (self.bases or self.deltas)[0]

    @classmethod
    def of(cls, crls: Iterable[IndexedCrl]) -> tuple[ScopeGroup, ...]:
        """``crls`` (of one issuer) grouped by scope."""
        by_scope: dict[bytes, list[IndexedCrl]] = {}
        for crl in crls:
            by_scope.setdefault(crl.scope, []).append(crl)

        def newest(c: IndexedCrl) -> tuple[int, dt.datetime]:
            return (c.number if c.number is not None else -1, c.this_update)

        return tuple(
            cls(
                bases=tuple(sorted((c for c in group if not c.is_delta), key=newest, reverse=True)),
                deltas=tuple(sorted((c for c in group if c.is_delta), key=newest, reverse=True)),
            )
            for group in by_scope.values()
        )


@dataclass(frozen=True)
class RevocationIndex:
    """All accepted CRLs, by CRL issuer name. Immutable: changes return a new index."""

    by_issuer: dict[NameKey, tuple[IndexedCrl, ...]] = field(default_factory=dict)
    _groups: dict[NameKey, tuple[ScopeGroup, ...]] = field(
        default_factory=dict, compare=False, repr=False
    )

    @classmethod
    def of(cls, crls: Iterable[IndexedCrl]) -> RevocationIndex:
        index = cls()
        for crl in crls:
            index = index.with_crl(crl, check_number=False)
        return index

    def for_issuer(self, issuer: x509.Certificate) -> tuple[IndexedCrl, ...]:
        """The CRLs issued under ``issuer``'s name."""
        return self.by_issuer.get(subject_key(issuer), ())

    def groups(self, authority: NameKey) -> tuple[ScopeGroup, ...]:
        """The CRLs issued under the name ``authority``, by scope (computed once)."""
        found = self._groups.get(authority)
        if found is None:
            found = ScopeGroup.of(self.by_issuer.get(authority, ()))
            self._groups[authority] = found
        return found

    def all(self) -> list[IndexedCrl]:
        return [crl for crls in self.by_issuer.values() for crl in crls]

    def newest_number(
        self, authority: NameKey, *, delta: bool = False, scope: bytes = b""
    ) -> int | None:
        numbers = [
            c.number
            for c in self.by_issuer.get(authority, ())
            if c.number is not None and c.is_delta == delta and c.scope == scope
        ]
        return max(numbers) if numbers else None

    def with_crl(self, crl: IndexedCrl, *, check_number: bool = True) -> RevocationIndex:
        """Add ``crl``, replacing the CRL of the same issuer, scope and kind (complete or
        delta) from the same source: a delta never replaces its base.

        A CRL whose number is lower than one already held for its issuer and scope is
        refused: CRL numbers never go backwards.
        """
        held = self.by_issuer.get(crl.authority, ())
        if check_number and crl.number is not None:
            newest = self.newest_number(crl.authority, delta=crl.is_delta, scope=crl.scope)
            if newest is not None and crl.number < newest:
                kind = "delta CRL" if crl.is_delta else "CRL"
                raise PolicyViolation(
                    "crl-number",
                    f"{crl.label()} is older than {kind} #{newest} already held for "
                    f"{crl.issuer_name}: CRL numbers never go backwards",
                )
        kept = tuple(
            c
            for c in held
            if not (c.source == crl.source and c.is_delta == crl.is_delta and c.scope == crl.scope)
        )
        by_issuer = dict(self.by_issuer)
        by_issuer[crl.authority] = (*kept, crl)
        return RevocationIndex(by_issuer)

    def without(self, predicate: Callable[[IndexedCrl], bool]) -> RevocationIndex:
        """A copy without the CRLs for which ``predicate(crl)`` is true."""
        by_issuer = {
            key: tuple(c for c in crls if not predicate(c)) for key, crls in self.by_issuer.items()
        }
        return RevocationIndex({k: v for k, v in by_issuer.items() if v})


def scope_label(crl: IndexedCrl) -> str:
    """A short digest of a CRL's scope, for storage keys: 'complete', 'delta/1a2b…'."""
    kind = "delta" if crl.is_delta else "complete"
    if not crl.scope:
        return kind
    return f"{kind}/{hashlib.sha256(crl.scope).hexdigest()[:16]}"
