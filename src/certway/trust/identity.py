"""Username mapping from a client certificate (S2): regex over the text form + a format.

The regex runs over each line of the text form (like ``openssl x509 -text``), first match
wins. It may name its groups the .NET/PCRE way ``(?<Group1>…)`` (as Expressway shows them)
or the Python way ``(?P<Group1>…)``; ``/…/`` delimiters are accepted. The format replaces
``#Group1#`` with the group's value, e.g. ``prefix#Group1#suffix``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cryptography import x509

from certway.errors import PolicyViolation
from certway.pki.decode import Decoded, Kind
from certway.saferegex import check_regex_shape

__all__ = [
    "DEFAULT_FORMAT",
    "DEFAULT_REGEX",
    "UsernameMapping",
    "certificate_text",
    "compile_regex",
    "map_username",
]

DEFAULT_REGEX = r"/Subject:.*CN=(?<Group1>[^,]*)/"
DEFAULT_FORMAT = "#Group1#"
MAX_PATTERN = 1024

_DOTNET_GROUP = re.compile(r"(?<!\\)\(\?<(?![=!])([A-Za-z_][A-Za-z0-9_]*)>")
_FORMAT_GROUP = re.compile(r"#([A-Za-z_][A-Za-z0-9_]*)#")


def compile_regex(pattern: str) -> re.Pattern[str]:
    """Compile an administrator's regex; a clear PolicyViolation when it is not valid."""
    text = pattern.strip()
    if len(text) >= 2 and text.startswith("/") and text.endswith("/"):
        text = text[1:-1]
    if not text:
        raise PolicyViolation("regex", "the regex is empty")
    if len(text) > MAX_PATTERN:
        raise PolicyViolation("regex", f"the regex is longer than {MAX_PATTERN} characters")
    converted = _DOTNET_GROUP.sub(r"(?P<\1>", text)
    try:
        compiled = re.compile(converted)
    except re.error as exc:
        where = f" at position {exc.pos}" if exc.pos is not None else ""
        raise PolicyViolation("regex", f"invalid regex: {exc.msg}{where}") from None
    check_regex_shape(converted)  # it runs on every certificate login
    return compiled


def check_format(fmt: str, regex: re.Pattern[str]) -> list[str]:
    """The group names ``fmt`` uses; each must exist in ``regex``."""
    names = _FORMAT_GROUP.findall(fmt)
    if not names:
        raise PolicyViolation(
            "username-format", "the username format names no group: use e.g. #Group1#"
        )
    missing = [n for n in names if n not in regex.groupindex]
    if missing:
        known = ", ".join(regex.groupindex) or "none"
        raise PolicyViolation(
            "username-format",
            f"the username format uses #{missing[0]}# but the regex has no group of that name "
            f"(groups: {known})",
        )
    return names


def certificate_text(cert: x509.Certificate) -> str:
    """The text form the regex runs over (like ``openssl x509 -text``)."""
    return Decoded(Kind.CERTIFICATE, (cert,)).to_text()


@dataclass(frozen=True, slots=True)
class UsernameMapping:
    username: str
    groups: dict[str, str]
    matched: str


def map_username(cert: x509.Certificate, pattern: str, fmt: str) -> UsernameMapping:
    """Apply ``pattern`` to the certificate's text and build the username with ``fmt``."""
    regex = compile_regex(pattern)
    check_format(fmt, regex)
    # Line by line, first match wins: a class like [^,]* must not run on into the next
    # line of the text (Expressway's default regex relies on that).
    match = None
    for line in certificate_text(cert).splitlines():
        match = regex.search(line)
        if match is not None:
            break
    if match is None:
        raise PolicyViolation(
            "regex-no-match", "the regex does not match the certificate's text: no username"
        )
    groups = {name: value or "" for name, value in match.groupdict().items()}

    def fill(m: re.Match[str]) -> str:
        return groups[m.group(1)]

    username = _FORMAT_GROUP.sub(fill, fmt).strip()
    if not username:
        raise PolicyViolation("username-empty", "the regex matched but the username is empty")
    return UsernameMapping(username, groups, match.group(0))
