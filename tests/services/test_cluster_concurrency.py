"""Three peers on one PostgreSQL database issuing and revoking at once: serial numbers stay
unique, CRL numbers strictly increase, and one CRL holds every revocation."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from cryptography import x509

from certway.clock import FixedClock
from certway.services.node import Node
from certway.store.vault import MASTER_KEY_FILE

from conftest import NOW, test_key

PEERS = 3
PER_PEER = 100


def _together(work: list[Callable[[], None]]) -> None:
    """Run the callables in threads that start at the same moment; re-raise any failure."""
    start = threading.Barrier(len(work))
    failures: list[BaseException] = []

    def run(fn: Callable[[], None]) -> None:
        start.wait()
        try:
            fn()
        except BaseException as exc:  # collected, raised in the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(fn,)) for fn in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]


def test_three_peers_revoking_at_once(tmp_path: Path, pg_url: str) -> None:
    clock = FixedClock(NOW)
    first = Node.init(
        tmp_path / "p1", clock, factory=False, database=pg_url, fqdn="p1.example.test"
    )
    first.local_ca.create_root("root", "/CN=Cluster Root", days=3650)
    key = (tmp_path / "p1" / MASTER_KEY_FILE).read_bytes()
    peers = [first] + [
        Node.init(
            tmp_path / f"p{i}",
            clock,
            factory=False,
            database=pg_url,
            join_key=key,
            fqdn=f"p{i}.example.test",
        )
        for i in range(2, PEERS + 1)
    ]
    public = test_key("ec:p256", 40).public_key()
    subject = x509.Name.from_rfc4514_string("CN=leaf.example.test")
    names: list[x509.GeneralName] = [x509.DNSName("leaf.example.test")]
    issued: dict[int, list[int]] = {i: [] for i in range(PEERS)}
    numbers: dict[int, list[int]] = {i: [] for i in range(PEERS)}

    def issue(index: int) -> Callable[[], None]:
        def work() -> None:
            for _ in range(PER_PEER):
                signed = peers[index].local_ca.issue_certificate(
                    "root", public, subject, alt_names=names
                )
                cert = signed.certificate
                issued[index].append(cert.serial_number)

        return work

    def revoke(index: int) -> Callable[[], None]:
        def work() -> None:
            for serial in issued[index]:
                crl = peers[index].local_ca.revoke("root", f"{serial:X}", reason="superseded")
                numbers[index].append(crl.number)

        return work

    try:
        _together([issue(i) for i in range(PEERS)])
        serials = [s for i in range(PEERS) for s in issued[i]]
        assert len(serials) == len(set(serials)) == PEERS * PER_PEER
        assert len(peers[1].local_ca.issued("root")) == PEERS * PER_PEER

        _together([revoke(i) for i in range(PEERS)])
        for index in range(PEERS):  # each peer saw its CRL numbers strictly increase
            assert numbers[index] == sorted(set(numbers[index]))
        every = [n for i in range(PEERS) for n in numbers[i]]
        assert len(every) == len(set(every)) == PEERS * PER_PEER  # no number given twice
        last = peers[2].local_ca.current_crl("root")
        assert last.number == max(every)
        crl = x509.load_der_x509_crl(last.der)
        assert {r.serial_number for r in crl} == set(serials)
        assert last.entries == len(crl) == PEERS * PER_PEER
    finally:
        for peer in peers:
            peer.close()
