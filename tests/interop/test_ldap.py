"""LDAP admin authentication against a real OpenLDAP ``slapd`` (Debian ``slapd``).

slapd runs with its own throwaway configuration, 127.0.0.1 ports (LDAPS and ldap:// for
StartTLS) and a server certificate from the node's local CA; it demands a client certificate
from that CA, so every passing login also proves the node presented its client certificate.
Users and groups (tests/ldap_server.py): alice in vcs-admins (read-write), bob in
vcs-auditors (read-only), carol in no mapped group, dave in both.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient

import ldap_server
from certway.clock import SystemClock
from certway.directory import Directory, DirectoryUnavailable
from certway.pki.keys import generate_key
from certway.pki.text import serial_hex
from certway.services.node import Node
from certway.web.app import create_admin_app
from ldap_server import ADMINS, AUDITORS, BIND_DN, BIND_PASSWORD, PASSWORDS, SUFFIX, Slapd

from conftest import Cli, key_pem
from pkitools import name

pytestmark = [pytest.mark.interop, pytest.mark.usefixtures("quick_hashes")]

CA = "ldap-ca"
STRANGER = "stranger"
LOCAL_PASSWORD = "local admin password"
API = "/api/v1"


@pytest.fixture(autouse=True)
def needs_slapd() -> None:
    if not ldap_server.available():
        pytest.skip("slapd is not installed (make deps-system installs slapd and ldap-utils)")


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def issue(node: Node, ca: str, cn: str, *, profile: str) -> tuple[x509.Certificate, bytes]:
    key = generate_key("ec:p256")
    alt: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.DNSName(cn),
    ]
    issued = node.local_ca.issue_certificate(
        ca, key.public_key(), name(cn), alt_names=alt, profile=profile, days=30
    )
    return issued.certificate, key_pem(key)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def node(data_dir: Path) -> Iterator[Node]:
    """A node on the real clock (slapd checks our client certificate against it) trusting its
    local CA; its client certificate is from that CA; a local 'admin' recovery account and a
    local read-only 'ops' account."""
    n = Node.init(data_dir, SystemClock(), fqdn="certway.test")
    n.local_ca.create_root(CA, "/CN=certway LDAP test CA")
    n.local_ca.create_root(STRANGER, "/CN=certway stranger CA")
    n.trusted_cas.add(_pem(n.local_ca.certificate(CA)))
    cert, key = issue(n, CA, "certway.test", profile="client")
    n.identities.upload("client", "", _pem(cert), key_data=key)
    n.admins.add("admin", "read-write", LOCAL_PASSWORD)
    n.admins.add("ops", "read-only", LOCAL_PASSWORD)
    try:
        yield n
    finally:
        n.close()


def start_slapd(node: Node, work: Path, *, ca: str = CA) -> tuple[Slapd, x509.Certificate]:
    cert, key = issue(node, ca, "ldap.test", profile="server")
    server = Slapd(
        work, cert_pem=_pem(cert), key_pem=key, client_ca_pem=_pem(node.local_ca.certificate(CA))
    )
    server.start()
    return server, cert


@pytest.fixture
def slapd(node: Node, tmp_path: Path) -> Iterator[Slapd]:
    server, _ = start_slapd(node, tmp_path / "slapd")
    try:
        yield server
    finally:
        server.remove()


def configure(node: Node, url: str, *, starttls: bool = False, source: str = "ldap") -> None:
    node.ldap.set(
        url=url,
        starttls=starttls,
        base_dn=SUFFIX,
        bind_dn=BIND_DN,
        bind_password=BIND_PASSWORD,
        user_filter="(uid={user})",
    )
    node.ldap.add_group(ADMINS, access="read-write")
    node.ldap.add_group(AUDITORS, access="read-only")
    node.ldap.set_source(source)


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


# -- the directory itself ----------------------------------------------------------------------
@pytest.mark.parametrize("starttls", [False, True], ids=["ldaps", "starttls"])
def test_login_maps_groups_to_access_levels(node: Node, slapd: Slapd, starttls: bool) -> None:
    configure(node, slapd.ldap_url if starttls else slapd.ldaps_url, starttls=starttls)
    directory = Directory(node)
    try:
        alice = directory.verify("alice", PASSWORDS["alice"])
        bob = directory.verify("bob", PASSWORDS["bob"])
        dave = directory.verify("dave", PASSWORDS["dave"])
        assert alice is not None and alice.access == "read-write"
        assert bob is not None and bob.access == "read-only"
        assert dave is not None and dave.access == "read-write"  # read-write wins
        assert directory.verify("carol", PASSWORDS["carol"]) is None  # no mapped group
        assert directory.verify("alice", PASSWORDS["bob"]) is None  # wrong password
        assert directory.verify("alice", "") is None  # never an anonymous bind
        assert directory.verify("nobody", "whatever it is") is None
        # with source=ldap only the recovery account logs in locally
        assert directory.verify("ops", LOCAL_PASSWORD) is None
        assert directory.verify("admin", LOCAL_PASSWORD) is not None
        report = directory.test("dave", PASSWORDS["dave"])
        assert report.authenticated and report.access == "read-write"
        assert set(report.groups) == {ADMINS, AUDITORS}
        assert node.ldap.status().error is None
        assert not [a for a in node.alarms.current() if a.id == "ldap"]
    finally:
        directory.close()


def test_service_connection_is_reused(node: Node, slapd: Slapd) -> None:
    configure(node, slapd.ldaps_url)
    directory = Directory(node)
    try:
        assert directory.verify("alice", PASSWORDS["alice"]) is not None
        first = directory._service
        assert first is not None
        assert directory.verify("bob", PASSWORDS["bob"]) is not None
        assert directory._service is first  # same connection for the next search
        node.ldap.add_group(f"cn=other,ou=groups,{SUFFIX}", access="read-only")
        assert directory.verify("bob", PASSWORDS["bob"]) is not None
        assert directory._service is not first  # settings changed: a new one
    finally:
        directory.close()


def test_injection_in_the_username_is_refused(node: Node, slapd: Slapd) -> None:
    configure(node, slapd.ldaps_url)
    directory = Directory(node)
    try:
        for attempt in ("*", "*)(uid=*", "alice)(|(uid=*", "al*", "alice\\2a", "*)(|(cn=*))"):
            assert directory.verify(attempt, PASSWORDS["alice"]) is None, attempt
            assert directory.test(attempt, None).dn is None, attempt
        assert directory.verify("alice", PASSWORDS["alice"]) is not None
    finally:
        directory.close()


def test_untrusted_server_certificate_is_refused(node: Node, tmp_path: Path) -> None:
    server, _ = start_slapd(node, tmp_path / "stranger", ca=STRANGER)
    directory = Directory(node)
    try:
        configure(node, server.ldaps_url)
        with pytest.raises(DirectoryUnavailable) as refused:
            directory.verify("alice", PASSWORDS["alice"])
        message = str(refused.value)
        assert "CN=ldap.test" in message and "is refused" in message, message
        assert BIND_PASSWORD not in message and PASSWORDS["alice"] not in message
        alarms = [a for a in node.alarms.current() if a.id == "ldap"]
        assert alarms and "cannot be used" in alarms[0].text and "'admin'" in alarms[0].text
        # the recovery account still logs in
        assert directory.verify("admin", LOCAL_PASSWORD) is not None
        # verify off: TLS without judging the certificate
        node.ldap.set(verify=False)
        assert directory.verify("alice", PASSWORDS["alice"]) is not None
        assert not [a for a in node.alarms.current() if a.id == "ldap"]  # cleared
    finally:
        directory.close()
        server.remove()


@pytest.mark.parametrize("starttls", [False, True], ids=["ldaps", "starttls"])
def test_revoked_server_certificate_is_refused(node: Node, tmp_path: Path, starttls: bool) -> None:
    server, cert = start_slapd(node, tmp_path / "revoked")
    directory = Directory(node)
    try:
        configure(node, server.ldap_url if starttls else server.ldaps_url, starttls=starttls)
        assert directory.verify("alice", PASSWORDS["alice"]) is not None
        node.local_ca.revoke(CA, serial_hex(cert.serial_number), reason="keyCompromise")
        with pytest.raises(DirectoryUnavailable, match="revoked"):
            directory.verify("alice", PASSWORDS["alice"])
        # the ldap service's own revocation policy decides: checking off, the login works
        node.revocation.set_policy("ldap", enabled=False)
        assert directory.verify("alice", PASSWORDS["alice"]) is not None
        assert node.revocation.policy("sip-tls").enabled  # other services untouched
    finally:
        directory.close()
        server.remove()


# -- through the admin app: API Basic and the UI login ----------------------------------------
def test_api_and_ui_logins_by_ldap_group(node: Node, slapd: Slapd) -> None:
    configure(node, slapd.ldaps_url, source="both")
    with TestClient(create_admin_app(node, secure_cookies=False)) as client:
        alice = basic("alice", PASSWORDS["alice"])
        bob = basic("bob", PASSWORDS["bob"])
        assert client.get(f"{API}/alarms", headers=alice).status_code == 200
        # read-only from LDAP cannot change anything; read-write can
        body = {"access": "read-only"}
        refused = client.post(
            f"{API}/ldap/groups", headers=bob, json={"dn": f"cn=x,{SUFFIX}", **body}
        )
        assert refused.status_code == 403, refused.text
        added = client.post(
            f"{API}/ldap/groups", headers=alice, json={"dn": f"cn=x,{SUFFIX}", **body}
        )
        assert added.status_code == 201, added.text
        # with "both", local accounts keep working
        assert client.get(f"{API}/alarms", headers=basic("ops", LOCAL_PASSWORD)).status_code == 200
        wrong = client.get(f"{API}/alarms", headers=basic("alice", "not her password"))
        assert wrong.status_code == 401
        carol = client.get(f"{API}/alarms", headers=basic("carol", PASSWORDS["carol"]))
        assert carol.status_code == 401
        injected = client.get(f"{API}/alarms", headers=basic("*)(uid=*", PASSWORDS["alice"]))
        assert injected.status_code == 401
        # the UI login
        page = client.post(
            "/login", data={"user": "bob", "password": PASSWORDS["bob"]}, follow_redirects=False
        )
        assert page.status_code == 303, page.text
        home = client.get("/")
        assert home.status_code == 200 and "bob" in home.text
        page = client.get("/ldap")
        assert page.status_code == 200 and AUDITORS in page.text
        assert 'action="/ldap/test"' not in page.text  # read-only: no forms
        assert BIND_PASSWORD not in page.text
        # alice in the UI: the test form shows groups and access, never the password
        client.post("/logout", data={"csrf": csrf_of(page.text)})
        client.post("/login", data={"user": "alice", "password": PASSWORDS["alice"]})
        page = client.get("/ldap")
        tested = client.post(
            "/ldap/test",
            data={"csrf": csrf_of(page.text), "user": "dave", "password": PASSWORDS["dave"]},
        )
        assert tested.status_code == 200, tested.text
        assert "accepted" in tested.text and ADMINS in tested.text and AUDITORS in tested.text
        assert PASSWORDS["dave"] not in tested.text
        # the audit log names the LDAP account
        entries = node.audit.entries()
        assert any(e.actor == "alice" and e.action == "ldap.group.add" for e in entries)
        for entry in entries:
            text = json.dumps(entry.detail)
            assert BIND_PASSWORD not in text and PASSWORDS["alice"] not in text


def test_ldap_down_recovery_login_and_alarm(node: Node, slapd: Slapd) -> None:
    configure(node, slapd.ldaps_url, source="ldap")
    with TestClient(create_admin_app(node, secure_cookies=False)) as client:
        assert (
            client.get(f"{API}/alarms", headers=basic("bob", PASSWORDS["bob"])).status_code == 200
        )
        slapd.stop()
        # (bob's verified credentials are remembered for a few seconds: dave is new)
        down = client.get(f"{API}/alarms", headers=basic("dave", PASSWORDS["dave"]))
        assert down.status_code == 503, down.text
        detail = down.json()["detail"]
        assert "LDAP server" in detail and "cannot be used" in detail
        assert "recovery account" in detail
        recovery = client.get(f"{API}/alarms", headers=basic("admin", LOCAL_PASSWORD))
        assert recovery.status_code == 200
        assert any(a["id"] == "ldap" for a in recovery.json()), recovery.json()
        # other local accounts are not LDAP's recovery: with source=ldap they are off
        ops = client.get(f"{API}/alarms", headers=basic("ops", LOCAL_PASSWORD))
        assert ops.status_code == 503
        page = client.post(
            "/login", data={"user": "alice", "password": PASSWORDS["alice"]}, follow_redirects=False
        )
        assert page.status_code == 503 and "cannot be used" in page.text
        slapd.start()
        back = client.get(f"{API}/alarms", headers=basic("alice", PASSWORDS["alice"]))
        assert back.status_code == 200
        assert not node.ldap.status().error


# -- the CLI ------------------------------------------------------------------------------------
def test_cli_set_show_groups_source_and_test(
    node: Node, slapd: Slapd, data_dir: Path, tmp_path: Path
) -> None:
    node.close()
    cli = Cli(data_dir)
    secret = tmp_path / "bind.txt"
    secret.write_text(BIND_PASSWORD + "\n")
    cli.ok(
        "ldap", "set", "--url", slapd.ldap_url, "--starttls", "--base-dn", SUFFIX,
        "--bind-dn", BIND_DN, "--bind-password-file", secret,
    )  # fmt: skip
    cli.ok("ldap", "group", "add", ADMINS, "--access", "read-write")
    cli.ok("ldap", "group", "add", AUDITORS, "--access", "read-only")
    shown = json.loads(cli.ok("ldap", "show", "--json").stdout_bytes)
    assert shown["url"] == slapd.ldap_url and shown["starttls"] is True
    assert {g["dn"] for g in shown["groups"]} == {ADMINS, AUDITORS}
    assert shown["source"] == "local"
    cli.ok("admin-auth", "set", "--source", "both")
    password = tmp_path / "pw.txt"
    password.write_text(PASSWORDS["bob"])
    tested = cli.ok("ldap", "test", "bob", "--password-file", password).stdout
    assert "read-only" in tested and AUDITORS in tested
    assert PASSWORDS["bob"] not in tested
    tested = json.loads(
        cli.ok("ldap", "test", "dave", "--password-file", password, "--json").stdout_bytes
    )
    assert tested["authenticated"] is False and tested["access"] == "read-write"
    refused = cli("ldap", "set", "--url", "http://x")
    assert refused.exit_code != 0 and "not an LDAP URL" in refused.stderr
    cli.ok("ldap", "group", "remove", AUDITORS)
    assert len(json.loads(cli.ok("ldap", "group", "list", "--json").stdout_bytes)) == 1
    everything = cli.ok("ldap", "show").stdout + cli.ok("audit", "--json").stdout
    assert BIND_PASSWORD not in everything and PASSWORDS["bob"] not in everything


def test_certificate_mapped_username_resolves_in_ldap(node: Node, slapd: Slapd) -> None:
    """Certificate-based authentication: the username mapped from the client certificate is
    looked up in the directory (service bind, no password) and gets its groups' access."""
    configure(node, slapd.ldaps_url, source="ldap")
    node.admin_security.set(mode="certificate-based-authentication", force=True)
    directory = Directory(node)
    try:
        for user, expected in (("bob", "read-only"), ("dave", "read-write")):
            cert, _ = issue(node, CA, user, profile="client")
            result = node.admin_security.authenticate(_pem(cert), resolve=directory.lookup)
            assert result.allowed and result.account is not None, result.reason
            assert result.account.access == expected
        carol, _ = issue(node, CA, "carol", profile="client")
        refused = node.admin_security.authenticate(_pem(carol), resolve=directory.lookup)
        assert not refused.allowed and "has no account" in refused.reason
        # "ops" is a local account, but with source=ldap only the recovery account is local
        ops, _ = issue(node, CA, "ops", profile="client")
        assert not node.admin_security.authenticate(_pem(ops), resolve=directory.lookup).allowed
        admin, _ = issue(node, CA, "admin", profile="client")
        assert node.admin_security.authenticate(_pem(admin), resolve=directory.lookup).allowed
    finally:
        directory.close()
