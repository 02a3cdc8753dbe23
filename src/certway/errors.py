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
     ├── FetchError           a network fetch (CRL, OCSP) failed
     └── ValidationFailed     a peer certificate was rejected; carries ``code`` and ``cert_index``
          ├── Untrusted        no path to a trusted CA (or a bad signature on the way)
          ├── Expired          outside its validity period at the validation time
          ├── NameMismatch     the expected name is not in the certificate
          ├── Revoked          revoked per a CRL or an OCSP answer
          └── RevocationUnknown status could not be determined and the policy says reject
"""

from __future__ import annotations

__all__ = [
    "CertwayError",
    "Conflict",
    "DecodeError",
    "Expired",
    "FetchError",
    "NameMismatch",
    "NotFound",
    "PassphraseError",
    "PolicyViolation",
    "RevocationUnknown",
    "Revoked",
    "StoreError",
    "Untrusted",
    "ValidationFailed",
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


class FetchError(CertwayError):
    """A network fetch failed (connection, timeout, size limit, HTTP status)."""


class ValidationFailed(CertwayError):
    """A certificate or chain was rejected. ``cert_index`` is 0 for the peer (leaf)."""

    code = "invalid"

    def __init__(self, message: str, *, cert_index: int = 0) -> None:
        super().__init__(message)
        self.cert_index = cert_index


class Untrusted(ValidationFailed):
    code = "untrusted"


class Expired(ValidationFailed):
    code = "expired"


class NameMismatch(ValidationFailed):
    code = "name-mismatch"


class Revoked(ValidationFailed):
    code = "revoked"


class RevocationUnknown(ValidationFailed):
    code = "revocation-unknown"
