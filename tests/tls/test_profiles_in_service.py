"""The TLS profile of each service, chosen through the node: stored with a change counter,
used live by ``certway serve``'s listeners (no restart), by outbound HTTPS and by zones;
``certway tls show/set``."""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from certway.errors import PolicyViolation
from certway.pki.csr import CsrForm, build_csr
from certway.services.identities import TEMPORARY_CA
from certway.services.node import Node
from certway.sip.zones import ZonePinger
from certway.store.topics import Topic, TopicRepository
from certway.tlsconf.policy import INTERMEDIATE, MODERN

from conftest import Cli, store_snapshot, test_key
from revocation_servers import LocalHttpServer
from serving import running

FQDN = "vcs.example.com"
PEM = serialization.Encoding.PEM


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node.init(tmp_path / "d", fqdn=FQDN)
    yield n
    n.close()


def counter(node: Node) -> int:
    with node.store.reading() as session:
        return TopicRepository(session).versions((Topic.TLS,))[0]


def test_profiles_are_stored_counted_and_audited(node: Node) -> None:
    assert node.tls.profile("sip-tls") is INTERMEDIATE
    before = counter(node)
    assert node.tls.set("sip-tls", "modern") is MODERN
    assert node.tls.profile("sip-tls") is MODERN
    assert node.tls.profile("admin-https") is INTERMEDIATE
    assert counter(node) == before + 1
    assert any(e.action == "tls.set" for e in node.audit.entries())


def test_bad_input_changes_nothing(node: Node, tmp_path: Path) -> None:
    node.tls.set("zones", "modern")
    snapshot = store_snapshot(tmp_path / "d")
    with pytest.raises(PolicyViolation, match="unknown TLS service 'smtp'"):
        node.tls.set("smtp", "modern")
    with pytest.raises(PolicyViolation, match="TLS profile must be intermediate or modern"):
        node.tls.set("zones", "old")
    assert store_snapshot(tmp_path / "d") == snapshot


def tls12_works(port: int) -> bool:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=FQDN) as tls,
        ):
            return tls.version() == "TLSv1.2"
    except (ssl.SSLError, ConnectionError):
        return False


def eventually(check: bool, predicate: object) -> bool:
    """Wait (up to 15 s: the suite runs on busy cores) until ``predicate()`` is ``check``."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if predicate() is check:  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def test_listeners_switch_profile_without_restart(node: Node) -> None:
    with running(node, publish=False) as server:
        assert tls12_works(server.admin_port) and tls12_works(server.sip_port)
        node.tls.set("admin-https", "modern")
        assert eventually(False, lambda: tls12_works(server.admin_port))
        assert tls12_works(server.sip_port)  # its own profile: still intermediate
        node.tls.set("sip-tls", "modern")
        assert eventually(False, lambda: tls12_works(server.sip_port))
        node.tls.set("admin-https", "intermediate")
        assert eventually(True, lambda: tls12_works(server.admin_port))


def test_outbound_https_uses_its_profile(node: Node, tmp_path: Path) -> None:
    """A CRL source on a TLS 1.2-only HTTPS server (its certificate from a trusted CA)."""
    key = test_key("ec:p256", 900)
    csr, _ = build_csr(key, CsrForm(common_name="crl.example.com", additional_names=("127.0.0.1",)))
    issued = node.local_ca.sign(TEMPORARY_CA, csr.public_bytes(PEM), days=30)
    (tmp_path / "https.pem").write_bytes(issued.pem(with_chain=True))
    (tmp_path / "https.key").write_bytes(
        key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(tmp_path / "https.pem", tmp_path / "https.key")
    with LocalHttpServer({"/ca.crl": b"not a CRL"}, tls=context) as https:
        node.revocation.set_sources([f"{https.url}/ca.crl"])
        [reached] = node.revocation.update_now()
        assert reached.error is not None and "TLS" not in reached.error  # it got the body
        node.tls.set("outbound", "modern")
        [refused] = node.revocation.update_now()
    assert refused.error is not None
    assert refused.error.startswith(f"TLS handshake with {https.url}/ca.crl failed")


def test_zones_use_their_profile(node: Node) -> None:
    pinger = ZonePinger(node, node.zones)
    assert pinger._prepare()[0].minimum_version is ssl.TLSVersion.TLSv1_2
    node.tls.set("zones", "modern")
    assert pinger._prepare()[0].minimum_version is ssl.TLSVersion.TLSv1_3


def test_cli_shows_and_sets_profiles(cli: Cli) -> None:
    shown = json.loads(cli.ok("tls", "show", "--json").stdout_bytes)
    assert {s: p["profile"] for s, p in shown.items()} == {
        "admin-https": "intermediate",
        "sip-tls": "intermediate",
        "zones": "intermediate",
        "outbound": "intermediate",
        "syslog": "intermediate",
        "ldap": "intermediate",
    }
    done = cli.ok("tls", "set", "--service", "outbound", "--profile", "modern")
    assert done.stdout_bytes.decode().strip() == "outbound: TLS profile modern (TLSv1.3)"
    assert json.loads(cli.ok("tls", "show", "--json").stdout_bytes)["outbound"]["versions"] == [
        "TLSv1.3"
    ]
    refused = cli("tls", "set", "--service", "smtp", "--profile", "modern")
    assert refused.exit_code == 2
    assert "unknown TLS service 'smtp'" in refused.stderr
    assert "ECDHE-ECDSA-AES128-GCM-SHA256" in cli.ok("tls", "show").stdout_bytes.decode()
