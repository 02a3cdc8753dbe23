"""The path half of validation: what a peer's certificate chain must be, per profile.

``build_path`` returns the validated chain ``[leaf, …, anchor]`` or raises a
``ValidationFailed`` that says why: the ``rfc5280`` profile through ``trust.pkix``
(pyhanko-certvalidator), cached per trusted-CA snapshot for as long as every certificate of
the path is valid; the ``webpki`` profile through ``cryptography``'s verifier. A certificate
that is itself on the trusted list is accepted as itself. Then the peer's own checks: unknown
critical extensions, the purpose's EKU and the expected name. ``trust.validate`` adds
revocation and the report.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from cryptography import x509
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from certway.errors import (
    Expired,
    NameMismatch,
    Untrusted,
    ValidationFailed,
    WrongPurpose,
)
from certway.pki.names import common_name, san_text
from certway.pki.text import format_name
from certway.trust.anchors import TrustSnapshot
from certway.trust.pkix import PathProblem, PkixInputs, validate_pkix_path
from certway.trust.policy import Profile

__all__ = ["Purpose", "ValidationOptions", "build_path", "rfc5280_path"]


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


def build_path(
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
    chain = rfc5280_path(leaf, intermediates, trust, options, at)
    if options.max_chain_depth is not None and len(chain) - 2 > options.max_chain_depth:
        raise Untrusted(
            f"the chain has {len(chain) - 2} intermediate CAs, more than the "
            f"{options.max_chain_depth} allowed"
        )
    _check_peer(leaf, options)
    return chain


_PATH_CACHE_SIZE = 4096


def rfc5280_path(
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
