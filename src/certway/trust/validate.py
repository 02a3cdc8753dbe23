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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cryptography import x509

from certway.errors import (
    CertwayError,
    Malformed,
    RevocationUnknown,
    Revoked,
    ValidationCode,
    ValidationFailed,
)
from certway.pki.load import error_reason
from certway.pki.ocsp import OcspAnswer, ocsp_urls
from certway.pki.text import format_name, serial_hex
from certway.trust.anchors import TrustSnapshot
from certway.trust.crl_check import CrlContext, SignerPaths
from certway.trust.path import Purpose, ValidationOptions, build_path, rfc5280_path
from certway.trust.pkix import PkixInputs
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
        return rfc5280_path(signer, intermediates, trust, options, at)
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
        chain = build_path(leaf, list(intermediates), trust, options, at)
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        # cryptography parses extensions lazily: a malformed one surfaces here.
        malformed = Malformed(f"the certificate is malformed: {error_reason(exc)}")
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
