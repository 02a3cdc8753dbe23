"""The ACME client's rules that Debian's pebble cannot exercise: renewal information (RFC 9773;
pebble 2.4 publishes none), served here by a small HTTPS responder whose certificate chains to
a CA in the trusted list; and the TLS-ALPN-01 challenge certificate (RFC 8737). Signing
against a real CA: tests/interop/test_acme_client.py."""

from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asn1crypto.core import OctetString
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from certway.clock import FixedClock, SystemClock
from certway.services.acme_client import ACME_IDENTIFIER_OID, challenge_certificate
from certway.services.node import Node
from certway.store.repositories import KeyRepository, SettingsRepository

from pkitools import Pki

FQDN = "vcs.example.com"


class _Ari(http.server.BaseHTTPRequestHandler):
    """An ACME directory with renewalInfo; the renewal window ``window``; orders refused."""

    window: tuple[dt.datetime, dt.datetime]
    asked: list[str]

    def log_message(self, *args: Any) -> None:
        pass

    def _json(self, status: int, body: dict[str, Any], kind: str = "application/json") -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Replay-Nonce", "bm9uY2U")
        self.send_header("Retry-After", "21600")
        self.end_headers()
        self.wfile.write(data)

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Replay-Nonce", "bm9uY2U")
        self.end_headers()

    def do_GET(self) -> None:
        base = f"https://127.0.0.1:{self.server.server_address[1]}"
        if self.path == "/dir":
            names = ("newNonce", "newAccount", "newOrder", "revokeCert", "keyChange")
            body = {name: f"{base}/{name}" for name in names}
            self._json(200, {**body, "renewalInfo": f"{base}/ari"})
        elif self.path.startswith("/ari/"):
            self.asked.append(self.path)
            start, end = self.window
            self._json(
                200,
                {
                    "suggestedWindow": {
                        "start": start.isoformat().replace("+00:00", "Z"),
                        "end": end.isoformat().replace("+00:00", "Z"),
                    }
                },
            )
        else:
            self._json(404, {})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self._json(
            403,
            {"type": "urn:ietf:params:acme:error:unauthorized", "detail": "no orders here"},
            "application/problem+json",
        )


@pytest.fixture
def ari_server(tmp_path: Path) -> Iterator[tuple[str, type[_Ari], bytes]]:
    pki = Pki("ARI", at=SystemClock().now(), index=80)
    leaf = pki.leaf(
        "localhost",
        alt_names=[x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
        issuer=pki.root_issuer,
        profile="server",
    )
    cert = tmp_path / "ari.pem"
    cert.write_bytes(
        leaf.public_bytes(serialization.Encoding.PEM)
        + pki.leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    handler = type("Ari", (_Ari,), {"asked": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield (
            f"https://127.0.0.1:{server.server_address[1]}/dir",
            handler,
            pki.root.public_bytes(serialization.Encoding.PEM),
        )
    finally:
        server.shutdown()
        server.server_close()


def _with_account(node: Node, directory: str) -> None:
    """An account row as ``create_account`` leaves it (the responder takes no new accounts)."""
    now = node.clock.now()
    with node.store.transaction() as session:
        key_id = KeyRepository(session, node.store.vault).put(
            ec.generate_private_key(ec.SECP256R1()), now
        )
        settings = SettingsRepository(session)
        settings.set(
            "acme.account",
            {
                "directory": directory,
                "email": "admin@example.com",
                "uri": directory.replace("/dir", "/acct/1"),
                "status": "valid",
                "created_at": now.isoformat(),
                "key_id": key_id,
                "terms_of_service": None,
            },
        )
        settings.set(
            "acme.managed",
            {"server": {"kind": "server", "name": "", "form": {"key_type": "ec:p256"}}},
        )


def test_renewal_information_brings_the_renewal_forward_and_a_failure_is_retried_later(
    tmp_path: Path, ari_server: tuple[str, type[_Ari], bytes]
) -> None:
    directory, handler, ca_pem = ari_server
    clock = FixedClock(SystemClock().now())
    node = Node.init(tmp_path / "n", clock, fqdn=FQDN)
    try:
        node.trusted_cas.add(ca_pem)
        _with_account(node, directory)
        live = node.identities.active("server")
        assert live is not None
        two_thirds = node.acme.renewal_due("server", "")
        assert two_thirds is not None and two_thirds > clock.now() + dt.timedelta(days=30)
        # The CA asks for renewal now (say, ahead of a mass revocation).
        start = clock.now() - dt.timedelta(hours=1)
        handler.window = (start, start)

        assert node.acme.run_if_due() == []  # due, tried, refused by the CA

        assert len(handler.asked) == 1
        assert node.acme.renewal_due("server", "") == start
        status = node.acme.status()["certificates"][0]
        assert status["renewal_info"] == start.isoformat()
        assert status["failures"] == 1
        assert status["last_error"] == "the ACME server refused the order: no orders here"
        assert status["next_attempt"] == (clock.now() + dt.timedelta(hours=1)).isoformat()
        assert node.identities.active("server") == live  # untouched
        assert "acme-renewal:server" in {a.id for a in node.alarms.current()}
        # Within the back-off nothing is tried, and ARI is not asked again before its
        # Retry-After; after it, the next attempt doubles the wait.
        clock.advance(dt.timedelta(minutes=30))
        node.acme.run_if_due()
        assert node.acme.status()["certificates"][0]["failures"] == 1
        assert len(handler.asked) == 1
        clock.advance(dt.timedelta(minutes=31))
        node.acme.run_if_due()
        status = node.acme.status()["certificates"][0]
        assert status["failures"] == 2
        assert status["next_attempt"] == (clock.now() + dt.timedelta(hours=2)).isoformat()
        # Outside the schedule's days nothing runs, however due.
        days = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
        clock.advance(dt.timedelta(hours=3))
        tomorrow = days[(clock.now().weekday() + 1) % 7]
        node.acme.set_schedule(days=[tomorrow])
        node.acme.run_if_due()
        assert node.acme.status()["certificates"][0]["failures"] == 2
        node.acme.set_schedule(days=list(days))
        node.acme.run_if_due()
        assert node.acme.status()["certificates"][0]["failures"] == 3
    finally:
        node.close()


def test_the_tls_alpn_certificate_carries_the_key_authorization_digest() -> None:
    import hashlib

    key = ec.generate_private_key(ec.SECP256R1())
    at = dt.datetime(2026, 10, 2, tzinfo=dt.UTC)
    cert = challenge_certificate("vcs.example.com", "token.thumbprint", key, at=at)
    extension = cert.extensions.get_extension_for_oid(ACME_IDENTIFIER_OID)
    assert extension.critical
    assert isinstance(extension.value, x509.UnrecognizedExtension)
    digest = OctetString.load(extension.value.value).native
    assert digest == hashlib.sha256(b"token.thumbprint").digest()
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["vcs.example.com"]
