"""Three peers — separate ``certway serve`` processes with their own ports — on one
PostgreSQL database, driven through their command lines and APIs: a revocation, a trusted-CA
change and a setting change made on one peer reach the listeners of the others; the peers
check each other's server certificates.

The waits are bounded safety nets, not measurements (bench/bench_cluster.py measures).
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from certway.pki.csr import CsrForm, build_csr
from certway.pki.keys import private_key_pem
from certway.pki.text import serial_hex
from certway.services.node import Node
from certway.store.vault import load_master_key
from peers import Peer
from waiting import wait_for

from conftest import test_key

pytestmark = pytest.mark.slow

PASSWORD = "a long cluster password"


@dataclass
class ClientCert:
    cert: Path
    key: Path
    serial: int


@dataclass
class Cluster:
    dirs: list[Path]
    peers: list[Peer]
    alice: ClientCert  # issued by the local CA "lab"
    bob: ClientCert  # issued by the local CA "other"
    other_fingerprint: str


def cli(data_dir: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", "from certway.cli.main import main; main()",
         "--data-dir", str(data_dir), *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout


def client_cert(node: Node, ca: str, cn: str, index: int, where: Path) -> ClientCert:
    key = test_key("ec:p256", index)
    csr = build_csr(key, CsrForm(common_name=cn))[0]
    signed = node.local_ca.sign(ca, csr.public_bytes(serialization.Encoding.PEM), profile="client")
    cert, key_file = where / f"{cn}.pem", where / f"{cn}.key"
    cert.write_bytes(signed.pem(with_chain=True))
    key_file.write_bytes(private_key_pem(key))
    return ClientCert(cert, key_file, signed.certificate.serial_number)


def status(peer: Peer, who: ClientCert, *, max_tls: ssl.TLSVersion | None = None) -> int:
    """The admin API's answer to ``who`` on ``peer`` (0: the handshake was refused)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.load_cert_chain(str(who.cert), str(who.key))
    if max_tls is not None:
        context.maximum_version = max_tls
    try:
        with httpx.Client(verify=context, timeout=10, auth=("admin", PASSWORD)) as client:
            return client.get(peer.url("/api/v1/status")).status_code
    except httpx.ConnectError:
        return 0


@pytest.fixture
def cluster(tmp_path: Path, pg_url: str) -> Iterator[Cluster]:
    dirs = [tmp_path / f"p{i}" for i in range(3)]
    first = Node.init(dirs[0], database=pg_url, fqdn="p0.example.test")
    try:
        first.admins.add("admin", "read-write", PASSWORD)
        first.local_ca.create_root("lab", "/CN=Cluster Lab Root")
        first.local_ca.create_root("other", "/CN=Cluster Other Root")
        for name in ("lab", "other"):
            first.trusted_cas.add(
                first.local_ca.certificate(name).public_bytes(serialization.Encoding.PEM)
            )
        alice = client_cert(first, "lab", "alice", 41, tmp_path)
        bob = client_cert(first, "other", "bob", 42, tmp_path)
        fingerprint = next(
            e.fingerprint for e in first.trusted_cas.entries() if e.subject.endswith("Other Root")
        )
        first.admin_security.set(mode="certificate-validation")
    finally:
        first.close()
    key = load_master_key(dirs[0])
    for i in (1, 2):
        Node.init(dirs[i], database=pg_url, join_key=key, fqdn=f"p{i}.example.test").close()
    peers = [Peer(d, "--peer-check-interval", "1") for d in dirs]
    try:
        for peer in peers:
            peer.wait_listening()
        yield Cluster(dirs, peers, alice, bob, fingerprint)
    finally:
        for peer in peers:
            peer.stop()


def test_a_change_on_one_peer_reaches_the_listeners_of_all(cluster: Cluster) -> None:
    peers = cluster.peers
    for peer in peers:
        wait_for(lambda p=peer: status(p, cluster.alice) == 200, f"alice on {peer.admin}", 60)
        assert status(peer, cluster.bob) == 200
    # a revocation on peer 0 (command line): every peer's admin listener refuses alice
    cli(
        cluster.dirs[0], "ca", "revoke", "--ca", "lab", "--serial", serial_hex(cluster.alice.serial)
    )
    for peer in peers:
        wait_for(lambda p=peer: status(p, cluster.alice) == 403, "alice refused everywhere", 30)
    # a trusted CA removed on peer 1 (API): every peer refuses bob, whose CA it was
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.load_cert_chain(str(cluster.bob.cert), str(cluster.bob.key))
    with httpx.Client(verify=context, timeout=30, auth=("admin", PASSWORD)) as client:
        removed = client.delete(peers[1].url(f"/api/v1/trusted-cas/{cluster.other_fingerprint}"))
    assert removed.status_code == 200, removed.text
    for peer in peers:
        wait_for(lambda p=peer: status(p, cluster.bob) == 403, "bob refused everywhere", 30)
    # a setting on peer 2 (command line): the admin listeners of all take TLS 1.3 only
    # (alice's certificate is refused by the API, after a handshake that completes: 403)
    for peer in peers:
        assert status(peer, cluster.alice, max_tls=ssl.TLSVersion.TLSv1_2) == 403
    cli(cluster.dirs[2], "tls", "set", "--service", "admin-https", "--profile", "modern")
    for peer in peers:
        wait_for(
            lambda p=peer: status(p, cluster.alice, max_tls=ssl.TLSVersion.TLSv1_2) == 0,
            "TLS 1.2 refused everywhere",
            30,
        )
        assert "event=reload what=tls-contexts" in peer.log


def test_peers_check_each_others_server_certificates(cluster: Cluster) -> None:
    def results() -> dict[str, dict[str, object]]:
        node = Node.open(cluster.dirs[0])
        try:
            from certway.store.repositories import PeerRepository

            with node.store.reading() as session:
                return {
                    row.fqdn: json.loads(row.tls_result)
                    for row in PeerRepository(session).all()
                    if row.tls_result
                }
        finally:
            node.close()

    wait_for(lambda: len(results()) == 3, "every peer checked by another", 60)
    for fqdn, result in results().items():
        assert result["valid"] and not result["refused"], (fqdn, result)
    shown = cli(cluster.dirs[1], "cluster", "status")
    assert shown.count("verified") == 3, shown
