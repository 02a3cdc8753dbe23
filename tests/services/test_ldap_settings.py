"""LDAP admin authentication settings: checks on input, the sealed bind password, group
mapping, the admin-auth source, the audit trail and the LDAP alarm (no server needed; the
logins against a real slapd are in tests/interop/test_ldap.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from certway.clock import FixedClock
from certway.errors import Conflict, NotFound, PolicyViolation
from certway.services.ldap_settings import AuthSource
from certway.services.node import Node
from certway.store.repositories import SettingsRepository

from conftest import NOW

SECRET = "the bind password 7"
BASE = "dc=example,dc=test"
BIND = f"cn=bind,{BASE}"


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node.init(tmp_path / "d", FixedClock(NOW), fqdn="vcs.example.com", factory=False)
    yield n
    n.close()


def configure(node: Node, **changes: object) -> None:
    values: dict[str, object] = {
        "url": "ldaps://ldap.example.com",
        "base_dn": BASE,
        "bind_dn": BIND,
        "bind_password": SECRET,
    }
    values.update(changes)
    node.ldap.set(**values)  # type: ignore[arg-type]


def test_set_show_and_the_sealed_password(node: Node) -> None:
    configure(node, user_filter="(sAMAccountName={user})")
    view = node.ldap.view()
    assert view["url"] == "ldaps://ldap.example.com" and view["verify"] is True
    assert view["user_filter"] == "(sAMAccountName={user})"
    assert SECRET not in json.dumps(view)
    assert node.ldap.bind_password() == SECRET
    with node.store.reading() as session:
        stored = json.dumps(SettingsRepository(session).get("ldap.bind"))
    assert SECRET not in stored  # sealed, not in clear
    node.ldap.set(verify=False)  # a later set changes only what it names
    assert node.ldap.bind_password() == SECRET and node.ldap.get().verify is False  # type: ignore[union-attr]
    for entry in node.audit.entries():
        assert SECRET not in json.dumps(entry.detail)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"url": "http://ldap.example.com"}, "is not an LDAP URL"),
        ({"url": "ldaps://ldap.example.com/dc=x"}, "give only the scheme, host and port"),
        ({"url": "ldap://ldap.example.com"}, "passwords are never sent in clear"),
        ({"starttls": True}, "StartTLS is for ldap:// URLs"),
        ({"base_dn": "not a dn"}, "is not a DN"),
        ({"bind_dn": ""}, "the bind DN is empty"),
        ({"user_filter": "(uid=alice)"}, "must contain {user}"),
        ({"user_filter": "uid={user}"}, "enclosed in parentheses"),
        ({"user_filter": "(uid={user}"}, "enclosed in parentheses"),
        ({"user_filter": "(&(uid={user})"}, "is not an LDAP filter"),
        ({"bind_password": ""}, "the bind password is empty"),
    ],
)
def test_bad_settings_are_refused_and_change_nothing(
    node: Node, changes: dict[str, object], message: str
) -> None:
    configure(node)
    before = node.ldap.view()
    with pytest.raises(PolicyViolation, match=message):
        configure(node, **changes)
    assert node.ldap.view() == before


def test_first_set_needs_everything(node: Node) -> None:
    with pytest.raises(
        PolicyViolation, match=r"needs the base DN, the bind DN and the bind password$"
    ):
        node.ldap.set(url="ldaps://ldap.example.com")
    assert node.ldap.get() is None


def test_groups_map_to_access_levels(node: Node) -> None:
    with pytest.raises(NotFound, match="no LDAP server"):
        node.ldap.add_group(f"cn=a,{BASE}", access="read-only")
    configure(node)
    node.ldap.add_group(f"cn=ops,{BASE}", access="read-only")
    node.ldap.add_group(f"cn=admins,{BASE}", access="read-write")
    with pytest.raises(Conflict, match="mapped already"):
        node.ldap.add_group(f"CN=Ops,{BASE.upper()}", access="read-write")
    with pytest.raises(PolicyViolation, match="access must be read-write or read-only"):
        node.ldap.add_group(f"cn=x,{BASE}", access="admin")
    config = node.ldap.get()
    assert config is not None
    assert node.ldap.access_for(config, [f"CN=OPS,{BASE}"]) == "read-only"
    both = [f"cn=ops,{BASE}", f"cn=admins,{BASE}"]
    assert node.ldap.access_for(config, both) == "read-write"
    assert node.ldap.access_for(config, [f"cn=other,{BASE}"]) is None
    node.ldap.remove_group(f"cn=ops,{BASE}")
    with pytest.raises(NotFound, match="is not mapped"):
        node.ldap.remove_group(f"cn=ops,{BASE}")
    actions = [e.action for e in node.audit.entries()]
    assert {"ldap.set", "ldap.group.add", "ldap.group.remove"} <= set(actions)


def test_source_needs_a_server_and_bumps_the_counter(node: Node) -> None:
    assert node.ldap.source() is AuthSource.LOCAL
    with pytest.raises(PolicyViolation, match="configure the LDAP server first"):
        node.ldap.set_source("ldap")
    with pytest.raises(PolicyViolation, match="local, ldap or both"):
        node.ldap.set_source("radius")
    configure(node)
    version = node.ldap.version()
    assert node.ldap.set_source("both") is AuthSource.BOTH
    assert node.ldap.version() == version + 1
    assert any(e.action == "admin-auth.set" for e in node.audit.entries())


def test_alarm_while_the_directory_cannot_be_used(node: Node) -> None:
    configure(node)
    node.ldap.record_status("connection refused")
    assert not [a for a in node.alarms.current() if a.id == "ldap"]  # source local: no alarm
    node.ldap.set_source("ldap")
    alarms = [a for a in node.alarms.current() if a.id == "ldap"]
    assert len(alarms) == 1 and alarms[0].severity == "critical"
    assert "connection refused" in alarms[0].text and "'admin'" in alarms[0].text
    node.ldap.record_status(None)
    assert not [a for a in node.alarms.current() if a.id == "ldap"]
