"""Decode any PKI object from its bytes: detection from content, readable text, JSON facts.

``detect`` recognises, from the PEM label or by trial DER parsing (never from a file
name): a certificate (or a PEM bundle of them), a CSR, a CRL, a certs-only PKCS#7 bundle,
a PKCS#12 file, a private key or a public key. The result, a :class:`Decoded`, renders as
text close to ``openssl x509|req|crl -text`` and as a JSON-serialisable dict.

Private keys are summarised by type, size, curve and the SHA-256 fingerprint of their
public key: no private number, and no part of the encoding, ever reaches the output.

Anything that is not one of those objects raises :class:`~certway.errors.DecodeError`
with a one-line message; an encrypted object without (or with a wrong) passphrase raises
:class:`~certway.errors.PassphraseError`. Every exception ``cryptography`` raises while
parsing is translated into one of the two.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import typing
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x448, x25519
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from cryptography.x509.oid import (
    AuthorityInformationAccessOID,
    ExtendedKeyUsageOID,
    NameOID,
    SignatureAlgorithmOID,
)

from certway.errors import DecodeError, PassphraseError, PolicyViolation
from certway.pki.encoding import PemBlock, is_pem, pem_blocks

__all__ = [
    "MAX_BUNDLE_CERTIFICATES",
    "PARSE_ERRORS",
    "Decoded",
    "DecodedObject",
    "Kind",
    "attribute_name",
    "check_bundle_size",
    "detect",
    "fingerprint",
    "format_name",
    "load_certificates",
    "load_crl_der",
    "load_crls",
    "load_csr",
    "load_pkcs7",
    "load_pkcs12",
    "public_key_fingerprint",
]

#: Everything ``cryptography`` raises for bytes it cannot parse (or lazily-parsed parts
#: such as extensions it cannot decode).
PARSE_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    TypeError,
    OverflowError,
    UnsupportedAlgorithm,
    x509.InvalidVersion,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
)

#: Certificates one bundle (a PEM file, a PKCS#7 or PKCS#12 file) may hold: a trusted-CA
#: list or a chain of thousands is not a mistake anyone makes, and every one of them costs
#: parsing and chain building.
MAX_BUNDLE_CERTIFICATES = 1000

#: Text output lists at most this many revoked certificates of a CRL.
TEXT_REVOKED_LIMIT = 1000


class Kind(StrEnum):
    """What a decoded file holds."""

    CERTIFICATE = "certificate"
    CSR = "csr"
    CRL = "crl"
    PKCS7 = "pkcs7"
    PKCS12 = "pkcs12"
    PRIVATE_KEY = "private-key"
    PUBLIC_KEY = "public-key"


DecodedObject = typing.Union[  # noqa: UP007 - PrivateKeyTypes/PublicKeyTypes are Unions
    x509.Certificate,
    x509.CertificateSigningRequest,
    x509.CertificateRevocationList,
    pkcs12.PKCS12KeyAndCertificates,
    PrivateKeyTypes,
    PublicKeyTypes,
]

_PRIVATE_KEY_CLASSES = (
    rsa.RSAPrivateKey,
    ec.EllipticCurvePrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
    dsa.DSAPrivateKey,
    x25519.X25519PrivateKey,
    x448.X448PrivateKey,
)

_PEM_KINDS: dict[str, Kind] = {
    "CERTIFICATE": Kind.CERTIFICATE,
    "X509 CERTIFICATE": Kind.CERTIFICATE,
    "CERTIFICATE REQUEST": Kind.CSR,
    "NEW CERTIFICATE REQUEST": Kind.CSR,
    "X509 CRL": Kind.CRL,
    "PKCS7": Kind.PKCS7,
    "PKCS #7 SIGNED DATA": Kind.PKCS7,
    "CMS": Kind.PKCS7,
    "PRIVATE KEY": Kind.PRIVATE_KEY,
    "ENCRYPTED PRIVATE KEY": Kind.PRIVATE_KEY,
    "RSA PRIVATE KEY": Kind.PRIVATE_KEY,
    "EC PRIVATE KEY": Kind.PRIVATE_KEY,
    "DSA PRIVATE KEY": Kind.PRIVATE_KEY,
    "PUBLIC KEY": Kind.PUBLIC_KEY,
    "RSA PUBLIC KEY": Kind.PUBLIC_KEY,
}

# Same grammar as certway.pki.encoding, to recover a block's raw text (legacy encrypted
# keys carry "Proc-Type"/"DEK-Info" headers that only the PEM loader understands).
_RAW_PEM_RE = re.compile(
    rb"-----BEGIN ([A-Z0-9 #]+)-----\r?\n.*?-----END \1-----",
    re.DOTALL,
)

_BER_WARNING = "PKCS#7 certificates could not be parsed as DER"

_NOT_PKI = "not a certificate, CSR, CRL, PKCS#7, PKCS#12 or key"


# --------------------------------------------------------------------------- Decoded


@dataclass(frozen=True, slots=True)
class Decoded:
    """The objects found in one input.

    ``kind`` is what the input is as a whole (the kind of its first PEM block when a PEM
    file mixes several); ``objects`` holds the parsed ``cryptography`` objects: one per
    PEM block, every certificate of a PKCS#7 bundle, or a single
    ``PKCS12KeyAndCertificates``. ``encoding`` is ``"PEM"`` or ``"DER"``.
    """

    kind: Kind
    objects: tuple[DecodedObject, ...]
    encoding: str = "DER"

    def to_text(self) -> str:
        """Readable text, close to ``openssl <x509|req|crl|pkcs7|pkcs12> -text``."""
        if len(self.objects) == 1 and self.kind is not Kind.PKCS7:
            return "\n".join(_object_text(self.objects[0])) + "\n"
        count = len(self.objects)
        if self.kind is Kind.PKCS7:
            lines = [f"PKCS#7 bundle: {count} certificate{'s' if count != 1 else ''}"]
        else:
            lines = [f"{count} objects"]
        for index, obj in enumerate(self.objects, start=1):
            lines.append("")
            lines.append(f"[{index}/{count}] {_object_kind(obj)}")
            lines.extend(_object_text(obj))
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        """The same facts as JSON-serialisable data: a flat dict for one object, else
        ``{"kind": ..., "encoding": ..., "items": [...]}`` (always ``items`` for PKCS#7)."""
        if len(self.objects) == 1 and self.kind is not Kind.PKCS7:
            facts = _object_dict(self.objects[0])
            return {"kind": self.kind.value, "encoding": self.encoding, **facts}
        return {
            "kind": self.kind.value,
            "encoding": self.encoding,
            "items": [_object_dict(obj) for obj in self.objects],
        }


# --------------------------------------------------------------------------- detect


def detect(data: bytes, passphrase: bytes | None = None) -> Decoded:
    """Decode ``data`` (PEM or DER), figuring out from its content what it holds.

    ``passphrase`` decrypts an encrypted private key or PKCS#12 file; a PKCS#12 file
    without one is tried with an empty passphrase. Raises ``DecodeError`` for anything
    that is not a PKI object and ``PassphraseError`` for a missing or wrong passphrase.
    """
    if not data.strip():
        raise DecodeError("empty input: nothing to decode")
    decoded = _detect_pem(data, passphrase) if is_pem(data) else _detect_der(data, passphrase)
    # cryptography parses names, extensions and CRL entries lazily: render once so a
    # malformed part is reported now, as a DecodeError, and never later by to_text().
    try:
        decoded.to_dict()
        decoded.to_text()
    except PARSE_ERRORS as exc:
        raise DecodeError(f"malformed {decoded.kind.value}: {_reason(exc)}") from exc
    return decoded


def _detect_pem(data: bytes, passphrase: bytes | None) -> Decoded:
    blocks = pem_blocks(data)
    raw_blocks: list[bytes] | None = None
    objects: list[DecodedObject] = []
    kinds: list[Kind] = []
    for index, block in enumerate(blocks):
        kind = _PEM_KINDS.get(block.label)
        if kind is None:
            raise DecodeError(f"unsupported PEM block '{block.label}': {_NOT_PKI}")
        if kind is Kind.PRIVATE_KEY:
            if raw_blocks is None:
                raw_blocks = [m.group(0) for m in _RAW_PEM_RE.finditer(data)]
            objects.append(_load_private_key(raw_blocks[index], passphrase, pem=True))
        elif kind is Kind.PKCS7:
            objects.extend(_load_pkcs7_der(block.der))
        else:
            objects.append(_load_pem_block(block, kind))
        kinds.append(kind)
    return Decoded(kinds[0], tuple(objects), "PEM")


def _load_pem_block(block: PemBlock, kind: Kind) -> DecodedObject:
    if block.der == b"":
        raise DecodeError(f"PEM block '{block.label}' has headers: not a {kind.value}")
    loaders: dict[Kind, Callable[[bytes], DecodedObject]] = {
        Kind.CERTIFICATE: _load_cert_der,
        Kind.CSR: _load_csr_der,
        Kind.CRL: load_crl_der,
        Kind.PUBLIC_KEY: _load_public_key_der,
    }
    return loaders[kind](block.der)


def _detect_der(data: bytes, passphrase: bytes | None) -> Decoded:
    trials: list[tuple[Kind, Callable[[bytes], DecodedObject]]] = [
        (Kind.CERTIFICATE, x509.load_der_x509_certificate),
        (Kind.CSR, x509.load_der_x509_csr),
        (Kind.CRL, x509.load_der_x509_crl),
    ]
    for kind, loader in trials:
        try:
            return Decoded(kind, (loader(data),), "DER")
        except PARSE_ERRORS:
            pass
    certs = _try_pkcs7_der(data)
    if certs is not None:
        return Decoded(Kind.PKCS7, tuple(certs), "DER")
    p12 = _try_pkcs12(data, passphrase)
    if p12 is not None:
        return Decoded(Kind.PKCS12, (p12,), "DER")
    try:
        return Decoded(Kind.PRIVATE_KEY, (_load_private_key(data, passphrase, pem=False),), "DER")
    except PassphraseError:
        raise
    except DecodeError:
        pass
    try:
        return Decoded(Kind.PUBLIC_KEY, (serialization.load_der_public_key(data),), "DER")
    except PARSE_ERRORS:
        pass
    if _looks_like_text(data):
        raise DecodeError(f"{_NOT_PKI} (no PEM BEGIN line, and text is not DER)")
    raise DecodeError(f"{_NOT_PKI} (DER parse failed)")


def _looks_like_text(data: bytes) -> bool:
    sample = data[:512]
    return all(32 <= b < 127 or b in b"\r\n\t" for b in sample)


def _reason(exc: BaseException) -> str:
    """The first line of an exception message, for our one-line errors."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --------------------------------------------------------------------------- loaders


def _load_cert_der(der: bytes) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(der)
    except PARSE_ERRORS as exc:
        raise DecodeError(f"not a valid certificate: {_reason(exc)}") from exc


def _load_csr_der(der: bytes) -> x509.CertificateSigningRequest:
    try:
        return x509.load_der_x509_csr(der)
    except PARSE_ERRORS as exc:
        raise DecodeError(f"not a valid CSR: {_reason(exc)}") from exc


def load_crl_der(der: bytes) -> x509.CertificateRevocationList:
    """One DER CRL. Raises ``DecodeError`` when the bytes are not a CRL."""
    try:
        return x509.load_der_x509_crl(der)
    except PARSE_ERRORS as exc:
        raise DecodeError(f"not a valid CRL: {_reason(exc)}") from exc


def _load_public_key_der(der: bytes) -> PublicKeyTypes:
    try:
        return serialization.load_der_public_key(der)
    except PARSE_ERRORS as exc:
        raise DecodeError(f"not a valid public key: {_reason(exc)}") from exc


def _try_pkcs7_der(der: bytes) -> list[x509.Certificate] | None:
    """The certificates of a DER PKCS#7, or None when the bytes are not PKCS#7."""
    try:
        with warnings.catch_warnings():
            # OpenSSL (crl2pkcs7) and Windows write the certificate SET unsorted, i.e. BER:
            # cryptography reads it but warns; such files are normal input for us.
            warnings.filterwarnings("ignore", _BER_WARNING, UserWarning)
            return pkcs7.load_der_pkcs7_certificates(der)
    except PARSE_ERRORS as exc:
        if "no certificate" in str(exc).lower():
            raise DecodeError("PKCS#7 bundle holds no certificates") from exc
        return None


def _load_pkcs7_der(der: bytes) -> list[x509.Certificate]:
    certs = _try_pkcs7_der(der)
    if certs is None:
        raise DecodeError("not a valid PKCS#7 certificate bundle")
    if not certs:
        raise DecodeError("PKCS#7 bundle holds no certificates")
    return certs


def load_pkcs7(data: bytes) -> list[x509.Certificate]:
    """The certificates of a certs-only PKCS#7 bundle (PEM ``PKCS7`` blocks or DER), in
    the bundle's order. Raises ``DecodeError`` when the input is anything else."""
    if not data.strip():
        raise DecodeError("empty input: no PKCS#7 bundle")
    if not is_pem(data):
        certs = _try_pkcs7_der(data)
        if certs is None:
            raise DecodeError("not a PKCS#7 bundle (DER parse failed)")
        if not certs:
            raise DecodeError("PKCS#7 bundle holds no certificates")
    else:
        certs = []
        for block in pem_blocks(data):
            if _PEM_KINDS.get(block.label) is not Kind.PKCS7:
                raise DecodeError(f"not a PKCS#7 bundle: found a PEM '{block.label}' block")
            certs.extend(_load_pkcs7_der(block.der))
    check_bundle_size(len(certs))
    for cert in certs:
        _check_certificate(cert)
    return certs


def load_pkcs12(data: bytes, passphrase: bytes | None) -> pkcs12.PKCS12KeyAndCertificates:
    """A PKCS#12 file (DER), decrypted with ``passphrase`` or, when it is None, with no or
    an empty passphrase. Raises ``DecodeError`` when the bytes are not PKCS#12 and
    ``PassphraseError`` when the passphrase is missing or wrong."""
    if is_pem(data):
        raise DecodeError("not a PKCS#12 file: PKCS#12 is binary (DER) and this is PEM")
    p12 = _try_pkcs12(data, passphrase)
    if p12 is None:
        raise DecodeError("not a PKCS#12 file (DER parse failed)")
    certs = [extra.certificate for extra in p12.additional_certs]
    if p12.cert is not None:
        certs.insert(0, p12.cert.certificate)
    check_bundle_size(len(certs))
    for cert in certs:
        _check_certificate(cert)
    return p12


def _try_pkcs12(data: bytes, passphrase: bytes | None) -> pkcs12.PKCS12KeyAndCertificates | None:
    """A PKCS#12 file decrypted with ``passphrase`` (or, if None, no/empty passphrase);
    None when ``data`` is not PKCS#12 at all."""
    candidates: list[bytes | None] = [passphrase] if passphrase is not None else [None, b""]
    for candidate in candidates:
        try:
            return pkcs12.load_pkcs12(data, candidate)
        except UnsupportedAlgorithm as exc:
            raise DecodeError(
                f"PKCS#12 file uses an unsupported algorithm: {_reason(exc)}"
            ) from exc
        except PARSE_ERRORS as exc:
            # cryptography reports a structural failure as "Could not deserialize" and a
            # MAC/decryption failure as "Invalid password or PKCS12 data".
            if "deserialize" in str(exc).lower():
                return None
    if passphrase is None:
        raise PassphraseError("PKCS#12 file is encrypted: give its passphrase")
    raise PassphraseError("wrong passphrase for PKCS#12 file")


def _load_private_key(data: bytes, passphrase: bytes | None, *, pem: bool) -> PrivateKeyTypes:
    """A private key (PEM text or DER). A passphrase given for an unencrypted key is
    ignored. Raises ``DecodeError`` (not a key) or ``PassphraseError``."""
    loader = serialization.load_pem_private_key if pem else serialization.load_der_private_key
    try:
        try:
            return loader(data, passphrase)
        except TypeError as exc:
            if passphrase is not None and "not encrypted" in str(exc):
                return loader(data, None)
            raise
    except TypeError as exc:
        if "encrypted" in str(exc):
            raise PassphraseError("private key is encrypted: give its passphrase") from exc
        raise DecodeError(f"not a valid private key: {_reason(exc)}") from exc
    except UnsupportedAlgorithm as exc:
        raise DecodeError(f"unsupported private key algorithm: {_reason(exc)}") from exc
    except PARSE_ERRORS as exc:
        if passphrase is not None and "incorrect password" in str(exc).lower():
            raise PassphraseError("wrong passphrase for private key") from exc
        raise DecodeError(f"not a valid private key: {_reason(exc)}") from exc


# --------------------------------------------------------------------------- helpers


def check_bundle_size(count: int) -> None:
    """Refuse a bundle of more than ``MAX_BUNDLE_CERTIFICATES`` certificates."""
    if count > MAX_BUNDLE_CERTIFICATES:
        raise PolicyViolation(
            "bundle-too-large",
            f"the file holds {count} certificates; one bundle may hold at most "
            f"{MAX_BUNDLE_CERTIFICATES}: leave out the certificates that are not needed, or "
            "split the file",
        )


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle, a DER certificate or a PKCS#7 bundle (PEM or
    DER), in order. Raises ``DecodeError`` when there is none or the input holds
    anything else (a key, a CSR, ...)."""
    if not data.strip():
        raise DecodeError("empty input: no certificates")
    certs: list[x509.Certificate] = []
    if is_pem(data):
        blocks = pem_blocks(data)
        check_bundle_size(len(blocks))  # before parsing thousands of certificates
        for block in blocks:
            kind = _PEM_KINDS.get(block.label)
            if kind is Kind.CERTIFICATE:
                certs.append(_load_cert_der(block.der))
            elif kind is Kind.PKCS7:
                certs.extend(_load_pkcs7_der(block.der))
            else:
                raise DecodeError(f"expected certificates, found a PEM '{block.label}' block")
    else:
        try:
            certs = [x509.load_der_x509_certificate(data)]
        except PARSE_ERRORS:
            p7 = _try_pkcs7_der(data)
            if p7 is None:
                raise DecodeError("not a certificate or PKCS#7 bundle (DER parse failed)") from None
            certs = p7
    if not certs:
        raise DecodeError("no certificates found")
    check_bundle_size(len(certs))
    for cert in certs:
        _check_certificate(cert)
    return certs


def load_crls(data: bytes) -> list[x509.CertificateRevocationList]:
    """Every CRL of a PEM file (one or more ``X509 CRL`` blocks) or one DER CRL."""
    if not data.strip():
        raise DecodeError("empty input: no CRL")
    if not is_pem(data):
        return [load_crl_der(data)]
    crls: list[x509.CertificateRevocationList] = []
    for block in pem_blocks(data):
        if _PEM_KINDS.get(block.label) is not Kind.CRL:
            raise DecodeError(f"expected a CRL, found a PEM '{block.label}' block")
        crls.append(load_crl_der(block.der))
    return crls


def load_csr(data: bytes) -> x509.CertificateSigningRequest:
    """One CSR, PEM or DER."""
    if not data.strip():
        raise DecodeError("empty input: no CSR")
    if not is_pem(data):
        csr = _load_csr_der(data)
    else:
        blocks = pem_blocks(data)
        if len(blocks) != 1 or _PEM_KINDS.get(blocks[0].label) is not Kind.CSR:
            labels = ", ".join(f"'{b.label}'" for b in blocks)
            raise DecodeError(f"expected one CSR, found PEM block(s) {labels}")
        csr = _load_csr_der(blocks[0].der)
    try:
        csr.subject  # noqa: B018 - force the lazy parse
        csr.extensions  # noqa: B018
    except PARSE_ERRORS as exc:
        raise DecodeError(f"malformed CSR: {_reason(exc)}") from exc
    return csr


def _check_certificate(cert: x509.Certificate) -> None:
    """Touch the lazily-parsed parts so a malformed certificate fails here."""
    try:
        cert.version  # noqa: B018
        cert.subject  # noqa: B018
        cert.issuer  # noqa: B018
        cert.extensions  # noqa: B018
        cert.not_valid_before_utc  # noqa: B018
        cert.not_valid_after_utc  # noqa: B018
    except PARSE_ERRORS as exc:
        raise DecodeError(f"malformed certificate: {_reason(exc)}") from exc


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 fingerprint of the certificate: uppercase hex with colons."""
    return _colon_hex(cert.fingerprint(hashes.SHA256()))


def public_key_fingerprint(key: PublicKeyTypes | PrivateKeyTypes) -> str:
    """SHA-256 of the public key's SubjectPublicKeyInfo: uppercase hex with colons."""
    public = key if not isinstance(key, _PRIVATE_KEY_CLASSES) else key.public_key()
    spki = typing.cast(PublicKeyTypes, public).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return _colon_hex(hashlib.sha256(spki).digest())


_NAME_SHORT: dict[x509.ObjectIdentifier, str] = {
    NameOID.COMMON_NAME: "CN",
    NameOID.COUNTRY_NAME: "C",
    NameOID.LOCALITY_NAME: "L",
    NameOID.STATE_OR_PROVINCE_NAME: "ST",
    NameOID.STREET_ADDRESS: "street",
    NameOID.ORGANIZATION_NAME: "O",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    NameOID.SERIAL_NUMBER: "serialNumber",
    NameOID.SURNAME: "SN",
    NameOID.GIVEN_NAME: "GN",
    NameOID.TITLE: "title",
    NameOID.INITIALS: "initials",
    NameOID.GENERATION_QUALIFIER: "generationQualifier",
    NameOID.DN_QUALIFIER: "dnQualifier",
    NameOID.PSEUDONYM: "pseudonym",
    NameOID.USER_ID: "UID",
    NameOID.DOMAIN_COMPONENT: "DC",
    NameOID.EMAIL_ADDRESS: "emailAddress",
    NameOID.JURISDICTION_COUNTRY_NAME: "jurisdictionC",
    NameOID.JURISDICTION_LOCALITY_NAME: "jurisdictionL",
    NameOID.JURISDICTION_STATE_OR_PROVINCE_NAME: "jurisdictionST",
    NameOID.BUSINESS_CATEGORY: "businessCategory",
    NameOID.POSTAL_CODE: "postalCode",
    NameOID.ORGANIZATION_IDENTIFIER: "organizationIdentifier",
    NameOID.UNSTRUCTURED_NAME: "unstructuredName",
}


def attribute_name(oid: x509.ObjectIdentifier) -> str:
    """The short name OpenSSL prints for a name attribute (``CN``, ``emailAddress``), or the
    dotted OID for one it has no name for."""
    return _NAME_SHORT.get(oid, oid.dotted_string)


def format_name(name: x509.Name) -> str:
    """A distinguished name as OpenSSL prints it: ``C=GB, O=Acme, CN=x`` (encoded order,
    most significant first). ``\\``, ``,`` and ``+`` inside values are escaped with a
    backslash; multi-valued RDNs are joined with `` + ``."""
    parts: list[str] = []
    for rdn in name.rdns:
        attrs = []
        for attr in rdn:
            key = attribute_name(attr.oid)
            value = attr.value if isinstance(attr.value, str) else attr.value.hex()
            escaped = value.replace("\\", "\\\\").replace(",", "\\,").replace("+", "\\+")
            attrs.append(f"{key}={escaped}")
        parts.append(" + ".join(attrs))
    return ", ".join(parts)


# --------------------------------------------------------------------------- formatting


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _openssl_time(when: dt.datetime) -> str:
    """``Jan  1 00:00:00 2024 GMT``, independent of the locale."""
    when = when.astimezone(dt.UTC)
    return f"{_MONTHS[when.month - 1]} {when.day:2d} {when:%H:%M:%S} {when.year} GMT"


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _colon_hex(data: bytes, *, upper: bool = True) -> str:
    text = data.hex(":")
    return text.upper() if upper else text


def _hex_block(data: bytes, indent: int) -> list[str]:
    """OpenSSL's multi-line hex dump: 15 lowercase bytes per line, colon separated."""
    pad = " " * indent
    rows = [data[i : i + 15] for i in range(0, len(data), 15)] or [b""]
    lines = [pad + row.hex(":") + ":" for row in rows]
    lines[-1] = lines[-1][:-1]
    return lines


def _int_bytes(value: int) -> bytes:
    value = abs(value)
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


def _serial_hex(serial: int) -> str:
    """JSON form of a serial number: uppercase hex, even length, ``-`` if negative."""
    return ("-" if serial < 0 else "") + _int_bytes(serial).hex().upper()


def _serial_text(serial: int) -> str:
    return ("(Negative)" if serial < 0 else "") + _int_bytes(serial).hex(":")


def _oid_name(oid: x509.ObjectIdentifier) -> str:
    name = oid._name
    return oid.dotted_string if name == "Unknown OID" else name


_SIGNATURE_NAMES: dict[x509.ObjectIdentifier, str] = {
    SignatureAlgorithmOID.ED25519: "ED25519",
    SignatureAlgorithmOID.ED448: "ED448",
    SignatureAlgorithmOID.RSASSA_PSS: "rsassaPss",
}


def _signature_name(oid: x509.ObjectIdentifier) -> str:
    return _SIGNATURE_NAMES.get(oid) or _oid_name(oid)


def _to_str(value: bytes) -> str:
    """Bytes shown to a user: as text when printable UTF-8, else as hex."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return value.hex(":")
    return text if text.isprintable() else value.hex(":")


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
            *_hex_block(modulus, indent + 8),
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
            *_hex_block(point, indent + 8),
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
            *_hex_block(public.public_bytes(raw, serialization.PublicFormat.Raw), indent + 8),
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


# --------------------------------------------------------------------------- extensions

_EXTENSION_NAMES: dict[type[x509.ExtensionType], str] = {
    x509.BasicConstraints: "X509v3 Basic Constraints",
    x509.KeyUsage: "X509v3 Key Usage",
    x509.ExtendedKeyUsage: "X509v3 Extended Key Usage",
    x509.SubjectAlternativeName: "X509v3 Subject Alternative Name",
    x509.IssuerAlternativeName: "X509v3 Issuer Alternative Name",
    x509.SubjectKeyIdentifier: "X509v3 Subject Key Identifier",
    x509.AuthorityKeyIdentifier: "X509v3 Authority Key Identifier",
    x509.CRLDistributionPoints: "X509v3 CRL Distribution Points",
    x509.FreshestCRL: "X509v3 Freshest CRL",
    x509.AuthorityInformationAccess: "Authority Information Access",
    x509.SubjectInformationAccess: "Subject Information Access",
    x509.CertificatePolicies: "X509v3 Certificate Policies",
    x509.CRLNumber: "X509v3 CRL Number",
    x509.DeltaCRLIndicator: "X509v3 Delta CRL Indicator",
    x509.CRLReason: "X509v3 CRL Reason Code",
    x509.InvalidityDate: "Invalidity Date",
    x509.CertificateIssuer: "X509v3 Certificate Issuer",
    x509.IssuingDistributionPoint: "X509v3 Issuing Distribution Point",
    x509.NameConstraints: "X509v3 Name Constraints",
    x509.PolicyConstraints: "X509v3 Policy Constraints",
    x509.InhibitAnyPolicy: "X509v3 Inhibit Any Policy",
    x509.OCSPNoCheck: "OCSP No Check",
    x509.TLSFeature: "TLS Feature",
    x509.PrecertificateSignedCertificateTimestamps: "CT Precertificate SCTs",
    x509.SignedCertificateTimestamps: "CT Certificate SCTs",
    x509.PrecertPoison: "CT Precertificate Poison",
    x509.OCSPNonce: "OCSP Nonce",
    x509.MSCertificateTemplate: "Microsoft Certificate Template",
}

_KEY_USAGES = (
    ("digital_signature", "Digital Signature"),
    ("content_commitment", "Non Repudiation"),
    ("key_encipherment", "Key Encipherment"),
    ("data_encipherment", "Data Encipherment"),
    ("key_agreement", "Key Agreement"),
    ("key_cert_sign", "Certificate Sign"),
    ("crl_sign", "CRL Sign"),
)

_EKU_NAMES: dict[x509.ObjectIdentifier, str] = {
    ExtendedKeyUsageOID.SERVER_AUTH: "TLS Web Server Authentication",
    ExtendedKeyUsageOID.CLIENT_AUTH: "TLS Web Client Authentication",
    ExtendedKeyUsageOID.CODE_SIGNING: "Code Signing",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "E-mail Protection",
    ExtendedKeyUsageOID.TIME_STAMPING: "Time Stamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSP Signing",
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE: "Any Extended Key Usage",
    ExtendedKeyUsageOID.SMARTCARD_LOGON: "Microsoft Smartcard Login",
    ExtendedKeyUsageOID.KERBEROS_PKINIT_KDC: "Signing KDC Response",
    ExtendedKeyUsageOID.IPSEC_IKE: "ipsec Internet Key Exchange",
    x509.ObjectIdentifier("1.3.6.1.5.5.7.3.20"): "SIP Domain",
}

_REASON_NAMES: dict[x509.ReasonFlags, str] = {
    x509.ReasonFlags.unspecified: "Unspecified",
    x509.ReasonFlags.key_compromise: "Key Compromise",
    x509.ReasonFlags.ca_compromise: "CA Compromise",
    x509.ReasonFlags.affiliation_changed: "Affiliation Changed",
    x509.ReasonFlags.superseded: "Superseded",
    x509.ReasonFlags.cessation_of_operation: "Cessation Of Operation",
    x509.ReasonFlags.certificate_hold: "Certificate Hold",
    x509.ReasonFlags.privilege_withdrawn: "Privilege Withdrawn",
    x509.ReasonFlags.aa_compromise: "AA Compromise",
    x509.ReasonFlags.remove_from_crl: "Remove From CRL",
}

_ACCESS_METHODS: dict[x509.ObjectIdentifier, str] = {
    AuthorityInformationAccessOID.OCSP: "OCSP",
    AuthorityInformationAccessOID.CA_ISSUERS: "CA Issuers",
}

_UPN_OID = x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")
_EXTENSION_REQUEST = x509.ObjectIdentifier("1.2.840.113549.1.9.14")


def _general_name(name: x509.GeneralName) -> tuple[str, str, str]:
    """(text label, JSON type, value) of a GeneralName."""
    if isinstance(name, x509.DNSName):
        return "DNS", "dns", name.value
    if isinstance(name, x509.IPAddress):
        return "IP Address", "ip", str(name.value)
    if isinstance(name, x509.RFC822Name):
        return "email", "email", name.value
    if isinstance(name, x509.UniformResourceIdentifier):
        return "URI", "uri", name.value
    if isinstance(name, x509.DirectoryName):
        return "DirName", "dirname", format_name(name.value)
    if isinstance(name, x509.RegisteredID):
        return "Registered ID", "rid", _oid_name(name.value)
    if isinstance(name, x509.OtherName):
        label = "UPN" if name.type_id == _UPN_OID else name.type_id.dotted_string
        return "othername", "othername", f"{label}:{name.value.hex(':')}"
    return "unknown", "unknown", repr(name)


def _gn_text(name: x509.GeneralName) -> str:
    label, _, value = _general_name(name)
    return f"{label}:{value}"


def _gn_dict(name: x509.GeneralName) -> dict[str, str]:
    _, kind, value = _general_name(name)
    return {"type": kind, "value": value}


def _distribution_points(
    points: Iterable[x509.DistributionPoint],
) -> tuple[list[str], list[dict[str, Any]]]:
    lines: list[str] = []
    values: list[dict[str, Any]] = []
    for point in points:
        value: dict[str, Any] = {}
        if point.full_name is not None:
            lines.append("Full Name:")
            lines.extend(f"  {_gn_text(n)}" for n in point.full_name)
            value["full_name"] = [_gn_dict(n) for n in point.full_name]
        if point.relative_name is not None:
            relative = format_name(x509.Name([point.relative_name]))
            lines.append(f"Relative Name: {relative}")
            value["relative_name"] = relative
        if point.reasons is not None:
            reasons = sorted(_REASON_NAMES[r] for r in point.reasons)
            lines.append(f"Reasons: {', '.join(reasons)}")
            value["reasons"] = sorted(r.value for r in point.reasons)
        if point.crl_issuer is not None:
            lines.append("CRL Issuer:")
            lines.extend(f"  {_gn_text(n)}" for n in point.crl_issuer)
            value["crl_issuer"] = [_gn_dict(n) for n in point.crl_issuer]
        values.append(value)
    return lines, values


def _policies(policies: x509.CertificatePolicies) -> tuple[list[str], list[dict[str, Any]]]:
    lines: list[str] = []
    values: list[dict[str, Any]] = []
    for policy in policies:
        lines.append(f"Policy: {_oid_name(policy.policy_identifier)}")
        value: dict[str, Any] = {"oid": policy.policy_identifier.dotted_string, "cps": []}
        notices: list[dict[str, Any]] = []
        for qualifier in policy.policy_qualifiers or []:
            if isinstance(qualifier, str):
                lines.append(f"  CPS: {qualifier}")
                value["cps"].append(qualifier)
                continue
            lines.append("  User Notice:")
            notice: dict[str, Any] = {"explicit_text": qualifier.explicit_text}
            if qualifier.notice_reference is not None:
                ref = qualifier.notice_reference
                numbers = ", ".join(str(n) for n in ref.notice_numbers)
                lines.append(f"    Organization: {ref.organization}")
                lines.append(f"    Number{'s' if len(ref.notice_numbers) != 1 else ''}: {numbers}")
                notice["organization"] = ref.organization
                notice["notice_numbers"] = list(ref.notice_numbers)
            if qualifier.explicit_text is not None:
                lines.append(f"    Explicit Text: {qualifier.explicit_text}")
            notices.append(notice)
        if notices:
            value["user_notices"] = notices
        values.append(value)
    return lines, values


def _key_usage(usage: x509.KeyUsage) -> list[str]:
    names = [label for attr, label in _KEY_USAGES if getattr(usage, attr)]
    if usage.key_agreement:
        if usage.encipher_only:
            names.append("Encipher Only")
        if usage.decipher_only:
            names.append("Decipher Only")
    return names


def _render_extension(value: x509.ExtensionType) -> tuple[list[str], Any]:
    """Text lines and JSON value of one extension's value."""
    if isinstance(value, x509.BasicConstraints):
        text = f"CA:{'TRUE' if value.ca else 'FALSE'}"
        if value.path_length is not None:
            text += f", pathlen:{value.path_length}"
        return [text], {"ca": value.ca, "path_length": value.path_length}
    if isinstance(value, x509.KeyUsage):
        names = _key_usage(value)
        return [", ".join(names)], names
    if isinstance(value, x509.ExtendedKeyUsage):
        items = [{"oid": o.dotted_string, "name": _EKU_NAMES.get(o) or _oid_name(o)} for o in value]
        return [", ".join(i["name"] for i in items)], items
    if isinstance(
        value, x509.SubjectAlternativeName | x509.IssuerAlternativeName | x509.CertificateIssuer
    ):
        return [", ".join(_gn_text(n) for n in value)], [_gn_dict(n) for n in value]
    if isinstance(value, x509.SubjectKeyIdentifier):
        return [_colon_hex(value.digest)], _colon_hex(value.digest)
    if isinstance(value, x509.AuthorityKeyIdentifier):
        lines: list[str] = []
        aki: dict[str, Any] = {"key_identifier": None}
        if value.key_identifier is not None:
            aki["key_identifier"] = _colon_hex(value.key_identifier)
            lines.append(f"keyid:{aki['key_identifier']}")
        if value.authority_cert_issuer is not None:
            lines.extend(_gn_text(n) for n in value.authority_cert_issuer)
            aki["issuer"] = [_gn_dict(n) for n in value.authority_cert_issuer]
        if value.authority_cert_serial_number is not None:
            lines.append(f"serial:{_serial_hex(value.authority_cert_serial_number)}")
            aki["serial"] = _serial_hex(value.authority_cert_serial_number)
        return lines, aki
    if isinstance(value, x509.CRLDistributionPoints | x509.FreshestCRL):
        return _distribution_points(value)
    if isinstance(value, x509.AuthorityInformationAccess | x509.SubjectInformationAccess):
        lines = []
        access: list[dict[str, Any]] = []
        for desc in value:
            method = _ACCESS_METHODS.get(desc.access_method) or _oid_name(desc.access_method)
            lines.append(f"{method} - {_gn_text(desc.access_location)}")
            access.append({"method": method, "location": _gn_dict(desc.access_location)})
        return lines, access
    if isinstance(value, x509.CertificatePolicies):
        return _policies(value)
    if isinstance(value, x509.CRLNumber | x509.DeltaCRLIndicator):
        return [str(value.crl_number)], value.crl_number
    if isinstance(value, x509.CRLReason):
        return [_REASON_NAMES[value.reason]], value.reason.value
    if isinstance(value, x509.InvalidityDate):
        when = value.invalidity_date_utc
        return [_openssl_time(when)], _iso(when)
    if isinstance(value, x509.IssuingDistributionPoint):
        return _issuing_distribution_point(value)
    if isinstance(value, x509.NameConstraints):
        lines = []
        constraints: dict[str, Any] = {}
        for label, subtrees in (
            ("Permitted", value.permitted_subtrees),
            ("Excluded", value.excluded_subtrees),
        ):
            if subtrees is not None:
                lines.append(f"{label}:")
                lines.extend(f"  {_gn_text(n)}" for n in subtrees)
                constraints[label.lower()] = [_gn_dict(n) for n in subtrees]
        return lines, constraints
    if isinstance(value, x509.PolicyConstraints):
        lines = []
        if value.require_explicit_policy is not None:
            lines.append(f"Require Explicit Policy:{value.require_explicit_policy}")
        if value.inhibit_policy_mapping is not None:
            lines.append(f"Inhibit Policy Mapping:{value.inhibit_policy_mapping}")
        return lines, {
            "require_explicit_policy": value.require_explicit_policy,
            "inhibit_policy_mapping": value.inhibit_policy_mapping,
        }
    if isinstance(value, x509.InhibitAnyPolicy):
        return [str(value.skip_certs)], value.skip_certs
    if isinstance(value, x509.OCSPNoCheck | x509.PrecertPoison):
        return ["NULL"], None
    if isinstance(value, x509.TLSFeature):
        names = [feature.name for feature in value]
        return [", ".join(names)], names
    if isinstance(
        value, x509.PrecertificateSignedCertificateTimestamps | x509.SignedCertificateTimestamps
    ):
        scts = [
            {
                "log_id": _colon_hex(sct.log_id),
                "timestamp": _iso(sct.timestamp.replace(tzinfo=dt.UTC)),
            }
            for sct in value
        ]
        return [f"Log ID {s['log_id']} at {s['timestamp']}" for s in scts], scts
    if isinstance(value, x509.OCSPNonce):
        return [_colon_hex(value.nonce)], _colon_hex(value.nonce)
    if isinstance(value, x509.MSCertificateTemplate):
        template: dict[str, Any] = {
            "template_id": value.template_id.dotted_string,
            "major_version": value.major_version,
            "minor_version": value.minor_version,
        }
        return [f"Template: {value.template_id.dotted_string}"], template
    if isinstance(value, x509.UnrecognizedExtension):
        return _hex_block(value.value, 0), {"der": value.value.hex()}
    der = value.public_bytes()
    return _hex_block(der, 0), {"der": der.hex()}


def _issuing_distribution_point(
    value: x509.IssuingDistributionPoint,
) -> tuple[list[str], dict[str, Any]]:
    lines: list[str] = []
    idp: dict[str, Any] = {}
    if value.full_name is not None:
        lines.append("Full Name:")
        lines.extend(f"  {_gn_text(n)}" for n in value.full_name)
        idp["full_name"] = [_gn_dict(n) for n in value.full_name]
    if value.relative_name is not None:
        idp["relative_name"] = format_name(x509.Name([value.relative_name]))
        lines.append(f"Relative Name: {idp['relative_name']}")
    flags = (
        ("only_contains_user_certs", "Only User Certificates"),
        ("only_contains_ca_certs", "Only CA Certificates"),
        ("only_contains_attribute_certs", "Only Attribute Certificates"),
        ("indirect_crl", "Indirect CRL"),
    )
    for attr, label in flags:
        flag = bool(getattr(value, attr))
        idp[attr] = flag
        if flag:
            lines.append(label)
    if value.only_some_reasons is not None:
        lines.append(
            "Only Some Reasons: "
            + ", ".join(sorted(_REASON_NAMES[r] for r in value.only_some_reasons))
        )
        idp["only_some_reasons"] = sorted(r.value for r in value.only_some_reasons)
    return lines, idp


def _extension_name(ext: x509.Extension[x509.ExtensionType]) -> str:
    name = _EXTENSION_NAMES.get(type(ext.value))
    return name if name is not None else _oid_name(ext.oid)


def _extensions_text(extensions: x509.Extensions, indent: int) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    for ext in extensions:
        critical = " critical" if ext.critical else ""
        lines.append(f"{pad}{_extension_name(ext)}:{critical}")
        text, _ = _render_extension(ext.value)
        lines.extend(f"{pad}    {line}" for line in text)
    return lines


def _extensions_dict(extensions: x509.Extensions) -> list[dict[str, Any]]:
    items = []
    for ext in extensions:
        _, value = _render_extension(ext.value)
        items.append(
            {
                "oid": ext.oid.dotted_string,
                "name": _extension_name(ext).removeprefix("X509v3 "),
                "critical": ext.critical,
                "value": value,
            }
        )
    return items


# --------------------------------------------------------------------------- objects


def _object_kind(obj: DecodedObject) -> Kind:
    if isinstance(obj, x509.Certificate):
        return Kind.CERTIFICATE
    if isinstance(obj, x509.CertificateSigningRequest):
        return Kind.CSR
    if isinstance(obj, x509.CertificateRevocationList):
        return Kind.CRL
    if isinstance(obj, pkcs12.PKCS12KeyAndCertificates):
        return Kind.PKCS12
    if _is_private_key(obj):
        return Kind.PRIVATE_KEY
    return Kind.PUBLIC_KEY


def _is_private_key(obj: object) -> bool:
    return isinstance(obj, _PRIVATE_KEY_CLASSES) or type(obj).__name__.endswith("PrivateKey")


def _object_text(obj: DecodedObject) -> list[str]:
    if isinstance(obj, x509.Certificate):
        return _certificate_text(obj)
    if isinstance(obj, x509.CertificateSigningRequest):
        return _csr_text(obj)
    if isinstance(obj, x509.CertificateRevocationList):
        return _crl_text(obj)
    if isinstance(obj, pkcs12.PKCS12KeyAndCertificates):
        return _pkcs12_text(obj)
    if _is_private_key(obj):
        return _private_key_text(typing.cast(PrivateKeyTypes, obj))
    public = typing.cast(PublicKeyTypes, obj)
    return [
        "Public Key:",
        *_spki_text(public, type(public).__name__, 4),
        f"    SPKI SHA-256: {public_key_fingerprint(public)}",
    ]


def _object_dict(obj: DecodedObject) -> dict[str, Any]:
    if isinstance(obj, x509.Certificate):
        return _certificate_dict(obj)
    if isinstance(obj, x509.CertificateSigningRequest):
        return _csr_dict(obj)
    if isinstance(obj, x509.CertificateRevocationList):
        return _crl_dict(obj)
    if isinstance(obj, pkcs12.PKCS12KeyAndCertificates):
        return _pkcs12_dict(obj)
    if _is_private_key(obj):
        public = typing.cast(PrivateKeyTypes, obj).public_key()
        return {"kind": Kind.PRIVATE_KEY.value, **_key_facts(public)}
    return {"kind": Kind.PUBLIC_KEY.value, **_key_facts(typing.cast(PublicKeyTypes, obj))}


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
        f"            Not Before: {_openssl_time(cert.not_valid_before_utc)}",
        f"            Not After : {_openssl_time(cert.not_valid_after_utc)}",
        f"        Subject: {format_name(cert.subject)}",
        "        Subject Public Key Info:",
        *_spki_text(_certificate_public_key(cert), _oid_name(cert.public_key_algorithm_oid), 12),
    ]
    if len(cert.extensions):
        lines.append("        X509v3 extensions:")
        lines.extend(_extensions_text(cert.extensions, 12))
    lines += [
        f"    Signature Algorithm: {_signature_name(cert.signature_algorithm_oid)}",
        "    Signature Value:",
        *_hex_block(cert.signature, 8),
        f"SHA256 Fingerprint={fingerprint(cert)}",
        f"SHA1 Fingerprint={_colon_hex(cert.fingerprint(hashes.SHA1()))}",  # noqa: S303 - a label, not security
    ]
    return lines


def _certificate_dict(cert: x509.Certificate) -> dict[str, Any]:
    public = _certificate_public_key(cert)
    key: dict[str, Any] = (
        _key_facts(public)
        if public is not None
        else {"type": _oid_name(cert.public_key_algorithm_oid), "supported": False}
    )
    return {
        "kind": Kind.CERTIFICATE.value,
        "version": cert.version.value + 1,
        "subject": format_name(cert.subject),
        "issuer": format_name(cert.issuer),
        "serial": _serial_hex(cert.serial_number),
        "not_before": _iso(cert.not_valid_before_utc),
        "not_after": _iso(cert.not_valid_after_utc),
        "signature_algorithm": _signature_name(cert.signature_algorithm_oid),
        "public_key": key,
        "extensions": _extensions_dict(cert.extensions),
        "self_issued": cert.subject == cert.issuer,
        "sha256_fingerprint": fingerprint(cert),
        "sha1_fingerprint": _colon_hex(cert.fingerprint(hashes.SHA1())),  # noqa: S303
    }


def _csr_attributes(csr: x509.CertificateSigningRequest) -> list[tuple[str, str]]:
    attributes = []
    for attribute in csr.attributes:
        if attribute.oid == _EXTENSION_REQUEST:
            continue  # shown as "Requested Extensions"
        attributes.append((_oid_name(attribute.oid), _to_str(attribute.value)))
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
        lines.extend(_extensions_text(csr.extensions, 12))
    lines += [
        f"    Signature Algorithm: {_signature_name(csr.signature_algorithm_oid)}",
        "    Signature Value:",
        *_hex_block(csr.signature, 8),
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
        "kind": Kind.CSR.value,
        "subject": format_name(csr.subject),
        "signature_algorithm": _signature_name(csr.signature_algorithm_oid),
        "signature_valid": _csr_signature_valid(csr),
        "public_key": _key_facts(public) if public is not None else {"supported": False},
        "attributes": [{"name": n, "value": v} for n, v in _csr_attributes(csr)],
        "extensions": _extensions_dict(csr.extensions),
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
        f"        Last Update: {_openssl_time(crl.last_update_utc)}",
        f"        Next Update: {_openssl_time(next_update) if next_update else 'NONE'}",
    ]
    if len(crl.extensions):
        lines.append("        CRL extensions:")
        lines.extend(_extensions_text(crl.extensions, 12))
    total = len(crl)
    if total == 0:
        lines.append("No Revoked Certificates.")
    else:
        lines.append(f"Revoked Certificates: ({total})")
        for index, entry in enumerate(crl):
            if index == TEXT_REVOKED_LIMIT:
                lines.append(f"    ... and {total - TEXT_REVOKED_LIMIT} more")
                break
            lines.append(f"    Serial Number: {_serial_hex(entry.serial_number)}")
            lines.append(f"        Revocation Date: {_openssl_time(entry.revocation_date_utc)}")
            if len(entry.extensions):
                lines.append("        CRL entry extensions:")
                lines.extend(_extensions_text(entry.extensions, 12))
    lines += [
        f"    Signature Algorithm: {_signature_name(crl.signature_algorithm_oid)}",
        "    Signature Value:",
        *_hex_block(crl.signature, 8),
    ]
    return lines


def _crl_dict(crl: x509.CertificateRevocationList) -> dict[str, Any]:
    next_update = crl.next_update_utc
    revoked = []
    for entry in crl:
        reason = _revoked_reason(entry)
        revoked.append(
            {
                "serial": _serial_hex(entry.serial_number),
                "revocation_date": _iso(entry.revocation_date_utc),
                "reason": reason.value if reason is not None else None,
                "extensions": _extensions_dict(entry.extensions),
            }
        )
    return {
        "kind": Kind.CRL.value,
        "issuer": format_name(crl.issuer),
        "last_update": _iso(crl.last_update_utc),
        "next_update": _iso(next_update) if next_update else None,
        "signature_algorithm": _signature_name(crl.signature_algorithm_oid),
        "extensions": _extensions_dict(crl.extensions),
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
    return None if name is None else _to_str(name)


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
        "kind": Kind.PKCS12.value,
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
