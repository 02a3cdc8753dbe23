"""Delta CRLs through the services (AD CS publishes them by default): a manual upload and a
URL source hold a delta beside its complete CRL, CRL numbers are compared per kind, CDP
downloads follow the freshest-CRL pointers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from certway.clock import FixedClock
from certway.errors import PolicyViolation
from certway.services.node import Node

from conftest import NOW
from pkitools import Pki
from revocation_servers import DAY, LocalHttpServer, der, fast_fetcher, pem, send

KC = x509.ReasonFlags.key_compromise


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki("Delta", at=NOW, index=340)


@pytest.fixture
def node(tmp_path: Path, clock: FixedClock, pki: Pki) -> Iterator[Node]:
    n = Node.init(tmp_path / "data", clock, fetcher_factory=fast_fetcher(), factory=False)  # type: ignore[arg-type]
    n.trusted_cas.add(pem(pki.root, pki.intermediate))
    try:
        yield n
    finally:
        n.close()


def crl(
    pki: Pki,
    revoked: list[tuple[x509.Certificate, x509.ReasonFlags]] = (),  # type: ignore[assignment]
    *,
    number: int,
    delta_base: int | None = None,
    freshest: str | None = None,
) -> x509.CertificateRevocationList:
    """A CRL of the issuing CA, complete or delta, optionally pointing to its deltas."""
    start = NOW - dt.timedelta(hours=1)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(pki.intermediate.subject)
        .last_update(start)
        .next_update(start + 7 * DAY)
        .add_extension(x509.CRLNumber(number), critical=False)
    )
    if delta_base is not None:
        builder = builder.add_extension(x509.DeltaCRLIndicator(delta_base), critical=True)
    if freshest is not None:
        point = x509.DistributionPoint([x509.UniformResourceIdentifier(freshest)], None, None, None)
        builder = builder.add_extension(x509.FreshestCRL([point]), critical=False)
    for cert, reason in revoked:
        entry = (
            x509.RevokedCertificateBuilder()
            .serial_number(cert.serial_number)
            .revocation_date(start)
            .add_extension(x509.CRLReason(reason), critical=False)
        )
        builder = builder.add_revoked_certificate(entry.build())
    return builder.sign(pki.int_key, hashes.SHA256())  # type: ignore[arg-type]


def peer_status(node: Node, leaf: x509.Certificate) -> tuple[bool, str]:
    result = node.client_check.check(pem(leaf), service="admin-https").result
    return result.valid, result.reason


def test_manual_upload_holds_a_delta_beside_its_base(node: Node, pki: Pki) -> None:
    leaf = pki.leaf("delta.example.com")
    accepted = node.revocation.upload_manual(
        pem(crl(pki, number=30), crl(pki, [(leaf, KC)], number=31, delta_base=30))
    )
    assert [a.describe().split(" of ")[0] for a in accepted] == [
        "CRL #30",
        "delta CRL #31 (on base #30)",
    ]
    assert sorted(h.number or 0 for h in node.revocation.held()) == [30, 31]
    valid, reason = peer_status(node, leaf)
    assert not valid
    assert reason.endswith("by delta CRL #31 on base #30 from the manual CRL upload")


def test_delta_only_upload_keeps_the_base(node: Node, pki: Pki) -> None:
    leaf = pki.leaf("hold.example.com")
    node.revocation.upload_manual(pem(crl(pki, number=30)))
    assert peer_status(node, leaf)[0]
    node.revocation.upload_manual(pem(crl(pki, [(leaf, KC)], number=31, delta_base=30)))
    assert sorted(h.number or 0 for h in node.revocation.held()) == [30, 31]
    assert not peer_status(node, leaf)[0]
    # The next delta replaces the previous delta, not the base.
    node.revocation.upload_manual(pem(crl(pki, number=32, delta_base=30)))
    assert sorted(h.number or 0 for h in node.revocation.held()) == [30, 32]
    assert peer_status(node, leaf)[0]


def test_crl_numbers_are_compared_per_kind(node: Node, pki: Pki) -> None:
    node.revocation.upload_manual(pem(crl(pki, number=30), crl(pki, number=31, delta_base=30)))
    # The same complete CRL again: not older than the complete CRL held (the delta's number
    # is higher, but complete and delta CRLs are numbered apart here).
    node.revocation.upload_manual(pem(crl(pki, number=30), crl(pki, number=31, delta_base=30)))
    with pytest.raises(PolicyViolation, match="older than delta CRL #31"):
        node.revocation.upload_manual(pem(crl(pki, number=29, delta_base=28)))
    with pytest.raises(PolicyViolation, match="older than CRL #30"):
        node.revocation.upload_manual(pem(crl(pki, number=29)))


def test_cdp_download_follows_freshest_crl_pointers(tmp_path: Path, clock: FixedClock) -> None:
    with LocalHttpServer() as server:
        base_url, delta_url = f"{server.url}/base.crl", f"{server.url}/delta.crl"
        pki = Pki("Fresh", at=NOW, index=350, crl_url=base_url)
        leaf = pki.leaf("fresh.example.com")
        server.routes["/base.crl"] = der(crl(pki, number=30, freshest=delta_url))
        current = {"delta": crl(pki, number=31, delta_base=30)}
        server.routes["/delta.crl"] = lambda h: send(h, der(current["delta"]))
        node = Node.init(tmp_path / "data", clock, fetcher_factory=fast_fetcher(), factory=False)  # type: ignore[arg-type]
        try:
            node.trusted_cas.add(pem(pki.root, pki.intermediate))
            node.revocation.set_policy("sip-tls", ocsp=False, crl=True, cdp=True, scope="peer")
            good = node.client_check.check(pem(leaf), service="sip-tls").result
            assert good.valid, good.reason
            cdp = [c.text for c in good.certificates[0].checks if c.name == "cdp"]
            assert cdp == [
                f"not revoked per CRL #30 from {base_url}, next update "
                f"{NOW + 7 * DAY - dt.timedelta(hours=1):%Y-%m-%d} and delta CRL #31 from "
                f"{delta_url}"
            ]
            assert (server.hits["/base.crl"], server.hits["/delta.crl"]) == (1, 1)
        finally:
            node.close()
        # A new node (empty caches) sees the delta that revokes the peer.
        current["delta"] = crl(pki, [(leaf, KC)], number=32, delta_base=30)
        again = Node.init(tmp_path / "data2", clock, fetcher_factory=fast_fetcher(), factory=False)  # type: ignore[arg-type]
        try:
            again.trusted_cas.add(pem(pki.root, pki.intermediate))
            again.revocation.set_policy("sip-tls", ocsp=False, crl=True, cdp=True, scope="peer")
            revoked = again.client_check.check(pem(leaf), service="sip-tls").result
            assert revoked.code == "revoked"
            assert revoked.reason.endswith(f"by delta CRL #32 on base #30 from {delta_url}")
        finally:
            again.close()


def test_cdp_without_a_reachable_delta_keeps_the_complete_crl(
    tmp_path: Path, clock: FixedClock
) -> None:
    with LocalHttpServer() as server:
        base_url = f"{server.url}/base.crl"
        pki = Pki("Nodelta", at=NOW, index=360, crl_url=base_url)
        server.routes["/base.crl"] = der(crl(pki, number=30, freshest=f"{server.url}/gone.crl"))
        node = Node.init(tmp_path / "data", clock, fetcher_factory=fast_fetcher(), factory=False)  # type: ignore[arg-type]
        try:
            node.trusted_cas.add(pem(pki.root, pki.intermediate))
            node.revocation.set_policy("sip-tls", ocsp=False, crl=True, cdp=True, scope="peer")
            result = node.client_check.check(pem(pki.leaf("x.example.com")), service="sip-tls")
            assert result.result.valid and result.result.certificates[0].status == "good"
            assert server.hits["/gone.crl"] == 1
        finally:
            node.close()
