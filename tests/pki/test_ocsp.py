"""OCSP requests and response checks: status, CertID, signer, nonce, freshness; openssl."""

from __future__ import annotations

import datetime as dt
import subprocess
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from certway.errors import DecodeError, PolicyViolation
from certway.fetch import HttpFetcher
from certway.pki.issue import Issuer
from certway.pki.keys import PrivateKey
from certway.pki.ocsp import (
    OcspAnswer,
    OcspRequestData,
    build_request,
    check_response,
    ocsp_cache_until,
    ocsp_urls,
)

from conftest import NOW, key_pem, test_key, write
from pkitools import Pki

DAY = dt.timedelta(days=1)
GOOD = ocsp.OCSPCertStatus.GOOD
REVOKED = ocsp.OCSPCertStatus.REVOKED
UNKNOWN = ocsp.OCSPCertStatus.UNKNOWN
BY_NAME = ocsp.OCSPResponderEncoding.NAME
BY_HASH = ocsp.OCSPResponderEncoding.HASH
SHA256 = hashes.SHA256()
SHA1 = hashes.SHA1()  # noqa: S303 - the CertID hash many responders still answer with


def _sig_hash(key: PrivateKey) -> hashes.SHA256 | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


@dataclass
class Cast:
    """The certificates the OCSP tests play with, from ``pkitools.Pki``: the one-level CA
    is a test PKI's root, and the stranger another PKI's root."""

    ca: x509.Certificate
    ca_key: PrivateKey
    leaf: x509.Certificate
    delegate: x509.Certificate
    delegate_key: PrivateKey
    plain: x509.Certificate  # issued by the CA, no OCSPSigning
    plain_key: PrivateKey
    stranger: x509.Certificate  # self-signed, unrelated
    stranger_key: PrivateKey


def ocsp_pki(key_type: str = "ec:p256") -> Pki:
    return Pki(root_cn="OCSP Test CA", key_type=key_type, index=10)


def stranger_pki(cn: str = "Stranger") -> Pki:
    return Pki(root_cn=cn, index=14)


def responder(
    pki: Cast, cn: str, key: PrivateKey, *, issuer: Issuer | None = None, **options: Any
) -> x509.Certificate:
    """A certificate for ``key`` with only the OCSP Signing usage, issued by the CA."""
    return pki.leaf(
        cn,
        sans=[],
        public_key=key.public_key(),
        issuer=issuer or pki.root_issuer,
        eku=[ExtendedKeyUsageOID.OCSP_SIGNING],
        **options,
    )


def make_pki(key_type: str = "ec:p256") -> Cast:
    pki = ocsp_pki(key_type)
    leaf = pki.leaf(
        "sip.example",
        issuer=pki.root_issuer,
        serial=0x1234,
        days=365,
        ca_issuers_url="http://ca.example/ca.crt",
        ocsp_urls=["http://o.ex/", "ldap://ldap.example/ocsp"],
    )
    delegate_key = test_key("ec:p256", 17)
    delegate = responder(pki, "OCSP Responder", delegate_key)
    plain_key = test_key("ec:p256", 18)
    plain = pki.leaf(
        "Not A Responder",
        sans=[],
        profile="server",
        public_key=plain_key.public_key(),
        issuer=pki.root_issuer,
    )
    stranger = stranger_pki()
    return Cast(
        pki.root,
        pki.root_key,
        leaf,
        delegate,
        delegate_key,
        plain,
        plain_key,
        stranger.root,
        stranger.root_key,
    )


@pytest.fixture(scope="module")
def pki() -> Cast:
    return make_pki()


def respond(
    pki: Cast,
    request: OcspRequestData,
    status: ocsp.OCSPCertStatus = GOOD,
    *,
    signer: x509.Certificate | None = None,
    signer_key: PrivateKey | None = None,
    encoding: ocsp.OCSPResponderEncoding = BY_NAME,
    include: list[x509.Certificate] | None = None,
    nonce: bytes | bool | None = True,
    this_update: dt.datetime = NOW - dt.timedelta(hours=1),
    next_update: dt.datetime | None = NOW + DAY,
    algorithm: hashes.HashAlgorithm = SHA256,
    serial: int | None = None,
    revoked_at: dt.datetime | None = None,
    reason: x509.ReasonFlags | None = None,
) -> bytes:
    """A response to ``request`` built with cryptography (CA-signed unless told)."""
    signer = signer or pki.ca
    signer_key = signer_key or pki.ca_key
    if algorithm.name == request.hash_algorithm:
        name_hash, key_hash = request.issuer_name_hash, request.issuer_key_hash
    else:  # what a SHA-1 responder would compute
        probe = ocsp.OCSPRequestBuilder().add_certificate(pki.leaf, pki.ca, algorithm).build()
        name_hash, key_hash = probe.issuer_name_hash, probe.issuer_key_hash
    if status is REVOKED and revoked_at is None:
        revoked_at = NOW - 10 * DAY
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response_by_hash(
            name_hash,
            key_hash,
            request.serial if serial is None else serial,
            algorithm,
            status,
            this_update,
            next_update,
            revoked_at,
            reason,
        )
        .responder_id(encoding, signer)
    )
    if include:
        builder = builder.certificates(include)
    if nonce is True and request.nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(request.nonce), critical=False)
    elif isinstance(nonce, bytes):
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.sign(signer_key, _sig_hash(signer_key)).public_bytes(serialization.Encoding.DER)


def check(pki: Cast, der: bytes, request: OcspRequestData, **kwargs: object) -> OcspAnswer:
    return check_response(der, request, pki.ca, at=NOW, **kwargs)  # type: ignore[arg-type]


def refused(pki: Cast, der: bytes, request: OcspRequestData, **kwargs: object) -> PolicyViolation:
    with pytest.raises(PolicyViolation) as info:
        check(pki, der, request, **kwargs)
    return info.value


# --------------------------------------------------------------------------- request


def test_request_has_sha256_certid_and_16_byte_nonce(pki: Cast) -> None:
    request = build_request(pki.leaf, pki.ca)
    parsed = ocsp.load_der_ocsp_request(request.der)
    assert request.hash_algorithm == "sha256"
    assert isinstance(parsed.hash_algorithm, hashes.SHA256)
    assert parsed.serial_number == request.serial == 0x1234
    assert parsed.issuer_key_hash == request.issuer_key_hash
    assert len(request.issuer_name_hash) == 32
    assert request.nonce is not None and len(request.nonce) == 16
    assert parsed.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == request.nonce


def test_request_nonces_differ_and_can_be_left_out(pki: Cast) -> None:
    assert build_request(pki.leaf, pki.ca).nonce != build_request(pki.leaf, pki.ca).nonce
    request = build_request(pki.leaf, pki.ca, nonce=False)
    assert request.nonce is None
    assert len(ocsp.load_der_ocsp_request(request.der).extensions) == 0


def test_request_with_wrong_issuer_is_refused(pki: Cast) -> None:
    with pytest.raises(PolicyViolation, match="issued by CN=OCSP Test CA") as info:
        build_request(pki.leaf, pki.stranger)
    assert info.value.code == "ocsp-issuer"


def test_ocsp_urls_keeps_http_ocsp_entries_only(pki: Cast) -> None:
    assert ocsp_urls(pki.leaf) == ["http://o.ex/"]
    assert ocsp_urls(pki.ca) == []


# --------------------------------------------------------------------------- statuses


@pytest.mark.parametrize("key_type", ["ec:p256", "rsa:2048", "ed25519"])
def test_good_answer_signed_by_ca(key_type: str) -> None:
    pki = make_pki(key_type)
    request = build_request(pki.leaf, pki.ca)
    answer = check(pki, respond(pki, request), request)
    assert answer.status == "good"
    assert answer.responder == "CA itself"
    assert answer.this_update == NOW - dt.timedelta(hours=1)
    assert answer.next_update == NOW + DAY
    assert answer.revoked_at is None and answer.reason is None
    assert ocsp_cache_until(answer, NOW) == NOW + DAY


def test_revoked_answer_has_time_and_reason(pki: Cast) -> None:
    request = build_request(pki.leaf, pki.ca)
    der = respond(
        pki, request, REVOKED, revoked_at=NOW - 3 * DAY, reason=x509.ReasonFlags.key_compromise
    )
    answer = check(pki, der, request)
    assert answer.status == "revoked"
    assert answer.revoked_at == NOW - 3 * DAY
    assert answer.reason == "keyCompromise"


def test_unknown_answer(pki: Cast) -> None:
    request = build_request(pki.leaf, pki.ca)
    assert check(pki, respond(pki, request, UNKNOWN), request).status == "unknown"


def test_responder_identified_by_key_hash(pki: Cast) -> None:
    request = build_request(pki.leaf, pki.ca)
    assert check(pki, respond(pki, request, encoding=BY_HASH), request).responder == "CA itself"


@pytest.mark.parametrize(
    ("status", "name"),
    [
        (ocsp.OCSPResponseStatus.TRY_LATER, "tryLater"),
        (ocsp.OCSPResponseStatus.UNAUTHORIZED, "unauthorized"),
        (ocsp.OCSPResponseStatus.MALFORMED_REQUEST, "malformedRequest"),
        (ocsp.OCSPResponseStatus.INTERNAL_ERROR, "internalError"),
        (ocsp.OCSPResponseStatus.SIG_REQUIRED, "sigRequired"),
    ],
)
def test_unsuccessful_status_is_named(
    pki: Cast, status: ocsp.OCSPResponseStatus, name: str
) -> None:
    request = build_request(pki.leaf, pki.ca)
    der = ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(
        serialization.Encoding.DER
    )
    error = refused(pki, der, request)
    assert error.code == "ocsp-status"
    assert f"({name})" in str(error)


@pytest.mark.parametrize("garbage", [b"", b"\x00", b"hello world", b"\x30\x03\x0a\x01\x00"])
def test_garbage_is_a_decode_error(pki: Cast, garbage: bytes) -> None:
    request = build_request(pki.leaf, pki.ca)
    with pytest.raises(DecodeError, match="OCSP response"):
        check(pki, garbage, request)


# --------------------------------------------------------------------------- CertID


def test_answer_for_another_serial_is_refused(pki: Cast) -> None:
    request = build_request(pki.leaf, pki.ca)
    error = refused(pki, respond(pki, request, serial=0x9999), request)
    assert error.code == "ocsp-mismatch"
    assert "serial 9999" in str(error) and "serial 1234" in str(error)


def test_answer_for_another_issuer_is_refused(pki: Cast) -> None:
    request = build_request(pki.leaf, pki.ca)
    other = OcspRequestData(
        request.der,
        request.nonce,
        request.serial,
        b"\x01" * 32,
        request.issuer_key_hash,
        request.hash_algorithm,
    )
    assert refused(pki, respond(pki, request), other).code == "ocsp-mismatch"


def test_sha1_certid_answer_is_matched_by_recomputed_hashes(pki: Cast) -> None:
    request = build_request(pki.leaf, pki.ca)
    der = respond(pki, request, algorithm=SHA1)
    assert check(pki, der, request).status == "good"


def test_sha1_certid_answer_for_another_issuer_is_refused(pki: Cast) -> None:
    request = build_request(pki.leaf, pki.ca)
    der = respond(pki, request, algorithm=SHA1)
    stranger_ca = stranger_pki("OCSP Test CA").root  # the CA's name, the stranger's key
    with pytest.raises(PolicyViolation) as info:
        check_response(der, request, stranger_ca, at=NOW)
    assert info.value.code == "ocsp-mismatch"


# --------------------------------------------------------------------------- signer


def test_tampered_signature_is_refused(pki: Cast) -> None:
    request = build_request(pki.leaf, pki.ca)
    der = bytearray(respond(pki, request))
    der[-1] ^= 0x01  # last byte of the ECDSA signature (no certificates follow it)
    error = refused(pki, bytes(der), request)
    assert error.code == "ocsp-signature"


def test_response_signed_by_unrelated_key_in_ca_name_is_refused(pki: Cast) -> None:
    request = build_request(pki.leaf, pki.ca)
    impostor = stranger_pki("OCSP Test CA").root
    assert impostor.subject == pki.ca.subject
    der = respond(pki, request, signer=impostor, signer_key=pki.stranger_key)
    error = refused(pki, der, request)
    assert error.code == "ocsp-signature"
    assert "CN=OCSP Test CA" in str(error)


def test_response_signed_by_unknown_responder_is_refused(pki: Cast) -> None:
    request = build_request(pki.leaf, pki.ca)
    der = respond(pki, request, signer=pki.stranger, signer_key=pki.stranger_key)
    error = refused(pki, der, request)
    assert error.code == "ocsp-responder"
    assert "CN=Stranger" in str(error)


def test_delegated_responder_is_accepted(pki: Cast) -> None:
    request = build_request(pki.leaf, pki.ca)
    der = respond(
        pki,
        request,
        REVOKED,
        signer=pki.delegate,
        signer_key=pki.delegate_key,
        include=[pki.delegate],
    )
    answer = check(pki, der, request)
    assert answer.status == "revoked"
    assert answer.responder == "delegated responder CN=OCSP Responder"


def test_delegated_responder_by_key_hash_is_accepted(pki: Cast) -> None:
    request = build_request(pki.leaf, pki.ca)
    der = respond(
        pki,
        request,
        signer=pki.delegate,
        signer_key=pki.delegate_key,
        include=[pki.stranger, pki.delegate],
        encoding=BY_HASH,
    )
    assert check(pki, der, request).responder.startswith("delegated responder")


def test_delegated_responder_not_included_is_refused(pki: Cast) -> None:
    request = build_request(pki.leaf, pki.ca)
    der = respond(pki, request, signer=pki.delegate, signer_key=pki.delegate_key)
    assert refused(pki, der, request).code == "ocsp-responder"


def test_responder_without_ocsp_signing_is_refused(pki: Cast) -> None:
    request = build_request(pki.leaf, pki.ca)
    der = respond(pki, request, signer=pki.plain, signer_key=pki.plain_key, include=[pki.plain])
    error = refused(pki, der, request)
    assert error.code == "ocsp-responder"
    assert "OCSP Signing" in str(error)


def test_responder_issued_by_another_ca_is_refused(pki: Cast) -> None:
    request = build_request(pki.leaf, pki.ca)
    stranger = stranger_pki()
    foreign = responder(stranger, "Foreign Responder", pki.delegate_key)
    der = respond(pki, request, signer=foreign, signer_key=pki.delegate_key, include=[foreign])
    error = refused(pki, der, request)
    assert error.code == "ocsp-responder"
    assert "not issued by CN=OCSP Test CA" in str(error)


def test_expired_delegated_responder_is_refused(pki: Cast) -> None:
    request = build_request(pki.leaf, pki.ca)
    old = responder(
        ocsp_pki(), "Old Responder", pki.delegate_key, not_before=NOW - 29 * DAY, days=28
    )
    der = respond(pki, request, signer=old, signer_key=pki.delegate_key, include=[old])
    error = refused(pki, der, request)
    assert error.code == "ocsp-responder"
    assert "not valid" in str(error)


# --------------------------------------------------------------------------- nonce


def test_missing_nonce_in_response_is_accepted(pki: Cast) -> None:
    request = build_request(pki.leaf, pki.ca)
    assert check(pki, respond(pki, request, nonce=None), request).status == "good"


def test_different_nonce_is_refused(pki: Cast) -> None:
    request = build_request(pki.leaf, pki.ca)
    error = refused(pki, respond(pki, request, nonce=b"\x00" * 16), request)
    assert error.code == "ocsp-nonce"


def test_nonce_in_response_to_request_without_nonce_is_accepted(pki: Cast) -> None:
    request = build_request(pki.leaf, pki.ca, nonce=False)
    assert check(pki, respond(pki, request, nonce=b"\x05" * 16), request).status == "good"


# --------------------------------------------------------------------------- freshness


def test_this_update_in_the_future_is_refused(pki: Cast) -> None:
    request = build_request(pki.leaf, pki.ca)
    der = respond(pki, request, this_update=NOW + dt.timedelta(minutes=10))
    error = refused(pki, der, request)
    assert error.code == "ocsp-future"
    assert "in the future" in str(error)


def test_this_update_within_clock_skew_is_accepted(pki: Cast) -> None:
    request = build_request(pki.leaf, pki.ca)
    der = respond(pki, request, this_update=NOW + dt.timedelta(minutes=4))
    assert check(pki, der, request).status == "good"


def test_next_update_in_the_past_is_refused(pki: Cast) -> None:
    request = build_request(pki.leaf, pki.ca)
    der = respond(pki, request, this_update=NOW - 2 * DAY, next_update=NOW - DAY)
    error = refused(pki, der, request)
    assert error.code == "ocsp-stale"
    assert "expired" in str(error)


def test_old_answer_without_next_update_is_refused(pki: Cast) -> None:
    request = build_request(pki.leaf, pki.ca)
    der = respond(pki, request, this_update=NOW - 8 * DAY, next_update=None)
    error = refused(pki, der, request)
    assert error.code == "ocsp-stale"
    assert "7 days" in str(error)
    assert check(pki, der, request, max_age=9 * DAY).status == "good"


def test_answer_without_next_update_is_cached_one_hour(pki: Cast) -> None:
    request = build_request(pki.leaf, pki.ca)
    answer = check(pki, respond(pki, request, next_update=None), request)
    assert answer.next_update is None
    assert ocsp_cache_until(answer, NOW) == NOW + dt.timedelta(hours=1)


# --------------------------------------------------------------------------- interop


class _OpensslResponder:
    """An HTTP OCSP responder on 127.0.0.1 whose answers come from ``openssl ocsp -index``.

    OpenSSL 3.0's ``-port`` listens on every interface, so the HTTP side is Python's and
    each POSTed request is answered by ``openssl ocsp -reqin ... -respout ...``.
    """

    def __init__(self, openssl: str, workdir: Path, signer: str, extra: list[str]) -> None:
        self.calls = 0
        responder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                request = write(workdir / f"req{responder.calls}.der", self.rfile.read(length))
                response = workdir / f"resp{responder.calls}.der"
                responder.calls += 1
                subprocess.run(
                    [
                        openssl, "ocsp", "-index", str(workdir / "index.txt"),
                        "-CA", str(workdir / "ca.pem"), "-rsigner", str(workdir / f"{signer}.pem"),
                        "-rkey", str(workdir / f"{signer}.key"), "-reqin", str(request),
                        "-respout", str(response), *extra,
                    ],
                    check=True,
                    capture_output=True,
                    timeout=10,
                )  # fmt: skip
                body = response.read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "application/ocsp-response")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture(scope="module")
def real_pki(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[x509.Certificate, dict[str, x509.Certificate], Path]:
    """A CA and three certificates at the real current time; index.txt lists two of them."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    workdir = tmp_path_factory.mktemp("ocsp-openssl")
    pki = Pki(root_cn="Interop CA", at=now, index=20)
    certs = {
        cn: pki.leaf(cn, issuer=pki.root_issuer, serial=serial, days=366)
        for cn, serial in [("good", 0x1001), ("revoked", 0x1002), ("unlisted", 0x1003)]
    }
    write(workdir / "ca.pem", pki.root.public_bytes(serialization.Encoding.PEM))
    write(workdir / "ca.key", key_pem(pki.root_key))
    delegate_key = test_key("ec:p256", 23)
    delegate = responder(pki, "Interop Responder", delegate_key)
    write(workdir / "delegate.pem", delegate.public_bytes(serialization.Encoding.PEM))
    write(workdir / "delegate.key", key_pem(delegate_key))
    expiry = (now + 365 * DAY).strftime("%y%m%d%H%M%SZ")
    index = (
        f"V\t{expiry}\t\t1001\tunknown\t/CN=good\n"
        f"R\t{expiry}\t250301120000Z,keyCompromise\t1002\tunknown\t/CN=revoked\n"
    )
    write(workdir / "index.txt", index.encode())
    return pki.root, certs, workdir


@pytest.mark.interop
@pytest.mark.parametrize(
    ("signer", "extra", "nonce", "responder"),
    [
        ("ca", [], True, "CA itself"),
        ("ca", ["-resp_key_id", "-ndays", "1"], True, "CA itself"),
        ("ca", [], False, "CA itself"),
        ("delegate", [], True, "delegated responder CN=Interop Responder"),
    ],
    ids=["by-name", "by-key-id", "no-nonce", "delegated"],
)
def test_openssl_responder_answers_are_checked(
    openssl: str,
    real_pki: tuple[x509.Certificate, dict[str, x509.Certificate], Path],
    signer: str,
    extra: list[str],
    nonce: bool,
    responder: str,
) -> None:
    ca, certs, workdir = real_pki
    server = _OpensslResponder(openssl, workdir, signer, extra)
    try:
        with HttpFetcher(timeout=10, retries=0) as fetcher:
            answers = {}
            for name in ("good", "revoked", "unlisted"):
                request = build_request(certs[name], ca, nonce=nonce)
                der = fetcher.post(server.url, request.der, "application/ocsp-request")
                now = dt.datetime.now(dt.UTC)
                answers[name] = check_response(der, request, ca, at=now)
    finally:
        server.close()
    assert server.calls == 3
    assert answers["good"].status == "good"
    assert answers["good"].responder == responder
    assert (answers["good"].next_update is not None) == ("-ndays" in extra)
    assert answers["revoked"].status == "revoked"
    assert answers["revoked"].revoked_at == dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)
    assert answers["revoked"].reason == "keyCompromise"
    assert answers["unlisted"].status == "unknown"
