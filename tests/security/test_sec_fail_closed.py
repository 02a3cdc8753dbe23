"""Fail closed: a stored SIP access rule that cannot be read, and a held CRL that no longer
verifies, must not quietly turn into "allow".

Before the fix an unreadable rule (possibly a deny rule) was dropped and the default, allow,
let the peer in; the next rule change deleted it for good. A held CRL that no longer
verified was dropped from the index without a word, so its CA had no CRL and the policy's
fallback ("not revoked" by default) accepted every certificate that CRL revoked."""

from __future__ import annotations

import asyncio
import logging
import socket
import sqlite3
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certway.clock import FixedClock
from certway.pki.csr import CsrForm, build_csr
from certway.services.node import Node
from certway.services.sip_settings import SipSettings
from certway.sip.listener import SipLimits, SipListener
from certway.store.repositories import SettingsRepository
from certway.store.topics import Topic, TopicRepository

from conftest import NOW, key_pem, test_key, write
from pkitools import Pki

PEM = serialization.Encoding.PEM
FQDN = "sip.example.com"


# -- SIP access rules --------------------------------------------------------------------------
@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node.init(tmp_path / "d", fqdn=FQDN)
    n.local_ca.create_root("sipca", "/CN=Fail Closed SIP CA")
    n.trusted_cas.add(n.local_ca.certificate("sipca").public_bytes(PEM))
    yield n
    n.close()


@pytest.fixture
def listener(node: Node) -> Iterator[SipListener]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = SipListener(
        node,
        "127.0.0.1",
        0,
        sip_settings=SipSettings(node.store, node.clock, node.audit),
        limits=SipLimits(idle_timeout=30),
    )
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(15)
    yield server
    asyncio.run_coroutine_threadsafe(server.stop(), loop).result(15)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def peer_files(node: Node, tmp_path: Path, cn: str) -> tuple[Path, Path]:
    key = test_key("ec:p256", 800)
    csr, _ = build_csr(key, CsrForm(common_name=cn))
    signed = node.local_ca.sign("sipca", csr.public_bytes(PEM), profile="client", days=30)
    return (
        write(tmp_path / f"{cn}.crt", signed.pem(with_chain=True)),
        write(tmp_path / f"{cn}.key", key_pem(key)),
    )


def options_answer(node: Node, port: int, files: tuple[Path, Path]) -> bytes:
    temporary = node.identities.temporary_ca()
    assert temporary is not None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=temporary.public_bytes(PEM).decode())
    context.load_cert_chain(*files)
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    with context.wrap_socket(raw, server_hostname=FQDN) as tls:
        request = (
            "OPTIONS sip:sip.example.com SIP/2.0\r\n"
            "Via: SIP/2.0/TLS peer.example.com:5061;branch=z9hG4bK-1\r\n"
            "From: <sip:ping@peer.example.com>;tag=f1\r\nTo: <sip:sip.example.com>\r\n"
            "Call-ID: fail-closed@peer\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
        data = b""
        try:
            tls.sendall(request.encode())
            while b"\r\n\r\n" not in data:
                chunk = tls.recv(4096)
                if not chunk:
                    break
                data += chunk
        except (ssl.SSLError, ConnectionError):
            pass
        return data


def store_raw_rules(node: Node, rules: list[Any]) -> None:
    """Write rules as a stored document holds them (as an older or newer version might)."""
    with node.store.transaction() as session:
        settings = SettingsRepository(session)
        raw = settings.get("sip")
        document = dict(raw) if isinstance(raw, dict) else {"mutual_tls": "request"}
        document["rules"] = rules
        settings.set("sip", document)
        TopicRepository(session).bump(Topic.SIP)


DENY_UNREADABLE = {
    "id": 7,
    "priority": 1,
    "type": "regex",
    "pattern": "(mallory)\\1",  # a backreference: no engine certway uses can run it
    "action": "deny",
}


def test_an_unreadable_deny_rule_refuses_every_peer_with_a_log_line_and_an_alarm(
    node: Node, listener: SipListener, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="certway.sip")
    files = peer_files(node, tmp_path, "mallory.example.com")
    assert options_answer(node, listener.port, files).startswith(b"SIP/2.0 200 OK")

    store_raw_rules(node, [DENY_UNREADABLE])
    assert listener.refresh()
    assert options_answer(node, listener.port, files) == b""  # refused, not allowed by default
    [line] = [r.getMessage() for r in caplog.records if "reason=rules-unreadable" in r.getMessage()]
    assert "event=sip-refused" in line and "rule 7" in line and "(mallory)" in line
    [alarm] = [a for a in node.alarms.current() if a.id == "sip-rule-unreadable:7"]
    assert alarm.severity == "critical" and "refuses every peer" in alarm.text

    # removing the broken rule by its id lets peers in again and clears the alarm
    node.sip.remove_rule(7)
    assert listener.refresh()
    assert options_answer(node, listener.port, files).startswith(b"SIP/2.0 200 OK")
    assert not [a for a in node.alarms.current() if a.id.startswith("sip-rule-unreadable")]


def test_a_rule_of_a_newer_version_counts_as_unreadable(node: Node) -> None:
    future = {"id": 3, "priority": 5, "type": "wildcard", "pattern": "*.x", "action": "deny"}
    store_raw_rules(node, [future, "not even a mapping"])
    config = node.sip.get()
    assert config.rules == ()
    assert [u.id for u in config.unreadable_rules] == [3, None]
    ids = {a.id for a in node.alarms.current()}
    assert {"sip-rule-unreadable:3", "sip-rule-unreadable:#2"} <= ids


def test_changing_other_rules_keeps_the_unreadable_one(node: Node) -> None:
    store_raw_rules(node, [DENY_UNREADABLE])
    added = node.sip.add_rule(priority=10, type="suffix", pattern=".example.com", action="allow")
    assert added.id == 8  # never reuses the unreadable rule's id
    config = node.sip.get()
    assert [r.id for r in config.rules] == [8]
    assert [u.raw for u in config.unreadable_rules] == [DENY_UNREADABLE]
    node.sip.set(eku_check="off")
    assert [u.raw for u in node.sip.get().unreadable_rules] == [DENY_UNREADABLE]


# -- held CRLs ---------------------------------------------------------------------------------
@pytest.fixture
def crl_node(tmp_path: Path) -> Iterator[tuple[Node, Pki]]:
    n = Node.init(tmp_path / "crl", FixedClock(NOW), fqdn="vcs.example.com")
    pki = Pki("Fail Closed", index=820)
    n.trusted_cas.add(pki.root.public_bytes(PEM) + pki.intermediate.public_bytes(PEM))
    yield n, pki
    n.close()


def held_crl_der(node: Node, issuer: str) -> bytes:
    with sqlite3.connect(node.store.data_dir / "certway.db") as db:
        [(der,)] = db.execute("SELECT crl_der FROM held_crls WHERE issuer = ?", (issuer,))
    return bytes(der)


def damage_held_crl(node: Node, issuer: str, damaged: bytes) -> None:
    """What a damaged disk, a bad restore or a hand edit would leave behind."""
    with sqlite3.connect(node.store.data_dir / "certway.db") as db:
        db.execute("UPDATE held_crls SET crl_der = ? WHERE issuer = ?", (damaged, issuer))
    with node.store.transaction() as session:
        TopicRepository(session).bump(Topic.REVOCATION)


def check(node: Node, cert: x509.Certificate) -> Any:
    return node.client_check.check(cert.public_bytes(PEM), service="sip-tls").result


@pytest.mark.parametrize("damage", ["bad-signature", "unparseable"])
def test_a_held_crl_that_no_longer_verifies_fails_closed(
    crl_node: tuple[Node, Pki], damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    node, pki = crl_node
    caplog.set_level(logging.WARNING, logger="certway.revocation")
    revoked = pki.leaf("revoked.example.com", profile="client")
    other = pki.leaf("other.example.com", profile="client")
    crl = pki.crl([(revoked, "keyCompromise")], number=1)
    node.revocation.upload_manual(crl.public_bytes(serialization.Encoding.DER))
    assert check(node, revoked).code == "revoked"
    assert check(node, other).valid

    issuer = "CN=Fail Closed Issuing"
    der = held_crl_der(node, issuer)
    damaged = der[:-1] + bytes([der[-1] ^ 1]) if damage == "bad-signature" else der[:40]
    damage_held_crl(node, issuer, damaged)

    # the revoked certificate stays refused, and so is every other one of that CA
    for cert in (revoked, other):
        result = check(node, cert)
        assert not result.valid and result.code == "revoked", result.reason
        assert "unusable" in result.reason
    assert any(
        "event=crl-unusable" in r.getMessage() and issuer in r.getMessage() for r in caplog.records
    )
    [alarm] = [a for a in node.alarms.current() if a.id.startswith("crl-unusable:")]
    assert alarm.severity == "critical" and issuer in alarm.text
    assert "count as revoked" in alarm.text

    # a usable CRL puts things right: the alarm goes, the other certificate is accepted again
    fresh = pki.crl([(revoked, "keyCompromise")], number=2)
    node.revocation.upload_manual(fresh.public_bytes(serialization.Encoding.DER))
    assert check(node, other).valid
    assert check(node, revoked).code == "revoked"
    assert not [a for a in node.alarms.current() if a.id.startswith("crl-unusable:")]
