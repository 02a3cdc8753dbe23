"""Username mapping from a client certificate (admin certificate-based login): a regex over the
certificate's names + a format.

The regex (RE2, see ``certway.adminregex``: linear time, no backreferences or lookarounds)
runs over each line of the **mapping text** below, first match wins. It may name its groups
the .NET/PCRE way ``(?<Group1>…)`` (as Expressway shows them) or the Python way
``(?P<Group1>…)``; ``/…/`` delimiters are accepted. The format replaces ``#Group1#`` with the
group's value, e.g. ``prefix#Group1#suffix``.

The mapping text (``mapping_text``) is one line for the subject, then one line per subject
alternative name, in the certificate's order::

    Subject: C=GB, O=Acme, OU=CN\\=admin, CN=mallory
    X509v3 Subject Alternative Name: DNS:mallory.example.com
    X509v3 Subject Alternative Name: email:mallory@example.com
    X509v3 Subject Alternative Name: URI:urn:x:Subject:CN\\=admin
    X509v3 Subject Alternative Name: IP Address:192.0.2.7
    X509v3 Subject Alternative Name: othername:UPN:mallory@example.com

- The subject line is always there (``Subject:`` alone for an empty subject). Its
  attributes are in the order the certificate encodes them (most significant first, as
  ``openssl x509 -text`` prints them), as ``NAME=value`` joined by ``, ``; the attributes of
  a multi-valued RDN are joined by `` + ``. Names are OpenSSL's short names (``C``, ``ST``,
  ``L``, ``O``, ``OU``, ``CN``, ``emailAddress``, ``UID``, ``DC``, ``serialNumber`` …) or the
  dotted OID.
- SAN types are ``DNS``, ``IP Address``, ``email``, ``URI``, ``DirName``, ``Registered ID``
  and ``othername`` (``othername:UPN:…`` or ``othername:<OID>:…`` when the value is a
  string, else ``othername:<OID>:#<hex>``). A ``DirName`` is written as a subject, then
  escaped as one value.
- Every value (attribute values and SAN values alike) is escaped as in RFC 4514 section 2.4,
  and ``=`` too: ``\\`` before ``"`` ``+`` ``,`` ``;`` ``<`` ``>`` ``\\`` ``=``, before a
  leading ``#`` or space and before a trailing space; characters that are not printable
  (control characters, line and paragraph separators, invisible format characters …) become
  ``\\XX`` per UTF-8 byte. A value that is not text is ``#`` + hex.

The whole text may have at most ``MAX_TEXT`` characters; a certificate with more is not
mapped (``PolicyViolation("names-too-long")``), which bounds the work of one mapping.

So an unescaped ``=``, ``,`` or ``+`` appears only on the subject line and only between
attributes: ``CN=`` matches a real common name, never text inside a value, and no value can
start a line of its own. A SAN line starts with ``X509v3 Subject Alternative Name:``, never
``Subject:``; anchor a regex with ``^`` (``^Subject:``) to be sure it reads only the line
it means. Expressway's default ``/Subject:.*CN=(?<Group1>[^,]*)/`` takes the last common
name of the subject. A group's value keeps its escapes (``CN=a\\,b`` gives ``a\\``: ``[^,]``
stops at the escaped comma too).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from asn1crypto import core
from cryptography import x509

from certway.adminregex import AdminRegex, compile_admin_regex
from certway.errors import PolicyViolation
from certway.pki.decode import Decoded
from certway.pki.load import ObjectKind
from certway.pki.text import attribute_name

__all__ = [
    "DEFAULT_FORMAT",
    "DEFAULT_REGEX",
    "MAX_PATTERN",
    "MAX_TEXT",
    "SAN_LABEL",
    "UsernameMapping",
    "certificate_text",
    "check_format",
    "compile_regex",
    "escape_value",
    "map_username",
    "mapping_text",
]

DEFAULT_REGEX = r"/Subject:.*CN=(?<Group1>[^,]*)/"
DEFAULT_FORMAT = "#Group1#"
MAX_PATTERN = 1024
MAX_TEXT = 16_384
"""Characters of mapping text a certificate may have (every line, line breaks included)."""
SAN_LABEL = "X509v3 Subject Alternative Name"

# A fixed pattern over the administrator's *format* (not a pattern of theirs): #Name#.
_FORMAT_GROUP = re.compile(r"#([A-Za-z_][A-Za-z0-9_]*)#")
_UPN = x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")


def compile_regex(pattern: str) -> AdminRegex:
    """Compile an administrator's username regex (RE2); a clear PolicyViolation("regex")
    when it is empty, too long, invalid or uses what RE2 cannot run."""
    text = pattern.strip()
    if len(text) >= 2 and text.startswith("/") and text.endswith("/"):
        text = text[1:-1]
    if not text:
        raise PolicyViolation("regex", "the regex is empty")
    if len(text) > MAX_PATTERN:
        raise PolicyViolation("regex", f"the regex is longer than {MAX_PATTERN} characters")
    return compile_admin_regex(text, code="regex")


def check_format(fmt: str, regex: AdminRegex) -> list[str]:
    """The group names ``fmt`` uses; each must exist in ``regex``."""
    names = _FORMAT_GROUP.findall(fmt)
    if not names:
        raise PolicyViolation(
            "username-format", "the username format names no group: use e.g. #Group1#"
        )
    missing = [n for n in names if n not in regex.group_names]
    if missing:
        known = ", ".join(regex.group_names) or "none"
        raise PolicyViolation(
            "username-format",
            f"the username format uses #{missing[0]}# but the regex has no group of that name "
            f"(groups: {known})",
        )
    return names


def certificate_text(cert: x509.Certificate) -> str:
    """The readable text form shown to users (like ``openssl x509 -text``). The username
    regex does not run on it but on ``mapping_text``."""
    return Decoded(ObjectKind.CERTIFICATE, (cert,)).to_text()


# -- the mapping text ---------------------------------------------------------------------------
_SPECIAL = frozenset('"+,;<>\\=')


def escape_value(value: str) -> str:
    """``value`` escaped as an RFC 4514 attribute value (and ``=`` too); characters that are
    not printable become ``\\XX`` per UTF-8 byte, so the result is one printable line."""
    out: list[str] = []
    last = len(value) - 1
    for index, char in enumerate(value):
        if char in _SPECIAL or (index == 0 and char in "# ") or (index == last and char == " "):
            out.append("\\" + char)
        elif not char.isprintable():
            out.append("".join(f"\\{b:02X}" for b in char.encode("utf-8", "surrogatepass")))
        else:
            out.append(char)
    return "".join(out)


def _attribute_value(value: str | bytes) -> str:
    return escape_value(value) if isinstance(value, str) else "#" + value.hex().upper()


def _name(name: x509.Name) -> str:
    return ", ".join(
        " + ".join(f"{attribute_name(a.oid)}={_attribute_value(a.value)}" for a in rdn)
        for rdn in name.rdns
    )


def _other_name(name: x509.OtherName) -> str:
    label = "UPN" if name.type_id == _UPN else name.type_id.dotted_string
    try:
        parsed = core.load(name.value, strict=True)
        text = parsed.native if isinstance(parsed, core.AbstractString) else None
    except (ValueError, TypeError):  # not DER, or a string that does not decode
        text = None
    if isinstance(text, str):
        return f"{label}:{escape_value(text)}"
    return f"{label}:#{name.value.hex().upper()}"


def _general_name(name: x509.GeneralName) -> str:
    if isinstance(name, x509.DNSName):
        return f"DNS:{escape_value(name.value)}"
    if isinstance(name, x509.IPAddress):
        return f"IP Address:{escape_value(str(name.value))}"
    if isinstance(name, x509.RFC822Name):
        return f"email:{escape_value(name.value)}"
    if isinstance(name, x509.UniformResourceIdentifier):
        return f"URI:{escape_value(name.value)}"
    if isinstance(name, x509.DirectoryName):
        return f"DirName:{escape_value(_name(name.value))}"
    if isinstance(name, x509.RegisteredID):
        return f"Registered ID:{name.value.dotted_string}"
    if isinstance(name, x509.OtherName):
        return f"othername:{_other_name(name)}"
    return f"unknown:{escape_value(repr(name))}"  # pragma: no cover - every GeneralName above


def _alternative_names(cert: x509.Certificate) -> Iterator[x509.GeneralName]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):  # none, or extensions that do not parse
        return
    yield from san


def mapping_text(cert: x509.Certificate) -> list[str]:
    """The lines the username regex runs over (the module docstring gives the format)."""
    lines = [f"Subject: {_name(cert.subject)}".rstrip()]
    lines.extend(f"{SAN_LABEL}: {_general_name(n)}" for n in _alternative_names(cert))
    return lines


# -- mapping --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class UsernameMapping:
    username: str
    groups: dict[str, str]
    matched: str


def map_username(cert: x509.Certificate, pattern: str, fmt: str) -> UsernameMapping:
    """Apply ``pattern`` to the certificate's mapping text and build the username with
    ``fmt``. This does not judge the certificate: map only one that validated."""
    regex = compile_regex(pattern)
    check_format(fmt, regex)
    lines = mapping_text(cert)
    if sum(len(line) + 1 for line in lines) > MAX_TEXT:
        raise PolicyViolation(
            "names-too-long",
            f"the certificate's subject and subject alternative names are longer than "
            f"{MAX_TEXT:,} characters: no username",
        )
    # Line by line, first match wins: a class like [^,]* must not run on into the next
    # line (Expressway's default regex relies on that).
    for line in lines:
        match = regex.search(line)
        if match is not None:
            break
    else:
        raise PolicyViolation(
            "regex-no-match",
            "the regex does not match the certificate's subject or subject alternative "
            "names: no username",
        )
    groups = dict(match.groups)
    username = _FORMAT_GROUP.sub(lambda m: groups[m.group(1)], fmt).strip()
    if not username:
        raise PolicyViolation("username-empty", "the regex matched but the username is empty")
    return UsernameMapping(username, groups, match.text)
