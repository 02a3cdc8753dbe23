"""certway.pki.decode: detection from content, text/JSON output, and nothing but our errors."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from certway.errors import DecodeError, PassphraseError
from certway.pki.decode import Decoded, detect
from certway.pki.keys import load_private_key
from certway.pki.load import (
    ObjectKind,
    load_certificates,
    load_crls,
    load_csr,
    load_pkcs7,
    load_pkcs12,
)
from certway.pki.text import fingerprint, format_name

UNKNOWN_OID = x509.ObjectIdentifier("1.3.6.1.4.1.55555.1")
NOW = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
PEM = serialization.Encoding.PEM
DER = serialization.Encoding.DER

CA_KEY = ec.generate_private_key(ec.SECP256R1())
LEAF_KEY = ec.generate_private_key(ec.SECP256R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "GB"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _ski(key: ec.EllipticCurvePrivateKey) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(key.public_key())


CA_CERT = (
    x509.CertificateBuilder()
    .subject_name(_name("Acme Root"))
    .issuer_name(_name("Acme Root"))
    .public_key(CA_KEY.public_key())
    .serial_number(0x1000)
    .not_valid_before(NOW)
    .not_valid_after(NOW + dt.timedelta(days=3650))
    .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
    .add_extension(_ski(CA_KEY), critical=False)
    .sign(CA_KEY, hashes.SHA256())
)

LEAF_CERT = (
    x509.CertificateBuilder()
    .subject_name(_name("leaf.example"))
    .issuer_name(CA_CERT.subject)
    .public_key(LEAF_KEY.public_key())
    .serial_number(0x0123456789ABCDEF0123)
    .not_valid_before(NOW)
    .not_valid_after(NOW + dt.timedelta(days=90))
    .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    .add_extension(
        x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=True,
            key_cert_sign=False,
            crl_sign=False,
            encipher_only=False,
            decipher_only=False,
        ),
        critical=True,
    )
    .add_extension(
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
        critical=False,
    )
    .add_extension(
        x509.SubjectAlternativeName(
            [
                x509.DNSName("leaf.example"),
                x509.IPAddress(ipaddress.ip_address("192.0.2.1")),
                x509.RFC822Name("ops@leaf.example"),
            ]
        ),
        critical=False,
    )
    .add_extension(_ski(LEAF_KEY), critical=False)
    .add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(CA_KEY.public_key()), critical=False
    )
    .add_extension(
        x509.CRLDistributionPoints(
            [
                x509.DistributionPoint(
                    full_name=[x509.UniformResourceIdentifier("http://crl.example/root.crl")],
                    relative_name=None,
                    reasons=None,
                    crl_issuer=None,
                )
            ]
        ),
        critical=False,
    )
    .add_extension(
        x509.AuthorityInformationAccess(
            [
                x509.AccessDescription(
                    x509.oid.AuthorityInformationAccessOID.OCSP,
                    x509.UniformResourceIdentifier("http://ocsp.example"),
                ),
                x509.AccessDescription(
                    x509.oid.AuthorityInformationAccessOID.CA_ISSUERS,
                    x509.UniformResourceIdentifier("http://ca.example/root.der"),
                ),
            ]
        ),
        critical=False,
    )
    .add_extension(
        x509.CertificatePolicies(
            [
                x509.PolicyInformation(
                    x509.ObjectIdentifier("2.23.140.1.2.1"), ["https://cps.example"]
                )
            ]
        ),
        critical=False,
    )
    .add_extension(
        x509.UnrecognizedExtension(
            x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x04\x02\xbe\xef"
        ),
        critical=False,
    )
    .sign(CA_KEY, hashes.SHA256())
)

CSR = (
    x509.CertificateSigningRequestBuilder()
    .subject_name(_name("req.example"))
    .add_extension(
        x509.SubjectAlternativeName([x509.DNSName("req.example"), x509.DNSName("alt.example")]),
        critical=False,
    )
    .sign(LEAF_KEY, hashes.SHA256())
)


def _revoked(serial: int, reason: x509.ReasonFlags | None = None) -> x509.RevokedCertificate:
    builder = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(NOW)
    if reason is not None:
        builder = builder.add_extension(x509.CRLReason(reason), critical=False)
        builder = builder.add_extension(
            x509.InvalidityDate(NOW - dt.timedelta(days=1)), critical=False
        )
    return builder.build()


def _crl(revoked: list[x509.RevokedCertificate]) -> x509.CertificateRevocationList:
    return (
        x509.CertificateRevocationListBuilder(revoked_certificates=revoked)
        .issuer_name(CA_CERT.subject)
        .last_update(NOW)
        .next_update(NOW + dt.timedelta(days=7))
        .add_extension(x509.CRLNumber(42), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(CA_KEY.public_key()),
            critical=False,
        )
        .sign(CA_KEY, hashes.SHA256())
    )


CRL = _crl([_revoked(0xABCD, x509.ReasonFlags.key_compromise), _revoked(7)])

P12_PASSPHRASE = b"correct horse"
P12 = pkcs12.serialize_key_and_certificates(
    b"leaf",
    LEAF_KEY,
    LEAF_CERT,
    [CA_CERT],
    serialization.BestAvailableEncryption(P12_PASSPHRASE),
)

SAMPLES: list[bytes] = [
    LEAF_CERT.public_bytes(PEM),
    LEAF_CERT.public_bytes(DER),
    CSR.public_bytes(PEM),
    CSR.public_bytes(DER),
    CRL.public_bytes(PEM),
    CRL.public_bytes(DER),
    pkcs7.serialize_certificates([LEAF_CERT, CA_CERT], PEM),
    pkcs7.serialize_certificates([LEAF_CERT, CA_CERT], DER),
    LEAF_KEY.private_bytes(DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    LEAF_KEY.public_key().public_bytes(DER, serialization.PublicFormat.SubjectPublicKeyInfo),
    P12,
]


def _private_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, fmt: str) -> bytes:
    private_format = getattr(serialization.PrivateFormat, fmt)
    return key.private_bytes(PEM, private_format, serialization.NoEncryption())


def _pem_body(pem: bytes) -> bytes:
    """The base64 of a PEM block without its BEGIN/END lines and newlines."""
    return b"".join(line for line in pem.splitlines() if not line.startswith(b"-----"))


# --------------------------------------------------------------------------- kinds


@pytest.mark.parametrize(("encoding", "name"), [(PEM, "PEM"), (DER, "DER")])
def test_certificate_is_detected_in_pem_and_der(
    encoding: serialization.Encoding, name: str
) -> None:
    decoded = detect(LEAF_CERT.public_bytes(encoding))
    assert decoded.kind is ObjectKind.CERTIFICATE
    assert decoded.encoding == name
    assert decoded.objects == (LEAF_CERT,)


def test_certificate_text_reads_like_openssl() -> None:
    text = detect(LEAF_CERT.public_bytes(PEM)).to_text()
    for expected in [
        "Version: 3 (0x2)",
        "01:23:45:67:89:ab:cd:ef:01:23",
        "Signature Algorithm: ecdsa-with-SHA256",
        "Issuer: C=GB, O=Acme, CN=Acme Root",
        "Not Before: Jan  1 00:00:00 2025 GMT",
        "Not After : Apr  1 00:00:00 2025 GMT",
        "Subject: C=GB, O=Acme, CN=leaf.example",
        "Public-Key: (256 bit)",
        "NIST CURVE: P-256",
        "X509v3 Basic Constraints: critical",
        "CA:FALSE",
        "Digital Signature, Key Agreement",
        "TLS Web Server Authentication, TLS Web Client Authentication",
        "DNS:leaf.example, IP Address:192.0.2.1, email:ops@leaf.example",
        "URI:http://crl.example/root.crl",
        "OCSP - URI:http://ocsp.example",
        "CA Issuers - URI:http://ca.example/root.der",
        "Policy: 2.23.140.1.2.1",
        "CPS: https://cps.example",
        "1.3.6.1.4.1.55555.1:",
        "04:02:be:ef",
        f"SHA256 Fingerprint={fingerprint(LEAF_CERT)}",
    ]:
        assert expected in text, expected
    ski = _ski(LEAF_KEY).digest.hex(":").upper()
    assert f"X509v3 Subject Key Identifier:\n                {ski}" in text
    aki = _ski(CA_KEY).digest.hex(":").upper()
    assert f"keyid:{aki}" in text


def test_certificate_dict_is_json_with_the_same_facts() -> None:
    facts = detect(LEAF_CERT.public_bytes(DER)).to_dict()
    json.dumps(facts)
    assert facts["kind"] == "certificate"
    assert facts["subject"] == "C=GB, O=Acme, CN=leaf.example"
    assert facts["serial"] == "0123456789ABCDEF0123"
    assert facts["not_before"] == "2025-01-01T00:00:00Z"
    assert facts["public_key"]["type"] == "EC"
    assert facts["public_key"]["curve"] == "secp256r1"
    assert facts["public_key"]["size"] == 256
    assert facts["sha256_fingerprint"] == fingerprint(LEAF_CERT)
    by_oid = {ext["oid"]: ext for ext in facts["extensions"]}
    san = by_oid[ExtensionOID.SUBJECT_ALTERNATIVE_NAME.dotted_string]
    assert san["name"] == "Subject Alternative Name"
    assert san["critical"] is False
    assert {"type": "ip", "value": "192.0.2.1"} in san["value"]
    assert by_oid[ExtensionOID.BASIC_CONSTRAINTS.dotted_string]["value"] == {
        "ca": False,
        "path_length": None,
    }
    eku = by_oid[ExtensionOID.EXTENDED_KEY_USAGE.dotted_string]["value"]
    assert eku[0] == {"oid": "1.3.6.1.5.5.7.3.1", "name": "TLS Web Server Authentication"}


def test_pem_bundle_decodes_every_certificate() -> None:
    decoded = detect(LEAF_CERT.public_bytes(PEM) + CA_CERT.public_bytes(PEM))
    assert decoded.kind is ObjectKind.CERTIFICATE
    assert decoded.objects == (LEAF_CERT, CA_CERT)
    facts = decoded.to_dict()
    assert [item["subject"] for item in facts["items"]] == [
        "C=GB, O=Acme, CN=leaf.example",
        "C=GB, O=Acme, CN=Acme Root",
    ]
    assert "[2/2] certificate" in decoded.to_text()


@pytest.mark.parametrize("encoding", [PEM, DER])
def test_csr_is_detected(encoding: serialization.Encoding) -> None:
    decoded = detect(CSR.public_bytes(encoding))
    assert decoded.kind is ObjectKind.CSR
    text = decoded.to_text()
    assert "Certificate Request:" in text
    assert "Subject: C=GB, O=Acme, CN=req.example" in text
    assert "Requested Extensions:" in text
    assert "DNS:req.example, DNS:alt.example" in text
    assert "Signature: valid" in text
    assert decoded.to_dict()["signature_valid"] is True


@pytest.mark.parametrize("encoding", [PEM, DER])
def test_crl_is_detected(encoding: serialization.Encoding) -> None:
    decoded = detect(CRL.public_bytes(encoding))
    assert decoded.kind is ObjectKind.CRL
    text = decoded.to_text()
    for expected in [
        "Last Update: Jan  1 00:00:00 2025 GMT",
        "Next Update: Jan  8 00:00:00 2025 GMT",
        "X509v3 CRL Number:\n                42",
        "Serial Number: ABCD",
        "X509v3 CRL Reason Code:\n                Key Compromise",
        "Invalidity Date:\n                Dec 31 00:00:00 2024 GMT",
        "Serial Number: 07",
    ]:
        assert expected in text, expected
    facts = decoded.to_dict()
    assert facts["revoked_count"] == 2
    assert facts["revoked"][0]["reason"] == "keyCompromise"
    assert facts["revoked"][1]["reason"] is None


def test_large_crl_text_is_capped_but_json_is_complete() -> None:
    crl = _crl([_revoked(n) for n in range(1, 1006)])
    decoded = detect(crl.public_bytes(DER))
    text = decoded.to_text()
    assert "... and 5 more" in text
    assert text.count("Serial Number:") == 1000
    assert len(decoded.to_dict()["revoked"]) == 1005


@pytest.mark.parametrize("encoding", [PEM, DER])
def test_pkcs7_bundle_is_detected(encoding: serialization.Encoding) -> None:
    decoded = detect(pkcs7.serialize_certificates([LEAF_CERT, CA_CERT], encoding))
    assert decoded.kind is ObjectKind.PKCS7
    # PKCS#7 holds a SET OF certificates: DER sorts them, so compare without order.
    assert set(decoded.objects) == {LEAF_CERT, CA_CERT}
    assert "PKCS#7 bundle: 2 certificates" in decoded.to_text()
    assert len(decoded.to_dict()["items"]) == 2


def test_pkcs7_without_certificates_is_a_decode_error() -> None:
    # What `openssl crl2pkcs7 -nocrl -outform DER` writes when given no certificate.
    der = bytes.fromhex(
        "302306092a864886f70d010702a01630140201013100300b06092a864886f70d0107013100"
    )
    with pytest.raises(DecodeError, match="holds no certificates"):
        detect(der)


def test_pkcs12_needs_its_passphrase() -> None:
    with pytest.raises(PassphraseError, match=r"PKCS#12 file is encrypted: give its passphrase"):
        detect(P12)
    with pytest.raises(PassphraseError, match="wrong passphrase"):
        detect(P12, b"wrong")
    decoded = detect(P12, P12_PASSPHRASE)
    assert decoded.kind is ObjectKind.PKCS12
    text = decoded.to_text()
    assert "Friendly Name: leaf" in text
    assert "Private Key: EC secp256r1 (256 bit) (key material not shown)" in text
    assert "Matches Certificate: yes" in text
    assert "Additional Certificates: 1" in text
    facts = decoded.to_dict()
    json.dumps(facts)
    assert facts["certificate"]["subject"] == "C=GB, O=Acme, CN=leaf.example"
    assert facts["additional_certificates"][0]["subject"] == "C=GB, O=Acme, CN=Acme Root"
    assert facts["key_matches_certificate"] is True
    _assert_no_ec_secret(text + json.dumps(facts), LEAF_KEY)


def test_unencrypted_pkcs12_opens_without_passphrase() -> None:
    p12 = pkcs12.serialize_key_and_certificates(
        None, LEAF_KEY, LEAF_CERT, None, serialization.NoEncryption()
    )
    assert detect(p12).kind is ObjectKind.PKCS12
    assert load_pkcs12(p12, None).cert is not None


# --------------------------------------------------------------------------- keys


def _assert_no_rsa_secret(output: str, key: rsa.RSAPrivateKey) -> None:
    numbers = key.private_numbers()
    lowered = output.lower().replace(":", "")
    for secret in (numbers.d, numbers.p, numbers.q, numbers.dmp1, numbers.dmq1, numbers.iqmp):
        assert str(secret) not in output
        assert f"{secret:x}" not in lowered
        assert f"{secret:x}"[:32] not in lowered
    for fmt in ("PKCS8", "TraditionalOpenSSL"):
        body = _pem_body(_private_pem(key, fmt)).decode()
        assert body[64:128] not in output


def _assert_no_ec_secret(output: str, key: ec.EllipticCurvePrivateKey) -> None:
    value = key.private_numbers().private_value
    lowered = output.lower().replace(":", "")
    assert str(value) not in output
    assert f"{value:064x}"[:32] not in lowered
    assert f"{value:064x}"[32:] not in lowered
    for fmt in ("PKCS8", "TraditionalOpenSSL"):
        body = _pem_body(_private_pem(key, fmt)).decode()
        assert body[:64] not in output


@pytest.mark.parametrize("fmt", ["PKCS8", "TraditionalOpenSSL"])
@pytest.mark.parametrize("encoding", [PEM, DER])
def test_rsa_private_key_shows_no_key_material(fmt: str, encoding: serialization.Encoding) -> None:
    data = RSA_KEY.private_bytes(
        encoding, getattr(serialization.PrivateFormat, fmt), serialization.NoEncryption()
    )
    decoded = detect(data)
    assert decoded.kind is ObjectKind.PRIVATE_KEY
    text = decoded.to_text()
    facts = decoded.to_dict()
    assert "Type: RSA" in text
    assert "Size: 2048 bit" in text
    assert facts["type"] == "RSA"
    assert facts["size"] == 2048
    _assert_no_rsa_secret(text + json.dumps(facts), RSA_KEY)


@pytest.mark.parametrize("fmt", ["PKCS8", "TraditionalOpenSSL"])
@pytest.mark.parametrize("encoding", [PEM, DER])
def test_ec_private_key_shows_no_key_material(fmt: str, encoding: serialization.Encoding) -> None:
    data = LEAF_KEY.private_bytes(
        encoding, getattr(serialization.PrivateFormat, fmt), serialization.NoEncryption()
    )
    decoded = detect(data)
    assert decoded.kind is ObjectKind.PRIVATE_KEY
    text = decoded.to_text()
    assert "Curve: secp256r1" in text
    spki = LEAF_KEY.public_key().public_bytes(DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert hashlib.sha256(spki).digest().hex(":").upper() in text
    _assert_no_ec_secret(text + json.dumps(decoded.to_dict()), LEAF_KEY)


@pytest.mark.parametrize("encoding", [PEM, DER])
def test_encrypted_private_key_needs_its_passphrase(encoding: serialization.Encoding) -> None:
    data = LEAF_KEY.private_bytes(
        encoding,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"s3cret"),
    )
    with pytest.raises(PassphraseError, match="encrypted"):
        detect(data)
    with pytest.raises(PassphraseError, match="wrong passphrase"):
        detect(data, b"nope")
    assert detect(data, b"s3cret").kind is ObjectKind.PRIVATE_KEY


def test_legacy_encrypted_pem_key_with_headers() -> None:
    data = LEAF_KEY.private_bytes(
        PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.BestAvailableEncryption(b"s3cret"),
    )
    assert b"Proc-Type" in data
    with pytest.raises(PassphraseError):
        detect(data)
    assert detect(data, b"s3cret").kind is ObjectKind.PRIVATE_KEY


def test_passphrase_for_a_plain_key_is_ignored() -> None:
    assert detect(_private_pem(LEAF_KEY, "PKCS8"), b"unused").kind is ObjectKind.PRIVATE_KEY


def test_pem_with_certificate_and_key_decodes_both_without_key_material() -> None:
    data = LEAF_CERT.public_bytes(PEM) + _private_pem(LEAF_KEY, "PKCS8")
    decoded = detect(data)
    assert decoded.kind is ObjectKind.CERTIFICATE
    assert [item["kind"] for item in decoded.to_dict()["items"]] == ["certificate", "private-key"]
    _assert_no_ec_secret(decoded.to_text(), LEAF_KEY)


@pytest.mark.parametrize(
    "data",
    [
        RSA_KEY.public_key().public_bytes(PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        RSA_KEY.public_key().public_bytes(PEM, serialization.PublicFormat.PKCS1),
        LEAF_KEY.public_key().public_bytes(DER, serialization.PublicFormat.SubjectPublicKeyInfo),
    ],
    ids=["rsa-spki-pem", "rsa-pkcs1-pem", "ec-spki-der"],
)
def test_public_key_is_detected(data: bytes) -> None:
    decoded = detect(data)
    assert decoded.kind is ObjectKind.PUBLIC_KEY
    assert "Public Key Algorithm:" in decoded.to_text()
    assert decoded.to_dict()["type"] in {"RSA", "EC"}


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty input"),
        (b"   \n", "empty input"),
        (b"hello, world\n", "no PEM BEGIN line"),
        (b"\x00\x01\x02\x03", "the data does not start with an ASN.1 SEQUENCE"),
        (LEAF_CERT.public_bytes(PEM)[:300], "truncated PEM"),
        (b"-----BEGIN FOO-----\nAAAA\n-----END FOO-----\n", "unsupported PEM block 'FOO'"),
        (
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "not a valid certificate",
        ),
        (b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n", "invalid base64"),
    ],
    ids=["empty", "blank", "text", "binary", "truncated", "label", "bad-der", "bad-b64"],
)
def test_garbage_is_a_one_line_decode_error(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message) as info:
        detect(data)
    assert "\n" not in str(info.value)


def test_lazily_parsed_malformed_extension_is_a_decode_error() -> None:
    broken = (
        x509.CertificateBuilder()
        .subject_name(_name("broken"))
        .issuer_name(_name("broken"))
        .public_key(LEAF_KEY.public_key())
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=1))
        .add_extension(
            x509.UnrecognizedExtension(ExtensionOID.BASIC_CONSTRAINTS, b"\x01\x02"),
            critical=False,
        )
        .sign(LEAF_KEY, hashes.SHA256())
    )
    with pytest.raises(DecodeError, match="malformed certificate"):
        detect(broken.public_bytes(DER))
    with pytest.raises(DecodeError, match="malformed certificate"):
        load_certificates(broken.public_bytes(PEM))


def _check_only_our_errors(data: bytes, passphrase: bytes | None = None) -> None:
    try:
        decoded = detect(data, passphrase)
    except (DecodeError, PassphraseError):
        return
    assert isinstance(decoded, Decoded)
    json.dumps(decoded.to_dict())
    decoded.to_text()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_raise_only_decode_error(data: bytes) -> None:
    try:
        detect(data)
    except DecodeError:
        return
    except PassphraseError:  # only if random bytes were a well-formed, MAC'd PKCS#12
        return


_LABELS = [
    "CERTIFICATE",
    "X509 CRL",
    "CERTIFICATE REQUEST",
    "PKCS7",
    "PRIVATE KEY",
    "ENCRYPTED PRIVATE KEY",
    "EC PRIVATE KEY",
    "PUBLIC KEY",
]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(_LABELS), st.binary(min_size=1, max_size=1024))
def test_pem_framed_random_bodies_raise_decode_error(label: str, body: bytes) -> None:
    data = (
        f"-----BEGIN {label}-----\n".encode()
        + base64.encodebytes(body)
        + f"-----END {label}-----\n".encode()
    )
    with pytest.raises(DecodeError):
        detect(data)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SAMPLES), st.data())
def test_truncated_and_mutated_real_objects_raise_only_our_errors(
    sample: bytes, data: st.DataObject
) -> None:
    cut = data.draw(st.integers(min_value=0, max_value=len(sample)))
    _check_only_our_errors(sample[:cut])
    index = data.draw(st.integers(min_value=0, max_value=len(sample) - 1))
    flip = data.draw(st.integers(min_value=1, max_value=255))
    mutated = sample[:index] + bytes([sample[index] ^ flip]) + sample[index + 1 :]
    _check_only_our_errors(mutated)
    _check_only_our_errors(mutated, P12_PASSPHRASE)


# --------------------------------------------------------------------------- helpers


def test_load_certificates_from_every_container() -> None:
    chain = [LEAF_CERT, CA_CERT]
    pem_bundle = b"".join(c.public_bytes(PEM) for c in chain)
    assert load_certificates(pem_bundle) == chain
    assert load_certificates(LEAF_CERT.public_bytes(DER)) == [LEAF_CERT]
    assert set(load_certificates(pkcs7.serialize_certificates(chain, PEM))) == set(chain)
    assert set(load_certificates(pkcs7.serialize_certificates(chain, DER))) == set(chain)


@pytest.mark.parametrize(
    "data",
    [b"", b"junk", CSR.public_bytes(PEM), CSR.public_bytes(DER), _private_pem(LEAF_KEY, "PKCS8")],
    ids=["empty", "junk", "csr-pem", "csr-der", "key"],
)
def test_load_certificates_refuses_what_is_not_a_certificate(data: bytes) -> None:
    with pytest.raises(DecodeError):
        load_certificates(data)


def test_load_crls_reads_several_pem_blocks_or_one_der() -> None:
    other = _crl([])
    assert load_crls(CRL.public_bytes(PEM) + other.public_bytes(PEM)) == [CRL, other]
    assert load_crls(CRL.public_bytes(DER)) == [CRL]
    with pytest.raises(DecodeError, match="expected a CRL"):
        load_crls(LEAF_CERT.public_bytes(PEM))


def test_load_csr() -> None:
    assert load_csr(CSR.public_bytes(PEM)) == CSR
    assert load_csr(CSR.public_bytes(DER)) == CSR
    with pytest.raises(DecodeError, match="expected one CSR"):
        load_csr(CSR.public_bytes(PEM) * 2)
    with pytest.raises(DecodeError):
        load_csr(LEAF_CERT.public_bytes(DER))


TEXT = b"hello world, this is not a csr at all\n"


@pytest.mark.parametrize(
    "load",
    [load_csr, load_crls, load_certificates, load_pkcs7, load_private_key, detect],
    ids=["csr", "crl", "certificates", "pkcs7", "private-key", "decode"],
)
def test_text_that_is_not_pem_is_said_to_be_text_by_every_loader(
    load: Callable[[bytes], object],
) -> None:
    # not "the file is truncated (65 more bytes expected)": what a DER parser makes of letters
    with pytest.raises(DecodeError) as info:
        load(TEXT)
    assert "no PEM BEGIN line, and text is not DER" in str(info.value)


@pytest.mark.parametrize(
    ("load", "what"),
    [
        (load_csr, "not a CSR: "),
        (load_crls, "not a CRL: "),
        (load_private_key, "not a private key: "),
    ],
    ids=["csr", "crl", "private-key"],
)
def test_text_refusals_name_the_expected_kind(load: Callable[[bytes], object], what: str) -> None:
    with pytest.raises(DecodeError, match=f"^{what}no PEM BEGIN line"):
        load(b"junk")


def test_truncated_der_csr_is_still_reported_as_truncated() -> None:
    with pytest.raises(DecodeError, match="truncated"):
        load_csr(CSR.public_bytes(DER)[:-20])


def test_fingerprint_is_uppercase_sha256_with_colons() -> None:
    digest = hashlib.sha256(LEAF_CERT.public_bytes(DER)).hexdigest().upper()
    assert fingerprint(LEAF_CERT) == ":".join(digest[i : i + 2] for i in range(0, 64, 2))


def test_format_name_is_in_encoded_order_and_escapes_separators() -> None:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "GB"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme, Inc"),
            x509.NameAttribute(NameOID.EMAIL_ADDRESS, "a@b.example"),
            x509.NameAttribute(NameOID.COMMON_NAME, "x"),
        ]
    )
    assert format_name(name) == r"C=GB, O=Acme\, Inc, emailAddress=a@b.example, CN=x"


@pytest.mark.interop
@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")
def test_names_and_fingerprint_match_openssl(tmp_path: Path) -> None:
    path = tmp_path / "leaf.pem"
    path.write_bytes(LEAF_CERT.public_bytes(PEM))
    out = subprocess.run(
        [
            "openssl",
            "x509",
            "-in",
            str(path),
            "-noout",
            "-subject",
            "-issuer",
            "-fingerprint",
            "-sha256",
            "-nameopt",
            "sep_comma_plus_space",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    facts = detect(path.read_bytes()).to_dict()
    assert f"subject={facts['subject']}" in out
    assert f"issuer={facts['issuer']}" in out
    assert f"sha256 Fingerprint={facts['sha256_fingerprint']}" in out
