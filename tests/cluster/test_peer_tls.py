"""Peers authenticate each other with their server certificates: each calls the other's
mutual-TLS health endpoint; ``permissive`` reports a certificate that fails, ``enforce``
refuses it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from certway.errors import PolicyViolation
from certway.pki.csr import CsrForm, build_csr
from certway.pki.keys import private_key_pem
from certway.pki.text import serial_hex
from certway.services.node import Node
from certway.tls.peer_check import check_peer

from conftest import test_key
from serving import running

A, B = "a.example.test", "b.example.test"


def give_server_cert(node: Node, ca: Node, fqdn: str, index: int) -> int:
    """``ca``'s lab CA signs ``node``'s server certificate for ``fqdn``; its serial."""
    key = test_key("ec:p256", index)
    csr = build_csr(key, CsrForm(common_name=fqdn, additional_names=(fqdn,)))[0]
    signed = ca.local_ca.sign(
        "lab", csr.public_bytes(serialization.Encoding.PEM), profile="server-client"
    )
    node.identities.upload("server", "", signed.pem(with_chain=True), key_data=private_key_pem(key))
    return signed.certificate.serial_number


@pytest.fixture
def peers(tmp_path: Path) -> Iterator[tuple[Node, Node]]:
    a = Node.init(tmp_path / "a", fqdn=A)
    b = Node.init(tmp_path / "b", fqdn=B)
    a.local_ca.create_root("lab", "/CN=Cluster Lab Root")
    root = a.local_ca.certificate("lab").public_bytes(serialization.Encoding.PEM)
    for node in (a, b):
        node.trusted_cas.add(root)
    yield a, b
    a.close()
    b.close()


def test_peers_with_trusted_certificates_pass_both_ways(peers: tuple[Node, Node]) -> None:
    a, b = peers
    give_server_cert(a, a, A, 11)
    give_server_cert(b, a, B, 12)
    a.cluster_tls.set_verification("enforce")
    with running(a, sip=False, publish=False) as server:
        result = check_peer(b, A, f"127.0.0.1:{server.admin_port}")
    assert result.valid and not result.refused, result.reason


def test_a_peer_with_the_wrong_name_or_a_revoked_certificate_fails(
    peers: tuple[Node, Node],
) -> None:
    a, b = peers
    serial = give_server_cert(a, a, A, 11)
    give_server_cert(b, a, B, 12)
    with running(a, sip=False, publish=False) as server:
        address = f"127.0.0.1:{server.admin_port}"
        wrong = check_peer(b, "c.example.test", address)
        assert not wrong.valid and "c.example.test" in wrong.reason
        a.local_ca.revoke("lab", serial_hex(serial))
        # b holds a's CRL only through the lab CA's records, which b does not share here:
        # b's own view (a second node of the same cluster would share the database)
        b.revocation.upload_manual(a.local_ca.current_crl("lab").der)
        revoked = check_peer(b, A, address)
    assert not revoked.valid and "revoked" in revoked.reason.lower()


def test_permissive_reports_and_enforce_refuses_an_untrusted_peer(
    peers: tuple[Node, Node],
) -> None:
    a, b = peers
    give_server_cert(a, a, A, 11)  # b keeps its temporary certificate: a does not trust it
    with running(a, sip=False, publish=False) as server:
        address = f"127.0.0.1:{server.admin_port}"
        permissive = check_peer(b, A, address)
        assert permissive.valid and not permissive.refused  # a's certificate is fine for b
        a.cluster_tls.set_verification("enforce")
        enforced = check_peer(b, A, address)
    assert enforced.refused and "refused this node's certificate" in enforced.reason
    assert "enforced" in enforced.reason


def test_a_peer_that_does_not_answer_is_reported(peers: tuple[Node, Node]) -> None:
    _a, b = peers
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nobody listens
    result = check_peer(b, A, f"127.0.0.1:{port}", timeout=2)
    assert result.refused and not result.valid and "cannot reach" in result.reason


def test_verification_is_permissive_or_enforce(peers: tuple[Node, Node]) -> None:
    a, _b = peers
    assert a.cluster_tls.verification() == "permissive"
    with pytest.raises(PolicyViolation, match="permissive or enforce"):
        a.cluster_tls.set_verification("strict")
    assert a.cluster_tls.verification() == "permissive"


def test_a_peer_whose_certificate_fails_raises_an_alarm_until_it_passes(
    peers: tuple[Node, Node],
) -> None:
    import datetime as dt

    from certway.services.cluster_tls import PeerTlsResult
    from certway.store.repositories import PeerRepository

    a, _b = peers
    with a.store.transaction() as session:
        other = PeerRepository(session).add(B, dt.datetime.now(dt.UTC))
    at = a.clock.now()
    a.cluster_tls.record(other, PeerTlsResult(B, "127.0.0.1:1", False, "expired", at))
    alarms = {alarm.id: alarm for alarm in a.alarms.current()}
    assert f"peer-tls:{B}" in alarms and "expired" in alarms[f"peer-tls:{B}"].text
    a.cluster_tls.record(other, PeerTlsResult(B, "127.0.0.1:1", True, "valid", at))
    assert f"peer-tls:{B}" not in {alarm.id for alarm in a.alarms.current()}
