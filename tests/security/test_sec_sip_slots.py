"""SIP connection slots: one peer — one client certificate or one source address — cannot
hold every connection the listener has, and a connection that never says anything does not
keep its slot for the long idle timeout meant for established conversations.

Before the fix one authenticated peer could open all 1,000 connections and keep each for
600 s without sending a byte."""

from __future__ import annotations

import logging
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from certway.pki.csr import CsrForm, build_csr
from certway.services.node import Node
from certway.services.sip_settings import SipSettings
from certway.sip.listener import SipLimits, SipListener
from waiting import wait_for

from conftest import key_pem, test_key, write
from serving import LoopThread

FQDN = "sip.example.com"
PEM = serialization.Encoding.PEM


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node.init(tmp_path / "d", fqdn=FQDN)
    n.local_ca.create_root("sipca", "/CN=SIP Slots CA")
    n.trusted_cas.add(n.local_ca.certificate("sipca").public_bytes(PEM))
    yield n
    n.close()


@pytest.fixture
def sip_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="certway.sip")
    return caplog


class Listening:
    """A SipListener with the given limits on a free 127.0.0.1 port, in its own loop."""

    def __init__(self, node: Node, limits: SipLimits) -> None:
        self.loop_thread = LoopThread()
        sip = SipSettings(node.store, node.clock, node.audit)
        self.listener = SipListener(node, "127.0.0.1", 0, sip_settings=sip, limits=limits)
        self.loop_thread.run(self.listener.start())

    @property
    def port(self) -> int:
        return self.listener.port

    def wait_until_connections(self, count: int) -> None:
        wait_for(lambda: self.listener.connections == count, f"{count} open connections")

    def close(self) -> None:
        self.loop_thread.run(self.listener.stop())
        self.loop_thread.close()


@pytest.fixture
def listening(node: Node) -> Iterator[Any]:
    started: list[Listening] = []

    def start(limits: SipLimits) -> Listening:
        started.append(Listening(node, limits))
        return started[-1]

    yield start
    for one in started:
        one.close()


def peer_files(node: Node, tmp_path: Path, cn: str, index: int) -> tuple[Path, Path]:
    key = test_key("ec:p256", 700 + index)
    csr, _ = build_csr(key, CsrForm(common_name=cn))
    signed = node.local_ca.sign("sipca", csr.public_bytes(PEM), profile="client", days=30)
    return (
        write(tmp_path / f"{cn}.crt", signed.pem(with_chain=True)),
        write(tmp_path / f"{cn}.key", key_pem(key)),
    )


def connect(
    node: Node, port: int, files: tuple[Path, Path], *, source: str = "127.0.0.1"
) -> ssl.SSLSocket:
    temporary = node.identities.temporary_ca()
    assert temporary is not None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=temporary.public_bytes(PEM).decode())
    context.load_cert_chain(*files)
    raw = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    return context.wrap_socket(raw, server_hostname=FQDN)


def options(call_id: str) -> bytes:
    return (
        "OPTIONS sip:sip.example.com SIP/2.0\r\n"
        "Via: SIP/2.0/TLS peer.example.com:5061;branch=z9hG4bK-1\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:ping@peer.example.com>;tag=from1\r\n"
        "To: <sip:sip.example.com>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def read_reply(tls: ssl.SSLSocket, timeout: float = 10) -> bytes:
    """One response, or what arrived before the server closed (b"" when closed at once)."""
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


def answered(tls: ssl.SSLSocket, call_id: str = "slots@peer") -> bool:
    try:
        tls.sendall(options(call_id))
    except (ssl.SSLError, ConnectionError):
        return False
    return read_reply(tls).startswith(b"SIP/2.0 200 OK")


def refusals(caplog: pytest.LogCaptureFixture, reason: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if "event=sip-refused" in r.getMessage() and f"reason={reason}" in r.getMessage()
    ]


def test_defaults_bound_each_peer_well_below_the_listener_total() -> None:
    limits = SipLimits()
    assert limits.max_connections_per_certificate < limits.max_connections_per_address
    assert limits.max_connections_per_address < limits.max_connections
    assert limits.first_message_timeout < limits.idle_timeout


def test_one_certificate_cannot_hold_every_slot(
    node: Node, tmp_path: Path, listening: Any, sip_log: pytest.LogCaptureFixture
) -> None:
    server = listening(
        SipLimits(
            max_connections=100, max_connections_per_address=10, max_connections_per_certificate=2
        )
    )
    hog = peer_files(node, tmp_path, "hog.example.com", 1)
    other = peer_files(node, tmp_path, "other.example.com", 2)
    first = connect(node, server.port, hog)
    second = connect(node, server.port, hog)
    try:
        assert answered(first) and answered(second)
        # its third connection is refused at once and logged with the reason ...
        with connect(node, server.port, hog) as third:
            assert not answered(third)
        [line] = refusals(sip_log, "certificate-limit")
        assert "limit=2" in line and "hog.example.com" in line and "SHA-256" in line
        # ... while another certificate from the same address still gets in
        with connect(node, server.port, other) as fine:
            assert answered(fine)
    finally:
        first.close()
    server.wait_until_connections(1)
    # a slot it gave back can be taken again
    with connect(node, server.port, hog) as again:
        assert answered(again)
    second.close()


def test_one_address_cannot_hold_every_slot(
    node: Node, tmp_path: Path, listening: Any, sip_log: pytest.LogCaptureFixture
) -> None:
    server = listening(
        SipLimits(
            max_connections=100, max_connections_per_address=2, max_connections_per_certificate=20
        )
    )
    files = [peer_files(node, tmp_path, f"p{i}.example.com", 10 + i) for i in range(3)]
    held = [connect(node, server.port, files[0]), connect(node, server.port, files[1])]
    try:
        assert all(answered(tls) for tls in held)
        # a third connection from 127.0.0.1, with a certificate of its own, is refused
        with connect(node, server.port, files[2]) as third:
            assert not answered(third)
        [line] = refusals(sip_log, "address-limit")
        assert "limit=2" in line and "127.0.0.1" in line
        # the same certificate from another source address is served
        with connect(node, server.port, files[2], source="127.0.0.2") as elsewhere:
            assert answered(elsewhere)
    finally:
        for tls in held:
            tls.close()


def test_a_silent_connection_is_closed_long_before_the_idle_timeout(
    node: Node, tmp_path: Path, listening: Any, sip_log: pytest.LogCaptureFixture
) -> None:
    server = listening(SipLimits(first_message_timeout=0.5, idle_timeout=120))
    files = peer_files(node, tmp_path, "quiet.example.com", 20)
    with connect(node, server.port, files) as talking, connect(node, server.port, files) as silent:
        assert answered(talking, "first@peer")
        # the connection that never sent anything is closed (read sees the end, not a timeout
        # of our 10 s read) ...
        silent.settimeout(10)
        try:
            closed = silent.recv(100) == b""
        except (ssl.SSLError, ConnectionError):
            closed = True
        assert closed
        # ... while the one that has spoken keeps the long idle timeout between messages
        time.sleep(1.5)
        assert answered(talking, "second@peer")
    assert any(
        "event=sip-closed" in r.getMessage() and "reason=silent" in r.getMessage()
        for r in sip_log.records
    )


def test_the_first_message_timeout_never_exceeds_the_idle_timeout(
    node: Node, tmp_path: Path, listening: Any
) -> None:
    server = listening(SipLimits(first_message_timeout=60, idle_timeout=0.5))
    files = peer_files(node, tmp_path, "short.example.com", 21)
    with connect(node, server.port, files) as silent:
        silent.settimeout(10)
        try:
            closed = silent.recv(100) == b""
        except (ssl.SSLError, ConnectionError):
            closed = True
        assert closed


def test_refused_connections_leave_no_count_behind(
    node: Node, tmp_path: Path, listening: Any
) -> None:
    server = listening(
        SipLimits(
            max_connections=100, max_connections_per_address=1, max_connections_per_certificate=1
        )
    )
    files = peer_files(node, tmp_path, "again.example.com", 22)
    for _ in range(3):
        with connect(node, server.port, files) as tls:
            assert answered(tls)
            with connect(node, server.port, files) as refused:
                assert not answered(refused)
        server.wait_until_connections(0)
