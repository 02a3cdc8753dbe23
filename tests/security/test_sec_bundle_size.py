"""Certificate bundles: ordering a chain takes work in proportion to its length, and a bundle
of more than 1,000 certificates is refused with a clear error that changes nothing.

Before the fix a 3 MiB upload took 46 s and 40,000 certificates ran past a minute: each
certificate was compared with every other one, several times."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient

from certway.clock import FixedClock
from certway.errors import PolicyViolation
from certway.pki.convert import chain_order
from certway.pki.keys import PrivateKey
from certway.pki.load import MAX_BUNDLE_CERTIFICATES, load_certificates, load_pkcs7
from certway.services.identities import CsrOptions
from certway.services.node import Node
from certway.web.app import create_admin_app

from conftest import NOW, Cli, store_snapshot, test_key, write

PEM = serialization.Encoding.PEM
KEY = test_key("ec:p256", 900)
PASSWORD = "correct horse battery"


def name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def certificate(subject: str, issuer: str, *, ca: bool = True, key: PrivateKey = KEY) -> Any:
    return (
        x509.CertificateBuilder()
        .subject_name(name(subject))
        .issuer_name(name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(cast(Any, KEY), hashes.SHA256())
    )


def chain(length: int) -> list[x509.Certificate]:
    """root → CA 1 → … → leaf, ``length`` certificates, root first."""
    certs = [certificate("link 0", "link 0")]
    for i in range(1, length):
        certs.append(certificate(f"link {i}", f"link {i - 1}", ca=i < length - 1))
    return certs


def roots(count: int, prefix: str = "root") -> list[x509.Certificate]:
    return [certificate(f"{prefix} {i}", f"{prefix} {i}") for i in range(count)]


def pem_bundle(certs: list[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(PEM) for c in certs)


# -- ordering is linear ------------------------------------------------------------------------
class CountedName:
    """A name that counts how often it is compared."""

    def __init__(self, inner: x509.Name, counter: list[int]) -> None:
        self.inner = inner
        self.counter = counter

    def __eq__(self, other: object) -> bool:
        self.counter[0] += 1
        return isinstance(other, CountedName) and self.inner == other.inner

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(self.inner)


class CountedCertificate:
    def __init__(self, cert: x509.Certificate, counter: list[int]) -> None:
        self.cert = cert
        self.subject = CountedName(cert.subject, counter)
        self.issuer = CountedName(cert.issuer, counter)


def counted_order(certs: list[x509.Certificate]) -> tuple[list[x509.Certificate], int]:
    counter = [0]
    wrapped = [CountedCertificate(c, counter) for c in certs]
    ordered = chain_order(cast(Any, wrapped))
    return [cast(CountedCertificate, c).cert for c in ordered], counter[0]


@pytest.fixture(scope="module")
def long_chain() -> list[x509.Certificate]:
    return chain(MAX_BUNDLE_CERTIFICATES)


def test_a_chain_of_1000_certificates_in_any_order_is_put_leaf_first(
    long_chain: list[x509.Certificate],
) -> None:
    shuffled = list(long_chain)
    random.Random(7).shuffle(shuffled)
    assert chain_order(shuffled) == long_chain[::-1]


def test_ordering_a_chain_compares_names_in_proportion_to_its_length(
    long_chain: list[x509.Certificate],
) -> None:
    shuffled = list(long_chain)
    random.Random(8).shuffle(shuffled)
    ordered, comparisons = counted_order(shuffled)
    assert ordered == long_chain[::-1]
    # the old code compared every certificate with every other: ~500,000 comparisons here
    assert comparisons <= 10 * len(shuffled)


def test_ordering_unrelated_certificates_keeps_their_order_with_linear_work() -> None:
    certs = roots(MAX_BUNDLE_CERTIFICATES)
    ordered, comparisons = counted_order(certs)
    assert ordered == certs
    assert comparisons <= 10 * len(certs)


def test_two_chains_and_strays_keep_the_documented_order() -> None:
    a_root, a_leaf = certificate("A root", "A root"), certificate("A leaf", "A root", ca=False)
    b_root, b_leaf = certificate("B root", "B root"), certificate("B leaf", "B root", ca=False)
    stray = certificate("stray", "stray")
    # each chain starts at the first certificate that issues none of the remaining ones
    assert chain_order([a_root, b_root, stray, b_leaf, a_leaf]) == [
        stray,
        b_leaf,
        b_root,
        a_leaf,
        a_root,
    ]


# -- the cap --------------------------------------------------------------------------------
def test_the_loaders_take_1000_certificates_and_refuse_1001() -> None:
    certs = roots(MAX_BUNDLE_CERTIFICATES + 1, "cap")
    assert len(load_certificates(pem_bundle(certs[:-1]))) == MAX_BUNDLE_CERTIFICATES
    for data, loader in (
        (pem_bundle(certs), load_certificates),
        (pkcs7.serialize_certificates(certs, serialization.Encoding.DER), load_certificates),
        (pkcs7.serialize_certificates(certs, serialization.Encoding.PEM), load_pkcs7),
    ):
        with pytest.raises(PolicyViolation) as refused:
            loader(data)
        assert refused.value.code == "bundle-too-large"
        assert "1001 certificates" in str(refused.value)
        assert "at most 1000" in str(refused.value)


def test_cli_trust_add_of_40000_certificates_is_refused_and_changes_nothing(
    cli: Cli, tmp_path: Path
) -> None:
    bundle = pem_bundle(roots(40)) * 1000  # 40,000 certificates
    path = write(tmp_path / "huge.pem", bundle)
    before = store_snapshot(cli.data_dir)
    result = cli("trust", "add", path)
    assert result.exit_code == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "40000 certificates" in line and "at most 1000" in line
    assert "Traceback" not in result.stderr
    assert store_snapshot(cli.data_dir) == before


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node.init(tmp_path / "d", FixedClock(NOW), fqdn="vcs.example.com")
    n.admins.add("alice", "read-write", PASSWORD)
    yield n
    n.close()


def test_api_trusted_ca_upload_over_the_cap_is_422_and_adds_nothing(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    from argon2 import PasswordHasher

    monkeypatch.setattr(
        "certway.services.admins._HASHER",
        PasswordHasher(time_cost=1, memory_cost=8, parallelism=1),
    )
    before = node.trusted_cas.entries()
    app = create_admin_app(node, secure_cookies=False)
    with TestClient(app) as client:
        response = client.post(
            "/api/v1/trusted-cas",
            json={"data": pem_bundle(roots(MAX_BUNDLE_CERTIFICATES + 1, "api")).decode()},
            auth=("alice", PASSWORD),
        )
    assert response.status_code == 422, response.text
    assert "1001 certificates" in response.json()["detail"]
    assert node.trusted_cas.entries() == before


def test_server_certificate_with_a_chain_over_the_cap_is_refused_and_changes_nothing(
    node: Node,
) -> None:
    node.local_ca.create_root("issuer", "/CN=Bundle Issuer")
    pending = node.identities.generate_csr("server", "", CsrOptions(key_type="ec:p256"))
    signed = node.local_ca.sign("issuer", pending.pem.encode(), profile="server-client")
    before = node.identities.info("server")
    # the certificate file plus a chain file hold 1,001 certificates between them
    chain_file = pem_bundle(roots(MAX_BUNDLE_CERTIFICATES, "extra"))
    with pytest.raises(PolicyViolation) as refused:
        node.identities.upload("server", "", signed.pem(), chain_data=chain_file)
    assert refused.value.code == "bundle-too-large"
    assert node.identities.info("server") == before
    assert node.identities.pending_csr("server") is not None
    # within the cap the same upload goes through
    result = node.identities.upload(
        "server", "", signed.pem(), chain_data=pem_bundle(roots(1, "extra"))
    )
    assert result.info.version == before.version + 1
