"""Checking ACME challenges (RFC 8555 §8.3, §8.4; RFC 8737): HTTP-01, DNS-01, TLS-ALPN-01.

Blocking network I/O: the ACME server runs these on its validation threads, never on the
event loop. A challenge connects only to the addresses its identifier resolves to (the
system resolver, or the DNS server the ACME server is configured with), each attempt
bounded by the order's deadline. A failure raises ``AcmeProblem`` with the ACME error type
the client should see (dns, connection, tls, incorrectResponse, unauthorized).
"""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
import socket
import ssl
from dataclasses import dataclass

import dns.exception
import dns.resolver
from asn1crypto import core as asn1
from cryptography import x509
from josepy import b64

from certway.errors import CertwayError

__all__ = ["ACME_IDENTIFIER_OID", "AcmeProblem", "Resolver", "Target", "validate"]

ACME_IDENTIFIER_OID = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31")
"""The acmeIdentifier extension of a TLS-ALPN-01 validation certificate (RFC 8737)."""
_MAX_BODY = 8 * 1024


class AcmeProblem(CertwayError):
    """An ACME error: ``kind`` is the error type after ``urn:ietf:params:acme:error:``."""

    def __init__(
        self,
        kind: str,
        detail: str,
        status: int = 400,
        *,
        identifier: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.status = status
        self.identifier = identifier
        self.headers = headers or {}

    def document(self) -> dict[str, object]:
        doc: dict[str, object] = {
            "type": f"urn:ietf:params:acme:error:{self.kind}",
            "detail": self.detail,
            "status": self.status,
        }
        if self.identifier is not None:
            doc["identifier"] = self.identifier
        return doc


class Resolver:
    """Names to addresses (A/AAAA) and TXT records: the system resolver, or one DNS server
    (``HOST:PORT``) asked directly."""

    def __init__(self, dns_server: str | None = None) -> None:
        self.dns_server = dns_server
        self._resolver: dns.resolver.Resolver | None = None
        if dns_server:
            host, _, port = dns_server.rpartition(":")
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = [host.strip("[]")]
            resolver.port = int(port)
            self._resolver = resolver

    def addresses(self, name: str, timeout: float) -> list[str]:
        if self._resolver is None:
            try:
                infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
            except (socket.gaierror, UnicodeError) as exc:
                raise AcmeProblem("dns", f"'{name}' does not resolve: {exc}") from None
            return list(dict.fromkeys(str(info[4][0]) for info in infos))
        found: list[str] = []
        for rdtype in ("A", "AAAA"):
            try:
                answer = self._resolver.resolve(name, rdtype, lifetime=timeout)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers):
                continue
            except dns.exception.Timeout:
                raise AcmeProblem("dns", f"no DNS answer for '{name}' in time") from None
            found.extend(str(r) for r in answer)
        if not found:
            raise AcmeProblem("dns", f"'{name}' has no A or AAAA record")
        return found

    def txt(self, name: str, timeout: float) -> list[str]:
        resolver = self._resolver or dns.resolver.Resolver()
        try:
            answer = resolver.resolve(name, "TXT", lifetime=timeout)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            raise AcmeProblem("dns", f"no TXT record at '{name}'") from None
        except (dns.exception.Timeout, dns.resolver.NoNameservers):
            raise AcmeProblem("dns", f"no DNS answer for the TXT record of '{name}'") from None
        return [b"".join(r.strings).decode("utf-8", "replace") for r in answer]


@dataclass(frozen=True, slots=True)
class Target:
    """What to validate: the identifier, the challenge, where to connect."""

    identifier_type: str  # dns | ip
    value: str
    challenge: str  # http-01 | dns-01 | tls-alpn-01
    token: str
    key_authorization: str
    http01_port: int = 80
    tls_alpn01_port: int = 443


def validate(target: Target, resolver: Resolver, timeout: float) -> None:
    """Raise ``AcmeProblem`` unless the challenge is answered correctly within ``timeout``."""
    if timeout <= 0:
        raise AcmeProblem("unauthorized", "the order's deadline passed before validation")
    if target.challenge == "dns-01":
        _dns01(target, resolver, timeout)
        return
    if target.identifier_type == "ip":
        addresses = [str(ipaddress.ip_address(target.value))]
    else:
        addresses = resolver.addresses(target.value, timeout)
    if target.challenge == "http-01":
        _http01(target, addresses, timeout)
    elif target.challenge == "tls-alpn-01":
        _tls_alpn01(target, addresses, timeout)
    else:
        raise AcmeProblem("malformed", f"unknown challenge type '{target.challenge}'")


def _first_answer(addresses: list[str], what: str, attempt: object) -> None:
    """Try each address in turn; the first one that answers decides."""
    errors: list[str] = []
    for address in addresses:
        try:
            attempt(address)  # type: ignore[operator]
            return
        except OSError as exc:  # could not connect / connection broke: try the next one
            errors.append(f"{address}: {exc.strerror or exc}")
    raise AcmeProblem("connection", f"{what}: no address answered ({'; '.join(errors)})")


def _http01(target: Target, addresses: list[str], timeout: float) -> None:
    path = f"/.well-known/acme-challenge/{target.token}"
    host = target.value if target.identifier_type == "dns" else addresses[0]
    if ":" in host:
        host = f"[{host}]"
    if target.http01_port != 80:
        host = f"{host}:{target.http01_port}"

    def attempt(address: str) -> None:
        conn = http.client.HTTPConnection(address, target.http01_port, timeout=timeout)
        try:
            conn.request("GET", path, headers={"Host": host, "User-Agent": "certway-acme"})
            response = conn.getresponse()
            body = response.read(_MAX_BODY + 1)
            status = response.status
        except http.client.HTTPException as exc:
            raise AcmeProblem(
                "connection", f"HTTP-01 at {address}: not an HTTP answer ({exc})"
            ) from None
        finally:
            conn.close()
        if status != 200:
            raise AcmeProblem(
                "incorrectResponse",
                f"HTTP-01: http://{host}{path} answered {status} (expected 200; "
                "redirects are not followed)",
                403,
            )
        if len(body) > _MAX_BODY or body.strip().decode("ascii", "replace") != (
            target.key_authorization
        ):
            raise AcmeProblem(
                "incorrectResponse",
                f"HTTP-01: http://{host}{path} did not answer the key authorization",
                403,
            )

    _first_answer(addresses, f"HTTP-01 on port {target.http01_port}", attempt)


def _tls_alpn01(target: Target, addresses: list[str], timeout: float) -> None:
    expected = hashlib.sha256(target.key_authorization.encode()).digest()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the certificate is judged below, not by a CA
    context.set_alpn_protocols(["acme-tls/1"])

    def attempt(address: str) -> None:
        with socket.create_connection((address, target.tls_alpn01_port), timeout=timeout) as raw:
            try:
                with context.wrap_socket(raw, server_hostname=target.value) as tls:
                    protocol = tls.selected_alpn_protocol()
                    der = tls.getpeercert(binary_form=True)
            except ssl.SSLError as exc:
                raise AcmeProblem("tls", f"TLS-ALPN-01 at {address}: {exc.reason}") from None
        if protocol != "acme-tls/1":
            raise AcmeProblem(
                "tls", f"TLS-ALPN-01 at {address}: the server did not select acme-tls/1", 403
            )
        if der is None:
            raise AcmeProblem("tls", f"TLS-ALPN-01 at {address}: no certificate", 403)
        _check_alpn_certificate(x509.load_der_x509_certificate(der), target.value, expected)

    _first_answer(addresses, f"TLS-ALPN-01 on port {target.tls_alpn01_port}", attempt)


def _check_alpn_certificate(cert: x509.Certificate, name: str, expected: bytes) -> None:
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        ext = cert.extensions.get_extension_for_oid(ACME_IDENTIFIER_OID)
    except x509.ExtensionNotFound as exc:
        raise AcmeProblem(
            "incorrectResponse", f"TLS-ALPN-01: the certificate lacks an extension ({exc})", 403
        ) from None
    names = sans.get_values_for_type(x509.DNSName)
    if len(list(sans)) != 1 or names != [name]:
        raise AcmeProblem(
            "incorrectResponse",
            f"TLS-ALPN-01: the certificate must name only '{name}' (it names {names})",
            403,
        )
    if not ext.critical or not isinstance(ext.value, x509.UnrecognizedExtension):
        raise AcmeProblem(
            "incorrectResponse", "TLS-ALPN-01: the acmeIdentifier extension is not critical", 403
        )
    try:
        digest = asn1.OctetString.load(ext.value.value).native
    except ValueError:
        digest = None
    if digest != expected:
        raise AcmeProblem(
            "incorrectResponse",
            "TLS-ALPN-01: the acmeIdentifier does not match the key authorization",
            403,
        )


def _dns01(target: Target, resolver: Resolver, timeout: float) -> None:
    name = f"_acme-challenge.{target.value}"
    expected = b64.b64encode(hashlib.sha256(target.key_authorization.encode()).digest()).decode()
    if expected not in resolver.txt(name, timeout):
        raise AcmeProblem(
            "incorrectResponse", f"DNS-01: no TXT record at '{name}' holds the answer", 403
        )
