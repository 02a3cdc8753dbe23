"""One line of a validation report: which check ran, its outcome, and why.

Kept apart from ``validate`` so the revocation modules can write report lines without
importing the validator (``validate`` re-exports ``Check``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Check", "Outcome", "RevocationFacts"]


class Outcome(StrEnum):
    """What one check found."""

    PASS = "pass"  # noqa: S105 (an outcome, not a password)
    FAIL = "fail"
    GOOD = "good"
    REVOKED = "revoked"
    UNKNOWN = "unknown"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class RevocationFacts:
    """What a revocation source said about a revoked certificate."""

    reason: str | None
    revoked_at: dt.datetime | None
    source: str


@dataclass(frozen=True, slots=True)
class Check:
    name: str  # path | records | ocsp | crl | cdp | revocation
    outcome: Outcome
    text: str
    revocation: RevocationFacts | None = None
    """With a ``revoked`` outcome: the reason, date and source, for ``errors.Revoked``."""

    def as_dict(self) -> dict[str, str]:
        return {"check": self.name, "outcome": self.outcome.value, "text": self.text}
