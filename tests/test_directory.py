"""The LDAP client without a directory: the admin-auth sources, the break-glass account and a
server that cannot be reached (the logins against a real slapd: tests/interop/test_ldap.py)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from certway.clock import FixedClock
from certway.directory import Directory, DirectoryUnavailable
from certway.services.node import Node

from conftest import NOW

PASSWORD = "a local password"


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Node]:
    monkeypatch.setattr(
        "certway.services.admins._HASHER",
        PasswordHasher(time_cost=1, memory_cost=8, parallelism=1),
    )
    n = Node.init(tmp_path / "d", FixedClock(NOW), fqdn="vcs.example.com", factory=False)
    n.admins.add("admin", "read-write", PASSWORD)
    n.admins.add("ops", "read-only", PASSWORD)
    yield n
    n.close()


def closed_port() -> int:
    """A 127.0.0.1 port nobody listens on (bound, then released)."""
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def configure(node: Node, source: str) -> None:
    node.ldap.set(
        url=f"ldaps://127.0.0.1:{closed_port()}",
        base_dn="dc=example,dc=test",
        bind_dn="cn=bind,dc=example,dc=test",
        bind_password="bind password",
    )
    node.ldap.set_source(source)


def test_local_source_never_asks_the_directory(node: Node) -> None:
    configure(node, "local")
    directory = Directory(node)
    assert directory.verify("ops", PASSWORD) is not None
    assert directory.verify("alice", "whatever it is") is None  # no LDAP attempt, no error
    assert node.ldap.status().error is None


def test_unreachable_directory_refuses_clearly_and_keeps_the_recovery_account(
    node: Node,
) -> None:
    configure(node, "ldap")
    directory = Directory(node, timeout=2)
    with pytest.raises(DirectoryUnavailable, match=r"the LDAP server ldaps://127\.0\.0\.1:\d+"):
        directory.verify("alice", "her password")
    assert "bind password" not in (node.ldap.status().error or "")
    alarms = [a for a in node.alarms.current() if a.id == "ldap"]
    assert len(alarms) == 1 and "cannot be used" in alarms[0].text
    recovery = directory.verify("admin", PASSWORD)
    assert recovery is not None and recovery.access == "read-write"
    assert directory.verify("admin", "wrong password") is None  # local, not LDAP's
    with pytest.raises(DirectoryUnavailable):
        directory.verify("ops", PASSWORD)  # source ldap: other local accounts are off
    # "both": local accounts first, and they work while the directory is down
    node.ldap.set_source("both")
    assert directory.verify("ops", PASSWORD) is not None
    with pytest.raises(DirectoryUnavailable):
        directory.verify("alice", "her password")
    directory.close()


def test_certificate_mapped_names_with_each_source(node: Node) -> None:
    configure(node, "both")
    directory = Directory(node, timeout=2)
    ops = directory.lookup("ops")
    assert ops is not None and ops.access == "read-only"  # local first
    with pytest.raises(DirectoryUnavailable):
        directory.lookup("alice")
    node.ldap.set_source("local")
    assert directory.lookup("alice") is None
