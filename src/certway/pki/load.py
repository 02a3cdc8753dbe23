"""Loading PKI objects from bytes: what a file holds, recognised from its content.

:func:`load_any` recognises, from the PEM label or by trial DER parsing (never from a file
name): a certificate (or a PEM bundle of them), a CSR, a CRL, a certs-only PKCS#7 bundle,
a PKCS#12 file, a private key or a public key. The ``load_*`` functions load one expected
kind (certificates, CRLs, a CSR, a PKCS#7 or PKCS#12 bundle) and refuse anything else.

Anything that is not what is asked for raises :class:`~certway.errors.DecodeError` with a
one-line message; an encrypted object without (or with a wrong) passphrase raises
:class:`~certway.errors.PassphraseError`. Every exception ``cryptography`` raises while
parsing is translated into one of the two. Rendering what was loaded is
:mod:`certway.pki.render`'s job.
"""

from __future__ import annotations

import re
import typing
import warnings
from collections.abc import Callable
from enum import StrEnum

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12

from certway.errors import DecodeError, PassphraseError, PolicyViolation
from certway.pki.encoding import PemBlock, is_pem, pem_blocks

__all__ = [
    "MAX_BUNDLE_CERTIFICATES",
    "PARSE_ERRORS",
    "TEXT_NOT_DER",
    "DecodedObject",
    "ObjectKind",
    "check_bundle_size",
    "error_reason",
    "load_any",
    "load_certificates",
    "load_crl_der",
    "load_crls",
    "load_csr",
    "load_pkcs7",
    "load_pkcs12",
    "looks_like_text",
    "refuse_text",
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


class ObjectKind(StrEnum):
    """What a file (or one object in it) holds: a certificate, a CSR, a key, ..."""

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


_PEM_KINDS: dict[str, ObjectKind] = {
    "CERTIFICATE": ObjectKind.CERTIFICATE,
    "X509 CERTIFICATE": ObjectKind.CERTIFICATE,
    "CERTIFICATE REQUEST": ObjectKind.CSR,
    "NEW CERTIFICATE REQUEST": ObjectKind.CSR,
    "X509 CRL": ObjectKind.CRL,
    "PKCS7": ObjectKind.PKCS7,
    "PKCS #7 SIGNED DATA": ObjectKind.PKCS7,
    "CMS": ObjectKind.PKCS7,
    "PRIVATE KEY": ObjectKind.PRIVATE_KEY,
    "ENCRYPTED PRIVATE KEY": ObjectKind.PRIVATE_KEY,
    "RSA PRIVATE KEY": ObjectKind.PRIVATE_KEY,
    "EC PRIVATE KEY": ObjectKind.PRIVATE_KEY,
    "DSA PRIVATE KEY": ObjectKind.PRIVATE_KEY,
    "PUBLIC KEY": ObjectKind.PUBLIC_KEY,
    "RSA PUBLIC KEY": ObjectKind.PUBLIC_KEY,
}

# Same grammar as certway.pki.encoding, to recover a block's raw text (legacy encrypted
# keys carry "Proc-Type"/"DEK-Info" headers that only the PEM loader understands).
_RAW_PEM_RE = re.compile(
    rb"-----BEGIN ([A-Z0-9 #]+)-----\r?\n.*?-----END \1-----",
    re.DOTALL,
)

_BER_WARNING = "PKCS#7 certificates could not be parsed as DER"

_NOT_PKI = "not a certificate, CSR, CRL, PKCS#7, PKCS#12 or key"

#: Why text that is not PEM is refused: no DER object is printable text either.
TEXT_NOT_DER = "no PEM BEGIN line, and text is not DER"


# --------------------------------------------------------------------------- detect


def load_any(
    data: bytes, passphrase: bytes | None = None
) -> tuple[ObjectKind, tuple[DecodedObject, ...], str]:
    """What ``data`` (PEM or DER) holds: its kind as a whole (the kind of the first PEM
    block when a PEM file mixes several), the objects found and the encoding (``"PEM"`` or
    ``"DER"``). ``passphrase`` decrypts an encrypted private key or PKCS#12 file."""
    if not data.strip():
        raise DecodeError("empty input: nothing to decode")
    return _detect_pem(data, passphrase) if is_pem(data) else _detect_der(data, passphrase)


def _detect_pem(
    data: bytes, passphrase: bytes | None
) -> tuple[ObjectKind, tuple[DecodedObject, ...], str]:
    blocks = pem_blocks(data)
    raw_blocks: list[bytes] | None = None
    objects: list[DecodedObject] = []
    kinds: list[ObjectKind] = []
    for index, block in enumerate(blocks):
        kind = _PEM_KINDS.get(block.label)
        if kind is None:
            raise DecodeError(f"unsupported PEM block '{block.label}': {_NOT_PKI}")
        if kind is ObjectKind.PRIVATE_KEY:
            if raw_blocks is None:
                raw_blocks = [m.group(0) for m in _RAW_PEM_RE.finditer(data)]
            objects.append(_load_private_key(raw_blocks[index], passphrase, pem=True))
        elif kind is ObjectKind.PKCS7:
            objects.extend(_load_pkcs7_der(block.der))
        else:
            objects.append(_load_pem_block(block, kind))
        kinds.append(kind)
    return kinds[0], tuple(objects), "PEM"


def _load_pem_block(block: PemBlock, kind: ObjectKind) -> DecodedObject:
    if block.der == b"":
        raise DecodeError(f"PEM block '{block.label}' has headers: not a {kind.value}")
    loaders: dict[ObjectKind, Callable[[bytes], DecodedObject]] = {
        ObjectKind.CERTIFICATE: _load_cert_der,
        ObjectKind.CSR: _load_csr_der,
        ObjectKind.CRL: load_crl_der,
        ObjectKind.PUBLIC_KEY: _load_public_key_der,
    }
    return loaders[kind](block.der)


def _detect_der(
    data: bytes, passphrase: bytes | None
) -> tuple[ObjectKind, tuple[DecodedObject, ...], str]:
    trials: list[tuple[ObjectKind, Callable[[bytes], DecodedObject]]] = [
        (ObjectKind.CERTIFICATE, x509.load_der_x509_certificate),
        (ObjectKind.CSR, x509.load_der_x509_csr),
        (ObjectKind.CRL, x509.load_der_x509_crl),
    ]
    for kind, loader in trials:
        try:
            return kind, (loader(data),), "DER"
        except PARSE_ERRORS:
            pass
    certs = _try_pkcs7_der(data)
    if certs is not None:
        return ObjectKind.PKCS7, tuple(certs), "DER"
    p12 = _try_pkcs12(data, passphrase)
    if p12 is not None:
        return ObjectKind.PKCS12, (p12,), "DER"
    try:
        return ObjectKind.PRIVATE_KEY, (_load_private_key(data, passphrase, pem=False),), "DER"
    except PassphraseError:
        raise
    except DecodeError:
        pass
    try:
        return ObjectKind.PUBLIC_KEY, (serialization.load_der_public_key(data),), "DER"
    except PARSE_ERRORS:
        pass
    if looks_like_text(data):
        raise DecodeError(f"{_NOT_PKI} ({TEXT_NOT_DER})")
    raise DecodeError(f"{_NOT_PKI}: {der_problem(data)}")


def looks_like_text(data: bytes) -> bool:
    """Whether ``data`` (not PEM) is printable text: no DER object is, so the reason to give
    is :data:`TEXT_NOT_DER` rather than what a DER parser makes of the letters."""
    sample = data[:512]
    return all(32 <= b < 127 or b in b"\r\n\t" for b in sample)


def refuse_text(data: bytes, what: str) -> None:
    """Raise ``DecodeError("not <what>: no PEM BEGIN line, ...")`` when ``data`` (not PEM)
    is text: the check every loader makes before parsing DER."""
    if looks_like_text(data):
        raise DecodeError(f"not {what}: {TEXT_NOT_DER}")


# What the ASN.1 parser of `cryptography` reports (``ParseError { kind: ShortData { needed: 108
# }, location: [...] }``), said the way an administrator can act on it.
_PARSE_ERROR = re.compile(
    r"ParseError \{ kind: (?P<kind>\w+)(?: \{ needed: (?P<needed>\d+) \})?"
    r"(?:.*?location: \[(?P<location>[^\]]*)\])?",
    re.S,
)
_PARSE_KINDS = {
    "ShortData": "the data ends early: the file is truncated",
    "ExtraData": "there are extra bytes after the end of the object",
    "UnexpectedTag": "the data does not have the structure of this kind of object",
    "InvalidTag": "the data is not DER (an invalid ASN.1 tag)",
    "InvalidLength": "the data is damaged (an invalid ASN.1 length)",
    "InvalidValue": "a field holds an invalid value",
    "IntegerOverflow": "a number is too large",
    "InvalidSetOrdering": "the data is not DER (a SET is not in DER order)",
    "EncodedDefault": "the data is not DER (a default value is encoded)",
    "OidTooLong": "an object identifier is too long",
    "UnknownDefinedBy": "a field has an unknown type identifier",
}


def error_reason(exc: BaseException) -> str:
    """One line saying what is wrong with the data, never the parser's internals: the first
    line of an exception message, with `cryptography`'s ASN.1 parse errors translated."""
    text = str(exc).strip()
    found = _PARSE_ERROR.search(text)
    if found is not None:
        reason = _PARSE_KINDS.get(found["kind"], "the data is not valid DER")
        if found["needed"]:
            reason += f" ({found['needed']} more bytes expected)"
        fields = [f.strip().strip('"') for f in (found["location"] or "").split(",") if f.strip()]
        if fields:
            reason += f", in the field {fields[-1].split('::')[-1].split(' ')[0]}"
        return reason
    if "Could not deserialize key data" in text:
        return (
            "the key cannot be read (not a key in a supported format, a wrong passphrase, or "
            "an unsupported key type)"
        )
    if "Unable to load PEM file" in text:
        return "the PEM block cannot be decoded (damaged base64 or contents)"
    lines = text.splitlines()
    return lines[0] if lines else type(exc).__name__


def der_problem(data: bytes) -> str:
    """Why bytes that parse as nothing might be so, from their outer DER header (or because
    they are text)."""
    if looks_like_text(data):
        return TEXT_NOT_DER
    if len(data) < 2 or data[0] != 0x30:
        return "not DER: the data does not start with an ASN.1 SEQUENCE"
    first = data[1]
    if first < 0x80:
        length, header = first, 2
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or len(data) < 2 + count:
            return "not DER: the length of the outer SEQUENCE is invalid"
        length, header = int.from_bytes(data[2 : 2 + count], "big"), 2 + count
    if header + length > len(data):
        return (
            f"the DER data is truncated: it announces {header + length} bytes, the file has "
            f"{len(data)}"
        )
    if header + length < len(data):
        return f"{len(data) - header - length} extra bytes follow the DER data"
    return "the DER data does not have the structure of any supported object"


# --------------------------------------------------------------------------- loaders


def _load_cert_der(der: bytes) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(der)
    except PARSE_ERRORS as exc:
        raise DecodeError(f"not a valid certificate: {error_reason(exc)}") from exc


def _load_csr_der(der: bytes) -> x509.CertificateSigningRequest:
    try:
        return x509.load_der_x509_csr(der)
    except PARSE_ERRORS as exc:
        raise DecodeError(f"not a valid CSR: {error_reason(exc)}") from exc


def load_crl_der(der: bytes) -> x509.CertificateRevocationList:
    """One DER CRL. Raises ``DecodeError`` when the bytes are not a CRL."""
    try:
        return x509.load_der_x509_crl(der)
    except PARSE_ERRORS as exc:
        raise DecodeError(f"not a valid CRL: {error_reason(exc)}") from exc


def _load_public_key_der(der: bytes) -> PublicKeyTypes:
    try:
        return serialization.load_der_public_key(der)
    except PARSE_ERRORS as exc:
        raise DecodeError(f"not a valid public key: {error_reason(exc)}") from exc


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
            raise DecodeError(f"not a PKCS#7 bundle: {der_problem(data)}")
        if not certs:
            raise DecodeError("PKCS#7 bundle holds no certificates")
    else:
        certs = []
        for block in pem_blocks(data):
            if _PEM_KINDS.get(block.label) is not ObjectKind.PKCS7:
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
        raise DecodeError(f"not a PKCS#12 file: {der_problem(data)}")
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
                f"PKCS#12 file uses an unsupported algorithm: {error_reason(exc)}"
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
        raise DecodeError(f"not a valid private key: {error_reason(exc)}") from exc
    except UnsupportedAlgorithm as exc:
        raise DecodeError(f"unsupported private key algorithm: {error_reason(exc)}") from exc
    except PARSE_ERRORS as exc:
        if passphrase is not None and "incorrect password" in str(exc).lower():
            raise PassphraseError("wrong passphrase for private key") from exc
        raise DecodeError(f"not a valid private key: {error_reason(exc)}") from exc


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
            if kind is ObjectKind.CERTIFICATE:
                certs.append(_load_cert_der(block.der))
            elif kind is ObjectKind.PKCS7:
                certs.extend(_load_pkcs7_der(block.der))
            else:
                raise DecodeError(f"expected certificates, found a PEM '{block.label}' block")
    else:
        try:
            certs = [x509.load_der_x509_certificate(data)]
        except PARSE_ERRORS:
            p7 = _try_pkcs7_der(data)
            if p7 is None:
                raise DecodeError(
                    f"not a certificate or PKCS#7 bundle: {der_problem(data)}"
                ) from None
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
        refuse_text(data, "a CRL")
        return [load_crl_der(data)]
    crls: list[x509.CertificateRevocationList] = []
    for block in pem_blocks(data):
        if _PEM_KINDS.get(block.label) is not ObjectKind.CRL:
            raise DecodeError(f"expected a CRL, found a PEM '{block.label}' block")
        crls.append(load_crl_der(block.der))
    return crls


def load_csr(data: bytes) -> x509.CertificateSigningRequest:
    """One CSR, PEM or DER."""
    if not data.strip():
        raise DecodeError("empty input: no CSR")
    if not is_pem(data):
        refuse_text(data, "a CSR")
        csr = _load_csr_der(data)
    else:
        blocks = pem_blocks(data)
        if len(blocks) != 1 or _PEM_KINDS.get(blocks[0].label) is not ObjectKind.CSR:
            labels = ", ".join(f"'{b.label}'" for b in blocks)
            found = "no PEM block" if not blocks else f"PEM block{'s' if len(blocks) > 1 else ''}"
            raise DecodeError(f"expected one CSR, found {found} {labels}".rstrip())
        csr = _load_csr_der(blocks[0].der)
    try:
        csr.subject  # noqa: B018 - force the lazy parse
        csr.extensions  # noqa: B018
    except PARSE_ERRORS as exc:
        raise DecodeError(f"malformed CSR: {error_reason(exc)}") from exc
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
        raise DecodeError(f"malformed certificate: {error_reason(exc)}") from exc
