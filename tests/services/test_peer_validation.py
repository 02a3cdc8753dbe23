"""``ValidationState.server_refusal``: how the outbound clients (remote syslog, LDAP, the ACME
client) judge the server they connected to, with the connecting service's policy. The clients
themselves against real servers: tests/outbound/test_syslog.py, tests/interop/test_ldap.py,
tests/interop/test_acme_client.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from certway.clock import FixedClock
from certway.services.node import Node

from conftest import NOW
from pkitools import Pki


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki("Outbound", index=90)


@pytest.fixture(scope="module")
def server(pki: Pki) -> x509.Certificate:
    return pki.leaf("acme.example.net", profile="server")


@pytest.fixture
def node(tmp_path: Path, pki: Pki) -> Iterator[Node]:
    n = Node.init(tmp_path / "node", FixedClock(NOW), fqdn="vcs.example.com")
    n.trusted_cas.add(b"".join(c.public_bytes(Encoding.PEM) for c in (pki.root, pki.intermediate)))
    yield n
    n.close()


def refusal(node: Node, der: bytes | None, name: str = "acme.example.net") -> str | None:
    state = node.peer_validation.state("acme")
    return state.server_refusal(der, name=name, at=node.clock.now(), server="the ACME server")


def test_a_trusted_server_certificate_naming_the_host_passes(
    node: Node, server: x509.Certificate
) -> None:
    assert refusal(node, server.public_bytes(Encoding.DER)) is None


def test_no_certificate_or_garbage_is_refused_with_what_was_wrong(node: Node) -> None:
    assert refusal(node, None) == "the ACME server presented no certificate"
    assert refusal(node, b"\x30\x03\x02\x01\x00") == (
        "the ACME server's certificate cannot be parsed"
    )


def test_the_host_name_is_checked(node: Node, server: x509.Certificate) -> None:
    assert refusal(node, server.public_bytes(Encoding.DER), "other.example.net") == (
        "the ACME server's certificate CN=acme.example.net is refused: the certificate does "
        "not name 'other.example.net' (it names DNS:acme.example.net)"
    )


def test_a_revocation_counts_per_the_connecting_services_policy(
    node: Node, pki: Pki, server: x509.Certificate
) -> None:
    node.revocation.upload_manual(pki.crl([(server, "keyCompromise")]).public_bytes(Encoding.PEM))
    der = server.public_bytes(Encoding.DER)
    text = refusal(node, der)
    assert text is not None and text.startswith(
        "the ACME server's certificate CN=acme.example.net is refused: the certificate is "
        "revoked on "
    )
    assert "(keyCompromise)" in text
    # The acme policy, not another service's, decides: checking off for acme lets it through
    # while the syslog service still refuses the same certificate.
    node.revocation.set_policy("acme", enabled=False)
    assert refusal(node, der) is None
    syslog = node.peer_validation.state("syslog")
    assert syslog.server_refusal(
        der, name="acme.example.net", at=node.clock.now(), server="the receiver"
    )


# -- the certificates the server presented after its leaf (presented_chain) -------------------
@pytest.fixture
def root_only(tmp_path: Path, pki: Pki) -> Iterator[Node]:
    """A node trusting the root alone, as for Let's Encrypt (ISRG Root X1, not R10/R11…)."""
    n = Node.init(tmp_path / "root-only", FixedClock(NOW), fqdn="vcs.example.com")
    n.trusted_cas.add(pki.root.public_bytes(Encoding.PEM))
    yield n
    n.close()


def refusal_with(node: Node, der: bytes, presented: list[x509.Certificate | bytes]) -> str | None:
    state = node.peer_validation.state("acme")
    return state.server_refusal(
        der,
        intermediates=[
            c if isinstance(c, bytes) else c.public_bytes(Encoding.DER) for c in presented
        ],
        name="acme.example.net",
        at=node.clock.now(),
        server="the ACME server",
    )


def test_the_intermediate_the_server_presented_leads_to_the_trusted_root(
    root_only: Node, pki: Pki, server: x509.Certificate
) -> None:
    der = server.public_bytes(Encoding.DER)
    assert refusal_with(root_only, der, [pki.intermediate]) is None
    assert refusal_with(root_only, der, []) == (
        "the ACME server's certificate CN=acme.example.net is refused: issuer CN=Outbound "
        "Issuing is not in the trusted CA list"
    )


def test_a_presented_certificate_that_cannot_be_parsed_is_left_out(
    root_only: Node, pki: Pki, server: x509.Certificate
) -> None:
    der = server.public_bytes(Encoding.DER)
    assert refusal_with(root_only, der, [b"\x30\x03\x02\x01\x00", pki.intermediate]) is None


def test_presented_certificates_are_never_trust_anchors(root_only: Node) -> None:
    """A server presenting its own self-signed root (not in the trusted list) with its
    intermediate is not trusted: what a peer sends only helps build a path to the list."""
    stranger = Pki("Stranger", index=93)
    leaf = stranger.leaf("acme.example.net", profile="server")
    untrusted = (
        "the ACME server's certificate CN=acme.example.net is refused: the chain ends at "
        "CN=Stranger Root, whose issuer CN=Stranger Root is not in the trusted CA list"
    )
    presented = [stranger.intermediate, stranger.root]
    assert refusal_with(root_only, leaf.public_bytes(Encoding.DER), presented) == untrusted
    # nor does the root the leaf was issued by make it trusted when it is presented
    direct = stranger.leaf("acme.example.net", profile="server", issuer=stranger.root_issuer)
    assert refusal_with(root_only, direct.public_bytes(Encoding.DER), [stranger.root]) == untrusted
