"""One way to judge a peer certificate for a service, used by every caller.

The SIP listener, the zone pinger, the HTTPS admin listener (client certificates), the
outbound clients (remote syslog, LDAP, the ACME client) and ``certway check`` all validate
through ``ValidationState.validate``: the service's profile and revocation policy, the trusted
CA list, the CRL index, the local CAs' own revocation records (a revocation there counts at
once) and online OCSP/CDP lookups. No caller has a revocation rule of its own.
``ValidationState.server_refusal`` is the outbound clients' one way to judge the server they
connected to and say why it is refused.

Every caller passes the certificates the peer presented after its leaf
(``certway.tlsconf.presented.presented_chain``, read through ``presented_certificates``) as
untrusted intermediates: they help build a path to the trusted CA list and are never anchors,
so a server whose CA rotates its intermediates (Let's Encrypt) passes with its root trusted.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from cryptography import x509

from certway.pki.text import format_name
from certway.services.local_ca import LocalCA
from certway.services.revocation import RevocationService
from certway.services.trusted_cas import TrustedCAs
from certway.trust.anchors import TrustSnapshot
from certway.trust.policy import RevocationPolicy
from certway.trust.records import CaRecords
from certway.trust.revocation import RevocationIndex
from certway.trust.validate import (
    OnlineChecks,
    Purpose,
    ValidationOptions,
    ValidationResult,
    validate,
)

__all__ = ["PeerValidation", "ValidationState", "presented_certificates"]


def presented_certificates(ders: Iterable[bytes]) -> list[x509.Certificate]:
    """The certificates (DER) a peer presented after its leaf, parsed; one that cannot be
    parsed is left out (it could not be on any path)."""
    certificates = []
    for der in ders:
        try:
            certificates.append(x509.load_der_x509_certificate(der))
        except ValueError:
            continue
    return certificates


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

    def server_refusal(
        self,
        der: bytes | None,
        *,
        intermediates: Sequence[bytes] = (),
        name: str,
        at: dt.datetime,
        server: str,
    ) -> str | None:
        """Why the TLS server ``server`` (words such as "the receiver") is refused, or None
        when the certificate it presented (``der``, DER) passes this service's validation as
        a server certificate for ``name`` (the host the client connected to). The chain is
        built to the trusted CA list, through the certificates the server presented after
        its leaf (``intermediates``, DER, from ``presented_chain``: untrusted, never anchors;
        one that cannot be parsed is left out) and the trusted list. Blocking when the policy
        may fetch (OCSP, CDP): call it on a worker thread."""
        if der is None:
            return f"{server} presented no certificate"
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError:
            return f"{server}'s certificate cannot be parsed"
        result = self.validate(
            cert,
            presented_certificates(intermediates),
            options=ValidationOptions.for_peer(Purpose.SERVER, name=name),
            at=at,
        )
        if result.valid:
            return None
        subject = format_name(cert.subject) or "an empty subject"
        return f"{server}'s certificate {subject} is refused: {result.reason}"


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
