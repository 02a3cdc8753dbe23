"""The one error hierarchy of certway.

Every adapter (CLI, API, UI, SIP listener) maps these in one place; a user never sees
a traceback for bad input, and an error is raised before any state is changed.

::

    CertwayError
     ├── DecodeError          input is not the PKI object it claims to be (garbage, truncated)
     ├── PassphraseError      a key or PKCS#12 could not be decrypted with the passphrase given
     ├── PolicyViolation      well-formed input that our rules refuse; carries a stable ``code``
     ├── NotFound             a named object (CA, certificate, …) does not exist
     ├── Conflict             the change clashes with existing state (duplicate name, …)
     ├── StoreError           the data directory is missing, locked or unreadable
     └── FetchError           a network fetch (CRL, OCSP) failed
"""

from __future__ import annotations

__all__ = [
    "CertwayError",
    "Conflict",
    "DecodeError",
    "FetchError",
    "NotFound",
    "PassphraseError",
    "PolicyViolation",
    "StoreError",
]


class CertwayError(Exception):
    """Base of every error certway raises on purpose. ``str(err)`` is a one-line message."""


class DecodeError(CertwayError):
    """The bytes given are not a readable certificate, CSR, CRL, key or bundle."""


class PassphraseError(CertwayError):
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
