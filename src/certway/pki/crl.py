"""Building full CRLs (RFC 5280 §5) for a CA, fast enough for a million entries.

``build_crl`` passes every entry to the builder's constructor (``add_revoked_certificate``
in a loop is quadratic). ``extend_crl`` publishes the next CRL of a CA from its previous one
plus the new revocations without re-encoding the old entries: ``cryptography`` builds the
new CRL's fields and entries, ``asn1crypto`` carries the previous CRL's encoded entry list
over unchanged, and the CA key signs the result. Both give the same TBSCertList bytes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from asn1crypto import crl as asn1_crl
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from certway.errors import PolicyViolation
from certway.pki.issue import Issuer, signature_hash_for

__all__ = [
    "REASONS",
    "REASON_NAMES",
    "CrlParams",
    "build_crl",
    "extend_crl",
    "parse_reason",
    "revoked_entry",
]

#: The RFC 5280 §5.3.1 name of every reason code (``keyCompromise``): the one table of
#: them, for the CLI, the API, the pages, the audit log and the JSON of a decoded CRL.
REASON_NAMES: dict[x509.ReasonFlags, str] = {
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
#: The reasons a certificate can be revoked with, by name (``removeFromCRL`` only appears
#: in delta CRLs, which certway does not publish).
REASONS: dict[str, x509.ReasonFlags] = {
    name: flag
    for flag, name in REASON_NAMES.items()
    if flag is not x509.ReasonFlags.remove_from_crl
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


def _sign(issuer: Issuer, data: bytes) -> bytes:
    """Sign ``data`` exactly as ``cryptography``'s CRL builder does for this key."""
    key = issuer.key
    digest = signature_hash_for(key)
    if isinstance(key, ec.EllipticCurvePrivateKey) and digest is not None:
        return key.sign(data, ec.ECDSA(digest))
    if isinstance(key, rsa.RSAPrivateKey) and digest is not None:
        return key.sign(data, padding.PKCS1v15(), digest)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    raise PolicyViolation("key-type", f"cannot sign a CRL with {type(key).__name__}")


def extend_crl(
    issuer: Issuer,
    previous_der: bytes,
    new_entries: Sequence[x509.RevokedCertificate],
    params: CrlParams,
) -> bytes:
    """DER of the CRL holding ``previous_der``'s entries followed by ``new_entries``, with
    the number and dates of ``params``, signed by ``issuer``.

    The result equals ``build_crl(issuer, [*previous entries, *new_entries], params)`` up to
    the (randomised) signature, at the cost of the new entries only.
    """
    template = build_crl(issuer, new_entries, params)
    fresh = asn1_crl.CertificateList.load(template.public_bytes(serialization.Encoding.DER))
    previous = asn1_crl.CertificateList.load(previous_der)
    tbs = fresh["tbs_cert_list"]
    old_tbs = previous["tbs_cert_list"]
    if old_tbs["issuer"].dump() != tbs["issuer"].dump():
        raise PolicyViolation("crl-issuer", "the previous CRL was issued by another name")
    old_entries = old_tbs["revoked_certificates"]
    new_list = tbs["revoked_certificates"]
    old_contents = old_entries.contents if old_entries.contents else b""
    new_contents = new_list.contents if new_list.contents else b""
    if not old_contents:
        return template.public_bytes(serialization.Encoding.DER)
    tbs["revoked_certificates"] = asn1_crl.RevokedCertificates(contents=old_contents + new_contents)
    tbs_der = tbs.dump(force=False)
    signed = asn1_crl.CertificateList(
        {
            "tbs_cert_list": tbs,
            "signature_algorithm": fresh["signature_algorithm"],
            "signature": _sign(issuer, tbs_der),
        }
    )
    return bytes(signed.dump())
