"""The OCSP responder: good / revoked / unknown / unauthorized / malformed, nonce, CertID hash."""

from __future__ import annotations

import datetime as dt
import secrets

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from hypothesis import given, settings
from hypothesis import strategies as st

from certway.errors import PolicyViolation
from certway.pki.issue import Issuer, create_root
from certway.pki.ocsp import OcspRequestData, check_response
from certway.pki.ocsp_responder import CertStatus, OcspQuery, issuer_hashes, respond

from conftest import NOW, test_key
from pkitools import Pki, name

SHA1 = hashes.SHA1()  # noqa: S303 - openssl ocsp's default CertID hash
SHA256 = hashes.SHA256()
HOUR = dt.timedelta(hours=1)
REVOKED_AT = NOW - dt.timedelta(days=2)


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki("Responder", index=40)


def _request(
    cert: x509.Certificate,
    issuer: x509.Certificate,
    algorithm: hashes.HashAlgorithm = SHA256,
    *,
    nonce: bytes | None = None,
) -> OcspRequestData:
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, algorithm)
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    request = builder.build()
    return OcspRequestData(
        der=request.public_bytes(serialization.Encoding.DER),
        nonce=nonce,
        serial=request.serial_number,
        issuer_name_hash=request.issuer_name_hash,
        issuer_key_hash=request.issuer_key_hash,
        hash_algorithm=request.hash_algorithm.name,
    )


class Responder:
    """A lookup over one CA: serials → status, like LocalCA.ocsp_lookup over its store."""

    def __init__(self, issuer: Issuer, statuses: dict[int, CertStatus]) -> None:
        self.issuer = issuer
        self.statuses = statuses
        self.queries: list[OcspQuery] = []

    def __call__(self, query: OcspQuery) -> CertStatus | None:
        self.queries.append(query)
        expected = issuer_hashes(self.issuer.certificate, query.hash_algorithm)
        if (query.issuer_name_hash, query.issuer_key_hash) != expected:
            return None
        return self.statuses.get(query.serial, CertStatus("unknown", self.issuer))


@pytest.fixture(scope="module")
def leaves(pki: Pki) -> dict[str, x509.Certificate]:
    return {status: pki.leaf(f"{status}.example.com") for status in ("good", "revoked", "unknown")}


@pytest.fixture
def responder(pki: Pki, leaves: dict[str, x509.Certificate]) -> Responder:
    issuer = pki.int_issuer
    return Responder(
        issuer,
        {
            leaves["good"].serial_number: CertStatus("good", issuer),
            leaves["revoked"].serial_number: CertStatus(
                "revoked", issuer, revoked_at=REVOKED_AT, reason=x509.ReasonFlags.key_compromise
            ),
        },
    )


def _status(der: bytes) -> ocsp.OCSPResponseStatus:
    return ocsp.load_der_ocsp_response(der).response_status


@pytest.mark.parametrize("algorithm", [SHA1, SHA256], ids=["sha1", "sha256"])
def test_good_answer_is_signed_by_the_ca_and_fresh_for_the_validity(
    pki: Pki,
    leaves: dict[str, x509.Certificate],
    responder: Responder,
    algorithm: hashes.HashAlgorithm,
) -> None:
    request = _request(leaves["good"], pki.intermediate, algorithm)
    der = respond(request.der, lookup=responder, at=NOW)
    answer = check_response(der, request, pki.intermediate, at=NOW)
    assert answer.status == "good"
    assert answer.responder == "CA itself"
    assert (answer.this_update, answer.next_update) == (NOW, NOW + HOUR)
    single = ocsp.load_der_ocsp_response(der)
    assert single.hash_algorithm.name == algorithm.name  # CertID answered as asked
    assert single.serial_number == leaves["good"].serial_number
    assert single.responder_name is None  # ResponderID by key hash
    assert single.responder_key_hash == pki.int_issuer.authority_key_identifier.key_identifier


def test_revoked_answer_carries_time_and_reason(
    pki: Pki, leaves: dict[str, x509.Certificate], responder: Responder
) -> None:
    request = _request(leaves["revoked"], pki.intermediate, SHA1)
    answer = check_response(
        respond(request.der, lookup=responder, at=NOW), request, pki.intermediate, at=NOW
    )
    assert answer.status == "revoked"
    assert answer.revoked_at == REVOKED_AT
    assert answer.reason == "keyCompromise"


def test_serial_never_issued_is_unknown(
    pki: Pki, leaves: dict[str, x509.Certificate], responder: Responder
) -> None:
    request = _request(leaves["unknown"], pki.intermediate)
    answer = check_response(
        respond(request.der, lookup=responder, at=NOW), request, pki.intermediate, at=NOW
    )
    assert answer.status == "unknown"


def test_validity_sets_next_update(
    pki: Pki, leaves: dict[str, x509.Certificate], responder: Responder
) -> None:
    request = _request(leaves["good"], pki.intermediate)
    der = respond(request.der, lookup=responder, at=NOW, validity=dt.timedelta(minutes=5))
    assert check_response(der, request, pki.intermediate, at=NOW).next_update == NOW + dt.timedelta(
        minutes=5
    )


def test_ca_that_is_not_ours_is_unauthorized(pki: Pki, responder: Responder) -> None:
    other = Pki("Other", index=50)
    request = _request(other.leaf(), other.intermediate)
    der = respond(request.der, lookup=responder, at=NOW)
    assert _status(der) is ocsp.OCSPResponseStatus.UNAUTHORIZED
    with pytest.raises(PolicyViolation, match="not authorised") as err:
        check_response(der, request, other.intermediate, at=NOW)
    assert err.value.code == "ocsp-status"


def test_lookup_gets_the_certid_of_the_request(
    pki: Pki, leaves: dict[str, x509.Certificate], responder: Responder
) -> None:
    request = _request(leaves["good"], pki.intermediate, SHA1)
    respond(request.der, lookup=responder, at=NOW)
    (query,) = responder.queries
    assert query.hash_algorithm.name == "sha1"
    assert query.serial == leaves["good"].serial_number
    assert (query.issuer_name_hash, query.issuer_key_hash) == (
        request.issuer_name_hash,
        request.issuer_key_hash,
    )


def test_nonce_is_echoed(
    pki: Pki, leaves: dict[str, x509.Certificate], responder: Responder
) -> None:
    nonce = secrets.token_bytes(16)
    request = _request(leaves["good"], pki.intermediate, nonce=nonce)
    der = respond(request.der, lookup=responder, at=NOW)
    echoed = ocsp.load_der_ocsp_response(der).extensions.get_extension_for_class(x509.OCSPNonce)
    assert echoed.value.nonce == nonce
    assert not echoed.critical
    check_response(der, request, pki.intermediate, at=NOW)  # the client checks it too


def test_no_nonce_without_one_in_the_request(
    pki: Pki, leaves: dict[str, x509.Certificate], responder: Responder
) -> None:
    request = _request(leaves["good"], pki.intermediate)
    der = respond(request.der, lookup=responder, at=NOW)
    assert len(ocsp.load_der_ocsp_response(der).extensions) == 0


@pytest.mark.parametrize("size", [0, 65])
def test_nonce_of_no_or_too_many_octets_is_malformed(
    pki: Pki, leaves: dict[str, x509.Certificate], responder: Responder, size: int
) -> None:
    request = _request(leaves["good"], pki.intermediate, nonce=b"n" * size)
    der = respond(request.der, lookup=responder, at=NOW)
    assert _status(der) is ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    assert responder.queries == []


@pytest.mark.parametrize(
    "data",
    [b"", b"garbage", b"\x30\x03\x02\x01\x01", b"\x30\x80"],
    ids=["empty", "text", "wrong-sequence", "indefinite"],
)
def test_garbage_is_malformed_request(responder: Responder, data: bytes) -> None:
    assert _status(respond(data, lookup=responder, at=NOW)) is (
        ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    )


def test_truncated_request_is_malformed(
    pki: Pki, leaves: dict[str, x509.Certificate], responder: Responder
) -> None:
    der = _request(leaves["good"], pki.intermediate).der
    assert _status(respond(der[:-3], lookup=responder, at=NOW)) is (
        ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    )


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_give_a_response_never_an_exception(data: bytes) -> None:
    def lookup(_query: OcspQuery) -> CertStatus | None:
        return None

    status = _status(respond(data, lookup=lookup, at=NOW))
    assert status in (
        ocsp.OCSPResponseStatus.MALFORMED_REQUEST,
        ocsp.OCSPResponseStatus.UNAUTHORIZED,
    )


@pytest.mark.parametrize("key_type", ["rsa:2048", "ec:p384", "ed25519"])
def test_ca_key_types_sign_verifiable_answers(key_type: str) -> None:
    key = test_key(key_type, 60)
    root = create_root(
        key, name(f"{key_type} Root"), not_before=NOW - HOUR, not_after=NOW + 365 * 24 * HOUR
    )
    issuer = Issuer(root, key)
    leaf = issuer.issue(
        test_key("ec:p256", 61).public_key(),
        name("leaf.example.com"),
        profile="server",
        alt_names=[x509.DNSName("leaf.example.com")],
        not_before=NOW - HOUR,
        not_after=NOW + 24 * HOUR,
    )
    lookup = Responder(issuer, {leaf.serial_number: CertStatus("good", issuer)})
    for algorithm in (SHA1, SHA256):
        request = _request(leaf, root, algorithm)
        answer = check_response(respond(request.der, lookup=lookup, at=NOW), request, root, at=NOW)
        assert answer.status == "good"


def test_issuer_hashes_match_a_certid_for_a_certificate_it_issued(
    pki: Pki, leaves: dict[str, x509.Certificate]
) -> None:
    for algorithm in (SHA1, SHA256, hashes.SHA384()):
        request = _request(leaves["good"], pki.intermediate, algorithm)
        assert issuer_hashes(pki.intermediate, algorithm) == (
            request.issuer_name_hash,
            request.issuer_key_hash,
        )


def test_revoked_without_time_is_a_programming_error(
    pki: Pki, leaves: dict[str, x509.Certificate]
) -> None:
    request = _request(leaves["good"], pki.intermediate)
    with pytest.raises(ValueError, match="revocation time"):
        respond(request.der, lookup=lambda _q: CertStatus("revoked", pki.int_issuer), at=NOW)
