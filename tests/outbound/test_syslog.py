"""Remote syslog: RFC 5424 messages, destinations, and delivery to a real rsyslogd over
TLS (RFC 5425), TCP and UDP, in order after an outage and after a restart of certway; an
untrusted receiver gets nothing and raises an alarm."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
import re
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certway.clock import SystemClock
from certway.errors import NotFound, PolicyViolation
from certway.outbound.syslog import DeliveryError, SyslogSender, send_test
from certway.services.alarms import AlarmKind
from certway.services.audit import SYSTEM, Actor, acting_as, current_actor
from certway.services.node import Node
from certway.services.syslog import Transport, format_message, frame, parse_address
from waiting import wait_for

from pkitools import Pki
from syslog_receiver import Rsyslog, free_port, rsyslog

HEADER = re.compile(
    r"^<(\d{1,3})>1 (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) (\S+) certway (\d+) (\S+) "
    r"\[certway@32473( [!-~]{1,32}=\"(?:[^\"\\\]]|\\[\"\\\]])*\")*\] \ufeff(.*)$",
    re.S,
)


# -- messages and settings (no receiver) --------------------------------------------------------
def test_messages_are_rfc5424_with_escaped_structured_data() -> None:
    at = dt.datetime(2026, 12, 3, 14, 0, 0, 123456, tzinfo=dt.UTC)
    message = format_message(
        at=at,
        hostname="edge.example.com",
        facility=13,
        severity=5,
        msgid="ca.revoke",
        params={"target": 'a "quoted" ] \\ value', "bad name=": "x"},
        text="revoked ✓",
    )
    found = HEADER.match(message.decode())
    assert found, message
    assert found.group(1) == str(13 * 8 + 5)
    assert found.group(2) == "2026-12-03T14:00:00.123456Z"
    assert found.group(5) == "ca.revoke"
    assert 'target="a \\"quoted\\" \\] \\\\ value"' in message.decode()
    assert 'badname="x"' in message.decode()
    assert found.group(7) == "revoked ✓"
    assert frame(b"abc") == b"3 abc"
    assert frame(message).startswith(str(len(message)).encode() + b" <")


@pytest.mark.parametrize(
    ("text", "transport", "expected"),
    [
        ("logs.example.com", Transport.TLS, ("logs.example.com", 6514)),
        ("logs.example.com:10514", Transport.TCP, ("logs.example.com", 10514)),
        ("192.0.2.7", Transport.UDP, ("192.0.2.7", 514)),
        ("[2001:db8::1]:6514", Transport.TLS, ("2001:db8::1", 6514)),
    ],
)
def test_addresses(text: str, transport: Transport, expected: tuple[str, int]) -> None:
    assert parse_address(text, transport) == expected


@pytest.mark.parametrize("text", ["logs example.com", "host:0", "host:99999", "host:x", "[::1]x"])
def test_bad_addresses_are_refused(text: str) -> None:
    with pytest.raises(PolicyViolation):
        parse_address(text, Transport.TLS)


def test_the_senders_thread_acts_as_the_system(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sender's thread (started by certway serve) starts with no actor of its own: what
    it does is the system's, not the local OS user's."""
    node = Node.init(tmp_path / "d", factory=False)
    sender = SyslogSender(node, interval=0.05)
    seen: list[Actor] = []
    monkeypatch.setattr(sender, "pass_once", lambda: seen.append(current_actor()))
    try:
        sender.start()
        wait_for(lambda: seen, "a pass of the sender")
    finally:
        sender.stop()
        node.close()
    assert seen[0] == SYSTEM


def test_destinations_are_audited_and_bad_ones_change_nothing(tmp_path: Path) -> None:
    node = Node.init(tmp_path / "d", factory=False)
    try:
        node.syslog.add("127.0.0.1:6514")
        with pytest.raises(PolicyViolation, match="already a syslog destination"):
            node.syslog.add("127.0.0.1:6514", transport="tcp")
        with pytest.raises(PolicyViolation, match="not one of tls, tcp, udp"):
            node.syslog.add("127.0.0.1:7514", transport="relp")
        with pytest.raises(NotFound, match=r"no syslog destination 10\.0\.0\.1:514"):
            node.syslog.remove("10.0.0.1:514")
        assert [d.address for d in node.syslog.destinations()] == ["127.0.0.1:6514"]
        node.syslog.remove("127.0.0.1:6514")
        assert node.syslog.destinations() == []
        actions = [(e.action, e.outcome) for e in node.audit.entries()]
        assert ("syslog.add", "ok") in actions and ("syslog.remove", "ok") in actions
    finally:
        node.close()


# -- delivery to rsyslogd -------------------------------------------------------------------------
@pytest.fixture
def pki() -> Pki:
    return Pki("Syslog", at=dt.datetime.now(dt.UTC), index=40)


def receiver_cert(pki: Pki) -> x509.Certificate:
    """The receiver's certificate, naming 127.0.0.1 (what the destination says)."""
    return pki.leaf(
        "127.0.0.1",
        alt_names=[x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
        issuer=pki.root_issuer,
    )


def tls_receiver(
    tmp_path: Path, pki: Pki, port: int | None = None
) -> AbstractContextManager[Rsyslog]:
    return rsyslog(
        tmp_path / "rsyslog",
        transport="tls",
        port=port,
        cert=receiver_cert(pki),
        key=pki.leaf_key,
        ca=pki.root,
    )


@pytest.fixture
def node(tmp_path: Path, pki: Pki) -> Iterator[Node]:
    node = Node.init(tmp_path / "node", SystemClock())
    node.trusted_cas.add(pki.root.public_bytes(serialization.Encoding.PEM))
    yield node
    node.close()


@contextmanager
def sending(node: Node) -> Iterator[SyslogSender]:
    sender = SyslogSender(node, retry=0.1, interval=0.05)
    certway_log = logging.getLogger("certway")
    certway_log.addHandler(sender.events)
    sender.start()
    try:
        yield sender
    finally:
        sender.stop()
        certway_log.removeHandler(sender.events)


def changes(node: Node, count: int, start: int = 0) -> list[str]:
    """``count`` audited changes (zones added), in order; their targets."""
    names = [f"zone-{i:03d}" for i in range(start, start + count)]
    with acting_as(Actor("alice", "cli")):
        for name in names:
            node.zones.add(name, peers=["192.0.2.10"])
    return names


def zone_targets(server: Rsyslog) -> list[str]:
    found = []
    for line in server.messages("zone.add"):
        match = re.search(r'target="([^"]+)"', line)
        if match:
            found.append(match.group(1))
    return found


@pytest.mark.interop
def test_audit_events_and_alarms_reach_rsyslog_over_tls_as_rfc5424(
    tmp_path: Path, node: Node, pki: Pki
) -> None:
    with tls_receiver(tmp_path, pki) as server, sending(node):
        node.syslog.add(f"127.0.0.1:{server.port}")
        names = changes(node, 3)
        logging.getLogger("certway.sip").warning(
            "event=sip-refused peer=%s reason=%s detail=%r",
            "192.0.2.9:5061",
            "untrusted",
            "certificate CN=Mallory: not issued by a trusted CA",
        )
        wait_for(lambda: zone_targets(server) == names, "three audit messages in order")
        wait_for(lambda: server.messages("sip-refused"), "the refusal")
    (added,) = server.messages("syslog.add")
    assert f"|{node.settings.get().fqdn}|certway|" in added
    first = server.messages("zone.add")[0]
    assert 'actor="alice"' in first and 'outcome="ok"' in first and 'via="cli"' in first
    assert f"|{13 * 8 + 5}|" in first  # log audit, notice
    (refused,) = server.messages("sip-refused")
    assert 'reason="untrusted"' in refused
    assert 'detail="certificate CN=Mallory: not issued by a trusted CA"' in refused
    assert f"|{4 * 8 + 4}|" in refused  # security, warning
    assert node.syslog.status()[0][1].queued == 0


@pytest.mark.interop
def test_an_outage_and_a_restart_lose_nothing_and_keep_the_order(
    tmp_path: Path, node: Node, pki: Pki
) -> None:
    port = free_port()
    node.syslog.add(f"127.0.0.1:{port}")
    with sending(node):
        names = changes(node, 5)
        wait_for(lambda: node.syslog.status()[0][1].error is not None, "the delivery failure")
        alarms = [a for a in node.alarms.current() if a.id.startswith(f"{AlarmKind.SYSLOG}:")]
        assert len(alarms) == 1 and "cannot take messages" in alarms[0].text
        assert "waiting" in alarms[0].text
    # certway stops with the messages on disk; it starts again (a new node object, the same
    # data directory) while more changes are made, and the receiver comes up.
    node.close()
    again = Node.open(tmp_path / "node", SystemClock())
    try:
        names += changes(again, 5, start=5)
        with tls_receiver(tmp_path, pki, port=port) as server, sending(again):
            wait_for(lambda: zone_targets(server) == names, "ten audit messages in order")
            wait_for(lambda: again.syslog.status()[0][1].error is None, "the error cleared")
        assert [a for a in again.alarms.current() if a.id.startswith(f"{AlarmKind.SYSLOG}:")] == []
    finally:
        again.close()


@pytest.mark.interop
def test_an_untrusted_receiver_gets_nothing_and_raises_an_alarm(tmp_path: Path, node: Node) -> None:
    stranger = Pki("Stranger", at=dt.datetime.now(dt.UTC), index=50)
    with tls_receiver(tmp_path, stranger) as server, sending(node):
        node.syslog.add(f"127.0.0.1:{server.port}")
        changes(node, 2)
        wait_for(lambda: node.syslog.status()[0][1].error is not None, "the refusal")
        state = node.syslog.status()[0][1]
        assert "certificate" in (state.error or "") and "refused" in (state.error or "")
        assert state.queued >= 2
        (alarm,) = [a for a in node.alarms.current() if a.id.startswith(f"{AlarmKind.SYSLOG}:")]
        assert "refused" in alarm.text
        with pytest.raises(DeliveryError, match="refused"):
            send_test(node, node.syslog.destinations()[0])
    assert server.lines() == []


@pytest.mark.interop
def test_a_receiver_presenting_its_intermediate_is_accepted_with_the_root_trusted(
    tmp_path: Path, node: Node, pki: Pki
) -> None:
    """The node trusts the root alone; the receiver's certificate comes from the issuing CA,
    which the receiver presents after it: the chain it sent leads to the trusted root."""
    leaf = pki.leaf("127.0.0.1", alt_names=[x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    with rsyslog(
        tmp_path / "rsyslog",
        cert=leaf,
        key=pki.leaf_key,
        ca=pki.root,
        chain=[pki.intermediate],
    ) as server:
        send_test(node, node.syslog.add(f"127.0.0.1:{server.port}"))
        wait_for(lambda: server.messages("syslog-test"), "the test message")
    # without the intermediate the same receiver is refused: the path came from what it sent
    with rsyslog(tmp_path / "leaf-only", cert=leaf, key=pki.leaf_key, ca=pki.root) as alone:
        destination = node.syslog.add(f"127.0.0.1:{alone.port}")
        with pytest.raises(DeliveryError, match="CN=Syslog Issuing is not in the trusted CA"):
            send_test(node, destination)
    assert alone.lines() == []


@pytest.mark.interop
def test_a_receiver_presenting_its_own_root_is_still_untrusted(tmp_path: Path, node: Node) -> None:
    """What a receiver presents never becomes a trust anchor: its own self-signed root sent
    with its intermediate does not make it trusted."""
    stranger = Pki("Stranger", at=dt.datetime.now(dt.UTC), index=50)
    leaf = stranger.leaf("127.0.0.1", alt_names=[x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    with rsyslog(
        tmp_path / "rsyslog",
        cert=leaf,
        key=stranger.leaf_key,
        ca=stranger.root,
        chain=[stranger.intermediate, stranger.root],
    ) as server:
        destination = node.syslog.add(f"127.0.0.1:{server.port}")
        with pytest.raises(
            DeliveryError,
            match="the chain ends at CN=Stranger Root, whose issuer CN=Stranger Root is not in",
        ):
            send_test(node, destination)
    assert server.lines() == []


@pytest.mark.interop
def test_verify_off_sends_to_an_untrusted_receiver(tmp_path: Path, node: Node) -> None:
    stranger = Pki("Stranger", at=dt.datetime.now(dt.UTC), index=50)
    with tls_receiver(tmp_path, stranger) as server:
        node.syslog.add(f"127.0.0.1:{server.port}", verify=False)
        send_test(node, node.syslog.destinations()[0])
        wait_for(lambda: server.messages("syslog-test"), "the test message")


@pytest.mark.interop
@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_plain_tcp_and_udp(tmp_path: Path, node: Node, transport: str) -> None:
    with rsyslog(tmp_path / "rsyslog", transport=transport) as server, sending(node):
        node.syslog.add(f"127.0.0.1:{server.port}", transport=transport)
        names = changes(node, 3)
        wait_for(lambda: zone_targets(server) == names, f"three audit messages over {transport}")


@pytest.mark.interop
def test_certway_serve_forwards_a_refused_login_and_the_change_it_audits(
    tmp_path: Path, node: Node, pki: Pki
) -> None:
    """The whole product: ``certway serve`` runs the sender; a failed login at the admin
    listener (a warning with its reason) and its audit entry reach rsyslog."""
    import httpx

    from serving import running

    node.admins.add("alice", "read-write", "a-long-password")
    with tls_receiver(tmp_path, pki) as server:
        node.syslog.add(f"127.0.0.1:{server.port}")
        with running(node, publish=False, sip=False) as serve:
            url = f"https://127.0.0.1:{serve.admin_port}/api/v1/status"
            answer = httpx.get(url, auth=("alice", "Hunter2-secret"), verify=False)  # noqa: S501 (temporary cert)
            assert answer.status_code == 401
            wait_for(lambda: server.messages("login-failed"), "the failed login")
            wait_for(lambda: server.messages("admin.login"), "its audit entry")
    (failed,) = server.messages("login-failed")
    assert "account=\"'alice'\"" in failed or 'account="alice"' in failed
    (audited,) = server.messages("admin.login")
    assert 'outcome="refused"' in audited and 'target="alice"' in audited
    assert "Hunter2-secret" not in "".join(server.lines())


@pytest.mark.interop
def test_cli_add_list_test_remove(tmp_path: Path, pki: Pki) -> None:
    from conftest import Cli

    cli = Cli(tmp_path / "data")
    cli.ok("init")
    with rsyslog(tmp_path / "rsyslog", transport="tcp") as server:
        added = cli.ok("syslog", "add", f"127.0.0.1:{server.port}", "--transport", "tcp")
        assert "over tcp (not encrypted)" in added.stdout
        listed = json.loads(cli.ok("syslog", "list", "--json").stdout)
        assert listed == [
            {
                "address": f"127.0.0.1:{server.port}",
                "host": "127.0.0.1",
                "port": server.port,
                "transport": "tcp",
                "verify": "off",
                "queued": 0,
                "sent": 0,
                "dropped": 0,
                "error": None,
                "error_since": None,
            }
        ]
        assert "test message sent" in cli.ok("syslog", "test").stdout
        wait_for(lambda: server.messages("syslog-test"), "the test message")
    failed = cli("syslog", "test")  # the receiver is gone
    assert failed.exit_code == 1 and "cannot connect" in failed.stderr
    bad = cli("syslog", "add", "not a host")
    assert bad.exit_code == 2 and "neither" not in bad.stdout
    assert "not a valid DNS name" in bad.stderr
    cli.ok("syslog", "remove", f"127.0.0.1:{server.port}")
    assert "no syslog destination" in cli.ok("syslog", "list").stdout


@pytest.mark.interop
def test_api_and_ui(tmp_path: Path, node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    import base64
    import html

    from argon2 import PasswordHasher
    from fastapi.testclient import TestClient

    from certway.web.app import create_admin_app

    monkeypatch.setattr(
        "certway.services.admins._HASHER", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    )
    node.admins.add("alice", "read-write", "a-long-password")
    node.admins.add("bob", "read-only", "a-long-password")

    def auth(user: str) -> dict[str, str]:
        token = base64.b64encode(f"{user}:a-long-password".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    client = TestClient(create_admin_app(node, secure_cookies=False))
    with rsyslog(tmp_path / "rsyslog", transport="tcp") as server:
        body = {"address": f"127.0.0.1:{server.port}", "transport": "tcp"}
        assert client.post("/api/v1/syslog", json=body, headers=auth("bob")).status_code == 403
        added = client.post("/api/v1/syslog", json=body, headers=auth("alice"))
        assert added.status_code == 201, added.text
        assert added.json()["verify"] == "off" and added.json()["queued"] == 0
        tested = client.post("/api/v1/syslog/test", headers=auth("alice")).json()
        assert tested == [{"address": body["address"], "ok": True, "error": None}]
        wait_for(lambda: server.messages("syslog-test"), "the test message")
        listed = client.get("/api/v1/syslog", headers=auth("bob")).json()
        assert [d["address"] for d in listed] == [body["address"]]
    # the UI: a removal needs its confirmation
    login = client.post("/login", data={"user": "alice", "password": "a-long-password"})
    assert login.status_code == 200

    def post(path: str, data: dict[str, str]) -> str:
        found = re.search(r'name="csrf" value="([^"]+)"', client.get("/syslog").text)
        assert found
        return html.unescape(client.post(path, data={"csrf": found.group(1), **data}).text)

    page = post("/syslog/remove", {"address": body["address"]})
    assert "Remove the syslog receiver" in page  # the confirmation page, nothing removed yet
    assert node.syslog.destinations() != []
    assert "removed syslog receiver" in post(
        "/syslog/remove", {"address": body["address"], "confirmed": "yes"}
    )
    assert "added syslog receiver 127.0.0.1:6514 over tls" in post(
        "/syslog", {"address": "127.0.0.1", "transport": "tls"}
    )
