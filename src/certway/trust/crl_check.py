"""RFC 5280 §6.3 CRL processing for one certificate of a validated chain.

:func:`check_crls` takes the certificate, its issuer in the chain and the CRLs at hand (the
held index, CRLs given for this call or downloaded) and follows §6.3.3 step by step:

* (b) scope: the CRL's issuing distribution point against the certificate's CRL distribution
  points (names, cRLIssuer, indirect CRLs) and onlyContainsUser/CA/AttributeCerts;
* (c, h, i, k) a delta CRL applies only on top of a complete CRL of the same issuer and scope
  with base number ≤ complete number < delta number, is signed with the same key, is read
  first, and its removeFromCRL releases a certificate on hold;
* (d, e, l) the reasons each CRL covers (onlySomeReasons ∩ the distribution point's reasons)
  add up over several CRLs; the status stays undetermined until every reason is covered;
* (f, g) the CRL signer: the certificate's issuer, or another certificate of the CRL issuer's
  name (a separate CRL-signing key, a rolled-over key, an indirect CRL issuer) that may sign
  CRLs, verifies the signature, and whose own certification path is accepted by the caller's
  ``signer_path_ok``.

Every CRL looked at leaves a report line naming the CRL and its source. Lookups stay O(1)
in the CRL size (``IndexedCrl.lookup``); signature checks are remembered per CRL and key.

About 700 lines because §6.3.3 is one algorithm: its steps (scope, reasons, signer, delta,
lookup) read and write the same per-certificate state, and keeping them in the RFC's order in
one module is what makes them checkable against the text.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from certway.errors import PolicyViolation
from certway.pki.text import format_name, serial_hex
from certway.trust.report import Check, Outcome, RevocationFacts
from certway.trust.revocation import (
    ALL_REASONS,
    CLOCK_SKEW,
    GeneralNameKey,
    IndexedCrl,
    NameKey,
    RevocationIndex,
    RevokedEntry,
    ScopeGroup,
    general_name_key,
    may_sign_crls,
    name_key,
    parse_crl,
    per_certificate,
    reason_names,
    reason_set,
    signer_facts,
    subject_key,
)

__all__ = [
    "CrlContext",
    "CrlStatus",
    "SignerPathOk",
    "SignerPaths",
    "chained_signer_path",
    "check_crls",
]

SignerPathOk = Callable[[x509.Certificate], bool]
"""Whether a CRL signer that is not in the validated chain has a certification path to the
same trust anchor as the certificate being checked."""

MAX_SIGNER_DEPTH = 8


# -- what a certificate says about its CRLs --------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Point:
    """One CRL distribution point of a certificate, names folded for comparison."""

    names: frozenset[GeneralNameKey] | None
    """The distribution point name (fullName, or nameRelativeToCRLIssuer resolved); None
    when the point has none."""
    crl_issuers: frozenset[NameKey]
    """Directory names of cRLIssuer: empty when the certificate issuer issues the CRL."""
    crl_issuer_names: frozenset[GeneralNameKey]
    reasons: frozenset[str] | None


@dataclass(frozen=True, slots=True)
class _Facts:
    issuer: NameKey
    issuer_text: str
    serial: int
    is_ca: bool
    points: tuple[_Point, ...]
    lookup: tuple[NameKey, ...]
    """Names under which CRLs for this certificate are filed: its issuer and any cRLIssuer."""


def _points(cert: x509.Certificate) -> tuple[_Point, ...]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return ()
    points = []
    for dp in ext:
        crl_issuer_dns = [n.value for n in dp.crl_issuer or () if isinstance(n, x509.DirectoryName)]
        names: frozenset[GeneralNameKey] | None = None
        if dp.full_name is not None:
            names = frozenset(general_name_key(n) for n in dp.full_name)
        elif dp.relative_name is not None:
            base = crl_issuer_dns[0] if crl_issuer_dns else cert.issuer
            relative = x509.Name([*base.rdns, dp.relative_name])
            names = frozenset({("dirName", name_key(relative))})
        points.append(
            _Point(
                names=names,
                crl_issuers=frozenset(name_key(n) for n in crl_issuer_dns),
                crl_issuer_names=frozenset(general_name_key(n) for n in dp.crl_issuer or ()),
                reasons=reason_set(dp.reasons),
            )
        )
    return tuple(points)


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


@per_certificate
def _facts(cert: x509.Certificate) -> _Facts:
    """What CRL processing needs of a certificate, read once per certificate."""
    issuer = name_key(cert.issuer)
    try:
        points = _points(cert)
        is_ca = _is_ca(cert)
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType):
        # Path validation refuses such a certificate first; here it simply matches no
        # distribution point.
        points, is_ca = (), False
    lookup = [issuer]
    for point in points:
        lookup.extend(k for k in point.crl_issuers if k not in lookup)
    return _Facts(
        issuer=issuer,
        issuer_text=format_name(cert.issuer),
        serial=cert.serial_number,
        is_ca=is_ca,
        points=points,
        lookup=tuple(lookup),
    )


def _scope(facts: _Facts, crl: IndexedCrl) -> tuple[frozenset[str] | None, str]:
    """§6.3.3 (b) and (d): the reasons ``crl`` covers for this certificate, or why none."""
    if crl.only_attribute_certs:
        return None, "onlyContainsAttributeCerts"
    if crl.only_user_certs and facts.is_ca:
        return None, "onlyContainsUserCerts: this is a CA certificate"
    if crl.only_ca_certs and not facts.is_ca:
        return None, "onlyContainsCACerts: this is not a CA certificate"
    why = ""
    for point in facts.points:
        if point.crl_issuers:
            if crl.authority not in point.crl_issuers:
                why = why or "the certificate's distribution points name another CRL issuer"
                continue
            if not crl.indirect:
                why = (
                    "the certificate's distribution point names this CRL issuer, but the "
                    "CRL is not an indirect CRL"
                )
                continue
        elif crl.authority != facts.issuer:
            why = why or "issued by another CA, and no distribution point names it"
            continue
        if crl.idp_names is not None:
            names = point.names if point.names is not None else point.crl_issuer_names
            if not names & crl.idp_names:
                why = "its distribution point matches none of the certificate's"
                continue
        covered = ALL_REASONS if point.reasons is None else point.reasons
        return (covered if crl.reasons is None else covered & crl.reasons), ""
    # No distribution point of the certificate leads to this CRL: only a CRL of the
    # certificate issuer for all its certificates may be used.
    if crl.authority != facts.issuer:
        return None, why or "issued by another CA, and no distribution point names it"
    if crl.idp_names is not None:
        return None, why or "its distribution point matches none of the certificate's"
    return (ALL_REASONS if crl.reasons is None else crl.reasons), ""


# -- finding the CRL signer ------------------------------------------------------------------
@functools.lru_cache(maxsize=4096)
def _may_sign_certificates(cert: x509.Certificate) -> bool:
    try:
        if not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return False
    except x509.ExtensionNotFound:
        return False
    except (ValueError, x509.DuplicateExtension):
        return False
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return True
    except (ValueError, x509.DuplicateExtension):
        return False
    return usage.key_cert_sign


def _issued_by(cert: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def chained_signer_path(
    anchors: Iterable[x509.Certificate],
    certificates: Iterable[x509.Certificate],
    at: dt.datetime,
) -> SignerPathOk:
    """The default ``signer_path_ok``: a signer is accepted when it is one of ``anchors``
    (the validated chain and the trusted CA list), or when it is within its validity period
    and signed (name + signature) by a CA certificate that is accepted in turn, found among
    ``anchors`` and ``certificates``.

    This does not check the revocation, policies or name constraints of the signer's path:
    ``validate`` supplies a full path validation instead."""
    accepted = set(anchors)
    pool = [*accepted, *certificates]

    def ok(cert: x509.Certificate, depth: int = 0) -> bool:
        if cert in accepted:
            return True
        if depth >= MAX_SIGNER_DEPTH:
            return False
        if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
            return False
        wanted = name_key(cert.issuer)
        for parent in pool:
            if parent is cert or subject_key(parent) != wanted:
                continue
            if parent not in accepted and not _may_sign_certificates(parent):
                continue
            if _issued_by(cert, parent) and ok(parent, depth + 1):
                return True
        return False

    return ok


@dataclass(frozen=True, slots=True)
class _Signers:
    """Where CRL signers are looked for, and how their paths are judged."""

    issuer: x509.Certificate
    chain: Sequence[x509.Certificate]
    trusted: Sequence[x509.Certificate]
    certificates: Sequence[x509.Certificate]
    path_ok: SignerPathOk | None
    at: dt.datetime

    def candidates(self, authority: NameKey) -> Iterable[x509.Certificate]:
        if subject_key(self.issuer) == authority:
            yield self.issuer
        seen = {self.issuer}
        for cert in (*self.chain, *self.certificates, *self.trusted):
            if cert not in seen and subject_key(cert) == authority:
                seen.add(cert)
                yield cert

    def refusal(self, signer: x509.Certificate) -> str | None:
        """Why the judge refused ``signer``, when it says (``SignerPaths`` does)."""
        refusals = getattr(self.path_ok, "refusals", None)
        return refusals.get(signer) if isinstance(refusals, dict) else None

    def path_accepted(self, signer: x509.Certificate) -> bool:
        if signer is self.issuer or signer in self.chain:
            return True
        judge = self.path_ok or chained_signer_path(
            (*self.chain, *self.trusted), self.certificates, self.at
        )
        return judge(signer)


def _signer(crl: IndexedCrl, signers: _Signers) -> tuple[x509.Certificate | None, str]:
    """§6.3.3 (f), (g): the certificate that signed ``crl``, or why none is acceptable."""
    issuer = signers.issuer
    usual = signer_facts(issuer)
    if usual.subject == crl.authority and usual.may_sign_crls and crl.signed_by(issuer):
        return issuer, ""  # the usual case: the certificate's issuer, in the chain
    no_crl_sign: list[str] = []
    bad_path: list[str] = []
    bad_signature = False
    for cand in signers.candidates(crl.authority):
        who = f"{format_name(cand.subject)} (serial {serial_hex(cand.serial_number)})"
        if not may_sign_crls(cand):
            no_crl_sign.append(who)
        elif not crl.signed_by(cand):
            bad_signature = True
        elif signers.path_accepted(cand):
            return cand, ""
        else:
            detail = signers.refusal(cand)
            bad_path.append(f"{who}: {detail}" if detail else who)
    if bad_path:
        return None, (
            f"its signer {'; '.join(bad_path)} has no acceptable certification path to the "
            "trust anchor of this chain"
        )
    reasons = []
    if bad_signature:
        reasons.append(
            f"it has a bad signature: no certificate of {crl.issuer_name} that may sign CRLs "
            "verifies it"
        )
    if no_crl_sign:
        reasons.append(f"{', '.join(no_crl_sign)} may not sign CRLs (its key usage lacks cRLSign)")
    return None, "; ".join(reasons) or (
        f"no certificate of its issuer {crl.issuer_name} is known to verify it"
    )


# -- the check -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CrlStatus:
    """The outcome of :func:`check_crls` for one certificate."""

    status: str
    """good | revoked | stale (only expired CRLs: counts as revoked) | unknown (CRLs exist
    but do not settle the status) | not-applicable (no CRL of this certificate's issuer)."""
    checks: tuple[Check, ...]
    entry: RevokedEntry | None = None


def _revoked_text(entry: RevokedEntry, label: str) -> str:
    when = entry.revoked_at
    return f"revoked on {when:%Y-%m-%d} ({entry.reason or 'no reason given'}) by {label}"


def _delta(
    group: ScopeGroup, base: IndexedCrl, signer: x509.Certificate, at: dt.datetime
) -> IndexedCrl | None:
    """§6.3.3 (c), (h): the newest current delta CRL that applies to ``base``."""
    if base.number is None:
        return None
    for delta in group.deltas:
        if delta.delta_base is None or delta.number is None:
            continue
        if not delta.delta_base <= base.number < delta.number:
            continue
        if delta.is_current(at) and delta.signed_by(signer):
            return delta
    return None


def _choose(
    group: ScopeGroup,
    signers: _Signers,
    at: dt.datetime,
    checks: list[Check],
    check_name: str,
) -> tuple[tuple[IndexedCrl, IndexedCrl | None] | None, IndexedCrl | None]:
    """§6.3.3 (a), (c), (f)-(h): the newest complete CRL of ``group`` that is current (or
    has a current delta on it) with its signer accepted, and that delta; else the newest
    acceptable CRL that has expired, if any."""
    expired: IndexedCrl | None = None
    for base in group.bases:
        if base.this_update > at + CLOCK_SKEW:
            checks.append(
                Check(
                    check_name,
                    Outcome.SKIPPED,
                    f"{base.label()} is not valid before {base.this_update:%Y-%m-%d %H:%M} UTC",
                )
            )
            continue
        signer, why = _signer(base, signers)
        if signer is None:
            checks.append(Check(check_name, Outcome.FAIL, f"{base.label()} is not used: {why}"))
            continue
        delta = _delta(group, base, signer, at)
        if base.is_current(at) or delta is not None:
            return (base, delta), expired
        expired = expired or base
    return None, expired


def _groups(
    facts: _Facts, held: RevocationIndex | None, given: Sequence[IndexedCrl]
) -> list[ScopeGroup]:
    if not given:
        if held is None:
            return []
        if len(facts.lookup) == 1:
            return list(held.groups(facts.lookup[0]))
        return [g for key in facts.lookup for g in held.groups(key)]
    groups: list[ScopeGroup] = []
    for key in facts.lookup:
        crls = [*(held.by_issuer.get(key, ()) if held is not None else ()), *given]
        groups.extend(ScopeGroup.of(c for c in crls if c.authority == key))
    return groups


def check_crls(
    cert: x509.Certificate,
    issuer: x509.Certificate,
    *,
    at: dt.datetime,
    held: RevocationIndex | None = None,
    given: Sequence[IndexedCrl] = (),
    chain: Sequence[x509.Certificate] = (),
    trusted: Sequence[x509.Certificate] = (),
    certificates: Sequence[x509.Certificate] = (),
    signer_path_ok: SignerPathOk | None = None,
    check_name: str = "crl",
) -> CrlStatus:
    """The revocation status of ``cert`` (issued by ``issuer``) from the CRLs in ``held``
    and ``given``, per RFC 5280 §6.3.3.

    CRL signers are looked for among ``issuer``, the validated ``chain``, ``certificates``
    (intermediates given with the call, other certificates) and the ``trusted`` CA list; a
    signer outside the chain must satisfy ``signer_path_ok`` (default:
    :func:`chained_signer_path`)."""
    facts = _facts(cert)
    groups = _groups(facts, held, given)
    if not groups:
        return CrlStatus("not-applicable", ())
    signers = _Signers(issuer, chain, trusted, certificates, signer_path_ok, at)
    checks: list[Check] = []
    covered: frozenset[str] = frozenset()
    used: list[tuple[IndexedCrl, IndexedCrl | None, frozenset[str]]] = []
    released: tuple[IndexedCrl, IndexedCrl] | None = None
    stale: IndexedCrl | None = None
    for group in groups:
        if covered >= ALL_REASONS:
            break
        first = group.first
        reasons, why = _scope(facts, first)
        if reasons is None:
            text = f"outside the scope of {first.label()} ({why})"
            checks.append(Check(check_name, Outcome.SKIPPED, text))
            continue
        if not group.bases:
            for orphan in group.deltas:
                checks.append(
                    Check(
                        check_name,
                        Outcome.SKIPPED,
                        f"{orphan.label()} is not used: no complete CRL it applies to is held",
                    )
                )
            continue
        if reasons <= covered:
            checks.append(
                Check(
                    check_name,
                    Outcome.SKIPPED,
                    f"{first.label()} covers no reason that other CRLs have not covered",
                )
            )
            continue
        chosen, expired = _choose(group, signers, at, checks, check_name)
        stale = stale or expired
        if chosen is None:
            continue
        base, delta = chosen
        # (i) the delta first, (j) then the complete CRL, (k) removeFromCRL releases.
        entry = delta.lookup(facts.serial, facts.issuer) if delta is not None else None
        if delta is not None and entry is not None:
            if entry.reason == "removeFromCRL":
                released = (base, delta)
            else:
                label = delta.delta_label(base)
                facts_of = RevocationFacts(entry.reason, entry.revoked_at, label)
                checks.append(
                    Check(check_name, Outcome.REVOKED, _revoked_text(entry, label), facts_of)
                )
                return CrlStatus("revoked", tuple(checks), entry)
        else:
            entry = base.lookup(facts.serial, facts.issuer)
            if entry is not None and entry.reason != "removeFromCRL":
                label = base.label()
                facts_of = RevocationFacts(entry.reason, entry.revoked_at, label)
                checks.append(
                    Check(check_name, Outcome.REVOKED, _revoked_text(entry, label), facts_of)
                )
                return CrlStatus("revoked", tuple(checks), entry)
        covered |= reasons
        used.append((base, delta, reasons))
    if covered >= ALL_REASONS:
        checks.append(Check(check_name, Outcome.GOOD, _good_text(used, released)))
        return CrlStatus("good", tuple(checks))
    if stale is not None:
        when = stale.next_update or stale.this_update
        checks.append(
            Check(
                check_name,
                Outcome.REVOKED,
                f"{stale.label()} expired on {when:%Y-%m-%d %H:%M} UTC: certificates "
                "of this CA count as revoked until a current CRL is loaded",
            )
        )
        return CrlStatus("stale", tuple(checks))
    if used:
        missing = reason_names(ALL_REASONS - covered)
        partial = "; ".join(
            f"{_used_label(base, delta)} covers only {reason_names(reasons)}"
            for base, delta, reasons in used
        )
        checks.append(
            Check(
                check_name, Outcome.UNKNOWN, f"{partial}: reasons {missing} not covered by any CRL"
            )
        )
    else:
        checks.append(
            Check(
                check_name,
                Outcome.UNKNOWN,
                f"no usable CRL covers this certificate of {facts.issuer_text}",
            )
        )
    return CrlStatus("unknown", tuple(checks))


def _used_label(base: IndexedCrl, delta: IndexedCrl | None) -> str:
    if delta is None:
        return base.label()
    return f"{base.label()} with {delta.delta_label(base)}"


def _good_text(
    used: list[tuple[IndexedCrl, IndexedCrl | None, frozenset[str]]],
    released: tuple[IndexedCrl, IndexedCrl] | None,
) -> str:
    if released is not None:
        held_base, releasing = released
        text = f"released from hold by {releasing.delta_label(held_base)}"
        others = [u for u in used if u[1] is not releasing]
        if others:
            text += " and not revoked per " + " and ".join(
                f"{_used_label(b, d)} ({reason_names(r)})" for b, d, r in others
            )
        return text
    if len(used) == 1:
        base, delta, _reasons = used[0]
        return base.good_text if delta is None else f"{base.good_text} and {delta.label()}"
    return "not revoked per " + " and ".join(
        f"{_used_label(base, delta)} ({reason_names(reasons)})" for base, delta, reasons in used
    )


# -- the CRL signer's own path, as validation judges it ------------------------------------
class SignerPaths:
    """A ``signer_path_ok`` for ``validate``: the signer's certification path is validated
    by ``path`` (RFC 5280 path validation; None when there is none), must end at the same
    trust anchor as the validated chain, and each of its certificates below the anchor is
    checked against the CRLs of ``context`` like a certificate of the chain: revoked or
    only expired CRLs refuse the signer, and so does an undetermined status when ``strict``.

    A signer whose own certificate is on a CRL it signs (PKITS 4.14.30) is accepted while
    its path is being checked, so the check ends."""

    def __init__(
        self,
        context: CrlContext,
        *,
        path: Callable[[x509.Certificate], Sequence[x509.Certificate] | None],
        held: RevocationIndex | None,
        at: dt.datetime,
        strict: bool,
    ) -> None:
        self._context = context
        self._path = path
        self._held = held
        self._at = at
        self._strict = strict
        self._checking: set[x509.Certificate] = set()
        self._judged: dict[x509.Certificate, bool] = {}
        self.refusals: dict[x509.Certificate, str] = {}

    def __call__(self, signer: x509.Certificate) -> bool:
        if signer in self._checking:
            return True
        known = self._judged.get(signer)
        if known is None:
            self._checking.add(signer)
            try:
                refusal = self._refusal(signer)
            finally:
                self._checking.discard(signer)
            if refusal is not None:
                self.refusals[signer] = refusal
            known = self._judged[signer] = refusal is None
        return known

    def _refusal(self, signer: x509.Certificate) -> str | None:
        chain = self._context.chain
        path = self._path(signer)
        if not path:
            return "no valid path to a trusted CA"
        if chain and path[-1] != chain[-1]:
            return f"its path ends at {format_name(path[-1].subject)}, another trust anchor"
        for cert, parent in itertools.pairwise(path):
            result = self._context.check(cert, parent, held=self._held, at=self._at)
            bad = result.status in {"revoked", "stale"} or (
                self._strict and result.status != "good"
            )
            if bad:
                last = result.checks[-1].text if result.checks else result.status
                who = "it" if cert is signer else f"{format_name(cert.subject)} on its path"
                return f"{who}: {last}" if result.checks else f"{who}: no CRL covers it"
        return None


# -- CRLs given with one validation ----------------------------------------------------------
@dataclass
class CrlContext:
    """The CRLs and certificates one validation brings along, and the CRL signer rule."""

    given: list[IndexedCrl] = field(default_factory=list)
    notes: list[Check] = field(default_factory=list)
    """Report lines about the given CRLs (refused, or for no certificate of the chain)."""
    chain: Sequence[x509.Certificate] = ()
    trusted: Sequence[x509.Certificate] = ()
    certificates: Sequence[x509.Certificate] = ()
    signer_path_ok: SignerPathOk | None = None

    @classmethod
    def of(
        cls,
        crls: Iterable[x509.CertificateRevocationList],
        *,
        chain: Sequence[x509.Certificate],
        trusted: Sequence[x509.Certificate] = (),
        certificates: Sequence[x509.Certificate] = (),
        signer_path_ok: SignerPathOk | None = None,
    ) -> CrlContext:
        """Index the CRLs given for one validation ('CRL n given'); refused ones become
        report lines."""
        given: list[IndexedCrl] = []
        notes: list[Check] = []
        crls = list(crls)
        wanted = {key for cert in chain[:-1] for key in _facts(cert).lookup} if crls else set()
        for number, crl in enumerate(crls, start=1):
            source = f"CRL {number} given"
            try:
                indexed = parse_crl(crl, source=source)
            except PolicyViolation as exc:
                notes.append(Check("crl", Outcome.FAIL, str(exc)))
                continue
            if chain and indexed.authority not in wanted:
                # Kept: it may still cover a certificate on a CRL signer's path.
                notes.append(
                    Check(
                        "crl",
                        Outcome.SKIPPED,
                        f"CRL {number} is for {indexed.issuer_name}, which issued no "
                        "certificate of the chain",
                    )
                )
            given.append(indexed)
        return cls(given, notes, tuple(chain), tuple(trusted), tuple(certificates), signer_path_ok)

    def check(
        self,
        cert: x509.Certificate,
        issuer: x509.Certificate,
        *,
        held: RevocationIndex | None,
        at: dt.datetime,
        more: Sequence[IndexedCrl] = (),
        check_name: str = "crl",
    ) -> CrlStatus:
        """:func:`check_crls` with this validation's CRLs, certificates and signer rule."""
        return check_crls(
            cert,
            issuer,
            at=at,
            held=held,
            given=[*self.given, *more] if more else self.given,
            chain=self.chain,
            trusted=self.trusted,
            certificates=self.certificates,
            signer_path_ok=self.signer_path_ok,
            check_name=check_name,
        )
