"""One line of a validation report: which check ran, its outcome, and why.

Kept apart from ``validate`` so the revocation modules can write report lines without
importing the validator (``validate`` re-exports ``Check``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Check"]


@dataclass(frozen=True, slots=True)
class Check:
    name: str  # path | validity | name | ocsp | crl | cdp | revocation
    outcome: str  # pass | fail | good | revoked | unknown | skipped
    text: str

    def as_dict(self) -> dict[str, str]:
        return {"check": self.name, "outcome": self.outcome, "text": self.text}
