"""Building full CRLs (RFC 5280 §5) for a CA, fast enough for a million entries.

Entries are built once (``revoked_entry``) and can be kept by the caller: publishing a new
CRL after one more revocation then only signs, it does not rebuild every entry. The list is
passed to the builder's constructor (``add_revoked_certificate`` in a loop is quadratic).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509

from certway.errors import PolicyViolation
from certway.pki.issue import Issuer, signature_hash_for

__all__ = ["REASONS", "CrlParams", "build_crl", "parse_reason", "revoked_entry"]

REASONS: dict[str, x509.ReasonFlags] = {
    "unspecified": x509.ReasonFlags.unspecified,
    "keyCompromise": x509.ReasonFlags.key_compromise,
    "cACompromise": x509.ReasonFlags.ca_compromise,
    "affiliationChanged": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessationOfOperation": x509.ReasonFlags.cessation_of_operation,
    "certificateHold": x509.ReasonFlags.certificate_hold,
    "privilegeWithdrawn": x509.ReasonFlags.privilege_withdrawn,
    "aACompromise": x509.ReasonFlags.aa_compromise,
}
_FOLDED = {k.lower(): v for k, v in REASONS.items()}
_FOLDED.update({v.value.lower(): v for v in REASONS.values()})
_REASON_EXTENSIONS: dict[x509.ReasonFlags, list[x509.Extension[x509.ExtensionType]]] = {
    flag: [x509.Extension(x509.CRLReason.oid, False, x509.CRLReason(flag))]
    for flag in REASONS.values()
    if flag is not x509.ReasonFlags.unspecified
}


def parse_reason(text: str | None) -> x509.ReasonFlags | None:
    """A reason name as in RFC 5280 (``keyCompromise``), case-insensitive; None for none."""
    if text is None or text == "":
        return None
    flag = _FOLDED.get(text.replace("_", "").replace("-", "").lower())
    if flag is None:
        flag = _FOLDED.get(text.lower())
    if flag is None or flag is x509.ReasonFlags.remove_from_crl:
        raise PolicyViolation(
            "reason", f"unknown revocation reason '{text}'; choose one of {', '.join(REASONS)}"
        )
    return flag


def revoked_entry(
    serial: int,
    revoked_at: dt.datetime,
    reason: x509.ReasonFlags | None = None,
    invalidity_date: dt.datetime | None = None,
) -> x509.RevokedCertificate:
    """One CRL entry. ``unspecified`` is encoded by omitting the reason (RFC 5280 §5.3.1)."""
    extensions: list[x509.Extension[x509.ExtensionType]] = (
        _REASON_EXTENSIONS.get(reason, []) if reason is not None else []
    )
    if invalidity_date is not None:
        inv = x509.InvalidityDate(invalidity_date)
        extensions = [*extensions, x509.Extension(inv.oid, False, inv)]
    return x509.RevokedCertificateBuilder(serial, revoked_at, extensions).build()


@dataclass(frozen=True, slots=True)
class CrlParams:
    number: int
    this_update: dt.datetime
    next_update: dt.datetime


def build_crl(
    issuer: Issuer,
    entries: Sequence[x509.RevokedCertificate],
    params: CrlParams,
) -> x509.CertificateRevocationList:
    """A full CRL signed by ``issuer`` with CRLNumber and AuthorityKeyIdentifier."""
    if params.next_update <= params.this_update:
        raise PolicyViolation("crl-validity", "nextUpdate must be after thisUpdate")
    if params.number < 0 or params.number.bit_length() > 159:
        raise PolicyViolation("crl-number", "CRL number must fit in 20 octets")
    aki = issuer.authority_key_identifier
    number = x509.CRLNumber(params.number)
    builder = x509.CertificateRevocationListBuilder(
        issuer_name=issuer.name,
        last_update=params.this_update,
        next_update=params.next_update,
        extensions=[
            x509.Extension(aki.oid, False, aki),
            x509.Extension(number.oid, False, number),
        ],
        revoked_certificates=list(entries),
    )

    return builder.sign(issuer.key, signature_hash_for(issuer.key))
