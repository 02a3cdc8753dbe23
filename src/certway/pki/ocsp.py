"""OCSP (RFC 6960) requests and the checks a relying party applies to a response.

``build_request`` makes a DER request for one certificate (SHA-256 CertID and, by
default, a 16-byte nonce); ``check_response`` decodes the responder's answer and refuses
it, with a :class:`~certway.errors.PolicyViolation` whose ``code`` says why, unless:

* the response status is ``successful`` (``ocsp-status``);
* it holds a single response for the requested CertID (``ocsp-mismatch``); a responder
  may answer with another hash algorithm (often SHA-1): the issuer's hashes are then
  recomputed with that algorithm;
* it is signed (``ocsp-signature``) by the issuer itself or by a delegated responder
  certificate, included in the response, issued directly by the issuer, carrying the
  ``OCSPSigning`` extended key usage and valid at ``at`` (``ocsp-responder``);
* the nonce, when the response carries one, is the one sent (``ocsp-nonce``); a response
  without a nonce is accepted, as many responders omit it;
* it is current: ``thisUpdate`` not in the future beyond the clock skew
  (``ocsp-future``), ``nextUpdate`` not in the past beyond the clock skew, and without a
  ``nextUpdate``, ``thisUpdate`` not older than ``max_age`` (``ocsp-stale``).

Bytes that are not an OCSP response raise :class:`~certway.errors.DecodeError`. Nothing
here does I/O or reads the clock: the caller posts the request and passes ``at``.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from certway.clock import utc
from certway.errors import DecodeError, PolicyViolation
from certway.pki.load import PARSE_ERRORS, error_reason
from certway.pki.ocsp_responder import issuer_hashes
from certway.pki.text import format_name, plural, serial_hex

__all__ = [
    "NONCE_SIZE",
    "OcspAnswer",
    "OcspRequestData",
    "build_request",
    "check_response",
    "ocsp_cache_until",
    "ocsp_urls",
]

#: Bytes of random nonce sent with a request.
NONCE_SIZE = 16

#: How long an answer without ``nextUpdate`` may be cached.
_DEFAULT_CACHE = dt.timedelta(hours=1)

_STATUS_NAMES: dict[ocsp.OCSPResponseStatus, str] = {
    ocsp.OCSPResponseStatus.MALFORMED_REQUEST: "malformedRequest",
    ocsp.OCSPResponseStatus.INTERNAL_ERROR: "internalError",
    ocsp.OCSPResponseStatus.TRY_LATER: "tryLater",
    ocsp.OCSPResponseStatus.SIG_REQUIRED: "sigRequired",
    ocsp.OCSPResponseStatus.UNAUTHORIZED: "unauthorized",
}

_STATUS_HINTS: dict[ocsp.OCSPResponseStatus, str] = {
    ocsp.OCSPResponseStatus.MALFORMED_REQUEST: "it could not read the request",
    ocsp.OCSPResponseStatus.INTERNAL_ERROR: "it had an internal error",
    ocsp.OCSPResponseStatus.TRY_LATER: "it is busy and asks to try later",
    ocsp.OCSPResponseStatus.SIG_REQUIRED: "it only answers signed requests",
    ocsp.OCSPResponseStatus.UNAUTHORIZED: "it is not authorised to answer for this certificate",
}

_CERT_STATUS: dict[ocsp.OCSPCertStatus, Literal["good", "revoked", "unknown"]] = {
    ocsp.OCSPCertStatus.GOOD: "good",
    ocsp.OCSPCertStatus.REVOKED: "revoked",
    ocsp.OCSPCertStatus.UNKNOWN: "unknown",
}


# --------------------------------------------------------------------------- request


@dataclass(frozen=True, slots=True)
class OcspRequestData:
    """A DER OCSP request and what its answer must match (CertID and nonce)."""

    der: bytes
    nonce: bytes | None
    serial: int
    issuer_name_hash: bytes
    issuer_key_hash: bytes
    hash_algorithm: str


def build_request(
    cert: x509.Certificate, issuer: x509.Certificate, *, nonce: bool = True
) -> OcspRequestData:
    """An OCSP request for ``cert`` issued by ``issuer``: SHA-256 CertID and, when
    ``nonce`` is true, a random 16-byte nonce (the ``OCSPNonce`` extension)."""
    if cert.issuer != issuer.subject:
        raise PolicyViolation(
            "ocsp-issuer",
            f"cannot ask about {format_name(cert.subject)} with {format_name(issuer.subject)} "
            f"as issuer: the certificate was issued by {format_name(cert.issuer)}",
        )
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA256())
    value: bytes | None = None
    if nonce:
        value = secrets.token_bytes(NONCE_SIZE)
        builder = builder.add_extension(x509.OCSPNonce(value), critical=False)
    request = builder.build()
    return OcspRequestData(
        der=request.public_bytes(serialization.Encoding.DER),
        nonce=value,
        serial=request.serial_number,
        issuer_name_hash=request.issuer_name_hash,
        issuer_key_hash=request.issuer_key_hash,
        hash_algorithm=request.hash_algorithm.name,
    )


def ocsp_urls(cert: x509.Certificate) -> list[str]:
    """The http/https OCSP responder URLs named in the certificate's AIA extension."""
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return []
    except PARSE_ERRORS as exc:
        raise DecodeError(
            f"the certificate's extensions cannot be read: {error_reason(exc)}"
        ) from exc
    urls: list[str] = []
    for description in aia:
        if description.access_method != AuthorityInformationAccessOID.OCSP:
            continue
        location = description.access_location
        if not isinstance(location, x509.UniformResourceIdentifier):
            continue
        url = location.value.strip()
        scheme = url.split(":", 1)[0].lower()
        if scheme in ("http", "https") and url not in urls:
            urls.append(url)
    return urls


# --------------------------------------------------------------------------- response


@dataclass(frozen=True, slots=True)
class OcspAnswer:
    """A verified OCSP answer for one certificate.

    ``reason`` is the RFC 5280 name (``keyCompromise``) when the responder gave one;
    ``responder`` says who signed: ``"CA itself"`` or ``"delegated responder CN=…"``.
    """

    status: Literal["good", "revoked", "unknown"]
    this_update: dt.datetime
    next_update: dt.datetime | None
    produced_at: dt.datetime
    revoked_at: dt.datetime | None
    reason: str | None
    responder: str


def check_response(
    der: bytes,
    request: OcspRequestData,
    issuer: x509.Certificate,
    *,
    at: dt.datetime,
    max_age: dt.timedelta = dt.timedelta(days=7),
    clock_skew: dt.timedelta = dt.timedelta(minutes=5),
) -> OcspAnswer:
    """Decode and verify the DER response to ``request`` (see the module docstring)."""
    at = utc(at)
    response = _load_response(der)
    if response.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
        status = response.response_status
        raise PolicyViolation(
            "ocsp-status",
            f"the OCSP responder refused to answer ({_STATUS_NAMES.get(status, status.name)}): "
            f"{_STATUS_HINTS.get(status, 'no reason given')}",
        )
    try:
        single = _matching_single(response, request, issuer)
        responder = _check_signer(response, issuer, at)
        _check_nonce(response, request)
        answer = OcspAnswer(
            status=_CERT_STATUS[single.certificate_status],
            this_update=single.this_update_utc,
            next_update=single.next_update_utc,
            produced_at=response.produced_at_utc,
            revoked_at=single.revocation_time_utc,
            reason=_reason_name(single.revocation_reason),
            responder=responder,
        )
    except PARSE_ERRORS as exc:
        raise DecodeError(f"the OCSP response is malformed: {_first_line(exc)}") from exc
    _check_times(answer, at, max_age, clock_skew)
    return answer


def ocsp_cache_until(answer: OcspAnswer, at: dt.datetime) -> dt.datetime:
    """Until when ``answer`` may be reused: its ``nextUpdate``, else one hour after ``at``."""
    if answer.next_update is not None:
        return answer.next_update
    return utc(at) + _DEFAULT_CACHE


# --------------------------------------------------------------------------- helpers


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _load_response(der: bytes) -> ocsp.OCSPResponse:
    if not der:
        raise DecodeError("the OCSP response is empty")
    try:
        response = ocsp.load_der_ocsp_response(der)
        response.response_status  # noqa: B018 - force the parse of the status
    except PARSE_ERRORS as exc:
        raise DecodeError(f"the data is not an OCSP response: {_first_line(exc)}") from exc
    return response


def _reason_name(reason: x509.ReasonFlags | None) -> str | None:
    return None if reason is None else reason.value


def _matching_single(
    response: ocsp.OCSPResponse, request: OcspRequestData, issuer: x509.Certificate
) -> ocsp.OCSPSingleResponse:
    singles = list(response.responses)
    for single in singles:
        if single.serial_number != request.serial:
            continue
        algorithm = single.hash_algorithm
        if algorithm.name == request.hash_algorithm:
            expected = (
                request.issuer_name_hash,
                request.issuer_key_hash,
            )
        else:
            expected = issuer_hashes(issuer, algorithm)
        if expected == (single.issuer_name_hash, single.issuer_key_hash):
            return single
    if not singles:
        raise PolicyViolation("ocsp-mismatch", "the OCSP response holds no certificate status")
    serials = ", ".join(serial_hex(s.serial_number) for s in singles)
    raise PolicyViolation(
        "ocsp-mismatch",
        f"the OCSP response is about another certificate (serial {serials}) than the one "
        f"asked for (serial {serial_hex(request.serial)} of {format_name(issuer.subject)})",
    )


def _signature_valid(key: PublicKeyTypes, response: ocsp.OCSPResponse) -> bool:
    data = response.tbs_response_bytes
    signature = response.signature
    try:
        if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            key.verify(signature, data)
            return True
        algorithm = response.signature_hash_algorithm
        if algorithm is None:
            return False
        if isinstance(key, rsa.RSAPublicKey):
            if response.signature_algorithm_oid == x509.SignatureAlgorithmOID.RSASSA_PSS:
                pss = padding.PSS(padding.MGF1(algorithm), padding.PSS.AUTO)
                key.verify(signature, data, pss, algorithm)
            else:
                key.verify(signature, data, padding.PKCS1v15(), algorithm)
            return True
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(algorithm))
            return True
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        return False
    return False


def _same_key(a: x509.Certificate, b: x509.Certificate) -> bool:
    der = serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    return a.public_key().public_bytes(der, spki) == b.public_key().public_bytes(der, spki)


def _names_signer(response: ocsp.OCSPResponse, cert: x509.Certificate) -> bool:
    """True when the ResponderID of ``response`` designates ``cert``."""
    if response.responder_name is not None:
        return cert.subject == response.responder_name
    key_hash = response.responder_key_hash
    try:
        return x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest == key_hash
    except (UnsupportedAlgorithm, ValueError, TypeError):
        return False


def _responder_text(response: ocsp.OCSPResponse) -> str:
    if response.responder_name is not None:
        return format_name(response.responder_name)
    key_hash = response.responder_key_hash or b""
    return f"key hash {key_hash.hex(':').upper()}"


def _check_signer(response: ocsp.OCSPResponse, issuer: x509.Certificate, at: dt.datetime) -> str:
    """Verify the signature and the signer's authority; return who signed."""
    candidates = [issuer, *response.certificates]
    named = [cert for cert in candidates if _names_signer(response, cert)]
    if not named:
        raise PolicyViolation(
            "ocsp-responder",
            f"the OCSP response is signed by {_responder_text(response)}, which is neither "
            f"the issuing CA {format_name(issuer.subject)} nor a certificate included "
            "in the response",
        )
    signer = next((cert for cert in named if _signature_valid(cert.public_key(), response)), None)
    if signer is None:
        raise PolicyViolation(
            "ocsp-signature",
            f"the signature of the OCSP response does not verify with the key of "
            f"{format_name(named[0].subject)}",
        )
    if _same_key(signer, issuer):
        return "CA itself"
    _check_delegate(signer, issuer, at)
    return f"delegated responder {format_name(signer.subject)}"


def _check_delegate(signer: x509.Certificate, issuer: x509.Certificate, at: dt.datetime) -> None:
    who = format_name(signer.subject)
    ca = format_name(issuer.subject)
    try:
        signer.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm) as exc:
        raise PolicyViolation(
            "ocsp-responder",
            f"the OCSP responder {who} is not authorised: its certificate was not issued by {ca}",
        ) from exc
    try:
        eku = signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        eku = x509.ExtendedKeyUsage([])
    if ExtendedKeyUsageOID.OCSP_SIGNING not in eku:
        raise PolicyViolation(
            "ocsp-responder",
            f"the OCSP responder {who} is not authorised: its certificate lacks the "
            "OCSP Signing extended key usage",
        )
    if not signer.not_valid_before_utc <= at <= signer.not_valid_after_utc:
        raise PolicyViolation(
            "ocsp-responder",
            f"the OCSP responder certificate {who} is not valid at {at:%Y-%m-%d %H:%M} UTC "
            f"(valid {signer.not_valid_before_utc:%Y-%m-%d} to "
            f"{signer.not_valid_after_utc:%Y-%m-%d})",
        )


def _check_nonce(response: ocsp.OCSPResponse, request: OcspRequestData) -> None:
    if request.nonce is None:
        return
    try:
        echoed = response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        return  # many responders (caches, CDNs, openssl with -no_nonce) omit the nonce
    if echoed != request.nonce:
        raise PolicyViolation(
            "ocsp-nonce",
            "the OCSP response carries a different nonce than the request: it may be a replay",
        )


def _check_times(
    answer: OcspAnswer, at: dt.datetime, max_age: dt.timedelta, clock_skew: dt.timedelta
) -> None:
    if answer.this_update > at + clock_skew:
        raise PolicyViolation(
            "ocsp-future",
            f"the OCSP response is dated {answer.this_update:%Y-%m-%d %H:%M:%S} UTC, in the "
            "future: check the clocks of this node and of the responder",
        )
    if answer.next_update is not None:
        if answer.next_update < at - clock_skew:
            raise PolicyViolation(
                "ocsp-stale",
                f"the OCSP response expired at {answer.next_update:%Y-%m-%d %H:%M:%S} UTC "
                "(its nextUpdate)",
            )
    elif answer.this_update < at - max_age:
        raise PolicyViolation(
            "ocsp-stale",
            f"the OCSP response of {answer.this_update:%Y-%m-%d %H:%M:%S} UTC has no "
            f"nextUpdate and is older than the maximum age of {_age_text(max_age)}",
        )


def _age_text(age: dt.timedelta) -> str:
    seconds = int(age.total_seconds())
    if seconds % 86400 == 0:
        days = seconds // 86400
        return f"{days} day{'s' if days != 1 else ''}"
    if seconds % 3600 == 0:
        hours = seconds // 3600
        return f"{hours} hour{'s' if hours != 1 else ''}"
    return plural(seconds, "second")
