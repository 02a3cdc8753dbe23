"""Validation profiles: RFC 5280 path validation for enterprise/UC PKIs, web PKI on demand;
trusted certificates accepted as themselves; the local CAs' records as revocation source."""

from __future__ import annotations

import datetime as dt
import ipaddress
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from certway.errors import Revoked, ValidationCode
from certway.trust.anchors import TrustSnapshot, key_id
from certway.trust.policy import Profile, RevocationPolicy
from certway.trust.records import CaRecords, IssuerRecords, RecordedRevocation
from certway.trust.report import Outcome
from certway.trust.validate import Purpose, ValidationOptions, validate

from conftest import NOW, test_key
from pkitools import Pki, cucm_certificate, name

PROFILES = [Profile.RFC5280, Profile.WEBPKI]
CRL_ONLY = RevocationPolicy(ocsp=False, cdp=False)


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("purpose", [Purpose.SERVER, Purpose.CLIENT])
def test_trusted_self_signed_ca_certificate_is_accepted_as_itself(
    profile: Profile, purpose: Purpose
) -> None:
    cucm = cucm_certificate()
    options = ValidationOptions(profile=profile, purpose=purpose, name="cucm.example.com")
    result = validate(cucm, trust=TrustSnapshot.of([cucm]), at=NOW, options=options)
    assert result.valid, result.reason
    assert result.chain == (cucm,)


@pytest.mark.parametrize("profile", PROFILES)
def test_self_signed_certificate_not_on_the_list_is_untrusted(profile: Profile) -> None:
    other = Pki("Other", index=930)
    result = validate(
        cucm_certificate(),
        trust=TrustSnapshot.of([other.root]),
        at=NOW,
        options=ValidationOptions(profile=profile),
    )
    assert not result.valid and result.code == "untrusted"


def test_trusted_certificate_is_still_checked_for_validity_and_name() -> None:
    cucm = cucm_certificate()
    trust = TrustSnapshot.of([cucm])
    late = validate(cucm, trust=trust, at=NOW + dt.timedelta(days=400))
    assert late.code == "expired"
    wrong = validate(cucm, trust=trust, at=NOW, options=ValidationOptions(name="b.example.com"))
    assert wrong.code == "name-mismatch"


@pytest.mark.interop
def test_openssl_req_x509_certificate_on_the_list_is_accepted(openssl: str, tmp_path: Path) -> None:
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", key, "-out", cert, "-days", "30", "-subj", "/CN=tms.example.com"],
        check=True, capture_output=True,
    )  # fmt: skip
    peer = x509.load_pem_x509_certificate(cert.read_bytes())
    now = dt.datetime.now(dt.UTC)
    for profile in PROFILES:
        for purpose in Purpose:
            options = ValidationOptions(profile=profile, purpose=purpose, name="tms.example.com")
            result = validate(peer, trust=TrustSnapshot.of([peer]), at=now, options=options)
            assert result.valid, (profile, purpose, result.reason)


def _leaf_with_issuer_name(pki: Pki, issuer_name: x509.Name) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(name("chained.example.com"))
        .issuer_name(issuer_name)
        .public_key(pki.leaf_key.public_key())
        .serial_number(0xC0FFEE)
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(pki.int_key, hashes.SHA256())
    )


def test_rfc5280_chains_names_by_the_comparison_rules() -> None:
    pki = Pki("Chain", index=940)
    # "chain   issuing" in another case and with runs of spaces: the same name per RFC 5280 §7.1
    folded = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "chain   ISSUING")])
    leaf = _leaf_with_issuer_name(pki, folded)
    trust = TrustSnapshot.of([pki.root])
    rfc = validate(leaf, [pki.intermediate], trust=trust, at=NOW)
    assert rfc.valid, rfc.reason
    web = validate(
        leaf,
        [pki.intermediate],
        trust=trust,
        at=NOW,
        options=ValidationOptions(profile=Profile.WEBPKI),
    )
    assert not web.valid


def test_rfc5280_enforces_directory_name_constraints() -> None:
    key = test_key("ec:p256", 950)
    root_name = name("Constrained Root")
    permitted = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme")])
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - dt.timedelta(days=10))
        .not_valid_after(NOW + dt.timedelta(days=100))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    ca_key = test_key("ec:p256", 951)
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme"),
            x509.NameAttribute(NameOID.COMMON_NAME, "Acme CA"),
        ]
    )
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(root_name)
        .public_key(ca_key.public_key())
        .serial_number(2)
        .not_valid_before(NOW - dt.timedelta(days=10))
        .not_valid_after(NOW + dt.timedelta(days=100))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.NameConstraints([x509.DirectoryName(permitted)], None), critical=True)
        .sign(key, hashes.SHA256())
    )

    def leaf(org: str) -> x509.Certificate:
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                x509.NameAttribute(NameOID.COMMON_NAME, "user"),
            ]
        )
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_name)
            .public_key(test_key("ec:p256", 952).public_key())
            .serial_number(3)
            .not_valid_before(NOW - dt.timedelta(days=1))
            .not_valid_after(NOW + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256())
        )

    trust = TrustSnapshot.of([root])
    options = ValidationOptions(purpose=Purpose.CLIENT)
    inside = validate(leaf("Acme"), [ca], trust=trust, at=NOW, options=options)
    assert inside.valid, inside.reason
    outside = validate(leaf("Evil"), [ca], trust=trust, at=NOW, options=options)
    assert not outside.valid and outside.code == "untrusted"
    assert "permitted namespace" in outside.reason


def test_unknown_critical_extension_on_the_peer_is_refused() -> None:
    pki = Pki("Critical", index=960)
    base = pki.leaf("crit.example.com")
    odd = (
        x509.CertificateBuilder()
        .subject_name(base.subject)
        .issuer_name(base.issuer)
        .public_key(pki.leaf_key.public_key())
        .serial_number(0xBAD)
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=30))
        .add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00"),
            critical=True,
        )
        .sign(pki.int_key, hashes.SHA256())
    )
    result = validate(odd, [pki.intermediate], trust=TrustSnapshot.of([pki.root]), at=NOW)
    assert not result.valid and "1.3.6.1.4.1.99999.1" in result.reason


def test_validated_paths_are_cached_per_trusted_list_and_validity() -> None:
    pki = Pki("Cache", index=970)
    leaf = pki.leaf("cache.example.com", days=10)
    trust = TrustSnapshot.of([pki.root])
    first = validate(leaf, [pki.intermediate], trust=trust, at=NOW)
    assert first.valid and len(trust.paths) == 1
    again = validate(leaf, [pki.intermediate], trust=trust, at=NOW + dt.timedelta(days=1))
    assert again.valid and again.chain == first.chain
    # past the leaf's validity the cached path is not used
    late = validate(leaf, [pki.intermediate], trust=trust, at=NOW + dt.timedelta(days=20))
    assert late.code == "expired"
    # another trusted list (the list changed) does not see the cached path
    other = TrustSnapshot.of([Pki("Else", index=975).root])
    assert validate(leaf, [pki.intermediate], trust=other, at=NOW).code == "untrusted"


def test_local_ca_records_decide_for_their_certificates() -> None:
    pki = Pki("Own", index=980)
    leaf = pki.leaf("own.example.com")
    trust = TrustSnapshot.of([pki.root])

    revoked = {
        leaf.serial_number: RecordedRevocation(NOW - dt.timedelta(minutes=1), "keyCompromise")
    }
    records = CaRecords(
        {
            key_id(pki.intermediate): IssuerRecords(
                "issuing", pki.intermediate.subject.public_bytes(), revoked
            )
        }
    )
    result = validate(
        leaf, [pki.intermediate], trust=trust, at=NOW, policy=CRL_ONLY, records=records
    )
    assert not result.valid and result.code == "revoked"
    assert "keyCompromise" in result.reason and "local CA 'issuing'" in result.reason
    clean = CaRecords(
        {
            key_id(pki.intermediate): IssuerRecords(
                "issuing", pki.intermediate.subject.public_bytes(), {}
            )
        }
    )
    good = validate(leaf, [pki.intermediate], trust=trust, at=NOW, policy=CRL_ONLY, records=clean)
    assert good.valid
    assert any(c.name == "records" and c.outcome == "good" for c in good.certificates[0].checks)
    # revocation checking off: the records are not consulted either
    off = validate(
        leaf,
        [pki.intermediate],
        trust=trust,
        at=NOW,
        policy=RevocationPolicy(enabled=False),
        records=records,
    )
    assert off.valid


def _constrained(
    constraints: x509.NameConstraints, sans: list[x509.GeneralName], *, ca_constrained: bool
) -> tuple[x509.Certificate, list[x509.Certificate], x509.Certificate]:
    """root → (CA →) leaf with ``constraints`` on the root, or on the intermediate CA."""
    root_key, ca_key, leaf_key = (test_key("ec:p256", i) for i in (990, 991, 992))
    root_name, ca_name = name("NC Root"), name("NC CA")

    def cert(
        subject: x509.Name, issuer: x509.Name, key: object, signer: object, *, ca: bool, nc: bool
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())  # type: ignore[attr-defined]
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(days=1))
            .not_valid_after(NOW + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if nc:
            builder = builder.add_extension(constraints, critical=True)
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(signer, hashes.SHA256())  # type: ignore[arg-type]

    root = cert(root_name, root_name, root_key, root_key, ca=True, nc=not ca_constrained)
    ca = cert(ca_name, root_name, ca_key, root_key, ca=True, nc=ca_constrained)
    leaf = cert(name("leaf"), ca_name, leaf_key, ca_key, ca=False, nc=False)
    return root, [ca], leaf


def _ip(text: str) -> x509.IPAddress:
    return x509.IPAddress(ipaddress.ip_address(text))


def test_trusted_root_ip_name_constraints_bind_the_path() -> None:
    excluded = x509.NameConstraints(None, [x509.IPAddress(ipaddress.ip_network("192.0.2.0/24"))])
    root, chain, inside = _constrained(excluded, [_ip("192.0.2.1")], ca_constrained=False)
    refused = validate(inside, chain, trust=TrustSnapshot.of([root]), at=NOW)
    assert not refused.valid and "192.0.2.1" in refused.reason
    root, chain, outside = _constrained(excluded, [_ip("198.51.100.1")], ca_constrained=False)
    assert validate(outside, chain, trust=TrustSnapshot.of([root]), at=NOW).valid


def test_intermediate_ip_name_constraints_are_refused_not_ignored() -> None:
    permitted = x509.NameConstraints([x509.IPAddress(ipaddress.ip_network("10.0.0.0/8"))], None)
    root, chain, leaf = _constrained(permitted, [_ip("10.1.2.3")], ca_constrained=True)
    result = validate(leaf, chain, trust=TrustSnapshot.of([root]), at=NOW)
    assert not result.valid and "constrains IP addresses" in result.reason


def test_trusted_root_dns_exclusion_refuses_a_wildcard_that_could_cover_it() -> None:
    excluded = x509.NameConstraints(None, [x509.DNSName("bar.example.com")])
    root, chain, leaf = _constrained(
        excluded, [x509.DNSName("*.example.com")], ca_constrained=False
    )
    result = validate(leaf, chain, trust=TrustSnapshot.of([root]), at=NOW)
    assert not result.valid and "could stand for bar.example.com" in result.reason
    root, chain, plain = _constrained(
        excluded, [x509.DNSName("foo.example.com")], ca_constrained=False
    )
    assert validate(plain, chain, trust=TrustSnapshot.of([root]), at=NOW).valid
    root, chain, hit = _constrained(
        excluded, [x509.DNSName("bar.example.com")], ca_constrained=False
    )
    assert not validate(hit, chain, trust=TrustSnapshot.of([root]), at=NOW).valid


def test_revoked_error_carries_reason_date_and_source() -> None:
    pki = Pki("Facts", index=985)
    leaf = pki.leaf("facts.example.com")
    when = NOW - dt.timedelta(minutes=5)
    records = CaRecords(
        {
            key_id(pki.intermediate): IssuerRecords(
                "issuing",
                pki.intermediate.subject.public_bytes(),
                {leaf.serial_number: RecordedRevocation(when, "superseded")},
            )
        }
    )
    result = validate(
        leaf,
        [pki.intermediate],
        trust=TrustSnapshot.of([pki.root]),
        at=NOW,
        policy=CRL_ONLY,
        records=records,
    )
    error = result.error
    assert isinstance(error, Revoked)
    assert (error.reason, error.revoked_at, error.source) == (
        "superseded",
        when,
        "local CA 'issuing'",
    )
    assert result.code is ValidationCode.REVOKED
    assert result.certificates[0].checks[-1].outcome is Outcome.REVOKED
