"""LocalCA service: CRL publication stays correct across processes and caches."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certway.clock import FixedClock
from certway.errors import CertwayError, Conflict, PolicyViolation
from certway.pki.csr import CsrForm, build_csr
from certway.services.audit import Actor, acting_as
from certway.services.node import Node

from conftest import NOW, test_key


def _csr(index: int) -> bytes:
    csr, _ = build_csr(test_key("ec:p256", index), CsrForm(common_name=f"h{index}.example.com"))
    return csr.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def node(tmp_path: Path, node_database: str | None) -> Node:
    n = Node.init(tmp_path / "d", FixedClock(NOW), factory=False, database=node_database)
    n.local_ca.create_root("root", "/CN=Root", days=3650)
    return n


def _serials(der: bytes) -> set[int]:
    return {r.serial_number for r in x509.load_der_x509_crl(der)}


def test_crl_includes_revocations_made_by_another_process(node: Node, tmp_path: Path) -> None:
    certs = [node.local_ca.sign("root", _csr(i)).certificate for i in range(3)]
    first = node.local_ca.revoke("root", f"{certs[0].serial_number:x}")
    # A second node object on the same data directory (the CLI while the server runs).
    other = Node.open(tmp_path / "d", FixedClock(NOW))
    second = other.local_ca.revoke("root", f"{certs[1].serial_number:X}", reason="superseded")
    # The first node's cache is behind; its next CRL must still hold both revocations.
    third = node.local_ca.revoke("root", f"{certs[2].serial_number:X}")
    assert first.number < second.number < third.number
    assert _serials(third.der) == {c.serial_number for c in certs}
    # A cold node rebuilds from the stored CRL plus newer revocations.
    cold = Node.open(tmp_path / "d", FixedClock(NOW))
    assert _serials(cold.local_ca.publish_crl("root").der) == {c.serial_number for c in certs}
    other.close()
    cold.close()


def test_revoke_twice_is_a_conflict(node: Node) -> None:
    cert = node.local_ca.sign("root", _csr(1)).certificate
    node.local_ca.revoke("root", f"{cert.serial_number:X}")
    with pytest.raises(Conflict, match="already revoked"):
        node.local_ca.revoke("root", f"{cert.serial_number:X}")


def test_revocation_date_and_invalidity_date(node: Node) -> None:
    cert = node.local_ca.sign("root", _csr(2)).certificate
    when = NOW - dt.timedelta(days=1)
    crl = node.local_ca.revoke(
        "root",
        f"{cert.serial_number:X}",
        reason="keyCompromise",
        revoked_at=when,
        invalidity_date=when - dt.timedelta(days=3),
    )
    entry = x509.load_der_x509_crl(crl.der).get_revoked_certificate_by_serial_number(
        cert.serial_number
    )
    assert entry is not None and entry.revocation_date_utc == when
    with pytest.raises(PolicyViolation, match="future"):
        node.local_ca.revoke("root", "01", revoked_at=NOW + dt.timedelta(days=1))


def test_crl_refreshed_after_half_its_life(node: Node) -> None:
    clock = node.clock
    assert isinstance(clock, FixedClock)
    first = node.local_ca.current_crl("root")
    clock.advance(dt.timedelta(days=3))
    assert node.local_ca.current_crl("root").number == first.number
    clock.advance(dt.timedelta(days=1))
    assert node.local_ca.current_crl("root").number == first.number + 1


def test_intermediate_cannot_outlive_parent(node: Node) -> None:
    with pytest.raises(PolicyViolation, match="outlive"):
        node.local_ca.create_intermediate("sub", "root", "/CN=Sub", days=5000)
    assert [c.name for c in node.local_ca.cas()] == ["root"]


def test_sub_ca_of_intermediate_refused_by_path_length(node: Node) -> None:
    node.local_ca.create_intermediate("sub", "root", "/CN=Sub", days=100)
    with pytest.raises(PolicyViolation, match="path length is 0"):
        node.local_ca.create_intermediate("subsub", "sub", "/CN=SubSub", days=10)


def test_sign_chain_excludes_root(node: Node) -> None:
    node.local_ca.create_intermediate("sub", "root", "/CN=Sub", days=100)
    result = node.local_ca.sign("sub", _csr(3), days=30)
    assert [c.subject.rfc4514_string() for c in result.chain] == ["CN=Sub"]


def test_concurrent_signatures_each_commit_with_their_own_audit_row(node: Node) -> None:
    """Signatures at the same moment share commits (certway.store.group): each certificate is
    in the inventory with its one audit row, written as its own caller, and a refused CSR
    among them fails alone."""
    csrs = [_csr(40 + n) for n in range(4)]
    signed: dict[str, str] = {}  # serial → actor
    refused: list[str] = []

    def caller(n: int) -> None:
        with acting_as(Actor(f"caller-{n}", "api", "127.0.0.1")):
            for round_ in range(6):
                if n == 0 and round_ == 3:
                    try:
                        node.local_ca.sign("root", b"not a CSR")
                    except CertwayError as exc:
                        refused.append(str(exc))
                    continue
                result = node.local_ca.sign("root", csrs[n])
                signed[format(result.certificate.serial_number, "X")] = f"caller-{n}"

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(signed) == 23 and len(refused) == 1
    assert {i.serial for i in node.local_ca.issued("root")} == set(signed)
    rows = [e for e in node.audit.entries(limit=1000) if e.action == "ca.sign"]
    ok = {e.detail["serial"]: e.actor for e in rows if e.outcome == "ok"}
    assert ok == signed
    assert [e.actor for e in rows if e.outcome == "refused"] == ["caller-0"]


def test_issuance_inside_an_audited_action_commits_with_its_audit_row(node: Node) -> None:
    """``issue_with_key`` signs through the same group commit, but its audit row comes from
    the enclosing action (a commit hook): that write takes a transaction (on PostgreSQL, not
    the one-statement path), and both rows are there, also when plain signatures run at the
    same moment."""
    errors: list[BaseException] = []

    def plain() -> None:
        try:
            for n in range(4):
                node.local_ca.sign("root", _csr(60 + n))
        except BaseException as exc:
            errors.append(exc)

    signer = threading.Thread(target=plain)
    signer.start()
    issued = [node.local_ca.issue_with_key("root", f"h{n}.example.com") for n in range(3)]
    signer.join(60)
    assert errors == []
    serials = {format(i.certificate.serial_number, "X") for i in issued}
    inventory = {i.serial for i in node.local_ca.issued("root")}
    assert serials <= inventory and len(inventory) == 7
    rows = [e for e in node.audit.entries(limit=100) if e.action == "ca.issue-with-key"]
    assert {e.detail["serial"] for e in rows if e.outcome == "ok"} == serials
