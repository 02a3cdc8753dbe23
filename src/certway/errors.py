"""The one error hierarchy of certway.

Every adapter (CLI, API, UI, SIP listener) maps these in one place; a user never sees
a traceback for bad input, and an error is raised before any state is changed.

::

    CertwayError
     ├── DecodeError          input is not the PKI object it claims to be (garbage, truncated)
     │    └── PassphraseError a key or PKCS#12 could not be decrypted with the passphrase given
     ├── PolicyViolation      well-formed input that our rules refuse; carries a stable ``code``
     ├── NotFound             a named object (CA, certificate, …) does not exist
     ├── Conflict             the change clashes with existing state (duplicate name, …)
     ├── StoreError           the data directory is missing, locked or unreadable
 ├── TokenError           a PKCS#11 token cannot be used (module, PIN, key object)
     ├── FetchError           a network fetch (CRL, OCSP) failed
     └── ValidationFailed     a peer certificate was rejected; carries ``code`` and ``cert_index``
          ├── Untrusted        no path to a trusted CA (or a bad signature on the way)
          ├── Expired          outside its validity period at the validation time
          ├── NameMismatch     the expected name is not in the certificate
          ├── WrongPurpose     its extended key usage does not allow the purpose
          ├── Malformed        an extension cannot be parsed
          ├── Revoked          revoked per the local CA's records, a CRL or an OCSP answer;
          │                    carries ``reason``, ``revoked_at`` and ``source``
          └── RevocationUnknown status could not be determined and the policy says reject
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

__all__ = [
    "CertwayError",
    "Conflict",
    "DecodeError",
    "Expired",
    "FetchError",
    "Malformed",
    "NameMismatch",
    "NotFound",
    "PassphraseError",
    "PolicyViolation",
    "RevocationUnknown",
    "Revoked",
    "StoreError",
    "TokenError",
    "Untrusted",
    "ValidationCode",
    "ValidationFailed",
    "WrongPurpose",
]


class CertwayError(Exception):
    """Base of every error certway raises on purpose. ``str(err)`` is a one-line message."""


class DecodeError(CertwayError):
    """The bytes given are not a readable certificate, CSR, CRL, key or bundle."""


class PassphraseError(DecodeError):
    """A passphrase is missing, wrong, or given for data that is not encrypted."""


class PolicyViolation(CertwayError):
    """Well-formed input refused by a rule. ``code`` is stable and machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class NotFound(CertwayError):
    """A named object does not exist."""


class Conflict(CertwayError):
    """The change clashes with the current state."""


class StoreError(CertwayError):
    """The data directory or database cannot be used."""


class TokenError(CertwayError):
    """A PKCS#11 token (HSM) cannot be used: module missing, PIN refused, key gone."""


class FetchError(CertwayError):
    """A network fetch failed (connection, timeout, size limit, HTTP status)."""


class ValidationCode(StrEnum):
    """The stable, machine-readable reason a peer certificate was rejected."""

    INVALID = "invalid"
    UNTRUSTED = "untrusted"
    EXPIRED = "expired"
    NAME_MISMATCH = "name-mismatch"
    WRONG_EKU = "wrong-eku"
    MALFORMED = "malformed"
    REVOKED = "revoked"
    REVOCATION_UNKNOWN = "revocation-unknown"


class ValidationFailed(CertwayError):
    """A certificate or chain was rejected. ``cert_index`` is 0 for the peer (leaf)."""

    code: ValidationCode = ValidationCode.INVALID

    def __init__(self, message: str, *, cert_index: int = 0) -> None:
        super().__init__(message)
        self.cert_index = cert_index


class Untrusted(ValidationFailed):
    code = ValidationCode.UNTRUSTED


class Expired(ValidationFailed):
    code = ValidationCode.EXPIRED


class NameMismatch(ValidationFailed):
    code = ValidationCode.NAME_MISMATCH


class WrongPurpose(ValidationFailed):
    code = ValidationCode.WRONG_EKU


class Malformed(ValidationFailed):
    code = ValidationCode.MALFORMED


class Revoked(ValidationFailed):
    """Revoked: ``reason`` (RFC 5280 name, None when the source gives none), ``revoked_at``
    and ``source`` (which CRL, responder or local CA said so), as the source stated them."""

    code = ValidationCode.REVOKED

    def __init__(
        self,
        message: str,
        *,
        cert_index: int = 0,
        reason: str | None = None,
        revoked_at: dt.datetime | None = None,
        source: str | None = None,
    ) -> None:
        super().__init__(message, cert_index=cert_index)
        self.reason = reason
        self.revoked_at = revoked_at
        self.source = source


class RevocationUnknown(ValidationFailed):
    code = ValidationCode.REVOCATION_UNKNOWN
