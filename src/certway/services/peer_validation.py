"""One way to judge a peer certificate for a service, used by every caller.

The SIP listener, the zone pinger, the HTTPS admin listener (client certificates) and
``certway check`` all validate through ``ValidationState.validate``: the service's profile and
revocation policy, the trusted CA list, the CRL index, the local CAs' own revocation records
(a revocation there counts at once) and online OCSP/CDP lookups. No caller has a revocation
rule of its own.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace

from cryptography import x509

from certway.services.local_ca import LocalCA
from certway.services.revocation import RevocationService
from certway.services.trusted_cas import TrustedCAs
from certway.trust.anchors import TrustSnapshot
from certway.trust.policy import RevocationPolicy
from certway.trust.records import CaRecords
from certway.trust.revocation import RevocationIndex
from certway.trust.validate import OnlineChecks, ValidationOptions, ValidationResult, validate

__all__ = ["PeerValidation", "ValidationState"]


@dataclass(frozen=True)
class ValidationState:
    """Everything a validation for one service reads, taken at one moment. A listener keeps
    one in memory and swaps it when something changes, so a handshake reads no database."""

    service: str
    policy: RevocationPolicy
    trust: TrustSnapshot
    index: RevocationIndex
    records: CaRecords
    online: OnlineChecks | None

    @property
    def may_fetch(self) -> bool:
        """Whether a validation may go to the network (OCSP, CDP): then it belongs in a
        worker thread, not on an event loop."""
        return self.policy.enabled and (self.policy.ocsp or self.policy.cdp)

    def validate(
        self,
        leaf: x509.Certificate,
        intermediates: Sequence[x509.Certificate] = (),
        *,
        options: ValidationOptions,
        at: dt.datetime,
    ) -> ValidationResult:
        """Judge ``leaf`` as this service does (its profile replaces ``options.profile``)."""
        return validate(
            leaf,
            intermediates,
            trust=self.trust,
            at=at,
            options=replace(options, profile=self.policy.profile),
            policy=self.policy,
            revocation=self.index,
            online=self.online,
            records=self.records,
        )


class PeerValidation:
    """Builds the current ``ValidationState`` of a service from the node's services."""

    def __init__(self, trusted: TrustedCAs, revocation: RevocationService, local_ca: LocalCA):
        self._trusted = trusted
        self._revocation = revocation
        self._local_ca = local_ca

    def state(self, service: str) -> ValidationState:
        return ValidationState(
            service,
            self._revocation.policy(service),
            self._trusted.snapshot(),
            self._revocation.index(),
            self._local_ca.records(),
            self._revocation.online,
        )
