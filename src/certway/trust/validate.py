"""``validate``: the path (RFC 5280 or web-PKI profile), then our revocation engine.

Paths are judged by one of two profiles: ``rfc5280`` (RFC 5280 §6.1 path validation by
pyhanko-certvalidator, see ``trust.pkix``: enterprise and UC PKIs) or ``webpki``
(``cryptography``'s strict web-PKI verifier). In both, a certificate that is itself on the
trusted CA list is a trust anchor: a peer presenting exactly that certificate is accepted
(self-signed or not, CA or not), as Expressway does. Validated paths are cached per trusted
CA list (``TrustSnapshot``), keyed by the certificates and options, for the time every
certificate of the path is valid; revocation is checked on every call.

Revocation sources per certificate of the chain, in order: the local CAs' own records
(``trust.records``: authoritative and instant for the certificates they issued), OCSP, the
held CRLs, CRLs downloaded from the certificate's distribution points.

The result explains itself: valid or not, a stable code, one human sentence, the chain, and
for each certificate every check that ran with its outcome.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from cryptography import x509
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from certway.errors import (
    CertwayError,
    Expired,
    Malformed,
    NameMismatch,
    RevocationUnknown,
    Revoked,
    Untrusted,
    ValidationCode,
    ValidationFailed,
    WrongPurpose,
)
from certway.pki.names import common_name, san_text
from certway.pki.ocsp import OcspAnswer, ocsp_urls
from certway.pki.text import format_name, serial_hex
from certway.trust.anchors import TrustSnapshot
from certway.trust.crl_check import CrlContext, SignerPaths
from certway.trust.pkix import PathProblem, PkixInputs, validate_pkix_path
from certway.trust.policy import Profile, RevocationPolicy, Scope
from certway.trust.records import CaRecords
from certway.trust.report import Check, Outcome, RevocationFacts
from certway.trust.revocation import IndexedCrl, RevocationIndex

__all__ = [
    "CertificateReport",
    "Check",
    "OnlineChecks",
    "PkixInputs",
    "Profile",
    "Purpose",
    "ValidationOptions",
    "ValidationResult",
    "validate",
]

NO_REVOCATION = RevocationPolicy(enabled=False)


class Purpose(StrEnum):
    SERVER = "server"
    CLIENT = "client"


@dataclass(frozen=True, slots=True)
class ValidationOptions:
    """What the caller expects of the peer certificate."""

    purpose: Purpose = Purpose.SERVER
    name: str | None = None
    """DNS name or IP address the certificate must carry (SAN, or CN when it has no SAN)."""
    check_eku: bool = True
    """Require the purpose's EKU (serverAuth / clientAuth) when the certificate has an EKU."""
    allow_cn_only: bool = True
    """Accept certificates without SAN (enterprise CN-only server and client certificates)."""
    max_chain_depth: int | None = None
    profile: Profile = Profile.RFC5280
    pkix: PkixInputs = field(default_factory=PkixInputs)
    """RFC 5280 §6.1.1 inputs (certificate policies) for the ``rfc5280`` profile."""

    @classmethod
    def for_peer(
        cls, purpose: Purpose, *, name: str | None = None, check_eku: bool = True
    ) -> ValidationOptions:
        """How the product judges a certificate a peer presents for ``purpose``: client
        certificates at the SIP and admin listeners and in ``certway check``, server
        certificates in zones and ``certway check``. The conformance harness uses it too, so
        that it measures what the product does."""
        return cls(purpose=purpose, name=name, check_eku=check_eku)


class OnlineChecks(Protocol):
    """Network revocation sources, provided by the services layer (fetching + caching)."""

    def ocsp(self, cert: x509.Certificate, issuer: x509.Certificate, at: dt.datetime) -> OcspAnswer:
        """An OCSP answer for ``cert``; raises CertwayError when none can be had."""
        ...

    def cdp(
        self, cert: x509.Certificate, issuer: x509.Certificate, at: dt.datetime
    ) -> list[IndexedCrl]:
        """CRLs downloaded from ``cert``'s distribution points (and delta CRLs from its
        freshest-CRL pointers); their signers are checked when they are used."""
        ...


@dataclass(frozen=True, slots=True)
class CertificateReport:
    role: str  # peer | intermediate | anchor
    subject: str
    issuer: str
    serial: str
    not_after: dt.datetime
    status: str  # good | revoked | unknown | not-checked | trust-anchor | rejected
    checks: tuple[Check, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "subject": self.subject,
            "issuer": self.issuer,
            "serial": self.serial,
            "not_after": self.not_after.isoformat(),
            "status": self.status,
            "checks": [c.as_dict() for c in self.checks],
        }


@dataclass(frozen=True)
class ValidationResult:
    valid: bool
    code: ValidationCode | None
    reason: str
    chain: tuple[x509.Certificate, ...]
    certificates: tuple[CertificateReport, ...]
    failed_index: int | None = None
    at: dt.datetime | None = None
    error: ValidationFailed | None = field(default=None, compare=False, repr=False)

    def raise_for_status(self) -> None:
        if self.error is not None:
            raise self.error

    def as_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "code": self.code,
            "reason": self.reason,
            "validated_at": self.at.isoformat() if self.at else None,
            "failed_index": self.failed_index,
            "certificates": [r.as_dict() for r in self.certificates],
        }


# -- path building ---------------------------------------------------------------------------
def _has_ext(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> bool:
    try:
        cert.extensions.get_extension_for_class(kind)
    except x509.ExtensionNotFound:
        return False
    return True


def _eku_validator(
    wanted: x509.ObjectIdentifier,
) -> Callable[[verification.Policy, x509.Certificate, x509.ExtendedKeyUsage | None], None]:
    def check(
        _policy: verification.Policy, _cert: x509.Certificate, eku: x509.ExtendedKeyUsage | None
    ) -> None:
        if eku is None:
            return
        if wanted not in eku and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in eku:
            raise ValueError("required EKU not found")

    return check


def _ca_key_usage(
    _policy: verification.Policy, _cert: x509.Certificate, usage: x509.KeyUsage | None
) -> None:
    if usage is not None and not usage.key_cert_sign:
        raise ValueError("KeyUsage.keyCertSign must be asserted in a CA certificate")


# RFC 5280 lets a CA certificate omit KeyUsage (many enterprise CAs do); when present it must
# allow certificate signing. Everything else is the web PKI profile.
_CA_POLICY = verification.ExtensionPolicy.webpki_defaults_ca().may_be_present(
    x509.KeyUsage, verification.Criticality.AGNOSTIC, _ca_key_usage
)


def _subject(name: str) -> x509.DNSName | x509.IPAddress:
    if ":" in name or name.replace(".", "").isdigit():
        try:
            return x509.IPAddress(ipaddress.ip_address(name))
        except ValueError:
            pass
    return x509.DNSName(name)


def _names_of(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return [san_text(n) for n in san]
    except x509.ExtensionNotFound:
        cn = common_name(cert.subject)
        return [f"CN={cn}"] if cn else []


def _cn_matches(cert: x509.Certificate, name: str) -> bool:
    cn = common_name(cert.subject)
    return cn is not None and cn.lower().rstrip(".") == name.lower().rstrip(".")


def _client_name_matches(cert: x509.Certificate, name: str) -> bool:
    """Exact match of ``name`` against the SAN (DNS or IP), else the CN."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return _cn_matches(cert, name)
    wanted = _subject(name)
    if isinstance(wanted, x509.IPAddress):
        return wanted.value in san.get_values_for_type(x509.IPAddress)
    return wanted.value.lower().rstrip(".") in {
        v.lower().rstrip(".") for v in san.get_values_for_type(x509.DNSName)
    }


def _check_validity(cert: x509.Certificate, at: dt.datetime) -> None:
    if cert.not_valid_after_utc < at:
        raise Expired(
            f"the certificate expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC"
        )
    if cert.not_valid_before_utc > at:
        raise Expired(
            "the certificate is not valid yet: valid from "
            f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC"
        )


def _build_path(
    leaf: x509.Certificate,
    intermediates: list[x509.Certificate],
    trust: TrustSnapshot,
    options: ValidationOptions,
    at: dt.datetime,
) -> list[x509.Certificate]:
    """The verified chain ``[leaf, …, anchor]``; raises ValidationFailed with a clear reason."""
    if trust.store is None:
        raise Untrusted("the trusted CA list is empty: no certificate can be trusted")
    at = at.replace(microsecond=0)  # X.509 times have whole seconds
    _check_validity(leaf, at)
    if trust.is_anchor(leaf):
        # Exactly this certificate is trusted (a CUCM-style self-signed peer certificate):
        # no path to build; what the peer must be (name, purpose) is still checked.
        _check_peer(leaf, options)
        return [leaf]
    if options.profile is Profile.WEBPKI:
        return _build_webpki_path(leaf, intermediates, trust, options, at)
    chain = _cached_rfc5280_path(leaf, intermediates, trust, options, at)
    if options.max_chain_depth is not None and len(chain) - 2 > options.max_chain_depth:
        raise Untrusted(
            f"the chain has {len(chain) - 2} intermediate CAs, more than the "
            f"{options.max_chain_depth} allowed"
        )
    _check_peer(leaf, options)
    return chain


_PATH_CACHE_SIZE = 4096


def _cached_rfc5280_path(
    leaf: x509.Certificate,
    intermediates: list[x509.Certificate],
    trust: TrustSnapshot,
    options: ValidationOptions,
    at: dt.datetime,
) -> list[x509.Certificate]:
    """RFC 5280 path validation, remembered per trusted list for the time every certificate
    of the path is valid (the list's snapshot is replaced when the list changes)."""
    key = (options.pkix, leaf, *intermediates)
    cached = trust.paths.get(key)
    if isinstance(cached, _CachedPath) and cached.valid_from <= at <= cached.valid_until:
        return list(cached.chain)
    try:
        chain = validate_pkix_path(leaf, intermediates, trust.pkix, at, options.pkix)
    except PathProblem as problem:
        raise _explain_pkix(problem, leaf, intermediates, trust) from None
    anchor = chain[-1]
    if not anchor.not_valid_before_utc <= at <= anchor.not_valid_after_utc:
        raise Expired(
            f"trusted CA {format_name(anchor.subject)} is outside its validity period "
            f"(until {anchor.not_valid_after_utc:%Y-%m-%d})",
            cert_index=len(chain) - 1,
        )
    if len(trust.paths) >= _PATH_CACHE_SIZE:
        trust.paths.clear()
    trust.paths[key] = _CachedPath(
        tuple(chain),
        max(c.not_valid_before_utc for c in chain),
        min(c.not_valid_after_utc for c in chain),
    )
    return chain


@dataclass(frozen=True, slots=True)
class _CachedPath:
    chain: tuple[x509.Certificate, ...]
    valid_from: dt.datetime
    valid_until: dt.datetime


def _explain_pkix(
    problem: PathProblem,
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    trust: TrustSnapshot,
) -> ValidationFailed:
    if problem.kind == "untrusted":
        return _untrusted(leaf, intermediates, trust)
    text = str(problem)
    if problem.kind == "expired":
        return Expired(text[:1].upper() + text[1:], cert_index=0)
    return Untrusted(f"the certificate chain does not validate: {text}", cert_index=0)


# Extensions RFC 5280 path validation processes, plus those the peer checks here read. A
# critical extension outside this set makes the end-entity certificate unusable (§6.1.5).
_UNDERSTOOD_EE_EXTENSIONS = frozenset(
    {
        x509.BasicConstraints.oid,
        x509.KeyUsage.oid,
        x509.ExtendedKeyUsage.oid,
        x509.SubjectAlternativeName.oid,
        x509.IssuerAlternativeName.oid,
        x509.NameConstraints.oid,
        x509.CertificatePolicies.oid,
        x509.PolicyConstraints.oid,
        ExtensionOID.POLICY_MAPPINGS,
        x509.InhibitAnyPolicy.oid,
        x509.SubjectKeyIdentifier.oid,
        x509.AuthorityKeyIdentifier.oid,
        x509.CRLDistributionPoints.oid,
        x509.FreshestCRL.oid,
        x509.AuthorityInformationAccess.oid,
    }
)


def _check_peer(leaf: x509.Certificate, options: ValidationOptions) -> None:
    """What the peer certificate itself must be: no unknown critical extension, the
    purpose's EKU (when it has an EKU), the expected name."""
    for ext in leaf.extensions:
        if ext.critical and ext.oid not in _UNDERSTOOD_EE_EXTENSIONS:
            raise Untrusted(
                f"the certificate has an unknown critical extension {ext.oid.dotted_string}",
                cert_index=0,
            )
    if options.check_eku:
        try:
            eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            eku = None
        wanted = (
            ExtendedKeyUsageOID.SERVER_AUTH
            if options.purpose is Purpose.SERVER
            else ExtendedKeyUsageOID.CLIENT_AUTH
        )
        anything = ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE
        if eku is not None and wanted not in eku and anything not in eku:
            raise WrongPurpose(
                "the certificate may not be used for this purpose: its extended key usage "
                f"lacks {'clientAuth' if options.purpose is Purpose.CLIENT else 'serverAuth'}",
                cert_index=0,
            )
    if not options.allow_cn_only and not _has_ext(leaf, x509.SubjectAlternativeName):
        raise NameMismatch("the certificate has no subject alternative name")
    if options.name is None:
        return
    matches = (
        _server_name_matches(leaf, options.name)
        if options.purpose is Purpose.SERVER
        else _client_name_matches(leaf, options.name)
    )
    if not matches:
        raise NameMismatch(
            f"the certificate does not name '{options.name}' "
            f"(it names {', '.join(_names_of(leaf)) or 'nothing'})"
        )


def _dns_matches(pattern: str, name: str) -> bool:
    """RFC 6125 §6.4: exact (case-insensitive), or a wildcard as the whole leftmost label
    matching exactly one label."""
    pattern = pattern.lower().rstrip(".")
    name = name.lower().rstrip(".")
    if pattern == name:
        return True
    if not pattern.startswith("*.") or "*" in pattern[2:]:
        return False
    head, _, rest = name.partition(".")
    return bool(head) and rest == pattern[2:] and "." in rest


def _server_name_matches(cert: x509.Certificate, name: str) -> bool:
    """``name`` against the SAN (DNS with wildcards, IP); the CN when there is no SAN."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        cn = common_name(cert.subject)
        return cn is not None and _dns_matches(cn, name)
    wanted = _subject(name)
    if isinstance(wanted, x509.IPAddress):
        return wanted.value in san.get_values_for_type(x509.IPAddress)
    return any(_dns_matches(p, wanted.value) for p in san.get_values_for_type(x509.DNSName))


def _build_webpki_path(
    leaf: x509.Certificate,
    intermediates: list[x509.Certificate],
    trust: TrustSnapshot,
    options: ValidationOptions,
    at: dt.datetime,
) -> list[x509.Certificate]:
    """The web-PKI profile: ``cryptography``'s verifier."""
    assert trust.store is not None
    has_san = _has_ext(leaf, x509.SubjectAlternativeName)
    wanted_eku = (
        ExtendedKeyUsageOID.SERVER_AUTH
        if options.purpose is Purpose.SERVER
        else ExtendedKeyUsageOID.CLIENT_AUTH
    )
    ee = verification.ExtensionPolicy.webpki_defaults_ee()
    any_criticality = verification.Criticality.AGNOSTIC
    if options.allow_cn_only and not has_san:
        ee = ee.may_be_present(x509.SubjectAlternativeName, any_criticality, None)
    use_server_verifier = options.purpose is Purpose.SERVER and options.name is not None and has_san
    if not options.check_eku:
        ee = ee.may_be_present(x509.ExtendedKeyUsage, any_criticality, None)
    elif not use_server_verifier and options.purpose is Purpose.SERVER:
        ee = ee.may_be_present(x509.ExtendedKeyUsage, any_criticality, _eku_validator(wanted_eku))
    builder = (
        verification.PolicyBuilder()
        .store(trust.store)
        .time(at)
        .extension_policies(ca_policy=_CA_POLICY, ee_policy=ee)
    )
    if options.max_chain_depth is not None:
        builder = builder.max_chain_depth(options.max_chain_depth)
    try:
        if use_server_verifier:
            assert options.name is not None
            chain = builder.build_server_verifier(_subject(options.name)).verify(
                leaf, intermediates
            )
        else:
            chain = builder.build_client_verifier().verify(leaf, intermediates).chain
    except verification.VerificationError as exc:
        raise _explain(exc, leaf, intermediates, trust, options) from None
    except ValueError as exc:  # a name the verifier cannot take (e.g. malformed DNS name)
        raise NameMismatch(f"'{options.name}' cannot be matched: {exc}") from None
    if (
        options.name is not None
        and not use_server_verifier
        and not _client_name_matches(leaf, options.name)
    ):
        raise NameMismatch(
            f"the certificate does not name '{options.name}' "
            f"(it names {', '.join(_names_of(leaf)) or 'nothing'})"
        )
    return list(chain)


_ENCOUNTERED = re.compile(r"\s*\(encountered processing .*\)$", re.DOTALL)


def _explain(
    exc: verification.VerificationError,
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    trust: TrustSnapshot,
    options: ValidationOptions,
) -> ValidationFailed:
    raw = str(exc).removeprefix("validation failed: ")
    text = _ENCOUNTERED.sub("", raw)
    if "no matching subjectAltName" in text:
        return NameMismatch(
            f"the certificate does not name '{options.name}' "
            f"(it names {', '.join(_names_of(leaf)) or 'nothing'})"
        )
    if "required EKU not found" in text:
        usage = "clientAuth" if options.purpose is Purpose.CLIENT else "serverAuth"
        return WrongPurpose(
            f"the certificate may not be used for this purpose: its extended key usage "
            f"lacks {usage}"
        )
    if "not valid at validation time" in text:
        for index, cert in enumerate(intermediates, start=1):
            if f"subject={cert.subject!r}" in raw or format_name(cert.subject) in raw:
                return Expired(
                    f"CA certificate {format_name(cert.subject)} is outside its validity "
                    f"period (until {cert.not_valid_after_utc:%Y-%m-%d})",
                    cert_index=index,
                )
        return Expired("a certificate of the chain is outside its validity period")
    if "candidates exhausted" in text or "no valid issuer" in text.lower():
        return _untrusted(leaf, intermediates, trust)
    return Untrusted(f"the certificate chain is not acceptable: {text}")


def _untrusted(
    leaf: x509.Certificate, intermediates: Sequence[x509.Certificate], trust: TrustSnapshot
) -> Untrusted:
    """No path to a trusted CA: say where the given chain ends and why."""
    top = _top_of_chain(leaf, intermediates)
    if not trust.issuers_of(top):
        if top is leaf:
            return Untrusted(f"issuer {format_name(leaf.issuer)} is not in the trusted CA list")
        return Untrusted(
            f"the chain ends at {format_name(top.subject)}, whose issuer "
            f"{format_name(top.issuer)} is not in the trusted CA list"
        )
    return Untrusted(
        f"no valid chain to a trusted CA: issuer {format_name(top.issuer)} is trusted but "
        "the chain does not verify (bad signature, expired or unusable CA certificate)"
    )


def _top_of_chain(
    leaf: x509.Certificate, intermediates: Sequence[x509.Certificate]
) -> x509.Certificate:
    """Follow issuer names through the given intermediates as far as they go."""
    current = leaf
    seen = {id(leaf)}
    while current.issuer != current.subject:
        parent = next(
            (c for c in intermediates if c.subject == current.issuer and id(c) not in seen), None
        )
        if parent is None:
            break
        seen.add(id(parent))
        current = parent
    return current


# -- revocation ------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4096)
def _describe(cert: x509.Certificate) -> tuple[str, str, str, dt.datetime]:
    """Subject, issuer, serial and expiry as shown in reports: once per certificate."""
    return (
        format_name(cert.subject),
        format_name(cert.issuer),
        serial_hex(cert.serial_number),
        cert.not_valid_after_utc,
    )


def _revoked_text(entry_reason: str | None, when: dt.datetime, label: str) -> str:
    return f"revoked on {when:%Y-%m-%d} ({entry_reason or 'no reason given'}) by {label}"


def _revocation_status(
    cert: x509.Certificate,
    issuer: x509.Certificate,
    *,
    is_ca: bool,
    policy: RevocationPolicy,
    revocation: RevocationIndex,
    extra: CrlContext,
    online: OnlineChecks | None,
    at: dt.datetime,
    records: CaRecords | None = None,
) -> tuple[str, list[Check]]:
    checks: list[Check] = []
    own = records.lookup(cert, issuer) if records else None
    if own is not None:  # one of our own CAs: its records decide, at once
        source = f"local CA '{own.ca_name}'"
        if own.revocation is None:
            checks.append(Check("records", Outcome.GOOD, f"not revoked per {source}"))
            return "good", checks
        revoked = own.revocation
        text = _revoked_text(revoked.reason, revoked.revoked_at, source)
        facts = RevocationFacts(revoked.reason, revoked.revoked_at, source)
        checks.append(Check("records", Outcome.REVOKED, text, facts))
        return "revoked", checks
    if policy.ocsp and not policy.require_crl:
        urls = ocsp_urls(cert)
        if not urls:
            checks.append(Check("ocsp", Outcome.SKIPPED, "the certificate names no OCSP responder"))
        elif online is None:
            checks.append(Check("ocsp", Outcome.SKIPPED, "OCSP is not available here"))
        else:
            try:
                answer = online.ocsp(cert, issuer, at)
            except CertwayError as exc:
                checks.append(Check("ocsp", Outcome.UNKNOWN, f"OCSP failed: {exc}"))
            else:
                if answer.status == "good":
                    checks.append(Check("ocsp", Outcome.GOOD, f"OCSP: good ({answer.responder})"))
                    return "good", checks
                if answer.status == "revoked":
                    when = answer.revoked_at or answer.this_update
                    responder = f"OCSP responder {urls[0]}"
                    checks.append(
                        Check(
                            "ocsp",
                            Outcome.REVOKED,
                            _revoked_text(answer.reason, when, responder),
                            RevocationFacts(answer.reason, when, responder),
                        )
                    )
                    return "revoked", checks
                checks.append(
                    Check("ocsp", Outcome.UNKNOWN, f"OCSP responder {urls[0]} answered unknown")
                )
    stale = False
    if policy.crl or policy.require_crl:
        held = extra.check(cert, issuer, held=revocation, at=at)
        checks.extend(held.checks)
        if held.status in {"good", "revoked"}:
            return held.status, checks
        stale = held.status == "stale"
        if held.status == "not-applicable":
            checks.append(
                Check("crl", Outcome.UNKNOWN, f"no CRL is held for {format_name(issuer.subject)}")
            )
    if policy.cdp and not policy.require_crl:
        try:
            points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        except x509.ExtensionNotFound:
            points = None
        if points is None:
            checks.append(
                Check("cdp", Outcome.SKIPPED, "the certificate has no CRL distribution point")
            )
        elif online is None:
            checks.append(Check("cdp", Outcome.SKIPPED, "CRL download is not available here"))
        else:
            try:
                downloaded = online.cdp(cert, issuer, at)
            except CertwayError as exc:
                checks.append(Check("cdp", Outcome.UNKNOWN, f"CRL download failed: {exc}"))
            else:
                # Downloaded CRLs join the held ones: a downloaded delta applies to a held
                # complete CRL, reasons add up over both.
                fetched = extra.check(
                    cert, issuer, held=revocation, at=at, more=downloaded, check_name="cdp"
                )
                seen = {c.text for c in checks}
                checks.extend(c for c in fetched.checks if c.text not in seen)
                if fetched.status in {"good", "revoked"}:
                    return fetched.status, checks
                stale = stale or fetched.status == "stale"
                if fetched.status == "not-applicable":
                    text = "the distribution points serve no CRL of its issuer"
                    checks.append(Check("cdp", Outcome.UNKNOWN, text))
    if stale:
        return "revoked", checks
    return "unknown", checks


def _crl_signer_path(
    signer: x509.Certificate,
    *,
    intermediates: list[x509.Certificate],
    trust: TrustSnapshot,
    options: ValidationOptions,
    at: dt.datetime,
) -> list[x509.Certificate] | None:
    """The validated RFC 5280 path of a CRL signer that is not in the chain (a separate
    CRL-signing certificate, an indirect CRL issuer), cached like a peer's path; None when
    it has none."""
    if trust.is_anchor(signer):
        return [signer]
    try:
        return _cached_rfc5280_path(signer, intermediates, trust, options, at)
    except ValidationFailed:
        return None


# -- the entry point -------------------------------------------------------------------------
def _report(
    chain: Sequence[x509.Certificate],
    statuses: dict[int, tuple[str, list[Check]]],
    rejected: int | None = None,
    rejected_check: Check | None = None,
) -> tuple[CertificateReport, ...]:
    reports = []
    last = len(chain) - 1
    for index, cert in enumerate(chain):
        role = (
            "peer" if index == 0 else ("anchor" if index == last and index > 0 else "intermediate")
        )
        status, checks = statuses.get(index, ("not-checked", []))
        if role == "anchor":
            status = "trust-anchor"
        if rejected == index and rejected_check is not None:
            status, checks = "rejected", [*checks, rejected_check]
        subject, issuer, serial, not_after = _describe(cert)
        reports.append(
            CertificateReport(
                role=role,
                subject=subject,
                issuer=issuer,
                serial=serial,
                not_after=not_after,
                status=status,
                checks=tuple(checks),
            )
        )
    return tuple(reports)


def validate(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate] = (),
    *,
    trust: TrustSnapshot,
    at: dt.datetime,
    options: ValidationOptions | None = None,
    policy: RevocationPolicy = NO_REVOCATION,
    revocation: RevocationIndex | None = None,
    online: OnlineChecks | None = None,
    crls: Iterable[x509.CertificateRevocationList] = (),
    records: CaRecords | None = None,
) -> ValidationResult:
    """Validate ``leaf`` (with untrusted ``intermediates``) at ``at``.

    The path, validity, names and EKU are checked per ``options.profile``; revocation by
    our engine over the validated chain per ``policy``: the local CAs' ``records``, then
    ``online`` OCSP, the CRLs in ``revocation`` plus any ``crls`` given for this call, and
    ``online`` CDP downloads.
    """
    options = options or ValidationOptions()
    revocation = revocation or RevocationIndex()
    try:
        chain = _build_path(leaf, list(intermediates), trust, options, at)
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        # cryptography parses extensions lazily: a malformed one surfaces here.
        malformed = Malformed(f"the certificate is malformed: {exc}")
        reports = _report([leaf], {}, 0, Check("path", Outcome.FAIL, str(malformed)))
        return ValidationResult(
            False, malformed.code, str(malformed), (leaf,), reports, 0, at, malformed
        )
    except ValidationFailed as exc:
        reports = _report([leaf], {}, 0, Check("path", Outcome.FAIL, str(exc)))
        return ValidationResult(
            False, exc.code, str(exc), (leaf,), reports, exc.cert_index, at, exc
        )

    statuses: dict[int, tuple[str, list[Check]]] = {
        0: ("not-checked", [Check("path", Outcome.PASS, "chains to a trusted CA")])
    }
    if not policy.enabled or not (policy.checks_anything or policy.require_crl or records):
        reports = _report(chain, statuses)
        return ValidationResult(
            True, None, "the certificate is valid", tuple(chain), reports, None, at
        )

    extra = CrlContext.of(
        crls, chain=chain, trusted=trust.certificates, certificates=tuple(intermediates)
    )
    extra.signer_path_ok = SignerPaths(
        extra,
        path=functools.partial(
            _crl_signer_path, intermediates=list(intermediates), trust=trust, options=options, at=at
        ),
        held=revocation,
        at=at,
        strict=policy.strict,
    )
    notes = extra.notes
    last = len(chain) - 1  # the trust anchor is not checked
    checked = [0] if policy.scope is Scope.PEER else list(range(last))
    failure: ValidationFailed | None = None
    for index in checked:
        cert, issuer = chain[index], chain[index + 1]
        status, checks = _revocation_status(
            cert,
            issuer,
            is_ca=index > 0,
            policy=policy,
            revocation=revocation,
            extra=extra,
            online=online,
            at=at,
            records=records,
        )
        if index == 0:
            checks = [*statuses[0][1], *notes, *checks]
        if status == "revoked" and failure is None:
            hit = next(c for c in reversed(checks) if c.outcome is Outcome.REVOKED)
            who = "the certificate" if index == 0 else f"CA certificate {format_name(cert.subject)}"
            facts = hit.revocation
            failure = Revoked(
                f"{who} is {hit.text}",
                cert_index=index,
                reason=facts.reason if facts else None,
                revoked_at=facts.revoked_at if facts else None,
                source=facts.source if facts else None,
            )
        elif status == "unknown":
            if policy.strict:
                who = (
                    "the certificate"
                    if index == 0
                    else f"CA certificate {format_name(cert.subject)}"
                )
                if failure is None:
                    failure = RevocationUnknown(
                        f"revocation status of {who} cannot be determined and the policy "
                        "treats that as revoked",
                        cert_index=index,
                    )
            else:
                checks.append(
                    Check("revocation", Outcome.UNKNOWN, "status unknown: treated as not revoked")
                )
        statuses[index] = (status, checks)
    reports = _report(chain, statuses)
    if failure is not None:
        return ValidationResult(
            False,
            failure.code,
            str(failure),
            tuple(chain),
            reports,
            failure.cert_index,
            at,
            failure,
        )
    return ValidationResult(True, None, "the certificate is valid", tuple(chain), reports, None, at)
