"""Zones (S5): definitions, the OPTIONS pinger against real TLS peers on 127.0.0.1, alarms, CLI.

The peers are small asyncio TLS servers (Python's ssl) requiring a client certificate from
the test PKI, so the node's client certificate (SC6) must be presented for the zone to work.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import json
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certway.clock import FixedClock
from certway.errors import Conflict, NotFound, PolicyViolation
from certway.pki.issue import Issuer
from certway.services.node import Node
from certway.services.zones import Zone, Zones, ZoneStatus, alarms_for_zones
from certway.sip.message import Message, SipFramer, build_response, options_ok
from certway.sip.zones import ZonePinger, options_request, run_pinger

from conftest import NOW, Cli, key_pem, test_key
from pkitools import Pki, cucm_certificate, name

DAY = dt.timedelta(days=1)


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki("Zone", index=600)


@pytest.fixture(scope="module")
def other() -> Pki:
    """A CA the node does not trust."""
    return Pki("Stranger", index=610)


def peer_cert(
    issuer: Issuer,
    *,
    ips: tuple[str, ...] = ("127.0.0.1",),
    dns: tuple[str, ...] = (),
    cn: str = "sip.peer.example",
    start: dt.datetime | None = None,
    days: int = 90,
) -> x509.Certificate:
    alt: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    alt += [x509.DNSName(d) for d in dns]
    begin = start or NOW - DAY
    return issuer.issue(
        test_key("ec:p256", 620).public_key(),
        name(cn),
        profile="server-client",
        alt_names=alt or None,
        not_before=begin,
        not_after=begin + dt.timedelta(days=days),
    )


@pytest.fixture
def node(tmp_path: Path, clock: FixedClock, pki: Pki) -> Iterator[Node]:
    """A node trusting ``pki`` whose client certificate (SC6) is issued by ``pki``."""
    n = Node.init(tmp_path / "d", clock, factory=False, fqdn="vcs.example.com")
    n.trusted_cas.add(pem(pki.root, pki.intermediate))
    client = pki.leaf("vcs.example.com", profile="server-client")
    n.identities.upload(
        "client", "", pem(client), chain_data=pem(pki.intermediate), key_data=key_pem(pki.leaf_key)
    )
    try:
        yield n
    finally:
        n.close()


@pytest.fixture
def zones(node: Node) -> Zones:
    return Zones(node.store, node.clock, node.audit)


# -- a SIP/TLS peer ------------------------------------------------------------------------------
@dataclass
class Peer:
    port: int
    client_serials: list[int] = field(default_factory=list)
    requests: list[Message] = field(default_factory=list)


Answer = Callable[[Message], bytes | None]


def _server_context(
    tmp_path: Path, cert: x509.Certificate, chain: tuple[x509.Certificate, ...], trust: Pki
) -> ssl.SSLContext:
    path = tmp_path / f"peer-{cert.serial_number:x}.pem"
    path.write_bytes(pem(cert, *chain) + key_pem(test_key("ec:p256", 620)))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(path)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=pem(trust.root).decode())
    return context


@contextlib.asynccontextmanager
async def sip_peer(
    tmp_path: Path,
    cert: x509.Certificate,
    chain: tuple[x509.Certificate, ...],
    *,
    trust: Pki,
    answer: Answer = options_ok,
) -> AsyncIterator[Peer]:
    """A TLS server on 127.0.0.1 requiring a client certificate from ``trust``."""
    context = _server_context(tmp_path, cert, chain, trust)
    peer = Peer(0)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        if der:
            peer.client_serials.append(x509.load_der_x509_certificate(der).serial_number)
        framer = SipFramer()
        try:
            while data := await reader.read(4096):
                for item in framer.feed(data):
                    if isinstance(item, Message) and item.is_request:
                        peer.requests.append(item)
                        reply = answer(item)
                        if reply is not None:
                            writer.write(reply)
                            await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    peer.port = server.sockets[0].getsockname()[1]
    try:
        yield peer
    finally:
        server.close()


def check(node: Node, zones: Zones, zone: Zone, timeout: float = 5.0) -> ZoneStatus:
    return asyncio.run(ZonePinger(node, zones, timeout=timeout).check(zone))


def ping_peer(
    node: Node,
    zones: Zones,
    tmp_path: Path,
    cert: x509.Certificate,
    chain: tuple[x509.Certificate, ...],
    *,
    trust: Pki,
    answer: Answer = options_ok,
    timeout: float = 5.0,
    **zone_options: object,
) -> tuple[ZoneStatus, Peer]:
    """Define zone 'nb' pointing at a fresh peer, check it once."""

    async def run() -> tuple[ZoneStatus, Peer]:
        async with sip_peer(tmp_path, cert, chain, trust=trust, answer=answer) as peer:
            options: dict[str, object] = {"peers": ["127.0.0.1"], **zone_options}
            zone = await asyncio.to_thread(
                lambda: zones.add("nb", port=peer.port, **options)  # type: ignore[arg-type]
            )
            status = await ZonePinger(node, zones, timeout=timeout).check(zone)
            return status, peer

    return asyncio.run(run())


# -- the pinger ----------------------------------------------------------------------------------
def test_zone_goes_active_presenting_the_client_certificate(
    node: Node, zones: Zones, pki: Pki, tmp_path: Path
) -> None:
    cert = peer_cert(pki.int_issuer)
    status, peer = ping_peer(node, zones, tmp_path, cert, (pki.intermediate,), trust=pki)
    assert status.state == "Active", status
    assert status.reason is None and status.detail == "answered 200 OK"
    client = node.identities.active("client")
    assert client is not None and peer.client_serials == [client.certificate.serial_number]
    (request,) = peer.requests
    assert request.method == "OPTIONS" and request.uri == f"sip:127.0.0.1:{peer.port};transport=tls"
    assert (request.header("Via") or "").startswith("SIP/2.0/TLS 127.0.0.1:")
    assert ";branch=z9hG4bK" in (request.header("Via") or "")
    assert ";tag=" in (request.header("From") or "") and request.header("CSeq") == "1 OPTIONS"
    assert request.header("Max-Forwards") == "70"
    assert zones.status("nb") == status
    assert status.peers[0].certificate == "CN=sip.peer.example"
    assert alarms_for_zones(node.store) == []


def test_name_mismatch_when_the_address_is_not_in_the_san(
    node: Node, zones: Zones, pki: Pki, tmp_path: Path
) -> None:
    cert = peer_cert(pki.int_issuer, ips=(), dns=("sip.peer.example",), cn="127.0.0.1")
    status, peer = ping_peer(node, zones, tmp_path, cert, (pki.intermediate,), trust=pki)
    assert status.state == "Failed" and status.reason == "name mismatch"
    assert "'127.0.0.1' as an IP address subject alternative name" in status.detail
    assert "DNS:sip.peer.example" in status.detail
    assert peer.requests == []  # nothing is sent to a peer that failed the checks
    (alarm,) = alarms_for_zones(node.store)
    assert alarm.id == "zone:nb:127.0.0.1" and alarm.severity == "critical"
    assert "(name mismatch)" in alarm.text


def test_verify_subject_name_replaces_the_address(
    node: Node, zones: Zones, pki: Pki, tmp_path: Path
) -> None:
    cert = peer_cert(pki.int_issuer, ips=(), dns=("sip.peer.example",))
    status, _ = ping_peer(
        node,
        zones,
        tmp_path,
        cert,
        (pki.intermediate,),
        trust=pki,
        verify_subject="SIP.peer.example",
    )
    assert status.state == "Active", status


def test_wildcard_dns_san_matches_one_label(node: Node, zones: Zones, pki: Pki) -> None:
    from certway.sip.zones import verify_peer_certificate

    cert = peer_cert(pki.int_issuer, ips=(), dns=("*.peer.example",))
    der = cert.public_bytes(serialization.Encoding.DER)
    zone = Zone("w", ("sip.peer.example",))
    assert verify_peer_certificate(node, zone, "sip.peer.example", der).passed
    deeper = verify_peer_certificate(node, zone, "a.sip.peer.example", der)
    assert deeper.reason == "name mismatch"


def test_untrusted_peer(node: Node, zones: Zones, pki: Pki, other: Pki, tmp_path: Path) -> None:
    cert = peer_cert(other.int_issuer)
    status, _ = ping_peer(node, zones, tmp_path, cert, (other.intermediate,), trust=pki)
    assert status.reason == "untrusted"
    assert "is not in the trusted CA list" in status.detail


def test_a_peer_presenting_its_intermediate_is_active_with_the_root_trusted(
    node: Node, zones: Zones, pki: Pki, tmp_path: Path
) -> None:
    """The partner's root alone is trusted; the peer's chain leads to it through the issuing
    CA the peer presents. Without it, or with the peer's own root presented, no path."""
    partner = Pki("Zone Partner", index=630)
    node.trusted_cas.add(pem(partner.root))
    cert = peer_cert(partner.int_issuer)
    status, _ = ping_peer(node, zones, tmp_path, cert, (partner.intermediate,), trust=pki)
    assert status.state == "Active", status
    zones.remove("nb")
    status, _ = ping_peer(node, zones, tmp_path, cert, (), trust=pki)
    assert status.reason == "untrusted"
    assert "issuer CN=Zone Partner Issuing is not in the trusted CA list" in status.detail
    zones.remove("nb")
    stranger = Pki("Zone Stranger", index=640)
    own = peer_cert(stranger.int_issuer)
    status, _ = ping_peer(
        node, zones, tmp_path, own, (stranger.intermediate, stranger.root), trust=pki
    )
    assert status.reason == "untrusted"
    assert "the chain ends at CN=Zone Stranger Root" in status.detail


def test_tls_verify_off_accepts_any_certificate(
    node: Node, zones: Zones, pki: Pki, other: Pki, tmp_path: Path
) -> None:
    cert = peer_cert(other.int_issuer, ips=(), dns=("elsewhere.example",))
    status, _ = ping_peer(
        node, zones, tmp_path, cert, (other.intermediate,), trust=pki, tls_verify=False
    )
    assert status.state == "Active", status


def test_expired_peer(node: Node, zones: Zones, pki: Pki, tmp_path: Path) -> None:
    cert = peer_cert(pki.int_issuer, start=NOW - dt.timedelta(days=10), days=5)
    status, _ = ping_peer(node, zones, tmp_path, cert, (pki.intermediate,), trust=pki)
    assert status.reason == "expired" and "expired on" in status.detail


def test_revoked_by_a_crl(node: Node, zones: Zones, pki: Pki, tmp_path: Path) -> None:
    cert = peer_cert(pki.int_issuer)
    node.revocation.upload_manual(
        pki.crl([(cert, "keyCompromise")]).public_bytes(serialization.Encoding.PEM)
    )
    status, _ = ping_peer(node, zones, tmp_path, cert, (pki.intermediate,), trust=pki)
    assert status.reason == "revoked" and "keyCompromise" in status.detail


def test_revoked_by_the_local_ca_at_once(
    node: Node, zones: Zones, pki: Pki, tmp_path: Path
) -> None:
    node.local_ca.create_root("zones", "/CN=Zone Own CA")
    own = node.local_ca.certificate("zones")
    node.trusted_cas.add(pem(own))
    issued = node.local_ca.issue_certificate(
        "zones",
        test_key("ec:p256", 620).public_key(),
        name("own.peer.example"),
        alt_names=[x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
        profile="server",
    )
    status, _ = ping_peer(node, zones, tmp_path, issued.certificate, (), trust=pki)
    assert status.state == "Active", status
    node.local_ca.revoke("zones", format(issued.certificate.serial_number, "X"))
    zone = zones.get("nb")

    async def again() -> ZoneStatus:
        async with sip_peer(tmp_path, issued.certificate, (), trust=pki) as peer:
            moved = Zone("nb2", zone.peers, peer.port)
            await asyncio.to_thread(lambda: zones.add("nb2", peers=moved.peers, port=peer.port))
            return await ZonePinger(node, zones).check(moved)

    status = asyncio.run(again())
    assert status.reason == "revoked" and "by local CA" in status.detail


def test_trusted_self_signed_ca_certificate_is_a_valid_zone_peer(
    node: Node, zones: Zones, pki: Pki, tmp_path: Path
) -> None:
    """A CUCM-style neighbour (self-signed, CA:TRUE) whose certificate is on the trusted list."""
    cucm = cucm_certificate("cucm-zone.example.com", key_index=620, ip="127.0.0.1")
    status, _ = ping_peer(node, zones, tmp_path, cucm, (), trust=pki)
    assert status.state == "Failed" and status.reason == "untrusted", status
    node.trusted_cas.add(pem(cucm))
    zones.remove("nb")
    status, _ = ping_peer(node, zones, tmp_path, cucm, (), trust=pki)
    assert status.state == "Active", status


def test_refused_tcp(node: Node, zones: Zones) -> None:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        zone = zones.add("nb", peers=["127.0.0.1"], port=port)
        status = check(node, zones, zone)
    assert status.reason == "refused" and "refused the TCP connection" in status.detail


def test_refused_when_the_peer_does_not_accept_our_client_certificate(
    node: Node, zones: Zones, pki: Pki, other: Pki, tmp_path: Path
) -> None:
    cert = peer_cert(pki.int_issuer)
    # the peer trusts only a CA that did not issue our client certificate
    status, peer = ping_peer(node, zones, tmp_path, cert, (pki.intermediate,), trust=other)
    assert status.reason == "refused", status
    assert peer.requests == []


def test_timeout_when_the_peer_never_answers(
    node: Node, zones: Zones, pki: Pki, tmp_path: Path
) -> None:
    cert = peer_cert(pki.int_issuer)
    status, peer = ping_peer(
        node,
        zones,
        tmp_path,
        cert,
        (pki.intermediate,),
        trust=pki,
        answer=lambda _request: None,
        timeout=0.5,
    )
    assert status.reason == "timeout"
    assert status.detail == f"no answer to OPTIONS from 127.0.0.1:{peer.port} within 0.5 s"


def test_timeout_when_the_tls_handshake_never_happens(node: Node, zones: Zones) -> None:
    async def run() -> ZoneStatus:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while await reader.read(4096):  # swallow the ClientHello, never answer
                pass
            writer.close()

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            zone = await asyncio.to_thread(lambda: zones.add("nb", peers=["127.0.0.1"], port=port))
            return await ZonePinger(node, zones, timeout=0.5).check(zone)
        finally:
            server.close()

    status = asyncio.run(run())
    assert status.reason == "timeout" and "no TCP connection and TLS handshake" in status.detail


def test_unreachable_name(node: Node, zones: Zones) -> None:
    zone = zones.add("nb", peers=["peer.invalid"])
    status = check(node, zones, zone)
    assert status.reason == "unreachable" and "'peer.invalid' cannot be resolved" in status.detail


def test_any_final_response_counts_as_alive(
    node: Node, zones: Zones, pki: Pki, tmp_path: Path
) -> None:
    def not_found(request: Message) -> bytes:
        trying = (
            b"SIP/2.0 100 Trying\r\n" + build_response(request, 100, "Trying").split(b"\r\n", 1)[1]
        )
        return trying + build_response(request, 404, "Not Found")

    cert = peer_cert(pki.int_issuer)
    status, _ = ping_peer(
        node, zones, tmp_path, cert, (pki.intermediate,), trust=pki, answer=not_found
    )
    assert status.state == "Active" and status.peers[0].response == "404 Not Found"


def test_garbage_answer_is_refused(node: Node, zones: Zones, pki: Pki, tmp_path: Path) -> None:
    cert = peer_cert(pki.int_issuer)
    status, _ = ping_peer(
        node,
        zones,
        tmp_path,
        cert,
        (pki.intermediate,),
        trust=pki,
        answer=lambda _r: b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
    )
    assert status.reason == "refused" and "not valid SIP" in status.detail


def test_one_good_peer_keeps_the_zone_active_with_a_warning_alarm(
    node: Node, zones: Zones, pki: Pki, tmp_path: Path
) -> None:
    cert = peer_cert(pki.int_issuer, ips=("127.0.0.1", "127.0.0.2"))

    async def run() -> ZoneStatus:
        async with sip_peer(tmp_path, cert, (pki.intermediate,), trust=pki) as peer:
            zone = await asyncio.to_thread(
                lambda: zones.add("nb", peers=["127.0.0.1", "peer.invalid"], port=peer.port)
            )
            return await ZonePinger(node, zones).check(zone)

    status = asyncio.run(run())
    assert status.state == "Active"
    assert [p.state for p in status.peers] == ["Active", "Failed"]
    (alarm,) = alarms_for_zones(node.store)
    assert alarm.id == "zone:nb:peer.invalid" and alarm.severity == "warning"
    zones.remove("nb")
    assert alarms_for_zones(node.store) == []


def test_a_check_of_a_redefined_zone_is_not_recorded(node: Node, zones: Zones) -> None:
    old = zones.add("nb", peers=["peer.invalid"])
    zones.remove("nb")
    zones.add("nb", peers=["other.invalid"])
    stale = ZoneStatus.of("nb", [])
    assert zones.record(old, stale) is None
    assert zones.status("nb").state == "Unknown"


def test_run_pinger_checks_due_zones_until_stopped(
    node: Node, zones: Zones, clock: FixedClock
) -> None:
    zones.add("a", peers=["a.invalid"], interval=30)
    zones.add("b", peers=["b.invalid"], interval=60)

    async def run() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(run_pinger(node, zones, stop, tick=0.05, timeout=1))
        await _until(lambda: all(s.checked_at for s in zones.statuses().values()))
        assert zones.due() == []
        clock.advance(dt.timedelta(seconds=30))
        assert [z.name for z in zones.due()] == ["a"]
        first = zones.status("b").checked_at
        await _until(lambda: zones.status("a").checked_at == clock.now())
        assert zones.status("b").checked_at == first
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(run())
    assert zones.status("a").reason == "unreachable"


async def _until(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await asyncio.to_thread(condition):
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def test_options_request_is_valid_sip() -> None:
    data, call_id = options_request(
        "2001:db8::1", 5061, local=("2001:db8::2", 40000), from_host="vcs.example.com"
    )
    (message,) = SipFramer().feed(data)
    assert isinstance(message, Message)
    assert message.uri == "sip:[2001:db8::1]:5061;transport=tls"
    assert message.header("Call-ID") == call_id and call_id.endswith("@vcs.example.com")
    assert (message.header("Via") or "").startswith(
        "SIP/2.0/TLS [2001:db8::2]:40000;branch=z9hG4bK"
    )
    assert message.header("Content-Length") == "0"


# -- definitions -------------------------------------------------------------------------------
def test_add_checks_every_value(zones: Zones) -> None:
    cases: list[tuple[dict[str, object], str]] = [
        ({"name": "bad name", "peers": ["a.example"]}, "zone name"),
        ({"name": "z", "peers": []}, "at least one peer"),
        ({"name": "z", "peers": ["a.example:5061"]}, "has a port"),
        ({"name": "z", "peers": ["sip:a.example"]}, "is a URI"),
        ({"name": "z", "peers": ["*.example.com"]}, "wildcards"),
        ({"name": "z", "peers": ["bad_host!"]}, "neither an IP address nor a valid DNS name"),
        ({"name": "z", "peers": ["300.1.2.3"]}, "not a valid IP address"),
        ({"name": "z", "peers": ["a.example"], "port": 0}, "port 0"),
        ({"name": "z", "peers": ["a.example"], "interval": 1}, "interval 1 s"),
        (
            {"name": "z", "peers": ["a.example"], "tls_verify": False, "verify_subject": "x.org"},
            "only used with TLS verify mode on",
        ),
        ({"name": "z", "peers": [f"p{i}.example" for i in range(7)]}, "at most 6"),
    ]
    for kwargs, message in cases:
        with pytest.raises(PolicyViolation, match=message):
            zones.add(**kwargs)  # type: ignore[arg-type]
    assert zones.entries() == []


def test_add_normalises_and_audits(node: Node, zones: Zones) -> None:
    zone = zones.add("uk-core", peers=["SIP.Example.COM.", "[::1]", "::1", "10.0.0.1"], port=5062)
    assert zone.peers == ("sip.example.com", "::1", "10.0.0.1") and zone.tls_verify
    assert zones.get("uk-core") == zone and zones.entries() == [zone]
    with pytest.raises(Conflict, match="already exists"):
        zones.add("uk-core", peers=["a.example"])
    zones.remove("uk-core")
    with pytest.raises(NotFound, match="no zone named 'uk-core'"):
        zones.remove("uk-core")
    actions = [(e.action, e.target, e.outcome) for e in node.audit.entries()]
    assert ("zone.add", "uk-core", "ok") in actions
    assert ("zone.add", "uk-core", "refused") in actions
    assert ("zone.remove", "uk-core", "ok") in actions
    assert ("zone.remove", "uk-core", "refused") in actions


# -- the CLI -----------------------------------------------------------------------------------
Invoke = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(node: Node, tmp_path: Path) -> Invoke:
    """``certway`` on the node's data directory: (exit code, stdout, stderr)."""
    cli = Cli(tmp_path / "d")

    def invoke(*args: str) -> tuple[int, str, str]:
        result = cli(*args)
        return result.exit_code, result.stdout, result.stderr

    return invoke


def test_cli_add_list_show_check_remove(run: Invoke) -> None:
    code, stdout, _ = run("zone", "list")
    assert code == 0 and "no zones defined" in stdout
    with contextlib.closing(socket.socket()) as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        port = str(closed.getsockname()[1])
        code, stdout, _ = run(
            "zone", "add", "nb", "--peer", "peer.invalid", "--peer", "127.0.0.1",
            "--port", port, "--interval", "60",
        )  # fmt: skip
        assert code == 0, stdout
        assert (
            f"added zone nb: peer.invalid, 127.0.0.1 port {port}, TLS verify on, every 60 s"
            in stdout
        )
        code, stdout, _ = run("zone", "show", "nb")
        assert "status:          Unknown" in stdout and "last check:      never" in stdout
        code, stdout, _ = run("zone", "list", "--json")
        (listed,) = json.loads(stdout)
        assert listed["peers"] == ["peer.invalid", "127.0.0.1"] and listed["tls_verify"] == "on"
        assert listed["status"]["state"] == "Unknown"
        code, stdout, stderr = run("zone", "check", "nb", "--timeout", "2")
    assert code == 1 and "status:          Failed" in stdout
    assert "zone failed: unreachable" in stderr
    code, stdout, _ = run("zone", "show", "nb", "--json")
    shown = json.loads(stdout)["status"]
    assert shown["state"] == "Failed" and shown["reason"] == "unreachable"
    assert shown["checked_at"] is not None
    assert [(p["address"], p["reason"]) for p in shown["peers"]] == [
        ("peer.invalid", "unreachable"),
        ("127.0.0.1", "refused"),
    ]
    code, stdout, _ = run("zone", "list")
    assert "Failed" in stdout and "unreachable" in stdout
    code, stdout, _ = run("zone", "remove", "nb")
    assert code == 0 and "removed zone nb" in stdout


def test_cli_errors_are_one_red_line(run: Invoke) -> None:
    code, _, stderr = run("zone", "add", "nb", "--peer", "a.example:5061")
    assert code == 2 and "error: peer 'a.example:5061' has a port" in stderr
    code, _, stderr = run("zone", "add", "nb", "--peer", "a.example", "--tls-verify", "maybe")
    assert code == 2 and "--tls-verify must be on or off" in stderr
    code, _, stderr = run("zone", "show", "nope")
    assert code == 2 and "no zone named 'nope'" in stderr
    code, _, stderr = run("zone", "check", "nope")
    assert code == 2 and "no zone named 'nope'" in stderr
