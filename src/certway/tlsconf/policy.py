"""The TLS policy: which protocol versions, cipher suites and key exchange groups a service
offers and accepts, after Mozilla's server-side TLS recommendations (version 5.7).

Every ``ssl.SSLContext`` certway builds, listener or client, goes through ``TlsProfile.apply``:

- ``intermediate`` (the default): TLS 1.2 with ECDHE key exchange and AEAD ciphers only
  (AES-GCM, ChaCha20-Poly1305; no CBC, no RSA key exchange, no finite-field DHE) and TLS 1.3.
- ``modern``: TLS 1.3 only.

Both allow the groups X25519, P-256 and P-384 (Python's ``ssl`` has no API for that list:
``openssl.set_groups`` sets it; where it cannot, the context keeps P-256 only, which is still
within the profile, and a warning is logged once). TLS 1.3's cipher suites are OpenSSL's
defaults (AES-GCM and ChaCha20-Poly1305, all allowed by both profiles): Python cannot change
them. Compression and client-initiated renegotiation are off.
"""

from __future__ import annotations

import logging
import ssl
import threading
from dataclasses import dataclass
from enum import StrEnum

from certway.errors import PolicyViolation
from certway.tlsconf.openssl import set_groups

__all__ = [
    "INTERMEDIATE",
    "MODERN",
    "PROFILES",
    "TLS_SERVICES",
    "ProfileName",
    "TlsPolicy",
    "TlsProfile",
    "check_service",
    "profile_named",
]

log = logging.getLogger("certway.tls")


class ProfileName(StrEnum):
    INTERMEDIATE = "intermediate"
    MODERN = "modern"


TLS_SERVICES: dict[str, str] = {
    "admin-https": "the HTTPS admin listener (web UI and REST API)",
    "sip-tls": "the SIP TLS listener",
    "zones": "outbound SIP TLS connections to neighbour zones",
    "outbound": "outbound HTTPS: CRL and OCSP downloads",
    "syslog": "outbound syslog over TLS to remote receivers",
    "ldap": "outbound LDAPS and StartTLS connections to LDAP servers (admin authentication)",
}
"""The services with a TLS profile of their own, and what each covers."""

_TLS12_AEAD_ECDHE = (
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
)
_GROUPS = ("X25519", "P-256", "P-384")
_FALLBACK_CURVE = "prime256v1"


@dataclass(frozen=True, slots=True)
class TlsProfile:
    """What one profile allows; ``apply`` puts it on a context."""

    name: ProfileName
    minimum_version: ssl.TLSVersion
    tls12_ciphers: tuple[str, ...]
    """OpenSSL names of the TLS 1.2 suites (unused when the minimum is TLS 1.3)."""
    groups: tuple[str, ...]

    @property
    def versions(self) -> tuple[str, ...]:
        if self.minimum_version is ssl.TLSVersion.TLSv1_3:
            return ("TLSv1.3",)
        return ("TLSv1.2", "TLSv1.3")

    def apply(self, context: ssl.SSLContext) -> ssl.SSLContext:
        """Restrict ``context`` (server or client) to this profile; returns it."""
        context.minimum_version = self.minimum_version
        context.maximum_version = ssl.TLSVersion.TLSv1_3
        context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
        context.set_ciphers(":".join(self.tls12_ciphers))
        if not set_groups(context, self.groups):
            context.set_ecdh_curve(_FALLBACK_CURVE)
            _warn_groups_fallback()
        return context

    def apply_versions(self, context: ssl.SSLContext) -> None:
        """Only the protocol versions: what may change on a context that is in use (an int in
        OpenSSL, unlike the cipher and group lists, which both profiles share)."""
        context.minimum_version = self.minimum_version

    def as_dict(self) -> dict[str, object]:
        return {
            "profile": self.name.value,
            "versions": list(self.versions),
            "tls12_ciphers": list(self.tls12_ciphers) if "TLSv1.2" in self.versions else [],
            "groups": list(self.groups),
        }


INTERMEDIATE = TlsProfile(
    ProfileName.INTERMEDIATE, ssl.TLSVersion.TLSv1_2, _TLS12_AEAD_ECDHE, _GROUPS
)
MODERN = TlsProfile(ProfileName.MODERN, ssl.TLSVersion.TLSv1_3, _TLS12_AEAD_ECDHE, _GROUPS)
PROFILES: dict[ProfileName, TlsProfile] = {p.name: p for p in (INTERMEDIATE, MODERN)}

_fallback_lock = threading.Lock()
_fallback_logged = False


def _warn_groups_fallback() -> None:
    global _fallback_logged
    with _fallback_lock:
        if _fallback_logged:
            return
        _fallback_logged = True
    log.warning(
        "event=tls-groups-fallback detail='the key exchange groups cannot be set through this "
        "Python and OpenSSL: TLS uses P-256 only'"
    )


def profile_named(value: object) -> TlsProfile:
    """The profile called ``value``; ``PolicyViolation`` for any other name."""
    try:
        return PROFILES[ProfileName(str(value).lower())]
    except ValueError:
        allowed = " or ".join(p.value for p in ProfileName)
        raise PolicyViolation("tls", f"TLS profile must be {allowed}, not '{value}'") from None


def check_service(value: str) -> str:
    if value not in TLS_SERVICES:
        allowed = ", ".join(TLS_SERVICES)
        raise PolicyViolation("service", f"unknown TLS service '{value}': use {allowed}")
    return value


@dataclass(frozen=True, slots=True)
class TlsPolicy:
    """The profile of every service (services not named get ``intermediate``)."""

    profiles: tuple[tuple[str, ProfileName], ...] = ()

    def profile(self, service: str) -> TlsProfile:
        check_service(service)
        return PROFILES[dict(self.profiles).get(service, ProfileName.INTERMEDIATE)]

    def with_profile(self, service: str, profile: object) -> TlsPolicy:
        check_service(service)
        chosen = profile_named(profile).name
        current = dict(self.profiles)
        current[service] = chosen
        return TlsPolicy(tuple((s, current[s]) for s in TLS_SERVICES if s in current))

    def as_dict(self) -> dict[str, dict[str, object]]:
        return {s: self.profile(s).as_dict() for s in TLS_SERVICES}
