"""What the identity use cases share: the kinds of slot, the values they return (active
identity, certificate and CSR descriptions, versions, domains), the CSR form's options and
small helpers (slot labels, domain normalisation, PEM bundles)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certway.pki.csr import SubjectFields
from certway.pki.names import san_text

__all__ = [
    "TEMP_CA_SETTING",
    "ActiveIdentity",
    "CsrOptions",
    "DomainDetail",
    "DomainInfo",
    "IdentityInfo",
    "IdentityKind",
    "PendingCsrInfo",
    "UploadResult",
    "VersionInfo",
    "alt_names_of",
    "normalise_domain",
    "pem_of",
    "slot_label",
]

IdentityKind = Literal["server", "client", "domain"]
TEMP_CA_SETTING = "factory.temporary_ca"
"""The setting naming the local CA that issued the factory (temporary) certificate."""


def pem_of(certs: tuple[x509.Certificate, ...] | list[x509.Certificate]) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


def alt_names_of(cert: x509.Certificate | x509.CertificateSigningRequest) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [san_text(n) for n in san]


def slot_label(kind: str, name: str) -> str:
    return f"domain {name}" if kind == "domain" else f"{kind} certificate"


@dataclass(frozen=True)
class ActiveIdentity:
    """What a TLS listener presents: certificate, chain (no root) and the sealed key's id."""

    kind: str
    name: str
    version: int
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    key_id: str = field(repr=False)


@dataclass(frozen=True)
class IdentityInfo:
    kind: str
    name: str
    version: int
    subject: str
    issuer: str
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    fingerprint: str
    alt_names: list[str]
    source: str
    warnings: list[str]
    temporary: bool
    chain: list[str]
    pem: str
    text: str

    def as_dict(self, *, with_text: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kind": self.kind,
            "name": self.name or None,
            "version": self.version,
            "subject": self.subject,
            "issuer": self.issuer,
            "serial": self.serial,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "sha256_fingerprint": self.fingerprint,
            "alt_names": self.alt_names,
            "source": self.source,
            "warnings": self.warnings,
            "temporary": self.temporary,
            "chain": self.chain,
            "pem": self.pem,
        }
        if with_text:
            data["text"] = self.text
        return data


@dataclass(frozen=True)
class PendingCsrInfo:
    kind: str
    name: str
    created_at: dt.datetime
    common_name: str
    alt_names: list[str]
    key: str
    pem: str
    text: str

    @property
    def warnings(self) -> list[str]:
        """What to know before having the CSR signed."""
        if self.key == "Ed25519":
            return [ED25519_WARNING]
        return []

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name or None,
            "created_at": self.created_at.isoformat(),
            "common_name": self.common_name,
            "alt_names": self.alt_names,
            "key": self.key,
            "pem": self.pem,
            "warnings": self.warnings,
        }


ED25519_WARNING = (
    "an Ed25519 key: many SIP peers (Cisco endpoints, CUCM, older Expressway and kamailio "
    "builds) and web browsers do not accept Ed25519 server certificates; choose RSA or ECDSA "
    "unless every peer is known to support it"
)


@dataclass(frozen=True)
class UploadResult:
    info: IdentityInfo
    warnings: list[str]


@dataclass(frozen=True)
class VersionInfo:
    version: int
    subject: str
    not_after: dt.datetime
    source: str
    created_at: dt.datetime
    active: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "subject": self.subject,
            "not_after": self.not_after.isoformat(),
            "source": self.source,
            "created_at": self.created_at.isoformat(),
            "active": self.active,
        }


@dataclass(frozen=True)
class DomainInfo:
    name: str
    has_certificate: bool
    not_after: dt.datetime | None
    subject: str | None
    pending_csr: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "has_certificate": self.has_certificate,
            "not_after": self.not_after.isoformat() if self.not_after else None,
            "subject": self.subject,
            "pending_csr": self.pending_csr,
        }


@dataclass(frozen=True)
class DomainDetail:
    """One domain as it is shown on its own: its active certificate once it has one, and its
    pending CSR if any (a domain made with the CSR flow has a CSR and no certificate yet)."""

    name: str
    certificate: IdentityInfo | None
    pending_csr: PendingCsrInfo | None

    @property
    def has_certificate(self) -> bool:
        return self.certificate is not None

    def as_dict(self, *, with_text: bool = False) -> dict[str, Any]:
        """The certificate's fields when it has one (as ``IdentityInfo.as_dict``), only kind
        and name until then, and always ``has_certificate`` and ``pending_csr`` (the pending
        CSR's description, or None)."""
        shown = (
            self.certificate.as_dict(with_text=with_text)
            if self.certificate is not None
            else {"kind": "domain", "name": self.name}
        )
        return {
            **shown,
            "has_certificate": self.has_certificate,
            "pending_csr": self.pending_csr.as_dict() if self.pending_csr else None,
        }


CSR_COMMON_NAMES = ("node", "cluster")
"""The common name of the server's CSR: the system FQDN or the cluster FQDN."""
CSR_ALT_NAMES = ("none", "cluster")
"""The alternative names of the server's CSR: none, or the cluster FQDN and the peers."""


@dataclass(frozen=True, slots=True)
class CsrOptions:
    """The CSR form: which names go where, key and digest, subject fields."""

    cn: str = "node"  # node | cluster (server) ; ignored for domains
    alt_names: str = "none"  # none | cluster
    add_san: tuple[str, ...] = ()
    ucm_domains: tuple[str, ...] = ()
    ucm_domain_format: str = "dns"
    xmpp_domains: tuple[str, ...] = ()
    chat_aliases: tuple[str, ...] = ()
    phone_security_profiles: tuple[str, ...] = ()
    key_type: str = "rsa:4096"
    digest: str = "sha256"
    subject: SubjectFields = field(default_factory=SubjectFields)

    def as_dict(self) -> dict[str, Any]:
        return {
            "cn": self.cn,
            "alt_names": self.alt_names,
            "add_san": list(self.add_san),
            "ucm_domains": list(self.ucm_domains),
            "ucm_domain_format": self.ucm_domain_format,
            "xmpp_domains": list(self.xmpp_domains),
            "chat_aliases": list(self.chat_aliases),
            "phone_security_profiles": list(self.phone_security_profiles),
            "key_type": self.key_type,
            "digest": self.digest,
        }


def normalise_domain(name: str) -> str:
    """A domain name as domain slots are keyed: no surrounding blanks or trailing dot, lower
    case (DNS names are case-insensitive)."""
    return name.strip().rstrip(".").lower()
