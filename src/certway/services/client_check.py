"""Client certificate testing: trust + revocation per a service's policy, and the
username a regex + format would give (admin certificate-based login) — worked out only for
a certificate that validated: an untrusted certificate's names are never mapped to an account."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from certway.clock import Clock
from certway.errors import DecodeError, PolicyViolation
from certway.pki.load import load_certificates
from certway.services.peer_validation import PeerValidation
from certway.trust.identity import UsernameMapping, check_format, compile_regex, map_username
from certway.trust.validate import Purpose, ValidationOptions, ValidationResult

__all__ = ["NOT_MAPPED", "CheckReport", "ClientCheck", "parse_certificates"]

NOT_MAPPED = "the username mapping was not attempted because the certificate is not trusted"


def parse_certificates(data: bytes) -> list[x509.Certificate]:
    """Certificates from PEM, DER, PKCS#7, or pasted text (PEM, or bare base64 DER)."""
    try:
        return load_certificates(data)
    except DecodeError:
        text = data.strip()
        if b"-----BEGIN" in text or not re.fullmatch(rb"[A-Za-z0-9+/=\s]+", text or b"!"):
            raise
        try:
            der = base64.b64decode(b"".join(text.split()), validate=True)
        except (binascii.Error, ValueError):
            raise DecodeError("pasted text is not a certificate (PEM or base64 DER)") from None
        return load_certificates(der)


@dataclass(frozen=True)
class CheckReport:
    service: str
    result: ValidationResult
    username: UsernameMapping | None = None
    username_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        data = {"service": self.service, **self.result.as_dict()}
        if self.username is not None:
            data["username"] = self.username.username
            data["groups"] = self.username.groups
        if self.username_error is not None:
            data["username"] = None
            data["username_error"] = self.username_error
        return data


class ClientCheck:
    def __init__(self, clock: Clock, peers: PeerValidation) -> None:
        self._clock = clock
        self._peers = peers

    def check(
        self,
        data: bytes,
        *,
        purpose: str = "client",
        name: str | None = None,
        service: str = "admin-https",
        chain: bytes | None = None,
        regex: str | None = None,
        fmt: str | None = None,
    ) -> CheckReport:
        if (regex is None) != (fmt is None):
            raise PolicyViolation(
                "username-format", "give both a regex and a username format, or neither"
            )
        if regex is not None and fmt is not None:
            # A bad regex or format is bad input: refused before validating, valid or not.
            check_format(fmt, compile_regex(regex))
        try:
            kind = Purpose(purpose)
        except ValueError:
            raise PolicyViolation(
                "purpose", f"purpose must be client or server, not '{purpose}'"
            ) from None
        state = self._peers.state(service)
        certs = parse_certificates(data)
        intermediates = certs[1:] + (parse_certificates(chain) if chain else [])
        result = state.validate(
            certs[0],
            intermediates,
            options=ValidationOptions.for_peer(kind, name=name),
            at=self._clock.now(),
        )
        if regex is None or fmt is None:
            return CheckReport(service, result)
        if not result.valid:  # never map the names of a certificate nobody vouches for
            return CheckReport(service, result, username_error=NOT_MAPPED)
        try:
            mapping = map_username(certs[0], regex, fmt)
        except PolicyViolation as exc:
            if exc.code not in ("regex-no-match", "username-empty", "names-too-long"):
                raise
            return CheckReport(service, result, username_error=str(exc))
        return CheckReport(service, result, username=mapping)
