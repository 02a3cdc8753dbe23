"""Issuance's direct writes (certway.store.direct): rows written on the driver's cursor read
back exactly as rows written through the ORM, on SQLite and PostgreSQL, and a refused write
is a Conflict that leaves nothing behind and the next write working."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from certway.clock import FixedClock
from certway.errors import Conflict
from certway.pki.csr import CsrForm, build_csr
from certway.services.audit import Actor, acting_as
from certway.services.node import Node
from certway.store.direct import ISSUED, DirectUnit
from certway.store.group import GroupCommit

from conftest import NOW, test_key


@pytest.fixture
def node(tmp_path: Path, node_database: str | None) -> Iterator[Node]:
    n = Node.init(tmp_path / "d", FixedClock(NOW), factory=False, database=node_database)
    n.local_ca.create_root("root", "/CN=Root", days=3650)
    yield n
    n.close()


def csr_pem(name: str, index: int) -> bytes:
    form = CsrForm(common_name=name, additional_names=(name,))
    csr = build_csr(test_key("ec:p256", index), form)[0]
    return csr.public_bytes(serialization.Encoding.PEM)


def test_direct_rows_read_back_as_orm_rows(node: Node) -> None:
    subject = build_csr(test_key("ec:p256", 61), CsrForm(common_name="orm.example.com"))[0]
    with acting_as(Actor("alice", "api", "192.0.2.1")):
        by_orm = node.local_ca.issue_certificate(  # the ORM path
            "root", subject.public_key(), subject.subject, alt_names=[], days=30
        ).certificate
        direct = node.local_ca.sign("root", csr_pem("direct.example.com", 62), days=30)
    rows = {i.serial: i for i in node.local_ca.issued("root")}
    for cert in (by_orm, direct.certificate):
        row = rows[format(cert.serial_number, "X")]
        assert row.not_after == cert.not_valid_after_utc  # aware, UTC, to the second
        assert row.not_before == cert.not_valid_before_utc
        assert row.not_after.tzinfo is not None and row.status == "valid"
    signed = rows[format(direct.certificate.serial_number, "X")]
    assert (signed.subject, signed.alt_names, signed.profile) == (
        "CN=direct.example.com",
        "DNS:direct.example.com",
        "server-client",
    )
    assert node.local_ca.issued_certificate("root", signed.serial) == direct.certificate
    entry = next(e for e in node.audit.entries() if e.action == "ca.sign")
    assert (entry.at, entry.actor, entry.via, entry.address, entry.target, entry.outcome) == (
        NOW,
        "alice",
        "api",
        "192.0.2.1",
        "root",
        "ok",
    )
    assert entry.detail == {"serial": signed.serial, "subject": "CN=direct.example.com"}


def test_a_refused_direct_write_is_a_conflict_and_the_next_one_works(node: Node) -> None:
    group: GroupCommit[None] = GroupCommit(node.store)
    issued = node.local_ca.sign("root", csr_pem("a.example.com", 63))
    row = next(i for i in node.local_ca.issued("root"))
    clash = {
        "ca_id": 1,
        "serial": row.serial,  # (ca_id, serial) is unique: the same certificate twice
        "subject": row.subject,
        "alt_names": "",
        "profile": "server",
        "not_before": NOW,
        "not_after": NOW + dt.timedelta(days=1),
        "certificate_der": b"x",
        "issued_at": NOW,
        "acme_account": None,
    }

    def write(unit: DirectUnit) -> None:
        unit.execute(ISSUED, clash)

    with pytest.raises(Conflict, match="clashes"):
        group.run(write)
    assert [i.serial for i in node.local_ca.issued("root")] == [row.serial]
    again = node.local_ca.sign("root", csr_pem("b.example.com", 64))
    assert len(node.local_ca.issued("root")) == 2
    assert again.certificate.serial_number != issued.certificate.serial_number
