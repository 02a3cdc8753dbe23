"""A real SIP TLS listener on 127.0.0.1 with real clients (Python's ssl, ``openssl s_client``):
mutual TLS modes, peer certificate checks with one-line refusal logs, own-CA revocation at
once, access rules, and malformed/slow peers that never block the others."""

from __future__ import annotations

import datetime as dt
import logging
import select
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certway.pki.csr import CsrForm, build_csr
from certway.pki.issue import Issuer
from certway.pki.text import format_name, serial_hex
from certway.services.node import Node
from certway.services.sip_settings import SipSettings
from certway.sip.listener import SipLimits, SipListener
from waiting import wait_for

from conftest import key_pem, test_key, write
from pkitools import Pki, cucm_certificate
from revocation_servers import OpensslOcspResponder
from revocation_servers import _index_time as index_time
from serving import LoopThread

FQDN = "sip.example.com"
PEM = serialization.Encoding.PEM


def options_request(call_id: str = "c1@peer.example.com", cseq: int = 1) -> bytes:
    return (
        "OPTIONS sip:sip.example.com SIP/2.0\r\n"
        "Via: SIP/2.0/TLS peer.example.com:5061;branch=z9hG4bK-1\r\n"
        "Via: SIP/2.0/TLS proxy.example.com;branch=z9hG4bK-2\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:ping@peer.example.com>;tag=from1\r\n"
        "To: <sip:sip.example.com>\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node.init(tmp_path / "d", fqdn=FQDN)
    n.local_ca.create_root("sipca", "/CN=SIP Test CA")
    n.trusted_cas.add(n.local_ca.certificate("sipca").public_bytes(PEM))
    yield n
    n.close()


@pytest.fixture
def sip(node: Node) -> SipSettings:
    return SipSettings(node.store, node.clock, node.audit)


LIMITS = SipLimits(message_timeout=1.0, idle_timeout=30.0, max_rate=50, max_header=4096)


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.close()


@pytest.fixture
def listener(node: Node, sip: SipSettings, loop_thread: LoopThread) -> Iterator[SipListener]:
    server = SipListener(node, "127.0.0.1", 0, sip_settings=sip, limits=LIMITS)
    loop_thread.run(server.start())
    yield server
    loop_thread.run(server.stop())


@pytest.fixture
def sip_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="certway.sip")
    return caplog


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "event=sip-refused" in r.getMessage()]


class Peer:
    """A client certificate + key on disk."""

    def __init__(self, cert: x509.Certificate, cert_path: Path, key_path: Path) -> None:
        self.cert = cert
        self.cert_path = cert_path
        self.key_path = key_path

    @property
    def files(self) -> tuple[Path, Path]:
        return self.cert_path, self.key_path


def issue(
    node: Node, tmp_path: Path, cn: str, *, profile: str = "client", ca: str = "sipca"
) -> Peer:
    key = test_key("ec:p256", 500 + len(cn))
    csr, _ = build_csr(key, CsrForm(common_name=cn))
    result = node.local_ca.sign(ca, csr.public_bytes(PEM), profile=profile, days=30)
    return Peer(
        result.certificate,
        write(tmp_path / f"{cn}.crt", result.pem(with_chain=True)),
        write(tmp_path / f"{cn}.key", key_pem(key)),
    )


def external_peer(tmp_path: Path, pki: Pki, cert: x509.Certificate, label: str) -> Peer:
    return Peer(
        cert,
        write(tmp_path / f"{label}.crt", cert.public_bytes(PEM)),
        write(tmp_path / f"{label}.key", key_pem(pki.leaf_key)),
    )


def server_ca_pem(node: Node) -> bytes:
    temporary = node.identities.temporary_ca()
    assert temporary is not None
    return temporary.public_bytes(PEM)


def connect(node: Node, port: int, peer: Peer | None, *, tls12: bool = False) -> ssl.SSLSocket:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if tls12:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.load_verify_locations(cadata=server_ca_pem(node).decode())
    if peer is not None:
        context.load_cert_chain(*peer.files)
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    return context.wrap_socket(raw, server_hostname=FQDN)


def read_message(tls: ssl.SSLSocket, timeout: float = 5) -> bytes:
    """One response (no body), or whatever arrived before the server closed."""
    tls.settimeout(timeout)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = tls.recv(4096)
            if not chunk:
                break
            data += chunk
    except (ssl.SSLError, ConnectionError):
        pass
    return data


def closed_without_answer(tls: ssl.SSLSocket) -> bool:
    try:
        tls.sendall(options_request())
    except (ssl.SSLError, ConnectionError):
        return True
    return read_message(tls) == b""


def ask(node: Node, port: int, peer: Peer | None) -> bytes:
    with connect(node, port, peer) as tls:
        tls.sendall(options_request())
        return read_message(tls)


# -- happy path ------------------------------------------------------------------------------
def test_options_with_a_valid_client_certificate_gets_200(
    node: Node, listener: SipListener, tmp_path: Path
) -> None:
    peer = issue(node, tmp_path, "edge.example.com")
    with connect(node, listener.port, peer) as tls:
        tls.sendall(options_request())
        answer = read_message(tls).decode()
        lines = answer.split("\r\n")
        assert lines[0] == "SIP/2.0 200 OK"
        assert lines[1:3] == [
            "Via: SIP/2.0/TLS peer.example.com:5061;branch=z9hG4bK-1",
            "Via: SIP/2.0/TLS proxy.example.com;branch=z9hG4bK-2",
        ]
        assert "From: <sip:ping@peer.example.com>;tag=from1" in lines
        assert any(line.startswith("To: <sip:sip.example.com>;tag=") for line in lines)
        assert "Call-ID: c1@peer.example.com" in lines and "CSeq: 1 OPTIONS" in lines
        assert "Allow: OPTIONS" in lines and "Accept: application/sdp" in lines
        assert "Supported:" in lines
        # a CRLF keep-alive ping on the same connection is answered with a pong
        tls.sendall(b"\r\n\r\n")
        assert tls.recv(16) == b"\r\n"
        # other methods: 405 with Allow
        tls.sendall(
            options_request(cseq=2)
            .replace(b"OPTIONS sip:", b"INFO sip:")
            .replace(b"2 OPTIONS", b"2 INFO")
        )
        refused = read_message(tls).decode()
        assert refused.startswith("SIP/2.0 405 Method Not Allowed\r\n")
        assert "\r\nAllow: OPTIONS\r\n" in refused and "\r\nCSeq: 2 INFO\r\n" in refused
        # a response from the peer is ignored; the next request is answered
        tls.sendall(
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TLS x;branch=z9hG4bK-9\r\nFrom: <sip:a@b>;tag=1\r\n"
            b"To: <sip:c@d>;tag=2\r\nCall-ID: r\r\nCSeq: 9 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            + options_request(cseq=3)
        )
        assert "CSeq: 3 OPTIONS" in read_message(tls).decode()


@pytest.mark.interop
def test_openssl_s_client_options_gets_200(
    node: Node, listener: SipListener, tmp_path: Path, openssl: str
) -> None:
    peer = issue(node, tmp_path, "kamailio.example.com")
    ca = write(tmp_path / "server-ca.pem", server_ca_pem(node))
    out = s_client(openssl, listener.port, peer, ca, options_request(call_id="ossl-1"))
    assert out.startswith(b"SIP/2.0 200 OK\r\n"), out
    assert b"\r\nCall-ID: ossl-1\r\n" in out and b"\r\nAllow: OPTIONS\r\n" in out


def s_client(
    openssl: str, port: int, peer: Peer | None, ca: Path, request: bytes, timeout: float = 10
) -> bytes:
    """Run ``openssl s_client -quiet`` as a raw SIP client: send ``request``, return what the
    server sent until a complete response arrived or the server closed."""
    command = [
        openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", FQDN,
        "-CAfile", str(ca), "-verify_return_error", "-quiet",
    ]  # fmt: skip
    if peer is not None:
        command += ["-cert", str(peer.cert_path), "-key", str(peer.key_path)]
    proc = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert proc.stdin is not None and proc.stdout is not None
    data = b""
    try:
        proc.stdin.write(request)
        proc.stdin.flush()
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in data and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.2)
            if ready:
                chunk = proc.stdout.read1(4096)
                if not chunk:
                    break
                data += chunk
    finally:
        proc.kill()
        proc.wait()
        proc.stdin.close()
        proc.stdout.close()
    return data


# -- mutual TLS modes ------------------------------------------------------------------------
def test_no_certificate_under_require_is_refused_with_a_log_line(
    node: Node, sip: SipSettings, listener: SipListener, sip_log: pytest.LogCaptureFixture
) -> None:
    sip.set(mutual_tls="require")
    assert listener.refresh()
    for tls12 in (False, True):  # TLS 1.3 and TLS 1.2 clients alike
        sip_log.clear()
        with connect(node, listener.port, None, tls12=tls12) as tls:
            assert closed_without_answer(tls)
        [line] = refusals(sip_log)
        assert "reason=no-certificate" in line and "peer=127.0.0.1:" in line


@pytest.mark.interop
def test_no_certificate_under_require_openssl(
    node: Node, sip: SipSettings, listener: SipListener, tmp_path: Path, openssl: str
) -> None:
    sip.set(mutual_tls="require")
    listener.refresh()
    ca = write(tmp_path / "server-ca.pem", server_ca_pem(node))
    assert s_client(openssl, listener.port, None, ca, options_request()) == b""


def test_no_certificate_under_request_is_served_unauthenticated(
    node: Node, listener: SipListener, sip_log: pytest.LogCaptureFixture
) -> None:
    """As Expressway does: "request" asks for a certificate and serves a peer without one
    (non-authenticated use); a certificate that is presented must be valid (tested below)."""
    assert listener.config.mutual_tls.value == "request"
    for tls12 in (False, True):
        with connect(node, listener.port, None, tls12=tls12) as tls:
            tls.sendall(options_request())
            assert read_message(tls).startswith(b"SIP/2.0 200 OK")
    assert refusals(sip_log) == []
    accepted = [r.getMessage() for r in sip_log.records if "event=sip-accepted" in r.getMessage()]
    assert len(accepted) == 2 and all("authenticated=no" in line for line in accepted)


def test_mutual_tls_off_needs_no_certificate(
    node: Node, sip: SipSettings, listener: SipListener
) -> None:
    sip.set(mutual_tls="off")
    listener.refresh()
    assert ask(node, listener.port, None).startswith(b"SIP/2.0 200 OK")


# -- peer certificate checks -----------------------------------------------------------------
def assert_refused_and_logged(
    caplog: pytest.LogCaptureFixture, node: Node, port: int, peer: Peer, reason: str
) -> str:
    with connect(node, port, peer) as tls:
        local = tls.getsockname()[1]
        assert closed_without_answer(tls)
    lines = refusals(caplog)
    assert len(lines) == 1, lines
    line = lines[0]
    cert = peer.cert
    assert "\n" not in line
    assert f"reason={reason}" in line
    assert f"peer=127.0.0.1:{local}" in line
    assert f"subject={format_name(cert.subject)!r}" in line
    assert f"serial={serial_hex(cert.serial_number)}" in line
    assert f"issuer={format_name(cert.issuer)!r}" in line
    return line


def test_untrusted_ca_is_refused(
    node: Node, listener: SipListener, tmp_path: Path, sip_log: pytest.LogCaptureFixture
) -> None:
    pki = Pki("Stranger", index=400)
    peer = external_peer(tmp_path, pki, pki.leaf("stranger.example.com"), "stranger")
    line = assert_refused_and_logged(sip_log, node, listener.port, peer, "untrusted")
    assert "not in the trusted CA list" in line


def presenting(tmp_path: Path, pki: Pki, chain: list[x509.Certificate], label: str) -> Peer:
    """A peer presenting ``chain`` (its leaf first) with the PKI's leaf key."""
    return Peer(
        chain[0],
        write(tmp_path / f"{label}.crt", b"".join(c.public_bytes(PEM) for c in chain)),
        write(tmp_path / f"{label}.key", key_pem(pki.leaf_key)),
    )


def test_a_client_presenting_its_intermediate_is_accepted_with_the_root_trusted(
    node: Node, listener: SipListener, tmp_path: Path, sip_log: pytest.LogCaptureFixture
) -> None:
    """The node trusts the partner's root alone; the partner's certificate comes from its
    issuing CA, which the partner presents after it in the handshake."""
    pki = Pki("Chain Partner", index=450)
    node.trusted_cas.add(pki.root.public_bytes(PEM))
    assert listener.refresh()
    leaf = pki.leaf("partner.example.com")
    chained = presenting(tmp_path, pki, [leaf, pki.intermediate], "chained")
    assert ask(node, listener.port, chained).startswith(b"SIP/2.0 200 OK")
    # the same certificate without its intermediate: no path to the trusted root
    alone = presenting(tmp_path, pki, [leaf], "alone")
    line = assert_refused_and_logged(sip_log, node, listener.port, alone, "untrusted")
    assert "issuer CN=Chain Partner Issuing is not in the trusted CA list" in line


def test_a_client_presenting_its_own_root_is_still_untrusted(
    node: Node, listener: SipListener, tmp_path: Path, sip_log: pytest.LogCaptureFixture
) -> None:
    """What a client presents is never a trust anchor, its own self-signed root included."""
    pki = Pki("Selfmade", index=460)
    peer = presenting(
        tmp_path, pki, [pki.leaf("selfmade.example.com"), pki.intermediate, pki.root], "self"
    )
    line = assert_refused_and_logged(sip_log, node, listener.port, peer, "untrusted")
    assert "the chain ends at CN=Selfmade Root, whose issuer CN=Selfmade Root is not in" in line


def trust_external(node: Node, pki: Pki, listener: SipListener) -> None:
    node.trusted_cas.add(pki.root.public_bytes(PEM) + pki.intermediate.public_bytes(PEM))
    assert listener.refresh()  # certway serve's poller does this every 0.5 s


def test_expired_certificate_is_refused(
    node: Node, listener: SipListener, tmp_path: Path, sip_log: pytest.LogCaptureFixture
) -> None:
    pki = Pki("Partner", index=410)
    trust_external(node, pki, listener)
    old = pki.leaf("old.example.com", not_before=node.clock.now() - dt.timedelta(days=20), days=10)
    peer = external_peer(tmp_path, pki, old, "old")
    line = assert_refused_and_logged(sip_log, node, listener.port, peer, "expired")
    assert "expired on" in line


def test_own_ca_revocation_is_effective_at_once(
    node: Node, listener: SipListener, tmp_path: Path, sip_log: pytest.LogCaptureFixture
) -> None:
    peer = issue(node, tmp_path, "revoked.example.com")
    with connect(node, listener.port, peer) as established:
        established.sendall(options_request())
        assert read_message(established).startswith(b"SIP/2.0 200 OK")
        node.local_ca.revoke("sipca", serial_hex(peer.cert.serial_number), reason="keyCompromise")
        # no CRL download: the listener's next poll (every 0.5 s in certway serve) reads the
        # CA's new revocation record and the next connection is refused ...
        assert listener.refresh()
        line = assert_refused_and_logged(sip_log, node, listener.port, peer, "revoked")
        assert "keyCompromise" in line and "local CA" in line
        # ... while the established one stays up
        established.sendall(options_request(cseq=2))
        assert read_message(established).startswith(b"SIP/2.0 200 OK")


def test_crl_revoked_certificate_of_an_external_ca_is_refused(
    node: Node, listener: SipListener, tmp_path: Path, sip_log: pytest.LogCaptureFixture
) -> None:
    pki = Pki("Partner", index=420)
    trust_external(node, pki, listener)
    leaf = pki.leaf("partner.example.com")
    peer = external_peer(tmp_path, pki, leaf, "partner")
    assert ask(node, listener.port, peer).startswith(b"SIP/2.0 200 OK")
    now = node.clock.now()
    crl = pki.crl([(leaf, "keyCompromise")], this_update=now - dt.timedelta(hours=1))
    node.revocation.upload_manual(crl.public_bytes(PEM))
    assert listener.refresh()  # certway serve's poller does this every 0.5 s
    line = assert_refused_and_logged(sip_log, node, listener.port, peer, "revoked")
    assert "manual CRL" in line


def test_imported_ca_certificate_revoked_on_its_crl_is_refused(
    node: Node, listener: SipListener, tmp_path: Path, sip_log: pytest.LogCaptureFixture
) -> None:
    """An imported CA is judged by its CRLs like any other CA: certificates it issued before
    the import are not in this node's records."""
    pki = Pki("Imported", index=440)
    node.local_ca.import_ca("imported", pki.intermediate.public_bytes(PEM), key_pem(pki.int_key))
    trust_external(node, pki, listener)
    leaf = pki.leaf("imported-peer.example.com")
    peer = external_peer(tmp_path, pki, leaf, "imported-peer")
    assert ask(node, listener.port, peer).startswith(b"SIP/2.0 200 OK")
    crl = pki.crl([(leaf, "keyCompromise")], this_update=node.clock.now() - dt.timedelta(hours=1))
    node.revocation.upload_manual(crl.public_bytes(PEM))
    assert listener.refresh()
    line = assert_refused_and_logged(sip_log, node, listener.port, peer, "revoked")
    assert "manual CRL" in line and "keyCompromise" in line


def test_trusted_self_signed_ca_certificate_is_accepted_as_client(
    node: Node, listener: SipListener, tmp_path: Path
) -> None:
    """A CUCM-style peer: self-signed, CA:TRUE, serverAuth + clientAuth, on the trusted list."""
    cucm = cucm_certificate("cucm-sip.example.com")
    node.trusted_cas.add(cucm.public_bytes(PEM))
    assert listener.refresh()
    peer = Peer(
        cucm,
        write(tmp_path / "cucm.crt", cucm.public_bytes(PEM)),
        write(tmp_path / "cucm.key", key_pem(test_key("ec:p256", 901))),
    )
    assert ask(node, listener.port, peer).startswith(b"SIP/2.0 200 OK")


def test_server_auth_only_certificate_depends_on_eku_checking(
    node: Node,
    sip: SipSettings,
    listener: SipListener,
    tmp_path: Path,
    sip_log: pytest.LogCaptureFixture,
) -> None:
    peer = issue(node, tmp_path, "legacy.example.com", profile="server")
    line = assert_refused_and_logged(sip_log, node, listener.port, peer, "wrong-eku")
    assert "clientAuth" in line
    sip.set(eku_check="off")
    assert listener.refresh()
    assert ask(node, listener.port, peer).startswith(b"SIP/2.0 200 OK")


def test_deny_rule_refuses_and_allow_rules_take_priority(
    node: Node,
    sip: SipSettings,
    listener: SipListener,
    tmp_path: Path,
    sip_log: pytest.LogCaptureFixture,
) -> None:
    good = issue(node, tmp_path, "edge.partner.example")
    bad = issue(node, tmp_path, "rogue.example.com")
    sip.add_rule(priority=10, type="suffix", pattern=".partner.example", action="allow")
    sip.add_rule(priority=100, type="regex", pattern=".*", action="deny")
    assert listener.refresh()
    assert ask(node, listener.port, good).startswith(b"SIP/2.0 200 OK")
    line = assert_refused_and_logged(sip_log, node, listener.port, bad, "denied")
    assert "rule 2" in line and "rogue.example.com" in line


@pytest.mark.interop
def test_deny_rule_with_openssl(
    node: Node,
    sip: SipSettings,
    listener: SipListener,
    tmp_path: Path,
    openssl: str,
    sip_log: pytest.LogCaptureFixture,
) -> None:
    peer = issue(node, tmp_path, "blocked.example.com")
    sip.add_rule(priority=1, type="exact", pattern="blocked.example.com", action="deny")
    listener.refresh()
    ca = write(tmp_path / "server-ca.pem", server_ca_pem(node))
    assert s_client(openssl, listener.port, peer, ca, options_request()) == b""
    assert "reason=denied" in refusals(sip_log)[0]


# -- malformed and hostile peers -------------------------------------------------------------
@pytest.fixture
def good_peer(node: Node, tmp_path: Path) -> Peer:
    return issue(node, tmp_path, "good.example.com")


@pytest.mark.parametrize(
    ("payload", "answer"),
    [
        (b"\x00\x01garbage that is not SIP\r\n\r\n", b""),
        (b"OPTIONS sip:x SIP/2.0\r\nX-Pad: " + b"a" * 5000, b""),
        (options_request().replace(b"Content-Length: 0", b"Content-Length: -5"), b"SIP/2.0 400 "),
        (
            options_request().replace(b"Content-Length: 0", b"Content-Length: 99999999999"),
            b"SIP/2.0 413 ",
        ),
        (options_request().replace(b"Content-Length: 0\r\n", b""), b"SIP/2.0 400 "),
    ],
    ids=["garbage", "oversized-headers", "negative-length", "huge-length", "no-length"],
)
def test_malformed_sip_is_answered_or_closed_and_the_listener_survives(
    node: Node,
    listener: SipListener,
    good_peer: Peer,
    payload: bytes,
    answer: bytes,
    sip_log: pytest.LogCaptureFixture,
) -> None:
    with connect(node, listener.port, good_peer) as tls:
        tls.sendall(payload)
        reply = read_message(tls)
        assert reply.startswith(answer) if answer else reply == b""
        if answer:
            assert b"\r\nWarning: 399 certway " in reply
        assert read_message(tls) == b""  # then closed
    assert any("event=sip-malformed" in r.getMessage() for r in sip_log.records)
    assert ask(node, listener.port, good_peer).startswith(b"SIP/2.0 200 OK")


def test_slowloris_does_not_block_other_peers(
    node: Node, listener: SipListener, good_peer: Peer, sip_log: pytest.LogCaptureFixture
) -> None:
    with connect(node, listener.port, good_peer) as slow:
        slow.sendall(b"OPTIONS sip:sip.example.com SIP/2.0\r\nVia: SIP/2.0/TLS a")
        # meanwhile a good client is served, while the slow one is still open
        assert ask(node, listener.port, good_peer).startswith(b"SIP/2.0 200 OK")
        slow.settimeout(0.1)
        with pytest.raises(TimeoutError):
            slow.recv(100)  # not closed yet: the good client did not wait for its time-out
        # the slow one trickles bytes but is closed when the message timeout is over
        closed = False
        for _ in range(40):
            try:
                slow.sendall(b"a")
                slow.settimeout(0.1)
                closed = slow.recv(100) == b""
            except TimeoutError:
                continue
            except (ssl.SSLError, ConnectionError):
                closed = True
            if closed:
                break
        assert closed  # within the 40 short reads above, though it kept sending
    assert any("reason=message-timeout" in r.getMessage() for r in sip_log.records)


def test_message_flood_is_closed(
    node: Node, listener: SipListener, good_peer: Peer, sip_log: pytest.LogCaptureFixture
) -> None:
    with connect(node, listener.port, good_peer) as tls:
        tls.sendall(b"\r\n\r\n" * (LIMITS.max_rate + 10))
        tls.settimeout(5)
        received = b""
        try:
            while chunk := tls.recv(4096):
                received += chunk
        except (ssl.SSLError, ConnectionError):
            pass
    assert received.count(b"\r\n") <= LIMITS.max_rate
    assert any("reason=rate-limit" in r.getMessage() for r in sip_log.records)


def test_connection_limit(
    node: Node, sip: SipSettings, loop_thread: LoopThread, good_peer: Peer
) -> None:
    limited = SipListener(
        node, "127.0.0.1", 0, sip_settings=sip, limits=SipLimits(max_connections=1)
    )
    loop_thread.run(limited.start())
    try:
        with connect(node, limited.port, good_peer) as first:
            first.sendall(options_request())
            assert read_message(first).startswith(b"SIP/2.0 200 OK")
            with connect(node, limited.port, good_peer) as second:
                assert closed_without_answer(second)
        wait_for(lambda: not limited.connections, "the listener to forget closed connections")
        assert ask(node, limited.port, good_peer).startswith(b"SIP/2.0 200 OK")
    finally:
        loop_thread.run(limited.stop())


def test_a_broken_validator_closes_only_that_connection(
    node: Node, sip: SipSettings, loop_thread: LoopThread, good_peer: Peer
) -> None:
    calls: list[bool] = []

    def flaky(der: bytes | None, config: Any, chain: Any) -> Any:
        calls.append(True)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return listener.validator.check(der, config, chain)

    listener = SipListener(node, "127.0.0.1", 0, sip_settings=sip, validate=flaky, limits=LIMITS)
    loop_thread.run(listener.start())
    try:
        with connect(node, listener.port, good_peer) as tls:
            assert closed_without_answer(tls)
        assert ask(node, listener.port, good_peer).startswith(b"SIP/2.0 200 OK")
    finally:
        loop_thread.run(listener.stop())


def test_sni_and_certificate_reload(node: Node, listener: SipListener, good_peer: Peer) -> None:
    with connect(node, listener.port, good_peer) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    served = x509.load_der_x509_certificate(der)
    server = node.identities.active("server")
    assert server is not None and served == server.certificate


@pytest.mark.interop
def test_ocsp_revocation_and_both_fallbacks_when_the_responder_is_down(
    node: Node,
    listener: SipListener,
    tmp_path: Path,
    sip_log: pytest.LogCaptureFixture,
    openssl: str,
) -> None:
    """OCSP from the certificate's AIA, answered by a real ``openssl ocsp``: revoked is
    refused; with the responder down, ``not-revoked`` lets the peer in and ``revoked`` keeps
    it out."""
    pki = Pki("Ocsp Partner", index=440)
    trust_external(node, pki, listener)
    responder = OpensslOcspResponder(openssl, tmp_path / "ocsp", pki.intermediate, pki.int_key)
    issuer = Issuer(pki.intermediate, pki.int_key, ocsp_url=f"{responder.url}/ocsp")
    good = pki.leaf("good.partner.example.com", issuer=issuer)
    bad = pki.leaf("bad.partner.example.com", issuer=issuer)
    expiry = index_time(pki.intermediate.not_valid_after_utc)
    revoked_at = index_time(node.clock.now() - dt.timedelta(hours=1))
    (tmp_path / "ocsp" / "index.txt").write_text(
        f"V\t{expiry}\t\t{good.serial_number:X}\tunknown\t/CN=good\n"
        f"R\t{expiry}\t{revoked_at},keyCompromise\t{bad.serial_number:X}\tunknown\t/CN=bad\n"
    )
    node.revocation.set_policy("sip-tls", ocsp=True, crl=False, cdp=False, scope="peer")
    assert listener.refresh()  # certway serve's poller does this every 0.5 s
    try:
        good_peer = external_peer(tmp_path, pki, good, "ocsp-good")
        assert ask(node, listener.port, good_peer).startswith(b"SIP/2.0 200 OK")
        line = assert_refused_and_logged(
            sip_log, node, listener.port, external_peer(tmp_path, pki, bad, "ocsp-bad"), "revoked"
        )
        assert "keyCompromise" in line and "OCSP" in line
        assert responder.calls >= 2
    finally:
        responder.close()
    # The responder is down now (certificates not answered before: nothing cached).
    lenient = external_peer(tmp_path, pki, pki.leaf("c.partner.example.com", issuer=issuer), "c")
    assert ask(node, listener.port, lenient).startswith(b"SIP/2.0 200 OK")
    node.revocation.set_policy("sip-tls", fallback="revoked")
    assert listener.refresh()
    sip_log.clear()
    strict = external_peer(tmp_path, pki, pki.leaf("d.partner.example.com", issuer=issuer), "d")
    assert_refused_and_logged(sip_log, node, listener.port, strict, "revocation-unknown")
