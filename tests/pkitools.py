"""The suite's one test PKI (root → issuing CA → leaves, CRLs), built with certway's own
issuing code, and ``cucm_certificate`` (the self-signed kind CUCM presents)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from certway.pki.crl import CrlParams, build_crl, parse_reason, revoked_entry
from certway.pki.issue import Issuer, create_root, issue_from_csr, signature_hash_for
from certway.pki.keys import PrivateKey, PublicKey

from conftest import NOW, test_key

DAY = dt.timedelta(days=1)


def name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


class Pki:
    """Root → issuing CA → leaves and CRLs on demand, all valid around ``at`` (the suite's
    fixed ``NOW`` unless a test runs on the real clock, as the CLI and openssl do).

    Keys are cached per test run (``index``, ``index + 1``, ``index + 2``: give each PKI of a
    test its own); ``key_type`` is the type of the two CA keys (leaves keep an EC P-256 key).
    The root is named ``root_cn`` (default "<label> Root"). Only the issuing CA writes the CRL
    distribution point / OCSP URL into what it issues, so the intermediate has neither. A
    one-level CA is the root: issue with ``issuer=pki.root_issuer``.
    """

    def __init__(
        self,
        label: str = "Test",
        *,
        at: dt.datetime = NOW,
        index: int = 10,
        key_type: str = "ec:p256",
        root_cn: str | None = None,
        crl_url: str | None = None,
        ocsp_url: str | None = None,
    ) -> None:
        self.at = at
        self.root_key = test_key(key_type, index)
        self.root = create_root(
            self.root_key,
            name(root_cn or f"{label} Root"),
            not_before=at - 30 * DAY,
            not_after=at + 3650 * DAY,
        )
        self.root_issuer = Issuer(self.root, self.root_key)
        self.int_key = test_key(key_type, index + 1)
        self.intermediate = self.root_issuer.issue(
            self.int_key.public_key(),
            name(f"{label} Issuing"),
            profile="sub-ca",
            not_before=at - 30 * DAY,
            not_after=at + 1000 * DAY,
        )
        urls = (crl_url,) if crl_url else ()
        self.int_issuer = Issuer(self.intermediate, self.int_key, crl_urls=urls, ocsp_url=ocsp_url)
        self.leaf_key: PrivateKey = test_key("ec:p256", index + 2)

    def leaf(
        self,
        cn: str = "peer.example.com",
        *,
        profile: str = "server-client",
        sans: Sequence[str] | None = None,
        alt_names: list[x509.GeneralName] | None = None,
        serial: int | None = None,
        days: int = 90,
        not_before: dt.datetime | None = None,
        issuer: Issuer | None = None,
        public_key: PublicKey | None = None,
        eku: Sequence[x509.ObjectIdentifier] | None = None,
        ocsp_urls: Sequence[str] = (),
        ca_issuers_url: str | None = None,
    ) -> x509.Certificate:
        """A leaf for ``cn`` with the shared leaf key (or ``public_key``); its names are
        ``alt_names`` if given, else DNS names ``sans`` (default: ``cn``; an empty list: no SAN
        extension).

        ``eku`` replaces the profile's extended key usages (e.g. OCSP Signing, which no
        issuing profile gives); ``ocsp_urls`` / ``ca_issuers_url`` replace the issuer's
        Authority Information Access with one listing the CA-issuers URL, then every OCSP URL.
        """
        if alt_names is None:
            alt_names = [x509.DNSName(s) for s in (sans if sans is not None else [cn])] or None
        start = not_before or self.at - DAY
        signer = issuer or self.int_issuer
        cert = signer.issue(
            public_key or self.leaf_key.public_key(),
            name(cn),
            profile=profile,
            alt_names=alt_names,
            not_before=start,
            not_after=start + days * DAY,
            serial=serial,
        )
        replaced: list[x509.ExtensionType] = []
        if eku is not None:
            replaced.append(x509.ExtendedKeyUsage(list(eku)))
        if ocsp_urls or ca_issuers_url:
            access = (
                [
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.CA_ISSUERS,
                        x509.UniformResourceIdentifier(ca_issuers_url),
                    )
                ]
                if ca_issuers_url
                else []
            )
            access += [
                x509.AccessDescription(
                    AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(url)
                )
                for url in ocsp_urls
            ]
            replaced.append(x509.AuthorityInformationAccess(access))
        return _resigned(cert, signer.key, replaced) if replaced else cert

    def sign_csr(
        self, csr_pem: str, *, issuer: Issuer | None = None, days: int = 365
    ) -> x509.Certificate:
        """What an admin gets back for ``csr_pem`` (subject and names copied, server-client)."""
        csr = x509.load_pem_x509_csr(csr_pem.encode())
        return issue_from_csr(issuer or self.int_issuer, csr, not_before=self.at, days=days)

    def cn_only_leaf(self, cn: str = "cnonly.example.com", *, eku: bool = True) -> x509.Certificate:
        issuer = self.int_issuer
        builder = x509.CertificateBuilder(
            issuer_name=issuer.name,
            subject_name=name(cn),
            public_key=self.leaf_key.public_key(),
            serial_number=x509.random_serial_number(),
            not_valid_before=self.at - DAY,
            not_valid_after=self.at + 30 * DAY,
        )
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        builder = builder.add_extension(issuer.authority_key_identifier, False)
        if eku:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage(
                    [x509.ExtendedKeyUsageOID.SERVER_AUTH, x509.ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                False,
            )
        return builder.sign(self.int_key, hashes.SHA256())

    def crl(
        self,
        revoked: Sequence[tuple[x509.Certificate, str | None]] = (),
        *,
        serials: Sequence[int] = (),
        issuer: Issuer | None = None,
        number: int = 1,
        this_update: dt.datetime | None = None,
        days: float = 7,
    ) -> x509.CertificateRevocationList:
        """A CRL revoking ``revoked`` (certificate, reason) and bare ``serials``."""
        start = this_update or self.at - dt.timedelta(hours=1)
        entries = [
            revoked_entry(c.serial_number, start, parse_reason(r) if r else None)
            for c, r in revoked
        ] + [revoked_entry(s, start, None) for s in serials]
        return build_crl(
            issuer or self.int_issuer, entries, CrlParams(number, start, start + days * DAY)
        )

    def forged_crl(
        self, key: PrivateKey, *, number: int = 1, serials: Sequence[int] = ()
    ) -> x509.CertificateRevocationList:
        """A CRL naming the issuing CA as its issuer but signed by another key."""
        start = self.at - dt.timedelta(hours=1)
        revoked = [x509.RevokedCertificateBuilder(s, start).build() for s in serials]
        return x509.CertificateRevocationListBuilder(
            issuer_name=self.intermediate.subject,
            last_update=start,
            next_update=start + 7 * DAY,
            extensions=[x509.Extension(x509.CRLNumber.oid, False, x509.CRLNumber(number))],
            revoked_certificates=revoked,
        ).sign(key, hashes.SHA256())


def _resigned(
    cert: x509.Certificate, key: PrivateKey, replaced: Sequence[x509.ExtensionType]
) -> x509.Certificate:
    """``cert`` signed again by ``key`` with the extensions of ``replaced``'s types swapped."""
    oids = {e.oid for e in replaced}
    kept = [e for e in cert.extensions if e.oid not in oids]
    return x509.CertificateBuilder(
        issuer_name=cert.issuer,
        subject_name=cert.subject,
        public_key=cert.public_key(),  # type: ignore[arg-type]
        serial_number=cert.serial_number,
        not_valid_before=cert.not_valid_before_utc,
        not_valid_after=cert.not_valid_after_utc,
        extensions=[*kept, *(x509.Extension(e.oid, False, e) for e in replaced)],
    ).sign(key, signature_hash_for(key))


def cucm_certificate(
    cn: str = "cucm.example.com", *, key_index: int = 901, ip: str | None = None
) -> x509.Certificate:
    """Self-signed, CA:TRUE, serverAuth + clientAuth: what CUCM and TMS present."""
    key = test_key("ec:p256", key_index)
    names: list[x509.GeneralName] = [x509.DNSName(cn)]
    if ip is not None:
        names.append(x509.IPAddress(ipaddress.ip_address(ip)))
    subject = name(cn)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(0x5EED)
        .not_valid_before(NOW - dt.timedelta(days=10))
        .not_valid_after(NOW + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, True, False, False, True, False, False, False), True
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(key, hashes.SHA256())
    )
