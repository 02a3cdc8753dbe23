"""Alarms (O1) appear when their cause does and clear when it goes, with a clock we move."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from certway.clock import FixedClock
from certway.pki.issue import create_root
from certway.services.alarms import Alarm, AlarmKind, AlarmSeverity
from certway.services.node import Node

from conftest import NOW, key_pem, test_key
from pkitools import Pki, name
from revocation_servers import fast_fetcher, refused_url

DAY = dt.timedelta(days=1)
HOUR = dt.timedelta(hours=1)
FQDN = "vcs.example.com"


def pem(*objects: x509.Certificate | x509.CertificateRevocationList) -> bytes:
    return b"".join(o.public_bytes(serialization.Encoding.PEM) for o in objects)


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki("Alarm", index=320)


@pytest.fixture
def node(tmp_path: Path, clock: FixedClock, pki: Pki) -> Iterator[Node]:
    n = Node.init(tmp_path / "data", clock, fast_fetcher(timeout=0.5), fqdn=FQDN)
    n.trusted_cas.add(pem(pki.root, pki.intermediate))
    try:
        yield n
    finally:
        n.close()


def alarms(node: Node) -> dict[str, Alarm]:
    return {a.id: a for a in node.alarms.current()}


def upload_leaf(
    node: Node, pki: Pki, *, days: int = 90, kind: str = "server", name: str = "", cn: str = FQDN
) -> None:
    now = node.clock.now()
    cert = pki.leaf(cn, days=days, not_before=now - DAY)
    node.identities.upload(
        kind,  # type: ignore[arg-type]
        name,
        pem(cert, pki.intermediate),
        key_data=key_pem(pki.leaf_key),
    )


class ServerAt:
    """HTTP on a given 127.0.0.1 port (where a refused URL pointed a moment ago)."""

    def __init__(self, url: str, answer: Callable[[bytes], bytes]) -> None:
        port = urlsplit(url).port
        assert port is not None

        class Handler(BaseHTTPRequestHandler):
            def _reply(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = answer(self.rfile.read(length) if length else b"")
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = _reply
            do_POST = _reply

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


# --------------------------------------------------------------------------- certificates


def test_temporary_certificate_alarm_from_init_until_upload(
    node: Node, pki: Pki, clock: FixedClock
) -> None:
    found = alarms(node)
    assert list(found) == ["temporary-certificate"]
    alarm = found["temporary-certificate"]
    assert alarm.severity == "warning" and alarm.since == NOW
    assert "temporary one issued by the factory CA" in alarm.text
    clock.advance(3 * HOUR)
    assert alarms(node)["temporary-certificate"].since == NOW  # first seen, not last seen
    # Another process on the same store sees the same first-seen time.
    other = Node.open(node.store.data_dir, clock)
    try:
        assert alarms(other)["temporary-certificate"].since == NOW
    finally:
        other.close()
    upload_leaf(node, pki)
    assert alarms(node) == {}
    # Restoring the factory certificate brings the alarm back, seen from now.
    node.identities.restore("server", "", 1)
    assert alarms(node)["temporary-certificate"].since == NOW + 3 * HOUR


def test_server_certificate_expiring_then_expired_then_replaced(
    node: Node, pki: Pki, clock: FixedClock
) -> None:
    upload_leaf(node, pki, days=90)  # valid from NOW - 1 day to NOW + 89 days
    assert alarms(node) == {}
    clock.advance(60 * DAY)
    found = alarms(node)
    assert list(found) == ["expiring:server"]
    assert found["expiring:server"].severity == "warning"
    assert found["expiring:server"].text == (
        f"the server certificate expires on {NOW + 89 * DAY:%Y-%m-%d} (in 29 days)"
    )
    assert found["expiring:server"].since == NOW + 60 * DAY
    clock.advance(30 * DAY)
    found = alarms(node)
    assert list(found) == ["expired:server"]
    assert found["expired:server"].severity == "critical"
    assert found["expired:server"].text == (
        f"the server certificate expired on {NOW + 89 * DAY:%Y-%m-%d}"
    )
    # The API and the CLI's --json show the plain values the enums stand for.
    assert found["expired:server"].as_dict()["severity"] == "critical"
    assert type(found["expired:server"].as_dict()["severity"]) is AlarmSeverity
    assert json.loads(json.dumps(found["expired:server"].as_dict()))["id"] == (
        f"{AlarmKind.EXPIRED}:server"
    )
    upload_leaf(node, pki, days=90)
    assert alarms(node) == {}


def test_server_certificate_without_cn(node: Node, pki: Pki) -> None:
    cert = pki.int_issuer.issue(
        pki.leaf_key.public_key(),
        x509.Name([x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, "Acme")]),
        alt_names=[x509.DNSName(FQDN)],
        not_before=NOW - DAY,
        not_after=NOW + 90 * DAY,
    )
    warnings = node.identities.upload(
        "server", "", pem(cert, pki.intermediate), key_data=key_pem(pki.leaf_key)
    ).warnings
    assert warnings == ["the certificate has no common name (CN): some peers need one"]
    found = alarms(node)
    assert list(found) == ["server-no-cn"]
    assert found["server-no-cn"].text == "the server certificate (O=Acme) has no common name"
    upload_leaf(node, pki)
    assert alarms(node) == {}


def test_client_certificate_expiring_cleared_by_copy(
    node: Node, pki: Pki, clock: FixedClock
) -> None:
    upload_leaf(node, pki, days=400)
    upload_leaf(node, pki, days=20, kind="client", cn="vcs-client.example.com")
    found = alarms(node)
    assert list(found) == ["expiring:client"]
    assert "the client certificate expires on" in found["expiring:client"].text
    clock.advance(20 * DAY)
    assert list(alarms(node)) == ["expired:client"]
    node.identities.copy_server_to_client()
    assert alarms(node) == {}


def test_domain_certificate_expiring_cleared_by_removal(node: Node, pki: Pki) -> None:
    upload_leaf(node, pki, days=400)
    node.identities.add_domain("example.org")
    upload_leaf(node, pki, days=10, kind="domain", name="example.org", cn="example.org")
    found = alarms(node)
    assert list(found) == ["expiring:domain:example.org"]
    assert found["expiring:domain:example.org"].text.startswith(
        "the certificate of domain example.org expires on"
    )
    node.identities.remove_domain("example.org")
    assert alarms(node) == {}


def test_trusted_ca_expiring_expired_removed(node: Node, pki: Pki, clock: FixedClock) -> None:
    upload_leaf(node, pki, days=400)
    short = create_root(
        test_key("ec:p256", 329),
        name("Short-lived Root"),
        not_before=NOW - 300 * DAY,
        not_after=NOW + 20 * DAY,
    )
    node.trusted_cas.add(pem(short))
    [entry] = [e for e in node.trusted_cas.entries() if "Short-lived" in e.subject]
    found = alarms(node)
    assert list(found) == [f"expiring:trusted-ca:{entry.fingerprint}"]
    assert (
        "trusted CA CN=Short-lived Root expires on"
        in found[f"expiring:trusted-ca:{entry.fingerprint}"].text
    )
    clock.advance(21 * DAY)
    found = alarms(node)
    assert list(found) == [f"expired:trusted-ca:{entry.fingerprint}"]
    assert found[f"expired:trusted-ca:{entry.fingerprint}"].severity == "critical"
    node.trusted_cas.remove([entry.fingerprint])
    assert alarms(node) == {}


def test_local_ca_expiring_then_expired(node: Node, pki: Pki, clock: FixedClock) -> None:
    upload_leaf(node, pki, days=400)
    node.local_ca.create_root("lab", "/CN=Lab Root", days=20)
    found = alarms(node)
    assert list(found) == ["expiring:local-ca:lab"]
    assert found["expiring:local-ca:lab"].text.startswith("local CA 'lab' expires on")
    clock.advance(21 * DAY)
    assert list(alarms(node)) == ["expired:local-ca:lab"]


def test_severity_order_critical_first(node: Node, pki: Pki, clock: FixedClock) -> None:
    upload_leaf(node, pki, days=10)
    node.local_ca.create_root("lab", "/CN=Lab Root", days=20)
    clock.advance(11 * DAY)
    assert [a.id for a in node.alarms.current()] == ["expired:server", "expiring:local-ca:lab"]


# --------------------------------------------------------------------------- revocation


def test_manual_crl_stale_then_expired_then_replaced(
    node: Node, pki: Pki, clock: FixedClock
) -> None:
    upload_leaf(node, pki, days=400)
    node.revocation.upload_manual(pem(pki.crl(number=1, this_update=NOW - HOUR, days=7)))
    assert alarms(node) == {}
    clock.advance(6 * DAY)  # nextUpdate is 23 hours away
    found = alarms(node)
    [stale] = list(found)
    assert stale.startswith("crl-stale:manual:")
    assert found[stale].severity == "warning"
    assert "the CRL of CN=Alarm Issuing (manual upload) expires at" in found[stale].text
    clock.advance(DAY)
    found = alarms(node)
    [expired] = list(found)
    assert expired.startswith("crl-expired:manual:") and found[expired].severity == "critical"
    assert "certificates of that CA count as revoked" in found[expired].text
    node.revocation.upload_manual(pem(pki.crl(number=2, this_update=clock.now() - HOUR, days=7)))
    assert alarms(node) == {}


def test_crl_source_unreachable_then_back(node: Node, pki: Pki) -> None:
    upload_leaf(node, pki, days=400)
    url = refused_url("/issuing.crl")
    node.revocation.set_sources([url])
    node.revocation.update_now()
    found = alarms(node)
    assert list(found) == [f"crl-source:{url}"]
    assert found[f"crl-source:{url}"].text == (
        f"CRL source {url} could not be used: fetching {url} failed: connection refused "
        "(2 attempts)"
    )
    crl = pki.crl(number=1).public_bytes(serialization.Encoding.DER)
    server = ServerAt(url, lambda _body: crl)
    try:
        node.revocation.update_now()
    finally:
        server.close()
    assert alarms(node) == {}
    assert [h.number for h in node.revocation.held() if h.kind == "url"] == [1]


def test_ocsp_responder_unreachable_then_back(tmp_path: Path, clock: FixedClock) -> None:
    url = refused_url("/ocsp")
    pki = Pki("Ocsp Alarm", index=333, ocsp_url=url)
    node = Node.init(tmp_path / "data", clock, fast_fetcher(timeout=0.5), fqdn=FQDN)
    try:
        node.trusted_cas.add(pem(pki.root, pki.intermediate))
        upload_leaf(node, pki, days=400)
        node.revocation.set_policy("sip-tls", ocsp=True, crl=False, cdp=False, scope="peer")
        leaf = pki.leaf("peer.example.com")
        report = node.client_check.check(pem(leaf), service="sip-tls")
        assert report.result.valid  # default fallback: treated as not revoked
        found = alarms(node)
        assert list(found) == [f"ocsp-responder:{url}"]
        assert found[f"ocsp-responder:{url}"].text.startswith(
            f"OCSP responder {url} could not be used: fetching {url} failed: connection refused"
        )

        def answer(body: bytes) -> bytes:
            request = ocsp.load_der_ocsp_request(body)
            builder = (
                ocsp.OCSPResponseBuilder()
                .add_response(
                    cert=leaf,
                    issuer=pki.intermediate,
                    algorithm=hashes.SHA256(),
                    cert_status=ocsp.OCSPCertStatus.GOOD,
                    this_update=clock.now() - HOUR,
                    next_update=clock.now() + DAY,
                    revocation_time=None,
                    revocation_reason=None,
                )
                .responder_id(ocsp.OCSPResponderEncoding.HASH, pki.intermediate)
            )
            for extension in request.extensions:
                if isinstance(extension.value, x509.OCSPNonce):
                    builder = builder.add_extension(extension.value, critical=False)
            response = builder.sign(pki.int_key, hashes.SHA256())
            return response.public_bytes(serialization.Encoding.DER)

        server = ServerAt(url, answer)
        clock.advance(dt.timedelta(seconds=31))  # a failed responder is not retried for 30 s
        try:
            report = node.client_check.check(pem(leaf), service="sip-tls")
        finally:
            server.close()
        assert report.result.valid
        assert report.result.certificates[0].status == "good"
        assert alarms(node) == {}
    finally:
        node.close()
