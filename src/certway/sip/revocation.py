"""Revocation of a SIP TLS peer's chain per the ``sip-tls`` policy, shared by the listener
(inbound peers) and the zone pinger (outbound peers).

Certificates issued by one of the node's own CAs are answered from that CA's records (issue 6
part 3: a revocation is effective at once, without any CRL download); the rest of the chain
goes through the revocation engine (CRLs, OCSP, CDP).
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from certway.pki.decode import format_name
from certway.pki.ocsp_responder import CertStatus, OcspQuery, issuer_hashes
from certway.trust.anchors import TrustSnapshot
from certway.trust.policy import RevocationPolicy, Scope
from certway.trust.revocation import RevocationIndex
from certway.trust.validate import ValidationOptions, ValidationResult, validate

if TYPE_CHECKING:
    from certway.services.node import Node

__all__ = [
    "SERVICE",
    "RevocationRefusal",
    "RevocationState",
    "local_ca_certificates",
    "sip_revocation",
]

SERVICE = "sip-tls"


@dataclass(frozen=True, slots=True)
class RevocationRefusal:
    code: str  # revoked | revocation-unknown | ...
    reason: str


@dataclass(frozen=True)
class RevocationState:
    """What a revocation decision reads: the ``sip-tls`` policy, trusted CAs, CRL index."""

    policy: RevocationPolicy
    trust: TrustSnapshot
    index: RevocationIndex

    @classmethod
    def of(cls, node: Node) -> RevocationState:
        return cls(
            node.revocation.policy(SERVICE), node.trusted_cas.snapshot(), node.revocation.index()
        )

    @property
    def online(self) -> bool:
        """Whether a decision may fetch (OCSP, CDP): then it belongs in a worker thread."""
        return self.policy.enabled and (self.policy.ocsp or self.policy.cdp)


@functools.lru_cache(maxsize=256)
def _issuer_key(issuer: x509.Certificate) -> tuple[bytes, bytes]:
    return issuer_hashes(issuer, hashes.SHA256())


def local_ca_certificates(node: Node) -> frozenset[x509.Certificate]:
    """The certificates of the node's own CAs."""
    local = node.local_ca
    return frozenset(local.chain(info.name)[0] for info in local.cas())


def _own_status(
    node: Node,
    cert: x509.Certificate,
    issuer: x509.Certificate,
    local_cas: Collection[x509.Certificate],
) -> CertStatus | None:
    if issuer not in local_cas:
        return None
    name_hash, key_hash = _issuer_key(issuer)
    return node.local_ca.ocsp_lookup(
        OcspQuery(hashes.SHA256(), name_hash, key_hash, cert.serial_number)
    )


def sip_revocation(
    node: Node,
    path: ValidationResult,
    options: ValidationOptions,
    *,
    local_cas: Collection[x509.Certificate],
    state: RevocationState | None = None,
) -> RevocationRefusal | None:
    """Why ``path`` (a valid chain, leaf first) must be refused for revocation, or None.

    ``state`` is the policy, trust snapshot and CRL index to use (a listener keeps them in
    memory and swaps them when they change); without it they are read from the node."""
    state = state or RevocationState.of(node)
    policy = state.policy
    if not policy.enabled:
        return None
    chain = path.chain
    checked = [0] if policy.scope is Scope.PEER else list(range(len(chain) - 1))
    external: list[int] = []
    for index in checked:
        status = _own_status(node, chain[index], chain[index + 1], local_cas)
        if status is None:
            external.append(index)
        elif status.status == "revoked":
            who = (
                "the certificate"
                if index == 0
                else f"CA certificate {format_name(chain[index].subject)}"
            )
            when = f"{status.revoked_at:%Y-%m-%d %H:%M:%S} UTC" if status.revoked_at else "?"
            why = status.reason.value if status.reason is not None else "no reason given"
            return RevocationRefusal(
                "revoked", f"{who} was revoked on {when} ({why}) by the local CA"
            )
    if not external or not (policy.checks_anything or policy.require_crl):
        return None
    full = validate(
        chain[0],
        chain[1:-1],
        trust=state.trust,
        at=path.at or node.clock.now(),
        options=options,
        policy=policy,
        revocation=state.index,
        online=node.revocation.online,
    )
    if full.valid:
        return None
    if full.failed_index is None or full.failed_index in external:
        return RevocationRefusal(full.code or "invalid", full.reason)
    # The engine failed on a link the local CA answered for (e.g. "unknown" under a strict
    # policy): only the links it is responsible for count.
    for index in external:
        report = full.certificates[index]
        if report.status == "revoked" or (report.status == "unknown" and policy.strict):
            text = next((c.text for c in reversed(report.checks)), report.status)
            who = "the certificate" if index == 0 else f"CA certificate {report.subject}"
            code = "revoked" if report.status == "revoked" else "revocation-unknown"
            return RevocationRefusal(code, f"{who}: {text}")
    return None
