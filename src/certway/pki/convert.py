"""Convert PKI objects between encodings and containers.

- ``to_der`` / ``to_pem``: one certificate, CSR, CRL or PKCS#7 bundle, PEM ↔ DER
  (``to_pem`` also normalises a PEM bundle).
- ``pkcs12_export`` / ``pkcs12_import``: key + certificate + chain ↔ PKCS#12, always
  encrypted on export with PBES2 (PBKDF2-SHA256, AES-256-CBC) and an HMAC-SHA256 MAC,
  which OpenSSL 3 (and 1.1.1) reads without ``-legacy``.
- ``pkcs7_bundle`` / ``pkcs7_bundle_der`` / ``pkcs7_to_pems``: certificates ↔ a certs-only
  PKCS#7 (``.p7b``) bundle.

Bad input raises ``DecodeError``, a missing or wrong passphrase ``PassphraseError``.
"""

from __future__ import annotations

import heapq
from collections import Counter, deque
from collections.abc import Callable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12

from certway.errors import DecodeError, PassphraseError, PolicyViolation
from certway.pki.encoding import is_pem, pem_blocks
from certway.pki.encoding import to_pem as _pem_encode
from certway.pki.load import PARSE_ERRORS, der_problem, error_reason, load_pkcs7, load_pkcs12
from certway.pki.text import public_key_fingerprint

__all__ = [
    "PKCS12_KDF_ROUNDS",
    "pkcs7_bundle",
    "pkcs7_bundle_der",
    "pkcs7_to_pems",
    "pkcs12_export",
    "pkcs12_import",
    "to_der",
    "to_pem",
]

#: PBKDF2 iterations for an exported PKCS#12 (and its MAC key derivation).
PKCS12_KDF_ROUNDS = 200_000

_CERT, _CSR, _CRL, _P7 = "CERTIFICATE", "CERTIFICATE REQUEST", "X509 CRL", "PKCS7"

# PEM label -> the canonical label we write.
_LABELS = {
    "CERTIFICATE": _CERT,
    "X509 CERTIFICATE": _CERT,
    "CERTIFICATE REQUEST": _CSR,
    "NEW CERTIFICATE REQUEST": _CSR,
    "X509 CRL": _CRL,
    "PKCS7": _P7,
    "PKCS #7 SIGNED DATA": _P7,
    "CMS": _P7,
}

_NOT_THIS_KIND: tuple[type[Exception], ...] = (*PARSE_ERRORS, DecodeError)

_WHAT = {_CERT: "certificate", _CSR: "CSR", _CRL: "CRL", _P7: "PKCS#7 bundle"}


def _canonical_der(der: bytes, label: str) -> bytes:
    """The DER of one object after checking that it parses as ``label`` says."""
    try:
        if label == _CERT:
            return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.DER)
        if label == _CSR:
            return x509.load_der_x509_csr(der).public_bytes(serialization.Encoding.DER)
        if label == _CRL:
            return x509.load_der_x509_crl(der).public_bytes(serialization.Encoding.DER)
        load_pkcs7(der)
        return der
    except PARSE_ERRORS as exc:
        raise DecodeError(f"not a valid {_WHAT[label]}: {error_reason(exc)}") from exc


def _sniff_der(der: bytes) -> tuple[str, bytes]:
    """(PEM label, canonical DER) of one DER certificate, CSR, CRL or PKCS#7 bundle."""
    loaders: list[tuple[str, Callable[[bytes], object]]] = [
        (_CERT, x509.load_der_x509_certificate),
        (_CSR, x509.load_der_x509_csr),
        (_CRL, x509.load_der_x509_crl),
        (_P7, load_pkcs7),
    ]
    for label, loader in loaders:
        try:
            loader(der)
        except _NOT_THIS_KIND:
            continue
        return label, _canonical_der(der, label)
    raise DecodeError(f"not a certificate, CSR, CRL or PKCS#7 bundle: {der_problem(der)}")


def _pem_objects(data: bytes) -> list[tuple[str, bytes]]:
    """(canonical label, checked DER) of every block of a PEM file."""
    objects = []
    for block in pem_blocks(data):
        label = _LABELS.get(block.label)
        if label is None:
            raise DecodeError(
                f"cannot convert a PEM '{block.label}' block: only certificates, CSRs, "
                "CRLs and PKCS#7 bundles"
            )
        objects.append((label, _canonical_der(block.der, label)))
    if not objects:
        raise DecodeError("no PEM block found")
    return objects


def to_der(data: bytes) -> bytes:
    """One certificate, CSR, CRL or PKCS#7 bundle as DER (PEM → DER; DER is checked and
    returned as is). A PEM file with several objects cannot be one DER file."""
    if not data.strip():
        raise DecodeError("empty input: nothing to convert")
    if not is_pem(data):
        return _sniff_der(data)[1]
    objects = _pem_objects(data)
    if len(objects) > 1:
        if all(label == _CERT for label, _ in objects):
            raise DecodeError(
                f"DER holds one object; this file has {len(objects)} certificates: use --to p7b"
            )
        raise DecodeError(f"DER holds one object; this file has {len(objects)} PEM blocks")
    return objects[0][1]


def to_pem(data: bytes) -> bytes:
    """A certificate, CSR, CRL or PKCS#7 bundle as PEM (DER → PEM). PEM input is checked
    and re-encoded block by block, so a PEM bundle stays a bundle."""
    if not data.strip():
        raise DecodeError("empty input: nothing to convert")
    if is_pem(data):
        return b"".join(_pem_encode(der, label) for label, der in _pem_objects(data))
    label, der = _sniff_der(data)
    return _pem_encode(der, label)


# --------------------------------------------------------------------------- PKCS#12


def pkcs12_export(
    key: pkcs12.PKCS12PrivateKeyTypes,
    cert: x509.Certificate,
    chain: Sequence[x509.Certificate],
    passphrase: bytes,
    friendly_name: str | None = None,
    *,
    kdf_rounds: int = PKCS12_KDF_ROUNDS,
) -> bytes:
    """A PKCS#12 file (DER) holding ``key``, ``cert`` and the ``chain`` certificates,
    encrypted with ``passphrase`` (PBES2 with PBKDF2-SHA256 and AES-256-CBC, MAC
    HMAC-SHA256). An empty passphrase is refused: a private key never leaves in clear."""
    if not passphrase:
        raise PassphraseError("a passphrase is required to export a private key")
    try:
        cert_key = cert.public_key()
    except PARSE_ERRORS as exc:
        raise DecodeError(
            f"the certificate's public key cannot be read: {error_reason(exc)}"
        ) from exc
    if public_key_fingerprint(cert_key) != public_key_fingerprint(key):
        raise PolicyViolation("key-mismatch", "the private key does not match the certificate")
    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(kdf_rounds)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(passphrase)
    )
    name = friendly_name.encode("utf-8") if friendly_name else None
    return pkcs12.serialize_key_and_certificates(name, key, cert, list(chain) or None, encryption)


def pkcs12_import(
    data: bytes, passphrase: bytes | None
) -> tuple[PrivateKeyTypes | None, x509.Certificate | None, list[x509.Certificate]]:
    """(private key, certificate, additional certificates) of a PKCS#12 file. A None
    passphrase opens files protected by no or an empty passphrase."""
    p12 = load_pkcs12(data, passphrase)
    cert = p12.cert.certificate if p12.cert is not None else None
    return p12.key, cert, [extra.certificate for extra in p12.additional_certs]


# --------------------------------------------------------------------------- PKCS#7


def pkcs7_bundle_der(certs: Sequence[x509.Certificate]) -> bytes:
    """A certs-only PKCS#7 (``.p7b``) bundle, DER."""
    return _pkcs7(certs, serialization.Encoding.DER)


def pkcs7_bundle(certs: Sequence[x509.Certificate]) -> bytes:
    """A certs-only PKCS#7 (``.p7b``) bundle, PEM (``-----BEGIN PKCS7-----``)."""
    return _pkcs7(certs, serialization.Encoding.PEM)


def _pkcs7(certs: Sequence[x509.Certificate], encoding: serialization.Encoding) -> bytes:
    if not certs:
        raise PolicyViolation("empty-bundle", "a PKCS#7 bundle needs at least one certificate")
    return pkcs7.serialize_certificates(list(certs), encoding)


def pkcs7_to_pems(data: bytes) -> list[bytes]:
    """Each certificate of a PKCS#7 bundle (PEM or DER) as its own PEM, in chain order
    (leaf first, each followed by its issuer) — a PKCS#7 SET has no order of its own.
    Raises ``DecodeError`` when the input is not a PKCS#7 bundle."""
    return [cert.public_bytes(serialization.Encoding.PEM) for cert in chain_order(load_pkcs7(data))]


def chain_order(certs: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """Certificates rearranged leaf first, each followed by its issuer when present; the
    order of unrelated certificates is kept.

    Each chain starts at the first remaining certificate (in the given order) that issues
    none of the remaining ones, or at the first remaining one when every one issues another
    (a loop); it then follows issuer names, taking the first remaining certificate with that
    subject. Certificates are indexed by subject name, so the work grows with the number of
    certificates, not its square (a bundle of thousands must not take minutes)."""
    subjects = [c.subject for c in certs]
    issuers = [c.issuer for c in certs]
    self_signed = [s == i for s, i in zip(subjects, issuers, strict=True)]
    by_subject: dict[x509.Name, deque[int]] = {}
    children: Counter[x509.Name] = Counter()  # remaining certificates each name has issued
    for index, subject in enumerate(subjects):
        by_subject.setdefault(subject, deque()).append(index)
        if not self_signed[index]:
            children[issuers[index]] += 1
    taken = [False] * len(certs)
    starts = [i for i, subject in enumerate(subjects) if not children[subject]]
    heapq.heapify(starts)  # candidates for a chain start, smallest index first
    first = 0  # every certificate before this one is taken
    ordered: list[x509.Certificate] = []

    def take(index: int) -> None:
        taken[index] = True
        ordered.append(certs[index])
        if self_signed[index]:
            return
        issuer = issuers[index]
        children[issuer] -= 1
        if not children[issuer]:
            for candidate in by_subject.get(issuer, ()):
                heapq.heappush(starts, candidate)

    def first_remaining(subject: x509.Name) -> int | None:
        queue = by_subject.get(subject)
        while queue and taken[queue[0]]:
            queue.popleft()
        return queue[0] if queue else None

    while len(ordered) < len(certs):
        while starts and taken[starts[0]]:
            heapq.heappop(starts)
        if starts:
            current: int | None = heapq.heappop(starts)
        else:
            while taken[first]:
                first += 1
            current = first
        while current is not None:
            take(current)
            current = None if self_signed[current] else first_remaining(issuers[current])
    return ordered
