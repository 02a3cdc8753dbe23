"""PKI values as text, one form each: names, serial numbers, fingerprints, times, hex.

Every module that shows a PKI value to a user (CLI, API, web pages, logs, audit) takes its
form from here, so the same value reads the same everywhere:

- a distinguished name as OpenSSL prints it (``C=GB, O=Acme, CN=x``): :func:`format_name`;
- a serial number as upper-case hex with whole octets (an even number of digits, so
  ``0ABC`` and never ``ABC``), as ``openssl x509 -serial`` prints it: :func:`serial_hex`,
  read back by :func:`parse_serial`; the local CA stores its serials in this form too;
- a fingerprint as upper-case hex octets joined by colons: :func:`fingerprint`,
  :func:`public_key_fingerprint`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import typing

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x448, x25519
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.x509.oid import NameOID

from certway.errors import PolicyViolation

__all__ = [
    "attribute_name",
    "bytes_text",
    "colon_hex",
    "fingerprint",
    "format_name",
    "hex_block",
    "is_private_key",
    "iso_time",
    "oid_name",
    "openssl_time",
    "parse_serial",
    "plural",
    "public_key_fingerprint",
    "serial_hex",
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


def is_private_key(obj: object) -> typing.TypeGuard[PrivateKeyTypes]:
    """Whether ``obj`` is a private key (also of a type this module does not list)."""
    return isinstance(obj, _PRIVATE_KEY_CLASSES) or type(obj).__name__.endswith("PrivateKey")


# --------------------------------------------------------------------------- serial numbers


def _int_bytes(value: int) -> bytes:
    value = abs(value)
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


def serial_hex(serial: int) -> str:
    """A serial number as certway shows and stores it: upper-case hex of whole octets (an
    even number of digits: ``0ABC``, never ``ABC``), ``-`` first if negative."""
    return ("-" if serial < 0 else "") + _int_bytes(serial).hex().upper()


def parse_serial(text: str) -> str:
    """A serial number given as hex (``0x``, colons and spaces allowed) → :func:`serial_hex`."""
    cleaned = text.strip().lower().removeprefix("0x").replace(":", "").replace(" ", "")
    if not cleaned or not re.fullmatch(r"[0-9a-f]+", cleaned):
        raise PolicyViolation("serial", f"'{text}' is not a hexadecimal serial number")
    value = int(cleaned, 16)
    if value.bit_length() > 160:
        raise PolicyViolation("serial", f"serial number '{text}' is longer than 20 octets")
    return serial_hex(value)


# --------------------------------------------------------------------------- fingerprints, names


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 fingerprint of the certificate: uppercase hex with colons."""
    return colon_hex(cert.fingerprint(hashes.SHA256()))


def public_key_fingerprint(key: PublicKeyTypes | PrivateKeyTypes) -> str:
    """SHA-256 of the public key's SubjectPublicKeyInfo: uppercase hex with colons."""
    public = key.public_key() if is_private_key(key) else key
    spki = typing.cast(PublicKeyTypes, public).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return colon_hex(hashlib.sha256(spki).digest())


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


# --------------------------------------------------------------------------- times, hex, OIDs


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def openssl_time(when: dt.datetime) -> str:
    """``Jan  1 00:00:00 2024 GMT``, independent of the locale."""
    when = when.astimezone(dt.UTC)
    return f"{_MONTHS[when.month - 1]} {when.day:2d} {when:%H:%M:%S} {when.year} GMT"


def iso_time(when: dt.datetime) -> str:
    """ISO 8601 in UTC with a ``Z``: ``2024-01-01T00:00:00Z``."""
    return when.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def colon_hex(data: bytes, *, upper: bool = True) -> str:
    """Hex octets joined by colons: ``AB:CD``."""
    text = data.hex(":")
    return text.upper() if upper else text


def hex_block(data: bytes, indent: int) -> list[str]:
    """OpenSSL's multi-line hex dump: 15 lowercase bytes per line, colon separated."""
    pad = " " * indent
    rows = [data[i : i + 15] for i in range(0, len(data), 15)] or [b""]
    lines = [pad + row.hex(":") + ":" for row in rows]
    lines[-1] = lines[-1][:-1]
    return lines


def oid_name(oid: x509.ObjectIdentifier) -> str:
    """The name ``cryptography`` knows for an OID, else its dotted form."""
    name = oid._name
    return oid.dotted_string if name == "Unknown OID" else name


def bytes_text(value: bytes) -> str:
    """Bytes shown to a user: as text when printable UTF-8, else as hex."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return value.hex(":")
    return text if text.isprintable() else value.hex(":")


_PLURALS = {"entry": "entries", "key": "keys", "day": "days", "second": "seconds"}


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """``1 entry``, ``2 entries``, ``0 certificates``: the count with the word agreeing."""
    if count == 1:
        return f"{count} {singular}"
    return f"{count} {plural_form or _PLURALS.get(singular, singular + 's')}"
