"""Names: subject strings (``/C=GB/O=Acme``), subject alternative names, DNS/FQDN rules."""

from __future__ import annotations

import ipaddress
import re

from cryptography import x509
from cryptography.x509.oid import NameOID

from certway.errors import PolicyViolation

__all__ = [
    "SUBJECT_KEYS",
    "check_dns_name",
    "check_fqdn",
    "common_name",
    "parse_san",
    "parse_subject",
    "san_sort_key",
    "san_text",
]

SUBJECT_KEYS: dict[str, x509.ObjectIdentifier] = {
    "C": NameOID.COUNTRY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "L": NameOID.LOCALITY_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "CN": NameOID.COMMON_NAME,
    "emailAddress": NameOID.EMAIL_ADDRESS,
    "DC": NameOID.DOMAIN_COMPONENT,
    "serialNumber": NameOID.SERIAL_NUMBER,
    "street": NameOID.STREET_ADDRESS,
    "postalCode": NameOID.POSTAL_CODE,
    "title": NameOID.TITLE,
    "GN": NameOID.GIVEN_NAME,
    "SN": NameOID.SURNAME,
    "UID": NameOID.USER_ID,
}
_KEYS_FOLDED = {k.lower(): v for k, v in SUBJECT_KEYS.items()}
_KEYS_FOLDED["e"] = NameOID.EMAIL_ADDRESS
_KEYS_FOLDED["email"] = NameOID.EMAIL_ADDRESS

_LABEL_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_UPPER_BOUNDS = {NameOID.COUNTRY_NAME: 2, NameOID.COMMON_NAME: 64, NameOID.EMAIL_ADDRESS: 255}


def parse_subject(text: str) -> list[x509.NameAttribute[str]]:
    """Parse an OpenSSL-style subject ``/C=GB/O=Acme/CN=x`` (``\\/`` escapes a slash).

    A comma-separated form ``C=GB, O=Acme`` is accepted too. Returns attributes in order.
    """
    text = text.strip()
    if not text:
        return []
    if text.startswith("/"):
        parts = re.split(r"(?<!\\)/", text[1:])
    else:
        parts = re.split(r"(?<!\\),", text)
    attributes: list[x509.NameAttribute[str]] = []
    for raw in parts:
        part = raw.strip().replace("\\/", "/").replace("\\,", ",")
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise PolicyViolation(
                "subject-syntax", f"subject part '{part}' is not KEY=VALUE (e.g. /C=GB/O=Acme)"
            )
        oid = _KEYS_FOLDED.get(key.strip().lower())
        if oid is None:
            raise PolicyViolation(
                "subject-syntax",
                f"unknown subject attribute '{key.strip()}'; known: {', '.join(SUBJECT_KEYS)}",
            )
        attributes.append(subject_attribute(oid, value.strip()))
    return attributes


def subject_attribute(oid: x509.ObjectIdentifier, value: str) -> x509.NameAttribute[str]:
    """One subject attribute with the checks X.509 imposes (non-empty, length, country)."""
    label = oid._name
    if not value:
        raise PolicyViolation("subject-syntax", f"subject attribute {label} is empty")
    if oid == NameOID.COUNTRY_NAME and not re.fullmatch(r"[A-Za-z]{2}", value):
        raise PolicyViolation(
            "subject-syntax", f"country must be a two-letter code such as GB, not '{value}'"
        )
    if oid == NameOID.COUNTRY_NAME:
        value = value.upper()
    bound = _UPPER_BOUNDS.get(oid, 128)
    if len(value) > bound:
        raise PolicyViolation(
            "subject-syntax", f"subject attribute {label} is longer than {bound} characters"
        )
    return x509.NameAttribute(oid, value)


def check_dns_name(name: str, *, what: str = "DNS name") -> str:
    """Validate a DNS name (no wildcard); return it lower-cased without a trailing dot."""
    if "*" in name:
        raise PolicyViolation("wildcard", f"wildcards are not allowed: '{name}' ({what})")
    value = name.strip().rstrip(".").lower()
    if not value:
        raise PolicyViolation("dns-name", f"empty {what}")
    if len(value) > 253:
        raise PolicyViolation("dns-name", f"{what} '{name}' is longer than 253 characters")
    try:
        value.encode("ascii")
    except UnicodeEncodeError:
        raise PolicyViolation(
            "dns-name", f"{what} '{name}' is not ASCII: give the IDNA (xn--) form"
        ) from None
    for label in value.split("."):
        if not _LABEL_RE.match(label):
            raise PolicyViolation(
                "dns-name",
                f"{what} '{name}' is not a valid DNS name: label '{label}' must be 1-63 "
                "letters, digits or hyphens, not starting or ending with a hyphen",
            )
    return value


def check_fqdn(name: str, *, what: str = "name") -> str:
    """A fully qualified domain name: a valid DNS name with at least two labels whose last
    label starts with a letter (the Expressway rule for phone security profile names)."""
    value = check_dns_name(name, what=what)
    labels = value.split(".")
    if len(labels) < 2:
        raise PolicyViolation(
            "not-fqdn", f"{what} '{name}' is not an FQDN: use the form host.example.com"
        )
    if not labels[-1][0].isalpha():
        raise PolicyViolation(
            "not-fqdn", f"{what} '{name}' is not an FQDN: the last label must start with a letter"
        )
    return value


def parse_san(text: str) -> x509.GeneralName:
    """``DNS:name``, ``IP:addr``, ``email:x@y``, ``URI:…``, or a bare DNS name / IP address."""
    kind, sep, value = text.strip().partition(":")
    if sep and kind.upper() in {"DNS", "IP", "EMAIL", "URI"}:
        kind = kind.upper()
    elif _looks_like_ip(text.strip()):
        kind, value = "IP", text.strip()
    elif not sep:
        kind, value = "DNS", text.strip()
    else:
        raise PolicyViolation(
            "san-syntax", f"alternative name '{text}' must start with DNS:, IP:, email: or URI:"
        )
    value = value.strip()
    if kind == "DNS":
        return x509.DNSName(check_dns_name(value))
    if kind == "IP":
        try:
            return x509.IPAddress(ipaddress.ip_address(value))
        except ValueError:
            raise PolicyViolation("san-syntax", f"'{value}' is not an IP address") from None
    if kind == "EMAIL":
        if "@" not in value or "*" in value:
            raise PolicyViolation("san-syntax", f"'{value}' is not an email address")
        return x509.RFC822Name(value)
    if "*" in value:
        raise PolicyViolation("wildcard", f"wildcards are not allowed: '{value}'")
    return x509.UniformResourceIdentifier(value)


def _looks_like_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def san_text(name: x509.GeneralName) -> str:
    """``DNS:x`` / ``IP:y`` as shown in previews and listings."""
    if isinstance(name, x509.DNSName):
        return f"DNS:{name.value}"
    if isinstance(name, x509.IPAddress):
        return f"IP:{name.value}"
    if isinstance(name, x509.RFC822Name):
        return f"email:{name.value}"
    if isinstance(name, x509.UniformResourceIdentifier):
        return f"URI:{name.value}"
    return str(name.value)


def san_sort_key(name: x509.GeneralName) -> tuple[int, str]:
    order = {x509.DNSName: 0, x509.IPAddress: 1, x509.RFC822Name: 2}
    return (order.get(type(name), 3), san_text(name))


def common_name(name: x509.Name) -> str | None:
    """The (last) CN of a name, or None."""
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not values:
        return None
    value = values[-1].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")
