"""``validate``: path building by ``cryptography``'s verifier, then our revocation engine.

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
from cryptography.x509.oid import ExtendedKeyUsageOID

from certway.errors import (
    CertwayError,
    Expired,
    NameMismatch,
    PolicyViolation,
    RevocationUnknown,
    Revoked,
    Untrusted,
    ValidationFailed,
)
from certway.pki.decode import format_name
from certway.pki.names import common_name, san_text
from certway.pki.ocsp import OcspAnswer, ocsp_urls
from certway.trust.anchors import TrustSnapshot
from certway.trust.policy import RevocationPolicy, Scope
from certway.trust.revocation import IndexedCrl, RevocationIndex, best_crls, index_crl

__all__ = [
    "CertificateReport",
    "Check",
    "OnlineChecks",
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
        """CRLs downloaded from ``cert``'s distribution points, verified against ``issuer``."""
        ...


@dataclass(frozen=True, slots=True)
class Check:
    name: str  # path | validity | name | ocsp | crl | cdp | revocation
    outcome: str  # pass | fail | good | revoked | unknown | skipped
    text: str

    def as_dict(self) -> dict[str, str]:
        return {"check": self.name, "outcome": self.outcome, "text": self.text}


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
    code: str | None
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
    if leaf.not_valid_after_utc < at:
        raise Expired(
            f"the certificate expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC"
        )
    if leaf.not_valid_before_utc > at:
        raise Expired(
            "the certificate is not valid yet: valid from "
            f"{leaf.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC"
        )
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
        error = ValidationFailed(
            f"the certificate may not be used for this purpose: its extended key usage "
            f"lacks {usage}"
        )
        error.code = "wrong-eku"
        return error
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
    return Untrusted(f"the certificate chain is not acceptable: {text}")


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
        format(cert.serial_number, "X"),
        cert.not_valid_after_utc,
    )


def _revoked_text(entry_reason: str | None, when: dt.datetime, label: str) -> str:
    return f"revoked on {when:%Y-%m-%d} ({entry_reason or 'no reason given'}) by {label}"


def _check_with_crls(
    cert: x509.Certificate,
    crls: Sequence[IndexedCrl],
    at: dt.datetime,
    *,
    is_ca: bool,
    checks: list[Check],
    check_name: str,
) -> str | None:
    """'good' / 'revoked' / 'stale' from the CRLs given, or None when none applies."""
    base, delta, stale = best_crls(crls, at, is_ca=is_ca)
    if base is None:
        if stale:
            newest = max(stale, key=lambda c: c.next_update or c.this_update)
            when = newest.next_update or newest.this_update
            checks.append(
                Check(
                    check_name,
                    "revoked",
                    f"{newest.label()} expired on {when:%Y-%m-%d %H:%M} UTC: certificates "
                    "of this CA count as revoked until a current CRL is loaded",
                )
            )
            return "stale"
        return None
    serial = cert.serial_number
    if delta is not None:
        entry = delta.lookup(serial)
        if entry is not None and entry.reason == "removeFromCRL":
            checks.append(Check(check_name, "good", f"released from hold by {delta.label()}"))
            return "good"
        if entry is not None:
            checks.append(
                Check(
                    check_name,
                    "revoked",
                    _revoked_text(entry.reason, entry.revoked_at, delta.label()),
                )
            )
            return "revoked"
    entry = base.lookup(serial)
    if entry is not None and entry.reason != "removeFromCRL":
        checks.append(
            Check(
                check_name, "revoked", _revoked_text(entry.reason, entry.revoked_at, base.label())
            )
        )
        return "revoked"
    text = base.good_text if delta is None else f"{base.good_text} and {delta.label()}"
    checks.append(Check(check_name, "good", text))
    return "good"


def _revocation_status(
    cert: x509.Certificate,
    issuer: x509.Certificate,
    *,
    is_ca: bool,
    policy: RevocationPolicy,
    revocation: RevocationIndex,
    extra: Sequence[IndexedCrl],
    online: OnlineChecks | None,
    at: dt.datetime,
) -> tuple[str, list[Check]]:
    checks: list[Check] = []
    if policy.ocsp and not policy.require_crl:
        urls = ocsp_urls(cert)
        if not urls:
            checks.append(Check("ocsp", "skipped", "the certificate names no OCSP responder"))
        elif online is None:
            checks.append(Check("ocsp", "skipped", "OCSP is not available here"))
        else:
            try:
                answer = online.ocsp(cert, issuer, at)
            except CertwayError as exc:
                checks.append(Check("ocsp", "unknown", f"OCSP failed: {exc}"))
            else:
                if answer.status == "good":
                    checks.append(Check("ocsp", "good", f"OCSP: good ({answer.responder})"))
                    return "good", checks
                if answer.status == "revoked":
                    when = answer.revoked_at or answer.this_update
                    checks.append(
                        Check(
                            "ocsp",
                            "revoked",
                            _revoked_text(answer.reason, when, f"OCSP responder {urls[0]}"),
                        )
                    )
                    return "revoked", checks
                checks.append(
                    Check("ocsp", "unknown", f"OCSP responder {urls[0]} answered unknown")
                )
    stale = False
    if policy.crl or policy.require_crl:
        held = [
            *revocation.for_issuer(issuer),
            *(c for c in extra if c.crl.issuer == issuer.subject),
        ]
        if held:
            status = _check_with_crls(cert, held, at, is_ca=is_ca, checks=checks, check_name="crl")
            if status in {"good", "revoked"}:
                return status, checks
            stale = status == "stale"
        else:
            checks.append(
                Check("crl", "unknown", f"no CRL is held for {format_name(issuer.subject)}")
            )
    if policy.cdp and not policy.require_crl:
        try:
            points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        except x509.ExtensionNotFound:
            points = None
        if points is None:
            checks.append(Check("cdp", "skipped", "the certificate has no CRL distribution point"))
        elif online is None:
            checks.append(Check("cdp", "skipped", "CRL download is not available here"))
        else:
            try:
                downloaded = online.cdp(cert, issuer, at)
            except CertwayError as exc:
                checks.append(Check("cdp", "unknown", f"CRL download failed: {exc}"))
            else:
                status = _check_with_crls(
                    cert, downloaded, at, is_ca=is_ca, checks=checks, check_name="cdp"
                )
                if status in {"good", "revoked"}:
                    return status, checks
                stale = stale or status == "stale"
    if stale:
        return "revoked", checks
    return "unknown", checks


def _index_extra(
    crls: Iterable[x509.CertificateRevocationList], chain: Sequence[x509.Certificate]
) -> tuple[list[IndexedCrl], list[Check]]:
    indexed: list[IndexedCrl] = []
    notes: list[Check] = []
    for number, crl in enumerate(crls, start=1):
        issuers = [c for c in chain if c.subject == crl.issuer]
        if not issuers:
            notes.append(
                Check(
                    "crl",
                    "skipped",
                    f"CRL {number} is for {format_name(crl.issuer)}, not in the chain",
                )
            )
            continue
        for issuer in issuers:
            try:
                indexed.append(index_crl(crl, issuer, source=f"CRL {number} given"))
                break
            except PolicyViolation as exc:
                notes.append(Check("crl", "fail", str(exc)))
    return indexed, notes


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
) -> ValidationResult:
    """Validate ``leaf`` (with untrusted ``intermediates``) at ``at``.

    Path building, validity, names and EKU are checked by ``cryptography``; revocation by
    our engine over the built chain per ``policy``, with the CRLs in ``revocation`` plus any
    ``crls`` given for this call, and ``online`` OCSP/CDP lookups.
    """
    options = options or ValidationOptions()
    revocation = revocation or RevocationIndex()
    try:
        chain = _build_path(leaf, list(intermediates), trust, options, at)
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        # cryptography parses extensions lazily: a malformed one surfaces here.
        malformed = ValidationFailed(f"the certificate is malformed: {exc}")
        malformed.code = "malformed"
        reports = _report([leaf], {}, 0, Check("path", "fail", str(malformed)))
        return ValidationResult(
            False, "malformed", str(malformed), (leaf,), reports, 0, at, malformed
        )
    except ValidationFailed as exc:
        reports = _report([leaf], {}, 0, Check("path", "fail", str(exc)))
        return ValidationResult(
            False, exc.code, str(exc), (leaf,), reports, exc.cert_index, at, exc
        )

    statuses: dict[int, tuple[str, list[Check]]] = {
        0: ("not-checked", [Check("path", "pass", "chains to a trusted CA")])
    }
    if not policy.checks_anything and not policy.require_crl:
        reports = _report(chain, statuses)
        return ValidationResult(
            True, None, "the certificate is valid", tuple(chain), reports, None, at
        )

    extra, notes = _index_extra(crls, chain)
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
        )
        if index == 0:
            checks = [*statuses[0][1], *notes, *checks]
        if status == "revoked" and failure is None:
            revoked_text = next((c.text for c in reversed(checks) if c.outcome == "revoked"), "")
            who = "the certificate" if index == 0 else f"CA certificate {format_name(cert.subject)}"
            failure = Revoked(f"{who} is {revoked_text}", cert_index=index)
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
                    Check("revocation", "unknown", "status unknown: treated as not revoked")
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
