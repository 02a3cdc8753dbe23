"""Revocation policies per service as frozen objects with derived properties."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from certway.errors import PolicyViolation

__all__ = [
    "ACME_DEFAULT",
    "ADMIN_HTTPS_DEFAULT",
    "LDAP_DEFAULT",
    "SIP_TLS_DEFAULT",
    "Fallback",
    "Profile",
    "RevocationPolicy",
    "Scope",
]


class Profile(StrEnum):
    """How a certification path is judged."""

    RFC5280 = "rfc5280"
    """RFC 5280 path validation: enterprise and UC PKIs (the default for every service)."""
    WEBPKI = "webpki"
    """The strict web-PKI profile (CA/Browser Forum rules), by ``cryptography``'s verifier."""


class Scope(StrEnum):
    PEER = "peer"  # the presented (leaf) certificate only
    ALL = "all"  # every certificate of the chain below the trust anchor


class Fallback(StrEnum):
    NOT_REVOKED = "not-revoked"
    REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class RevocationPolicy:
    """Which revocation checks run, over which certificates, and what unknown means; and
    the validation profile the service judges paths with."""

    enabled: bool = True
    ocsp: bool = True
    crl: bool = True
    cdp: bool = True
    scope: Scope = Scope.ALL
    fallback: Fallback = Fallback.NOT_REVOKED
    require_crl: bool = False
    """Strict mode (conformance): every checked certificate must be covered by a current CRL."""
    profile: Profile = Profile.RFC5280

    @property
    def strict(self) -> bool:
        return self.fallback is Fallback.REVOKED or self.require_crl

    @property
    def checks_anything(self) -> bool:
        return self.enabled and (self.ocsp or self.crl or self.cdp)

    def with_changes(self, **changes: object) -> RevocationPolicy:
        """A copy with settings changed; values are checked like user input."""
        clean: dict[str, object] = {}
        for name, value in changes.items():
            if value is None:
                continue
            if name == "scope":
                clean[name] = _enum(Scope, value, "scope")
            elif name == "fallback":
                clean[name] = _enum(Fallback, value, "fallback")
            elif name == "profile":
                clean[name] = _enum(Profile, value, "profile")
            elif name in {"enabled", "ocsp", "crl", "cdp", "require_crl"}:
                if not isinstance(value, bool):
                    raise PolicyViolation("policy", f"{name} must be on or off")
                clean[name] = value
            else:
                raise PolicyViolation("policy", f"unknown revocation setting '{name}'")
        return replace(self, **clean)  # type: ignore[arg-type]

    def as_dict(self) -> dict[str, object]:
        return {
            "mode": "on" if self.enabled else "off",
            "ocsp": self.ocsp,
            "crl": self.crl,
            "cdp": self.cdp,
            "scope": self.scope.value,
            "fallback": self.fallback.value,
            "profile": self.profile.value,
        }


def _enum(
    kind: type[Scope] | type[Fallback] | type[Profile], value: object, what: str
) -> Scope | Fallback | Profile:
    try:
        return kind(str(value))
    except ValueError:
        allowed = ", ".join(m.value for m in kind)
        raise PolicyViolation("policy", f"{what} must be one of {allowed}, not '{value}'") from None


SIP_TLS_DEFAULT = RevocationPolicy()
"""SIP TLS: checking on; OCSP, CRLs and CDP downloads allowed; unknown = not revoked."""

ADMIN_HTTPS_DEFAULT = RevocationPolicy(ocsp=False, cdp=False, scope=Scope.ALL)
"""Admin HTTPS client certificates: CRL checking of the whole chain; unknown = not revoked."""

SYSLOG_DEFAULT = RevocationPolicy()
"""Remote syslog receivers (TLS): checking on; OCSP, CRLs and CDP downloads allowed."""

LDAP_DEFAULT = RevocationPolicy()
"""LDAP servers (admin authentication): checking on, OCSP/CRLs/CDP allowed; unknown = not
revoked."""

ACME_DEFAULT = RevocationPolicy()
"""ACME servers the node gets its certificates from: checking on, OCSP/CRLs/CDP allowed;
unknown = not revoked."""
