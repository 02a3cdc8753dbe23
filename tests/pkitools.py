"""The suite's one test PKI (root → issuing CA → leaves, CRLs), built with certway's own
issuing code, and ``cucm_certificate`` (the self-signed kind CUCM presents)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certway.pki.crl import CrlParams, build_crl, parse_reason, revoked_entry
from certway.pki.issue import Issuer, create_root
from certway.pki.keys import PrivateKey

from conftest import NOW, test_key

DAY = dt.timedelta(days=1)


def name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


class Pki:
    """Root → issuing CA → leaves and CRLs on demand, all valid around ``at`` (the suite's
    fixed ``NOW`` unless a test runs on the real clock, as the CLI and openssl do).

    Keys are cached per test run (``index``, ``index + 1``, ``index + 2``: give each PKI of a
    test its own). Only the issuing CA writes the CRL distribution point / OCSP URL into what
    it issues, so the intermediate has neither.
    """

    def __init__(
        self,
        label: str = "Test",
        *,
        at: dt.datetime = NOW,
        index: int = 10,
        crl_url: str | None = None,
        ocsp_url: str | None = None,
    ) -> None:
        self.at = at
        self.root_key = test_key("ec:p256", index)
        self.root = create_root(
            self.root_key,
            name(f"{label} Root"),
            not_before=at - 30 * DAY,
            not_after=at + 3650 * DAY,
        )
        self.root_issuer = Issuer(self.root, self.root_key)
        self.int_key = test_key("ec:p256", index + 1)
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
    ) -> x509.Certificate:
        """A leaf for ``cn`` with the shared leaf key; its names are ``alt_names`` if given,
        else DNS names ``sans`` (default: ``cn``; an empty list: no SAN extension)."""
        if alt_names is None:
            alt_names = [x509.DNSName(s) for s in (sans if sans is not None else [cn])] or None
        start = not_before or self.at - DAY
        return (issuer or self.int_issuer).issue(
            self.leaf_key.public_key(),
            name(cn),
            profile=profile,
            alt_names=alt_names,
            not_before=start,
            not_after=start + days * DAY,
            serial=serial,
        )

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
        issuer: Issuer | None = None,
        number: int = 1,
        this_update: dt.datetime | None = None,
        days: float = 7,
    ) -> x509.CertificateRevocationList:
        start = this_update or self.at - dt.timedelta(hours=1)
        entries = [
            revoked_entry(c.serial_number, start, parse_reason(r) if r else None)
            for c, r in revoked
        ]
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
