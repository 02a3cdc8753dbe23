"""An OCSP responder (RFC 6960, RFC 5019 profile) for CAs whose keys we hold.

``respond`` turns a DER request into a DER response. It never raises for bad input:

* bytes that are not an OCSP request, a request for more than one certificate (several
  CertIDs: ``cryptography`` can neither read nor answer them, see ``_REQUEST_ERRORS``), a
  CertID hash other than SHA-1/SHA-224/SHA-256/SHA-384/SHA-512, or a nonce of 0 or more
  than 64 octets (RFC 8954) → a ``malformedRequest`` response;
* a CertID that names no CA of ours (``lookup`` returns None) → ``unauthorized``;
* otherwise a ``successful`` basic response signed by the CA itself (ResponderID by key
  hash), with the certificate's status (good / revoked with time and reason / unknown),
  ``thisUpdate`` = ``at``, ``nextUpdate`` = ``at + validity``, the CertID answered with the
  request's hash algorithm (``openssl ocsp`` sends SHA-1 unless told otherwise), and the
  request's nonce echoed when it has one.

``lookup`` is where the caller's knowledge lives (which CAs, which serials); nothing here
does I/O or reads the clock. Note: ``producedAt`` is set by ``cryptography`` from the system
clock when the response is signed; every time a client checks comes from ``at``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from certway.clock import utc
from certway.pki.issue import Issuer, signature_hash_for
from certway.pki.load import PARSE_ERRORS

__all__ = [
    "DEFAULT_VALIDITY",
    "CertStatus",
    "OcspQuery",
    "issuer_hashes",
    "respond",
    "unsuccessful",
]

#: How long a response stays fresh (its nextUpdate − thisUpdate) unless told otherwise.
DEFAULT_VALIDITY = dt.timedelta(hours=1)

#: RFC 8954 §2.1: requests with a nonce of 0 or more than 64 octets are malformed.
_MAX_NONCE = 64

#: What reading a request may raise (an unknown CertID hash is UnsupportedAlgorithm; a
#: request with several CertIDs is NotImplementedError: ``cryptography`` reads only one, and
#: its ``OCSPResponseBuilder`` builds only one SingleResponse, so such a request cannot be
#: answered and gets ``malformedRequest`` — the RFC 5019 profile this responder follows
#: allows one CertID per request, §2.1.1).
_REQUEST_ERRORS: tuple[type[Exception], ...] = (
    *PARSE_ERRORS,
    UnsupportedAlgorithm,
    NotImplementedError,
)

_ALLOWED_HASHES = (hashes.SHA1, hashes.SHA224, hashes.SHA256, hashes.SHA384, hashes.SHA512)

_STATUS: dict[str, ocsp.OCSPCertStatus] = {
    "good": ocsp.OCSPCertStatus.GOOD,
    "revoked": ocsp.OCSPCertStatus.REVOKED,
    "unknown": ocsp.OCSPCertStatus.UNKNOWN,
}


@dataclass(frozen=True, slots=True)
class OcspQuery:
    """What a request asks about: a CertID (RFC 6960 §4.1.1)."""

    hash_algorithm: hashes.HashAlgorithm
    issuer_name_hash: bytes
    issuer_key_hash: bytes
    serial: int


@dataclass(frozen=True, slots=True)
class CertStatus:
    """The answer for one certificate of one of our CAs; ``issuer`` signs the response.

    ``revoked_at`` is required for ``revoked``; ``reason`` is optional (RFC 5280 reason).
    """

    status: Literal["good", "revoked", "unknown"]
    issuer: Issuer
    revoked_at: dt.datetime | None = None
    reason: x509.ReasonFlags | None = None


def issuer_hashes(ca: x509.Certificate, algorithm: hashes.HashAlgorithm) -> tuple[bytes, bytes]:
    """(issuerNameHash, issuerKeyHash) of a CertID for certificates issued by ``ca``: the
    hash of its subject DER and of its subjectPublicKey BIT STRING contents."""
    name_hash = hashes.Hash(algorithm)
    name_hash.update(ca.subject.public_bytes())
    # cryptography extracts the BIT STRING for any key type: a request about ``ca`` with
    # ``ca`` as issuer has its key hash (the name hash there is of ``ca.issuer``).
    request = ocsp.OCSPRequestBuilder().add_certificate(ca, ca, algorithm).build()
    return name_hash.finalize(), request.issuer_key_hash


def unsuccessful(status: ocsp.OCSPResponseStatus) -> bytes:
    """A DER response carrying only an error status (malformedRequest, internalError, …)."""
    response = ocsp.OCSPResponseBuilder.build_unsuccessful(status)
    return response.public_bytes(serialization.Encoding.DER)


def respond(
    request_der: bytes,
    *,
    lookup: Callable[[OcspQuery], CertStatus | None],
    at: dt.datetime,
    validity: dt.timedelta = DEFAULT_VALIDITY,
) -> bytes:
    """The DER response to the DER ``request_der`` at time ``at`` (see the module docstring).

    Exceptions raised by ``lookup`` propagate: the caller decides how to report them
    (an HTTP front end answers ``internalError``).
    """
    parsed = _parse(request_der)
    if parsed is None:
        return unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
    query, nonce = parsed
    answer = lookup(query)
    if answer is None:
        return unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED)
    at = utc(at)
    revoked = answer.status == "revoked"
    if revoked and answer.revoked_at is None:
        raise ValueError("a revoked status needs its revocation time")
    issuer = answer.issuer
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response_by_hash(
            query.issuer_name_hash,
            query.issuer_key_hash,
            query.serial,
            query.hash_algorithm,
            _STATUS[answer.status],
            this_update=at,
            next_update=at + validity,
            revocation_time=utc(answer.revoked_at) if revoked and answer.revoked_at else None,
            revocation_reason=answer.reason if revoked else None,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, issuer.certificate)
    )
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    response = builder.sign(issuer.key, signature_hash_for(issuer.key))
    return response.public_bytes(serialization.Encoding.DER)


def _parse(request_der: bytes) -> tuple[OcspQuery, bytes | None] | None:
    """The query and nonce of a well-formed single request, else None."""
    try:
        request = ocsp.load_der_ocsp_request(request_der)
        algorithm = request.hash_algorithm
        query = OcspQuery(
            hash_algorithm=algorithm,
            issuer_name_hash=request.issuer_name_hash,
            issuer_key_hash=request.issuer_key_hash,
            serial=request.serial_number,
        )
        try:
            nonce: bytes | None = request.extensions.get_extension_for_class(
                x509.OCSPNonce
            ).value.nonce
        except x509.ExtensionNotFound:
            nonce = None
    except _REQUEST_ERRORS:
        return None
    if not isinstance(algorithm, _ALLOWED_HASHES):
        return None
    if len(query.issuer_name_hash) != algorithm.digest_size:
        return None
    if len(query.issuer_key_hash) != algorithm.digest_size:
        return None
    if nonce is not None and not 0 < len(nonce) <= _MAX_NONCE:
        return None
    return query, nonce
