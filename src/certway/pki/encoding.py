"""PEM/DER detection from content (never from file names) and PEM block splitting."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from certway.errors import DecodeError

__all__ = ["PemBlock", "is_pem", "pem_blocks", "to_pem"]

_PEM_RE = re.compile(
    rb"-----BEGIN ([A-Z0-9 #]+)-----\r?\n(.*?)-----END \1-----",
    re.DOTALL,
)
_BEGIN_RE = re.compile(rb"-----BEGIN ([A-Z0-9 #]+)-----")


@dataclass(frozen=True, slots=True)
class PemBlock:
    label: str
    der: bytes

    @property
    def pem(self) -> bytes:
        return to_pem(self.der, self.label)


def is_pem(data: bytes) -> bool:
    """True when the data holds at least one PEM BEGIN line."""
    return _BEGIN_RE.search(data) is not None


def pem_blocks(data: bytes) -> list[PemBlock]:
    """Every PEM block in ``data``, in order. Raises ``DecodeError`` for a truncated or
    corrupt block (a BEGIN line without its END, or bad base64)."""
    blocks: list[PemBlock] = []
    for match in _PEM_RE.finditer(data):
        label = match.group(1).decode("ascii")
        body = match.group(2)
        lines = [ln.strip() for ln in body.splitlines()]
        # Encrypted legacy PEM keys carry headers ("Proc-Type: ...") before the base64.
        if any(b":" in ln for ln in lines):
            blocks.append(PemBlock(label, b""))
            continue
        try:
            der = base64.b64decode(b"".join(lines), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise DecodeError(f"PEM block '{label}' has invalid base64 content") from exc
        if not der:
            raise DecodeError(f"PEM block '{label}' is empty")
        blocks.append(PemBlock(label, der))
    begins = len(_BEGIN_RE.findall(data))
    if begins != len(blocks):
        raise DecodeError("truncated PEM: a BEGIN line has no matching END line")
    return blocks


def to_pem(der: bytes, label: str) -> bytes:
    """DER bytes as a PEM block with 64-character lines."""
    b64 = base64.b64encode(der)
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return (
        f"-----BEGIN {label}-----\n".encode()
        + b"\n".join(lines)
        + f"\n-----END {label}-----\n".encode()
    )
