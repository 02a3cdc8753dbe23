"""Issuing certificates: self-signed roots and certificates from CSRs, by profile.

An ``Issuer`` is prepared once per CA (its name, key identifiers, CRL distribution point
and OCSP extensions are built once), so issuing a certificate costs little more than the
signature itself.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from certway.errors import PolicyViolation
from certway.pki.csr import check_csr
from certway.pki.keys import PrivateKey, PublicKey, check_public_key, key_matches
from certway.pki.names import check_dns_name, common_name

__all__ = [
    "BACKDATE",
    "MAX_DAYS",
    "PROFILES",
    "Issuer",
    "Profile",
    "check_days",
    "create_root",
    "issue_from_csr",
    "random_serial",
    "signature_hash_for",
]

BACKDATE = dt.timedelta(minutes=1)
"""notBefore is set this far in the past to tolerate clock skew between peers."""

_SERVER = ExtendedKeyUsageOID.SERVER_AUTH
_CLIENT = ExtendedKeyUsageOID.CLIENT_AUTH


MAX_DAYS = 36_500


def check_days(days: int) -> None:
    """A validity in days that a certificate can carry (1 day to 100 years)."""
    if not 1 <= days <= MAX_DAYS:
        raise PolicyViolation("validity", f"validity must be between 1 and {MAX_DAYS} days")


def random_serial() -> int:
    """A random positive 159-bit serial number (fits in 20 octets, RFC 5280 §4.1.2.2)."""
    return secrets.randbits(159) | (1 << 158)


SignatureHash = hashes.SHA256 | hashes.SHA384 | hashes.SHA512 | None


def signature_hash_for(key: PrivateKey) -> SignatureHash:
    """The signature hash that matches the CA key's strength (None for Ed25519)."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.key_size >= 521:
            return hashes.SHA512()
        if key.curve.key_size >= 384:
            return hashes.SHA384()
    return hashes.SHA256()


@dataclass(frozen=True, slots=True)
class Profile:
    """What a certificate issued with this profile may be used for."""

    name: str
    ca: bool
    eku: tuple[x509.ObjectIdentifier, ...]
    copy_alt_names: bool

    def key_usage(self, public_key: PublicKey) -> x509.KeyUsage:
        if self.ca:
            return x509.KeyUsage(True, False, False, False, False, True, True, False, False)
        # RSA key exchange (TLS 1.2 RSA kx) needs keyEncipherment; (EC)DHE needs only signatures.
        encipher = isinstance(public_key, rsa.RSAPublicKey)
        return x509.KeyUsage(True, False, encipher, False, False, False, False, False, False)


PROFILES: dict[str, Profile] = {
    "server-client": Profile("server-client", False, (_SERVER, _CLIENT), True),
    "server": Profile("server", False, (_SERVER,), True),
    "client": Profile("client", False, (_CLIENT,), True),
    "sub-ca": Profile("sub-ca", True, (), False),
}


def _profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise PolicyViolation(
            "profile", f"unknown profile '{name}'; choose one of {', '.join(PROFILES)}"
        ) from None


def _extension_or_none(
    extensions: x509.Extensions, kind: type[x509.ExtensionType]
) -> x509.ExtensionType | None:
    try:
        return extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


class Issuer:
    """A CA ready to sign: certificate, key, and the URLs written into what it issues.

    Everything that is the same for every certificate it issues (issuer name, AKI, CRL
    distribution point, OCSP URL, the per-profile BasicConstraints/KeyUsage/EKU) is built
    once here, so issuing costs little more than the signature.
    """

    __slots__ = (
        "_common",
        "_fixed",
        "_hash",
        "_not_after",
        "_not_before",
        "authority_key_identifier",
        "certificate",
        "crl_urls",
        "key",
        "name",
        "ocsp_url",
        "path_length",
    )

    def __init__(
        self,
        certificate: x509.Certificate,
        key: PrivateKey,
        *,
        crl_urls: tuple[str, ...] = (),
        ocsp_url: str | None = None,
    ) -> None:
        if not key_matches(key, certificate.public_key()):
            raise PolicyViolation(
                "key-mismatch", "the CA private key does not match the CA certificate"
            )
        try:
            bc = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            bc = None
        if bc is None or not bc.ca:
            raise PolicyViolation(
                "not-a-ca", "the certificate is not a CA certificate (BasicConstraints CA:TRUE)"
            )
        self.certificate = certificate
        self.key = key
        self.crl_urls = crl_urls
        self.ocsp_url = ocsp_url
        self.name = certificate.subject
        self.path_length: int | None = bc.path_length
        self._not_before = certificate.not_valid_before_utc
        self._not_after = certificate.not_valid_after_utc
        self._hash = signature_hash_for(key)
        ski = _extension_or_none(certificate.extensions, x509.SubjectKeyIdentifier)
        if isinstance(ski, x509.SubjectKeyIdentifier):
            aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
        else:
            aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key())
        self.authority_key_identifier = aki
        common: list[x509.Extension[x509.ExtensionType]] = [x509.Extension(aki.oid, False, aki)]
        if crl_urls:
            cdp = x509.CRLDistributionPoints(
                [
                    x509.DistributionPoint(
                        [x509.UniformResourceIdentifier(u) for u in crl_urls], None, None, None
                    )
                ]
            )
            common.append(x509.Extension(cdp.oid, False, cdp))
        if ocsp_url:
            aia = x509.AuthorityInformationAccess(
                [
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.OCSP,
                        x509.UniformResourceIdentifier(ocsp_url),
                    )
                ]
            )
            common.append(x509.Extension(aia.oid, False, aia))
        self._common = tuple(common)
        self._fixed: dict[tuple[str, bool], tuple[x509.Extension[x509.ExtensionType], ...]] = {}

    def _profile_extensions(
        self, prof: Profile, public_key: PublicKey
    ) -> tuple[x509.Extension[x509.ExtensionType], ...]:
        """AKI/CDP/AIA + BasicConstraints + KeyUsage (+ default EKU), built once per profile."""
        is_rsa = isinstance(public_key, rsa.RSAPublicKey)
        cached = self._fixed.get((prof.name, is_rsa))
        if cached is None:
            bc = x509.BasicConstraints(ca=prof.ca, path_length=0 if prof.ca else None)
            ku = prof.key_usage(public_key)
            cached = (
                *self._common,
                x509.Extension(bc.oid, True, bc),
                x509.Extension(ku.oid, True, ku),
            )
            self._fixed[(prof.name, is_rsa)] = cached
        return cached

    def issue(
        self,
        public_key: PublicKey,
        subject: x509.Name,
        *,
        profile: str = "server-client",
        alt_names: list[x509.GeneralName] | None = None,
        eku: list[x509.ObjectIdentifier] | None = None,
        not_before: dt.datetime,
        not_after: dt.datetime,
        serial: int | None = None,
    ) -> x509.Certificate:
        """Sign a certificate for ``public_key``. Validity must lie within the CA's."""
        prof = _profile(profile)
        check_public_key(public_key)
        if not_after <= not_before:
            raise PolicyViolation("validity", "the validity period must be at least one day")
        if not_after > self._not_after:
            raise PolicyViolation(
                "validity-exceeds-ca",
                f"the certificate would outlive its CA (CA expires {self._not_after:%Y-%m-%d}): "
                "ask for fewer days",
            )
        if prof.ca and self.path_length == 0:
            raise PolicyViolation(
                "path-length", "can't create a child CA: this CA's path length is 0"
            )
        if not prof.ca and not alt_names and not subject:
            raise PolicyViolation(
                "empty-name", "the certificate would have neither a subject nor alternative names"
            )
        extensions = list(self._profile_extensions(prof, public_key))
        ski = x509.SubjectKeyIdentifier.from_public_key(public_key)
        extensions.append(x509.Extension(ski.oid, False, ski))
        if not prof.ca:
            usages = [o for o in (eku or prof.eku) if o in prof.eku] or list(prof.eku)
            ext_ku = x509.ExtendedKeyUsage(usages)
            extensions.append(x509.Extension(ext_ku.oid, False, ext_ku))
            if alt_names and prof.copy_alt_names:
                san = x509.SubjectAlternativeName(alt_names)
                # RFC 5280 §4.2.1.6: critical when the subject is empty.
                extensions.append(x509.Extension(san.oid, not subject, san))
        builder = x509.CertificateBuilder(
            issuer_name=self.name,
            subject_name=subject,
            public_key=public_key,
            serial_number=serial if serial is not None else random_serial(),
            not_valid_before=max(not_before, self._not_before),
            not_valid_after=not_after,
            extensions=extensions,
        )
        return builder.sign(self.key, self._hash)


def create_root(
    key: PrivateKey,
    subject: x509.Name,
    *,
    not_before: dt.datetime,
    not_after: dt.datetime,
    path_length: int | None = None,
) -> x509.Certificate:
    """A self-signed root CA certificate."""
    check_public_key(key.public_key())
    if not subject:
        raise PolicyViolation("empty-name", "a CA needs a subject, e.g. /CN=Example Root CA")
    if not_after <= not_before:
        raise PolicyViolation("validity", "the validity period must be at least one day")
    public_key = key.public_key()
    ski = x509.SubjectKeyIdentifier.from_public_key(public_key)
    aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    builder = (
        x509.CertificateBuilder()
        .issuer_name(subject)
        .subject_name(subject)
        .public_key(public_key)
        .serial_number(random_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(aki, critical=False)
    )
    return builder.sign(key, signature_hash_for(key))


def issue_from_csr(
    issuer: Issuer,
    csr: x509.CertificateSigningRequest,
    *,
    profile: str = "server-client",
    not_before: dt.datetime,
    days: int,
    checked: bool = False,
) -> x509.Certificate:
    """Sign ``csr``. Subject is copied; SAN and EKU only where the profile allows them.

    When a server/client CSR has no SAN but a host-name CN, the CN is copied into the SAN
    (modern TLS clients ignore the CN). ``checked=True`` skips the CSR self-signature check
    for callers that already did it.
    """
    prof = _profile(profile)
    check_days(days)
    if not checked:
        check_csr(csr)
    alt_names: list[x509.GeneralName] | None = None
    requested_eku: list[x509.ObjectIdentifier] | None = None
    for ext in csr.extensions:
        value = ext.value
        if isinstance(value, x509.SubjectAlternativeName):
            alt_names = list(value)
        elif isinstance(value, x509.ExtendedKeyUsage):
            requested_eku = list(value)
    if alt_names:
        for name in alt_names:
            if isinstance(name, x509.DNSName) and "*" in name.value:
                raise PolicyViolation("wildcard", f"wildcard names are not issued: '{name.value}'")
    if not prof.ca and not alt_names:
        cn = common_name(csr.subject)
        if cn and "*" in cn:
            raise PolicyViolation("wildcard", f"wildcard names are not issued: '{cn}'")
        if cn and prof.eku != (_CLIENT,):
            try:
                alt_names = [x509.DNSName(check_dns_name(cn))]
            except PolicyViolation:
                alt_names = None
    subject = csr.subject
    if prof.ca and not subject.get_attributes_for_oid(NameOID.COMMON_NAME) and not subject:
        raise PolicyViolation("empty-name", "a sub-CA request needs a subject")
    return issuer.issue(
        csr.public_key(),  # type: ignore[arg-type]
        subject,
        profile=profile,
        alt_names=alt_names,
        eku=requested_eku,
        not_before=not_before - BACKDATE,
        not_after=not_before - BACKDATE + dt.timedelta(days=days),
    )
