"""Issuing: profiles, serials, key identifiers, CDP/AIA, validity limits."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certway.errors import PolicyViolation
from certway.pki.csr import CsrForm, build_csr
from certway.pki.issue import Issuer, create_root, issue_from_csr

from conftest import NOW, test_key

ROOT_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test Root")])


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    key = test_key("ec:p256", 1)
    start = NOW - dt.timedelta(days=1)
    root = create_root(key, ROOT_NAME, not_before=start, not_after=NOW + dt.timedelta(days=3650))
    return Issuer(
        root, key, crl_urls=("http://127.0.0.1/crl/root.crl",), ocsp_url="http://127.0.0.1/ocsp"
    )


def _csr(cn: str = "leaf.example.com", **kw: object) -> x509.CertificateSigningRequest:
    csr, _ = build_csr(test_key("ec:p256", 2), CsrForm(common_name=cn, **kw))  # type: ignore[arg-type]
    return csr


def test_root_is_self_signed_ca_with_ski_and_critical_ku(issuer: Issuer) -> None:
    root = issuer.certificate
    root.verify_directly_issued_by(root)
    bc = root.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ku = root.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign


@pytest.mark.parametrize(
    ("profile", "eku"),
    [
        ("server-client", [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
        ("server", [ExtendedKeyUsageOID.SERVER_AUTH]),
        ("client", [ExtendedKeyUsageOID.CLIENT_AUTH]),
    ],
)
def test_profiles_set_eku(issuer: Issuer, profile: str, eku: list[x509.ObjectIdentifier]) -> None:
    cert = issue_from_csr(issuer, _csr(), profile=profile, not_before=NOW, days=30)
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == eku
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    cert.verify_directly_issued_by(issuer.certificate)


def test_sub_ca_profile_drops_san_and_sets_path_length(issuer: Issuer) -> None:
    cert = issue_from_csr(issuer, _csr(), profile="sub-ca", not_before=NOW, days=30)
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca and bc.path_length == 0
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    sub = Issuer(cert, test_key("ec:p256", 2))
    with pytest.raises(PolicyViolation, match="path length is 0"):
        issue_from_csr(sub, _csr(), profile="sub-ca", not_before=NOW, days=1)


def test_serial_aki_cdp_aia(issuer: Issuer) -> None:
    cert = issue_from_csr(issuer, _csr(), not_before=NOW, days=30)
    assert cert.serial_number.bit_length() == 159
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = issuer.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    cdp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert cdp[0].full_name == [x509.UniformResourceIdentifier("http://127.0.0.1/crl/root.crl")]
    aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert aia[0].access_location.value == "http://127.0.0.1/ocsp"
    assert cert.not_valid_before_utc < NOW  # back-dated for clock skew


def test_serials_differ(issuer: Issuer) -> None:
    serials = {
        issue_from_csr(issuer, _csr(), not_before=NOW, days=1).serial_number for _ in range(20)
    }
    assert len(serials) == 20


def test_cn_only_csr_gets_cn_as_san(issuer: Issuer) -> None:
    key = test_key("ec:p256", 2)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cnonly.example.com")]))
        .sign(key, hashes.SHA256())
    )
    cert = issue_from_csr(issuer, csr, not_before=NOW, days=1)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["cnonly.example.com"]


def test_validity_cannot_outlive_ca(issuer: Issuer) -> None:
    with pytest.raises(PolicyViolation, match="outlive its CA"):
        issue_from_csr(issuer, _csr(), not_before=NOW, days=4000)


def test_unknown_profile(issuer: Issuer) -> None:
    with pytest.raises(PolicyViolation, match="unknown profile"):
        issue_from_csr(issuer, _csr(), profile="email", not_before=NOW, days=1)


def test_issuer_refuses_mismatched_key_and_non_ca(issuer: Issuer) -> None:
    with pytest.raises(PolicyViolation, match="does not match"):
        Issuer(issuer.certificate, test_key("ec:p256", 3))
    leaf = issue_from_csr(issuer, _csr(), not_before=NOW, days=1)
    with pytest.raises(PolicyViolation, match="not a CA"):
        Issuer(leaf, test_key("ec:p256", 2))


def test_rsa_issuer_uses_rsa_and_key_encipherment() -> None:
    key = test_key("rsa:2048")
    root = create_root(key, ROOT_NAME, not_before=NOW, not_after=NOW + dt.timedelta(days=30))
    rsa_issuer = Issuer(root, key)
    leaf_key = test_key("rsa:2048", 1)
    csr, _ = build_csr(leaf_key, CsrForm(common_name="r.example.com"))
    cert = issue_from_csr(rsa_issuer, csr, not_before=NOW, days=1)
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_encipherment
