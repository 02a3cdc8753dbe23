"""certway.pki.convert: PEM <-> DER, PKCS#12 export/import, PKCS#7 bundles (with openssl)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from certway.errors import DecodeError, PassphraseError, PolicyViolation
from certway.pki.convert import (
    pkcs7_bundle,
    pkcs7_bundle_der,
    pkcs7_to_pems,
    pkcs12_export,
    pkcs12_import,
    to_der,
    to_pem,
)
from certway.pki.decode import detect
from certway.pki.load import ObjectKind

from conftest import test_key
from pkitools import Pki

PEM = serialization.Encoding.PEM
DER = serialization.Encoding.DER
PKCS8 = serialization.PrivateFormat.PKCS8
PASSPHRASE = b"correct horse"

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")

PKI = Pki(root_cn="Acme Root", index=600)
CA_KEY = PKI.root_key
LEAF_KEY = PKI.leaf_key
OTHER_KEY = test_key("ec:p256", 603)
assert isinstance(LEAF_KEY, ec.EllipticCurvePrivateKey)
CA_CERT = PKI.root
LEAF_CERT = PKI.leaf("leaf.example", issuer=PKI.root_issuer, days=30)
CSR = (
    x509.CertificateSigningRequestBuilder()
    .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "req.example")]))
    .sign(LEAF_KEY, hashes.SHA256())
)
CRL = PKI.crl(issuer=PKI.root_issuer)
OBJECTS = [LEAF_CERT, CSR, CRL]


def _openssl(*args: str, stdin: bytes | None = None) -> bytes:
    return subprocess.run(["openssl", *args], input=stdin, check=True, capture_output=True).stdout


# --------------------------------------------------------------------------- PEM <-> DER


@pytest.mark.parametrize("obj", OBJECTS, ids=["certificate", "csr", "crl"])
def test_pem_der_round_trip(obj: x509.Certificate) -> None:
    der, pem = obj.public_bytes(DER), obj.public_bytes(PEM)
    assert to_der(pem) == der
    assert to_pem(der) == pem
    assert to_der(der) == der
    assert to_pem(to_der(pem)) == pem


def test_to_pem_normalises_crlf_and_keeps_a_bundle() -> None:
    bundle = LEAF_CERT.public_bytes(PEM) + CA_CERT.public_bytes(PEM)
    assert to_pem(bundle.replace(b"\n", b"\r\n")) == bundle


def test_pkcs7_pem_and_der_convert() -> None:
    p7_pem, p7_der = pkcs7_bundle([LEAF_CERT, CA_CERT]), pkcs7_bundle_der([LEAF_CERT, CA_CERT])
    assert p7_pem.startswith(b"-----BEGIN PKCS7-----")
    assert to_der(p7_pem) == p7_der
    assert to_pem(p7_der) == p7_pem


def test_bundle_to_der_tells_to_use_p7b() -> None:
    bundle = LEAF_CERT.public_bytes(PEM) + CA_CERT.public_bytes(PEM)
    with pytest.raises(DecodeError) as info:
        to_der(bundle)
    assert str(info.value) == ("DER holds one object; this file has 2 certificates: use --to p7b")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        b"\x30\x03\x02\x01\x01",
        LEAF_KEY.private_bytes(
            PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        LEAF_CERT.public_bytes(PEM)[:200],
    ],
    ids=["empty", "text", "der-junk", "private-key", "truncated"],
)
def test_conversion_of_garbage_or_keys_is_a_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        to_der(data)
    with pytest.raises(DecodeError):
        to_pem(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=1024))
def test_arbitrary_bytes_convert_or_raise_decode_error(data: bytes) -> None:
    for convert in (to_der, to_pem, pkcs7_to_pems):
        with contextlib.suppress(DecodeError):
            convert(data)


# --------------------------------------------------------------------------- PKCS#12


def test_pkcs12_export_then_import() -> None:
    p12 = pkcs12_export(LEAF_KEY, LEAF_CERT, [CA_CERT], PASSPHRASE, "leaf")
    key, cert, chain = pkcs12_import(p12, PASSPHRASE)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.private_numbers() == LEAF_KEY.private_numbers()
    assert cert == LEAF_CERT
    assert chain == [CA_CERT]
    decoded = detect(p12, PASSPHRASE)
    assert decoded.kind is ObjectKind.PKCS12
    assert decoded.to_dict()["friendly_name"] == "leaf"


def test_pkcs12_export_uses_pbes2_aes256_and_sha256_mac() -> None:
    p12 = pkcs12_export(LEAF_KEY, LEAF_CERT, [], PASSPHRASE, None, kdf_rounds=2048)
    # OIDs as DER: PBES2, AES-256-CBC, HMAC-SHA256, and SHA-256 (the MAC digest).
    for oid in (
        "2a864886f70d01050d",
        "60864801650304012a",
        "2a864886f70d0209",
        "608648016503040201",
    ):
        assert bytes.fromhex(oid) in p12


def test_pkcs12_export_refuses_an_empty_passphrase() -> None:
    with pytest.raises(PassphraseError, match="a passphrase is required to export a private key"):
        pkcs12_export(LEAF_KEY, LEAF_CERT, [], b"", None)


def test_pkcs12_export_refuses_a_key_that_does_not_match() -> None:
    with pytest.raises(PolicyViolation) as info:
        pkcs12_export(OTHER_KEY, LEAF_CERT, [], PASSPHRASE, None)
    assert info.value.code == "key-mismatch"
    assert str(info.value) == "the private key does not match the certificate"


def test_pkcs12_import_errors() -> None:
    p12 = pkcs12_export(LEAF_KEY, LEAF_CERT, [], PASSPHRASE, None, kdf_rounds=2048)
    with pytest.raises(PassphraseError, match="wrong passphrase for PKCS#12 file"):
        pkcs12_import(p12, b"wrong")
    with pytest.raises(PassphraseError, match="encrypted: give its passphrase"):
        pkcs12_import(p12, None)
    with pytest.raises(DecodeError):
        pkcs12_import(b"\x30\x03\x02\x01\x03", PASSPHRASE)
    with pytest.raises(DecodeError):
        pkcs12_import(LEAF_CERT.public_bytes(DER), PASSPHRASE)
    with pytest.raises(DecodeError, match="PEM"):
        pkcs12_import(LEAF_CERT.public_bytes(PEM), PASSPHRASE)


def test_pkcs12_import_without_passphrase_opens_an_unencrypted_file() -> None:
    p12 = pkcs12.serialize_key_and_certificates(
        None, LEAF_KEY, LEAF_CERT, None, serialization.NoEncryption()
    )
    key, cert, chain = pkcs12_import(p12, None)
    assert key is not None
    assert cert == LEAF_CERT
    assert chain == []


@pytest.mark.interop
@needs_openssl
def test_openssl_reads_our_pkcs12(tmp_path: Path) -> None:
    path = tmp_path / "ours.p12"
    path.write_bytes(pkcs12_export(LEAF_KEY, LEAF_CERT, [CA_CERT], PASSPHRASE, "leaf"))
    out = _openssl("pkcs12", "-in", str(path), "-passin", "pass:correct horse", "-nodes")
    key = serialization.load_pem_private_key(out[out.index(b"-----BEGIN PRIVATE KEY-----") :], None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.private_numbers() == LEAF_KEY.private_numbers()
    assert LEAF_CERT.public_bytes(PEM) in out
    assert CA_CERT.public_bytes(PEM) in out
    assert b"friendlyName: leaf" in out


@pytest.mark.interop
@needs_openssl
def test_we_read_a_pkcs12_made_by_openssl(tmp_path: Path) -> None:
    (tmp_path / "key.pem").write_bytes(
        LEAF_KEY.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (tmp_path / "cert.pem").write_bytes(LEAF_CERT.public_bytes(PEM))
    (tmp_path / "ca.pem").write_bytes(CA_CERT.public_bytes(PEM))
    p12 = _openssl(
        "pkcs12",
        "-export",
        "-inkey",
        str(tmp_path / "key.pem"),
        "-in",
        str(tmp_path / "cert.pem"),
        "-certfile",
        str(tmp_path / "ca.pem"),
        "-name",
        "from-openssl",
        "-passout",
        "pass:x",
    )
    key, cert, chain = pkcs12_import(p12, b"x")
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.private_numbers() == LEAF_KEY.private_numbers()
    assert cert == LEAF_CERT
    assert chain == [CA_CERT]
    assert detect(p12, b"x").to_dict()["friendly_name"] == "from-openssl"
    with pytest.raises(PassphraseError):
        pkcs12_import(p12, b"y")


# --------------------------------------------------------------------------- PKCS#7


@pytest.mark.parametrize("make", [pkcs7_bundle, pkcs7_bundle_der], ids=["pem", "der"])
def test_pkcs7_bundle_to_pems(make: Callable[[list[x509.Certificate]], bytes]) -> None:
    pems = pkcs7_to_pems(make([LEAF_CERT, CA_CERT]))
    assert sorted(pems) == sorted([LEAF_CERT.public_bytes(PEM), CA_CERT.public_bytes(PEM)])


def test_pkcs7_bundle_needs_a_certificate() -> None:
    with pytest.raises(PolicyViolation) as info:
        pkcs7_bundle([])
    assert info.value.code == "empty-bundle"


@pytest.mark.parametrize(
    "data",
    [LEAF_CERT.public_bytes(PEM), LEAF_CERT.public_bytes(DER), b"junk", CRL.public_bytes(DER)],
    ids=["cert-pem", "cert-der", "junk", "crl-der"],
)
def test_pkcs7_to_pems_refuses_what_is_not_pkcs7(data: bytes) -> None:
    with pytest.raises(DecodeError):
        pkcs7_to_pems(data)


@pytest.mark.interop
@needs_openssl
@pytest.mark.parametrize("outform", ["PEM", "DER"])
def test_we_read_a_p7b_made_by_openssl(tmp_path: Path, outform: str) -> None:
    (tmp_path / "chain.pem").write_bytes(LEAF_CERT.public_bytes(PEM) + CA_CERT.public_bytes(PEM))
    p7b = _openssl(
        "crl2pkcs7", "-nocrl", "-certfile", str(tmp_path / "chain.pem"), "-outform", outform
    )
    pems = pkcs7_to_pems(p7b)
    assert pems == [LEAF_CERT.public_bytes(PEM), CA_CERT.public_bytes(PEM)]
    assert detect(p7b).kind is ObjectKind.PKCS7


@pytest.mark.interop
@needs_openssl
def test_openssl_reads_our_p7b() -> None:
    out = _openssl("pkcs7", "-print_certs", stdin=pkcs7_bundle([LEAF_CERT, CA_CERT]))
    assert LEAF_CERT.public_bytes(PEM) in out
    assert CA_CERT.public_bytes(PEM) in out
