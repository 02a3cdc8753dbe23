"""The checks an uploaded node certificate must pass: errors refuse, warnings inform."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certway.errors import PolicyViolation
from certway.pki.keys import PrivateKey, key_matches
from certway.pki.load import error_reason
from certway.pki.names import common_name

__all__ = ["USUAL_SUBJECT_OIDS", "Finding", "check_node_certificate"]

USUAL_SUBJECT_OIDS = frozenset(
    {
        NameOID.COUNTRY_NAME,
        NameOID.STATE_OR_PROVINCE_NAME,
        NameOID.LOCALITY_NAME,
        NameOID.ORGANIZATION_NAME,
        NameOID.ORGANIZATIONAL_UNIT_NAME,
        NameOID.COMMON_NAME,
        NameOID.EMAIL_ADDRESS,
        NameOID.SERIAL_NUMBER,
        NameOID.DOMAIN_COMPONENT,
    }
)
_WEAK_HASHES = {"sha1", "md5", "md2", "md4"}
_Y2050 = dt.datetime(2050, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True, slots=True)
class Finding:
    """A warning about an accepted certificate (accepted, but worth knowing)."""

    code: str
    message: str


def _extension(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> object | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def check_node_certificate(
    cert: x509.Certificate,
    key: PrivateKey,
    *,
    at: dt.datetime,
    require_client_auth: bool,
    require_server_auth: bool = True,
) -> list[Finding]:
    """Refuse (PolicyViolation) what must not become a node certificate; return warnings.

    A server or domain certificate needs serverAuth (when it restricts its EKU at all); a
    client certificate (``require_server_auth=False``) needs only clientAuth.
    """
    try:
        extensions = list(cert.extensions)
    except (ValueError, x509.DuplicateExtension) as exc:
        raise PolicyViolation(
            "malformed", f"the certificate is malformed: {error_reason(exc)}"
        ) from None
    bc = next((e.value for e in extensions if isinstance(e.value, x509.BasicConstraints)), None)
    if bc is not None and bc.ca:
        raise PolicyViolation(
            "is-ca", "this is a CA certificate: upload it to the trusted CA list instead"
        )
    if not key_matches(key, cert.public_key()):
        raise PolicyViolation(
            "key-mismatch", "the private key does not match the certificate's public key"
        )
    if cert.not_valid_after_utc <= at:
        raise PolicyViolation(
            "expired", f"the certificate expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
        )
    cn = common_name(cert.subject)
    san = _extension(cert, x509.SubjectAlternativeName)
    names = [cn] if cn else []
    if isinstance(san, x509.SubjectAlternativeName):
        names.extend(san.get_values_for_type(x509.DNSName))
    wild = next((n for n in names if "*" in n), None)
    if wild is not None:
        raise PolicyViolation("wildcard", f"wildcard names are not allowed: '{wild}'")
    public = cert.public_key()
    if isinstance(public, rsa.RSAPublicKey) and public.key_size < 2048:
        raise PolicyViolation(
            "weak-key", f"RSA key of {public.key_size} bits is too weak: at least 2048 bits"
        )
    algorithm = cert.signature_hash_algorithm
    if algorithm is not None and algorithm.name in _WEAK_HASHES:
        raise PolicyViolation(
            "weak-signature",
            f"the certificate is signed with {algorithm.name.upper()}: SHA-256 or better is "
            "required",
        )
    eku = _extension(cert, x509.ExtendedKeyUsage)
    if (
        isinstance(eku, x509.ExtendedKeyUsage)
        and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in eku
    ):
        if require_server_auth and ExtendedKeyUsageOID.SERVER_AUTH not in eku:
            raise PolicyViolation(
                "missing-server-auth",
                "the certificate's extended key usage lacks serverAuth (TLS Web Server "
                "Authentication)",
            )
        if require_client_auth and ExtendedKeyUsageOID.CLIENT_AUTH not in eku:
            raise PolicyViolation(
                "missing-client-auth",
                "the certificate's extended key usage lacks clientAuth (TLS Web Client "
                "Authentication), which mutual TLS (SIP TLS, clustering, zones) needs",
            )
    warnings: list[Finding] = []
    if cert.not_valid_before_utc > at:
        warnings.append(
            Finding(
                "not-yet-valid",
                f"the certificate is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M}"
                " UTC: TLS peers will refuse it until then",
            )
        )
    if not cn:
        warnings.append(
            Finding("no-cn", "the certificate has no common name (CN): some peers need one")
        )
    if isinstance(public, rsa.RSAPublicKey) and public.key_size > 4096:
        warnings.append(
            Finding(
                "large-key",
                f"RSA key of {public.key_size} bits: keys over 4096 bits break some SIP peers",
            )
        )
    if cert.not_valid_after_utc >= _Y2050:
        warnings.append(
            Finding(
                "expiry-after-2050",
                f"the certificate expires in {cert.not_valid_after_utc:%Y}, after 2050: some "
                "peers cannot read such dates",
            )
        )
    unusual = sorted(
        {
            a.oid._name or a.oid.dotted_string
            for a in cert.subject
            if a.oid not in USUAL_SUBJECT_OIDS
        }
    )
    if unusual:
        warnings.append(
            Finding(
                "unusual-subject",
                f"the subject holds attributes outside the usual set: {', '.join(unusual)}",
            )
        )
    return warnings
