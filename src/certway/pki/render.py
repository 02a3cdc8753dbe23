"""Rendering loaded PKI objects: text close to ``openssl <x509|req|crl|pkcs12> -text``, and
the same facts as JSON-serialisable dicts.

One table (``_RENDERERS``) maps each type of object to its kind and its two renderers;
:func:`object_kind`, :func:`object_text` and :func:`object_facts` look it up. Extensions
render in :mod:`certway.pki.render_extensions`.

Private keys are summarised by type, size, curve and the SHA-256 fingerprint of their
public key: no private number, and no part of the encoding, ever reaches the output.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x448, x25519
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import SignatureAlgorithmOID

from certway.pki.crl import REASON_NAMES
from certway.pki.load import PARSE_ERRORS, DecodedObject, ObjectKind
from certway.pki.render_extensions import extensions_dict, extensions_text
from certway.pki.text import (
    bytes_text,
    colon_hex,
    fingerprint,
    format_name,
    hex_block,
    is_private_key,
    iso_time,
    oid_name,
    openssl_time,
    public_key_fingerprint,
    serial_hex,
)

__all__ = ["TEXT_REVOKED_LIMIT", "object_facts", "object_kind", "object_text"]

#: Text output lists at most this many revoked certificates of a CRL.
TEXT_REVOKED_LIMIT = 1000

_EXTENSION_REQUEST = x509.ObjectIdentifier("1.2.840.113549.1.9.14")


def _serial_text(serial: int) -> str:
    """The serial as ``openssl -text`` shows it: the octets of :func:`serial_hex`, lower
    case and colon separated, ``(Negative)`` first if negative."""
    octets = bytes.fromhex(serial_hex(abs(serial)))
    return ("(Negative)" if serial < 0 else "") + colon_hex(octets, upper=False)


_SIGNATURE_NAMES: dict[x509.ObjectIdentifier, str] = {
    SignatureAlgorithmOID.ED25519: "ED25519",
    SignatureAlgorithmOID.ED448: "ED448",
    SignatureAlgorithmOID.RSASSA_PSS: "rsassaPss",
}


def _signature_name(oid: x509.ObjectIdentifier) -> str:
    return _SIGNATURE_NAMES.get(oid) or oid_name(oid)


# --------------------------------------------------------------------------- keys

_NIST_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
_OPENSSL_CURVES = {"secp256r1": "prime256v1", "secp192r1": "prime192v1"}


def _key_facts(public: PublicKeyTypes) -> dict[str, Any]:
    """Type, size, curve and SPKI fingerprint of a public key (public facts only)."""
    facts: dict[str, Any]
    if isinstance(public, rsa.RSAPublicKey):
        facts = {
            "type": "RSA",
            "size": public.key_size,
            "exponent": public.public_numbers().e,
        }
    elif isinstance(public, ec.EllipticCurvePublicKey):
        facts = {"type": "EC", "curve": public.curve.name, "size": public.curve.key_size}
    elif isinstance(public, ed25519.Ed25519PublicKey):
        facts = {"type": "Ed25519", "size": 256}
    elif isinstance(public, ed448.Ed448PublicKey):
        facts = {"type": "Ed448", "size": 456}
    elif isinstance(public, x25519.X25519PublicKey):
        facts = {"type": "X25519", "size": 253}
    elif isinstance(public, x448.X448PublicKey):
        facts = {"type": "X448", "size": 448}
    elif isinstance(public, dsa.DSAPublicKey):
        facts = {"type": "DSA", "size": public.key_size}
    else:
        # DH (whose module warns on import), ML-DSA, ML-KEM and whatever comes next.
        facts = {"type": type(public).__name__.lstrip("_").removesuffix("PublicKey")}
        size = getattr(public, "key_size", None)
        if isinstance(size, int):
            facts["size"] = size
    facts["spki_sha256"] = public_key_fingerprint(public)
    return facts


def _key_summary(facts: dict[str, Any]) -> str:
    """``EC secp256r1 (256 bit)`` / ``RSA (2048 bit)``."""
    text = str(facts["type"])
    if "curve" in facts:
        text += f" {facts['curve']}"
    if "size" in facts:
        text += f" ({facts['size']} bit)"
    return text


def _spki_text(public: PublicKeyTypes | None, algorithm: str, indent: int) -> list[str]:
    """``Public Key Algorithm`` and the public key's numbers, as ``openssl -text``."""
    pad = " " * indent
    if public is None:
        return [f"{pad}Public Key Algorithm: {algorithm}", f"{pad}    Unable to load public key"]
    inner = " " * (indent + 4)
    raw = serialization.Encoding.Raw
    if isinstance(public, rsa.RSAPublicKey):
        numbers = public.public_numbers()
        modulus = numbers.n.to_bytes((numbers.n.bit_length() + 8) // 8, "big")
        return [
            f"{pad}Public Key Algorithm: rsaEncryption",
            f"{inner}Public-Key: ({public.key_size} bit)",
            f"{inner}Modulus:",
            *hex_block(modulus, indent + 8),
            f"{inner}Exponent: {numbers.e} ({numbers.e:#x})",
        ]
    if isinstance(public, ec.EllipticCurvePublicKey):
        point = public.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        curve = public.curve.name
        lines = [
            f"{pad}Public Key Algorithm: id-ecPublicKey",
            f"{inner}Public-Key: ({public.curve.key_size} bit)",
            f"{inner}pub:",
            *hex_block(point, indent + 8),
            f"{inner}ASN1 OID: {_OPENSSL_CURVES.get(curve, curve)}",
        ]
        if curve in _NIST_CURVES:
            lines.append(f"{inner}NIST CURVE: {_NIST_CURVES[curve]}")
        return lines
    if isinstance(
        public,
        ed25519.Ed25519PublicKey
        | ed448.Ed448PublicKey
        | x25519.X25519PublicKey
        | x448.X448PublicKey,
    ):
        name = _key_facts(public)["type"].upper()
        return [
            f"{pad}Public Key Algorithm: {name}",
            f"{inner}{name} Public-Key:",
            f"{inner}pub:",
            *hex_block(public.public_bytes(raw, serialization.PublicFormat.Raw), indent + 8),
        ]
    facts = _key_facts(public)
    return [f"{pad}Public Key Algorithm: {algorithm}", f"{inner}Public-Key: {_key_summary(facts)}"]


def _certificate_public_key(
    obj: x509.Certificate | x509.CertificateSigningRequest,
) -> PublicKeyTypes | None:
    try:
        return obj.public_key()
    except PARSE_ERRORS:
        return None


# --------------------------------------------------------------------------- objects


def _certificate_text(cert: x509.Certificate) -> list[str]:
    version = cert.version
    lines = [
        "Certificate:",
        "    Data:",
        f"        Version: {version.value + 1} ({version.value:#x})",
        "        Serial Number:",
        f"            {_serial_text(cert.serial_number)}",
        f"        Signature Algorithm: {_signature_name(cert.signature_algorithm_oid)}",
        f"        Issuer: {format_name(cert.issuer)}",
        "        Validity",
        f"            Not Before: {openssl_time(cert.not_valid_before_utc)}",
        f"            Not After : {openssl_time(cert.not_valid_after_utc)}",
        f"        Subject: {format_name(cert.subject)}",
        "        Subject Public Key Info:",
        *_spki_text(_certificate_public_key(cert), oid_name(cert.public_key_algorithm_oid), 12),
    ]
    if len(cert.extensions):
        lines.append("        X509v3 extensions:")
        lines.extend(extensions_text(cert.extensions, 12))
    lines += [
        f"    Signature Algorithm: {_signature_name(cert.signature_algorithm_oid)}",
        "    Signature Value:",
        *hex_block(cert.signature, 8),
        f"SHA256 Fingerprint={fingerprint(cert)}",
        f"SHA1 Fingerprint={colon_hex(cert.fingerprint(hashes.SHA1()))}",  # noqa: S303 - a label, not security
    ]
    return lines


def _certificate_dict(cert: x509.Certificate) -> dict[str, Any]:
    public = _certificate_public_key(cert)
    key: dict[str, Any] = (
        _key_facts(public)
        if public is not None
        else {"type": oid_name(cert.public_key_algorithm_oid), "supported": False}
    )
    return {
        "kind": ObjectKind.CERTIFICATE.value,
        "version": cert.version.value + 1,
        "subject": format_name(cert.subject),
        "issuer": format_name(cert.issuer),
        "serial": serial_hex(cert.serial_number),
        "not_before": iso_time(cert.not_valid_before_utc),
        "not_after": iso_time(cert.not_valid_after_utc),
        "signature_algorithm": _signature_name(cert.signature_algorithm_oid),
        "public_key": key,
        "extensions": extensions_dict(cert.extensions),
        "self_issued": cert.subject == cert.issuer,
        "sha256_fingerprint": fingerprint(cert),
        "sha1_fingerprint": colon_hex(cert.fingerprint(hashes.SHA1())),  # noqa: S303
    }


def _csr_attributes(csr: x509.CertificateSigningRequest) -> list[tuple[str, str]]:
    attributes = []
    for attribute in csr.attributes:
        if attribute.oid == _EXTENSION_REQUEST:
            continue  # shown as "Requested Extensions"
        attributes.append((oid_name(attribute.oid), bytes_text(attribute.value)))
    return attributes


def _csr_text(csr: x509.CertificateSigningRequest) -> list[str]:
    lines = [
        "Certificate Request:",
        "    Data:",
        "        Version: 1 (0x0)",
        f"        Subject: {format_name(csr.subject)}",
        "        Subject Public Key Info:",
        *_spki_text(_certificate_public_key(csr), "unknown", 12),
        "        Attributes:",
    ]
    attributes = _csr_attributes(csr)
    lines.extend(f"            {name}: {value}" for name, value in attributes)
    if not attributes:
        lines.append("            (none)")
    if len(csr.extensions):
        lines.append("        Requested Extensions:")
        lines.extend(extensions_text(csr.extensions, 12))
    lines += [
        f"    Signature Algorithm: {_signature_name(csr.signature_algorithm_oid)}",
        "    Signature Value:",
        *hex_block(csr.signature, 8),
        f"Signature: {'valid' if _csr_signature_valid(csr) else 'INVALID'}",
    ]
    return lines


def _csr_signature_valid(csr: x509.CertificateSigningRequest) -> bool:
    try:
        return csr.is_signature_valid
    except PARSE_ERRORS:
        return False


def _csr_dict(csr: x509.CertificateSigningRequest) -> dict[str, Any]:
    public = _certificate_public_key(csr)
    return {
        "kind": ObjectKind.CSR.value,
        "subject": format_name(csr.subject),
        "signature_algorithm": _signature_name(csr.signature_algorithm_oid),
        "signature_valid": _csr_signature_valid(csr),
        "public_key": _key_facts(public) if public is not None else {"supported": False},
        "attributes": [{"name": n, "value": v} for n, v in _csr_attributes(csr)],
        "extensions": extensions_dict(csr.extensions),
    }


def _revoked_reason(entry: x509.RevokedCertificate) -> x509.ReasonFlags | None:
    for ext in entry.extensions:
        if isinstance(ext.value, x509.CRLReason):
            return ext.value.reason
    return None


def _crl_text(crl: x509.CertificateRevocationList) -> list[str]:
    next_update = crl.next_update_utc
    lines = [
        "Certificate Revocation List (CRL):",
        f"        Signature Algorithm: {_signature_name(crl.signature_algorithm_oid)}",
        f"        Issuer: {format_name(crl.issuer)}",
        f"        Last Update: {openssl_time(crl.last_update_utc)}",
        f"        Next Update: {openssl_time(next_update) if next_update else 'NONE'}",
    ]
    if len(crl.extensions):
        lines.append("        CRL extensions:")
        lines.extend(extensions_text(crl.extensions, 12))
    total = len(crl)
    if total == 0:
        lines.append("No Revoked Certificates.")
    else:
        lines.append(f"Revoked Certificates: ({total})")
        for index, entry in enumerate(crl):
            if index == TEXT_REVOKED_LIMIT:
                lines.append(f"    ... and {total - TEXT_REVOKED_LIMIT} more")
                break
            lines.append(f"    Serial Number: {serial_hex(entry.serial_number)}")
            lines.append(f"        Revocation Date: {openssl_time(entry.revocation_date_utc)}")
            if len(entry.extensions):
                lines.append("        CRL entry extensions:")
                lines.extend(extensions_text(entry.extensions, 12))
    lines += [
        f"    Signature Algorithm: {_signature_name(crl.signature_algorithm_oid)}",
        "    Signature Value:",
        *hex_block(crl.signature, 8),
    ]
    return lines


def _crl_dict(crl: x509.CertificateRevocationList) -> dict[str, Any]:
    next_update = crl.next_update_utc
    revoked = []
    for entry in crl:
        reason = _revoked_reason(entry)
        revoked.append(
            {
                "serial": serial_hex(entry.serial_number),
                "revocation_date": iso_time(entry.revocation_date_utc),
                "reason": REASON_NAMES[reason] if reason is not None else None,
                "extensions": extensions_dict(entry.extensions),
            }
        )
    return {
        "kind": ObjectKind.CRL.value,
        "issuer": format_name(crl.issuer),
        "last_update": iso_time(crl.last_update_utc),
        "next_update": iso_time(next_update) if next_update else None,
        "signature_algorithm": _signature_name(crl.signature_algorithm_oid),
        "extensions": extensions_dict(crl.extensions),
        "revoked_count": len(revoked),
        "revoked": revoked,
    }


def _private_key_text(key: PrivateKeyTypes) -> list[str]:
    facts = _key_facts(key.public_key())
    lines = ["Private Key (key material not shown):", f"    Type: {facts['type']}"]
    if "curve" in facts:
        lines.append(f"    Curve: {facts['curve']}")
    if "size" in facts:
        lines.append(f"    Size: {facts['size']} bit")
    lines.append(f"    Public Key SHA-256: {facts['spki_sha256']}")
    return lines


def _friendly(name: bytes | None) -> str | None:
    return None if name is None else bytes_text(name)


def _key_matches(key: PrivateKeyTypes | None, cert: x509.Certificate | None) -> bool | None:
    if key is None or cert is None:
        return None
    public = _certificate_public_key(cert)
    return public is not None and public_key_fingerprint(public) == public_key_fingerprint(key)


def _indent(lines: Sequence[str], by: int) -> list[str]:
    pad = " " * by
    return [pad + line for line in lines]


def _pkcs12_text(p12: pkcs12.PKCS12KeyAndCertificates) -> list[str]:
    main = p12.cert
    key = p12.key
    lines = ["PKCS#12:"]
    lines.append(f"    Friendly Name: {_friendly(main.friendly_name) if main else None}")
    if key is not None:
        facts = _key_facts(key.public_key())
        lines.append(f"    Private Key: {_key_summary(facts)} (key material not shown)")
        lines.append(f"        Public Key SHA-256: {facts['spki_sha256']}")
        matches = _key_matches(key, main.certificate if main else None)
        if matches is not None:
            lines.append(f"        Matches Certificate: {'yes' if matches else 'NO'}")
    else:
        lines.append("    Private Key: none")
    if main is not None:
        lines.append("    Certificate:")
        lines.extend(_indent(_certificate_text(main.certificate), 8))
    else:
        lines.append("    Certificate: none")
    lines.append(f"    Additional Certificates: {len(p12.additional_certs)}")
    for extra in p12.additional_certs:
        if extra.friendly_name is not None:
            lines.append(f"        Friendly Name: {_friendly(extra.friendly_name)}")
        lines.extend(_indent(_certificate_text(extra.certificate), 8))
    return lines


def _pkcs12_dict(p12: pkcs12.PKCS12KeyAndCertificates) -> dict[str, Any]:
    main = p12.cert
    key = p12.key
    return {
        "kind": ObjectKind.PKCS12.value,
        "friendly_name": _friendly(main.friendly_name) if main else None,
        "private_key": _key_facts(key.public_key()) if key is not None else None,
        "key_matches_certificate": _key_matches(key, main.certificate if main else None),
        "certificate": _certificate_dict(main.certificate) if main else None,
        "additional_certificates": [
            {
                "friendly_name": _friendly(extra.friendly_name),
                **_certificate_dict(extra.certificate),
            }
            for extra in p12.additional_certs
        ],
    }


def _private_key_dict(key: PrivateKeyTypes) -> dict[str, Any]:
    return {"kind": ObjectKind.PRIVATE_KEY.value, **_key_facts(key.public_key())}


def _public_key_text(public: PublicKeyTypes) -> list[str]:
    return [
        "Public Key:",
        *_spki_text(public, type(public).__name__, 4),
        f"    SPKI SHA-256: {public_key_fingerprint(public)}",
    ]


def _public_key_dict(public: PublicKeyTypes) -> dict[str, Any]:
    return {"kind": ObjectKind.PUBLIC_KEY.value, **_key_facts(public)}


# --------------------------------------------------------------------------- dispatch


@dataclass(frozen=True, slots=True)
class _Renderer:
    """What one type of object is, and how it renders as text and as JSON facts."""

    kind: ObjectKind
    text: Callable[[Any], list[str]]
    facts: Callable[[Any], dict[str, Any]]


_RENDERERS: tuple[tuple[type, _Renderer], ...] = (
    (x509.Certificate, _Renderer(ObjectKind.CERTIFICATE, _certificate_text, _certificate_dict)),
    (x509.CertificateSigningRequest, _Renderer(ObjectKind.CSR, _csr_text, _csr_dict)),
    (x509.CertificateRevocationList, _Renderer(ObjectKind.CRL, _crl_text, _crl_dict)),
    (pkcs12.PKCS12KeyAndCertificates, _Renderer(ObjectKind.PKCS12, _pkcs12_text, _pkcs12_dict)),
)
_PRIVATE_KEY = _Renderer(ObjectKind.PRIVATE_KEY, _private_key_text, _private_key_dict)
_PUBLIC_KEY = _Renderer(ObjectKind.PUBLIC_KEY, _public_key_text, _public_key_dict)


def _renderer(obj: DecodedObject) -> _Renderer:
    # isinstance, not a dict on type(obj): cryptography's classes are ABCs that its Rust
    # objects register with. Keys come in many classes (and new ones): the last two rows.
    for cls, renderer in _RENDERERS:
        if isinstance(obj, cls):
            return renderer
    return _PRIVATE_KEY if is_private_key(obj) else _PUBLIC_KEY


def object_kind(obj: DecodedObject) -> ObjectKind:
    """What one loaded object is."""
    return _renderer(obj).kind


def object_text(obj: DecodedObject) -> list[str]:
    """The lines of one object's text, close to ``openssl -text``."""
    return _renderer(obj).text(obj)


def object_facts(obj: DecodedObject) -> dict[str, Any]:
    """One object's facts as JSON-serialisable data."""
    return _renderer(obj).facts(obj)
