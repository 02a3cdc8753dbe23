"""The Expressway name rules of SC2 and the CSR checks done before signing."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certway.errors import PolicyViolation
from certway.pki.csr import CsrForm, SubjectFields, build_csr, check_csr, digest_for, plan_names

from conftest import test_key


def test_cn_is_first_san_and_rest_sorted_and_deduplicated() -> None:
    plan = plan_names(
        CsrForm(
            common_name="vcse.example.com",
            additional_names=("b.example.com", "DNS:VCSE.example.com", "10.0.0.1", "a.example.com"),
        )
    )
    assert plan.preview == [
        "DNS:vcse.example.com",
        "DNS:a.example.com",
        "DNS:b.example.com",
        "IP:10.0.0.1",
    ]


def test_cluster_alt_names_add_cluster_and_peers() -> None:
    plan = plan_names(
        CsrForm(
            common_name="cluster.example.com",
            cluster_fqdn="cluster.example.com",
            peers=("peer1.example.com", "peer2.example.com"),
            include_cluster_names=True,
        )
    )
    assert plan.preview == [
        "DNS:cluster.example.com",
        "DNS:peer1.example.com",
        "DNS:peer2.example.com",
    ]


def test_cluster_alt_names_without_cluster_fqdn_refused() -> None:
    with pytest.raises(PolicyViolation, match="cluster FQDN"):
        plan_names(CsrForm(common_name="a.example.com", include_cluster_names=True))


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [("dns", "DNS:example.com"), ("collab-edge", "DNS:collab-edge.example.com")],
)
def test_ucm_registration_domain_formats(fmt: str, expected: str) -> None:
    plan = plan_names(
        CsrForm(common_name="e.example.com", ucm_domains=("example.com",), ucm_domain_format=fmt)  # type: ignore[arg-type]
    )
    assert expected in plan.preview


def test_edge_fields_refused_on_core() -> None:
    with pytest.raises(PolicyViolation, match="edge-role field"):
        plan_names(CsrForm(common_name="c.example.com", role="core", xmpp_domains=("x.com",)))
    with pytest.raises(PolicyViolation, match="edge-role field"):
        plan_names(CsrForm(common_name="c.example.com", role="core", ucm_domains=("x.com",)))


def test_phone_security_profiles_core_only_and_fqdn() -> None:
    plan = plan_names(
        CsrForm(
            common_name="c.example.com",
            role="core",
            phone_security_profiles=("secure-profile.example.com",),
        )
    )
    assert "DNS:secure-profile.example.com" in plan.preview
    with pytest.raises(PolicyViolation, match="core-role field"):
        plan_names(CsrForm(common_name="e.example.com", phone_security_profiles=("p.example.com",)))
    with pytest.raises(PolicyViolation, match="not an FQDN"):
        plan_names(
            CsrForm(common_name="c.example.com", role="core", phone_security_profiles=("plain",))
        )
    with pytest.raises(PolicyViolation, match="last label must start with a letter"):
        plan_names(
            CsrForm(common_name="c.example.com", role="core", phone_security_profiles=("a.b.9x",))
        )
    with pytest.raises(PolicyViolation, match="not a valid DNS name"):
        plan_names(
            CsrForm(
                common_name="c.example.com",
                role="core",
                phone_security_profiles=("-a.example.com",),
            )
        )


def test_chat_aliases_both_roles() -> None:
    for role in ("edge", "core"):
        plan = plan_names(
            CsrForm(common_name="n.example.com", role=role, chat_aliases=("chat.example.com",))  # type: ignore[arg-type]
        )
        assert "DNS:chat.example.com" in plan.preview


@pytest.mark.parametrize(
    "form",
    [
        CsrForm(common_name="*.example.com"),
        CsrForm(common_name="a.example.com", additional_names=("*.example.com",)),
        CsrForm(common_name="a.example.com", chat_aliases=("*.chat.example.com",)),
    ],
)
def test_wildcards_refused(form: CsrForm) -> None:
    with pytest.raises(PolicyViolation, match="wildcards are not allowed"):
        plan_names(form)


def test_csr_carries_names_eku_and_digest() -> None:
    key = test_key("ec:p256")
    csr, plan = build_csr(
        key,
        CsrForm(
            common_name="vcse.example.com",
            additional_names=("10.1.2.3",),
            subject=SubjectFields(country="gb", organization="Acme", email="pki@example.com"),
        ),
        digest="sha384",
    )
    assert csr.is_signature_valid
    assert isinstance(csr.signature_hash_algorithm, hashes.SHA384)
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "vcse.example.com"
    assert csr.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)[0].value == "GB"
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(n.value) for n in san] == ["vcse.example.com", "10.1.2.3"]
    eku = csr.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    assert plan.preview == ["DNS:vcse.example.com", "IP:10.1.2.3"]


@pytest.mark.parametrize("digest", ["sha1", "SHA-1", "md5"])
def test_sha1_refused(digest: str) -> None:
    with pytest.raises(PolicyViolation, match="not allowed"):
        digest_for(digest)


def test_bad_country_refused() -> None:
    with pytest.raises(PolicyViolation, match="two-letter"):
        build_csr(
            test_key(), CsrForm(common_name="a.example.com", subject=SubjectFields(country="GBR"))
        )


def test_check_csr_refuses_bad_signature() -> None:
    csr, _ = build_csr(test_key(), CsrForm(common_name="a.example.com"))
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x55  # flip bits inside the signature
    tampered = x509.load_der_x509_csr(bytes(der))
    with pytest.raises(PolicyViolation, match="signature is invalid"):
        check_csr(tampered)
