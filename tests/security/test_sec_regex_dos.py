"""Regex denial of service: patterns that make a backtracking engine take exponential or
high-polynomial time, sent where an administrator (or a read-only account, through the
certificate test) can put a regex. Each one used to be accepted and then held the GIL for
seconds to years on the inputs below; now every administrator pattern runs on RE2, so each
search finishes with the right answer. (No timings here: a regression shows as a test that
does not finish.)"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient

from certway.clock import FixedClock
from certway.errors import PolicyViolation
from certway.services.node import Node
from certway.services.sip_rules import certificate_names, decide, make_rule
from certway.sip.listener import PeerValidator
from certway.store.repositories import SettingsRepository
from certway.web.app import create_admin_app

from conftest import NOW
from pkitools import Pki

pytestmark = pytest.mark.usefixtures("quick_hashes")  # argon2 at test strength

PASSWORD = "correct horse battery"
LONG = "a" * 10_000
NO_MATCH = "the regex does not match the certificate's subject or subject alternative names"


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki("Dos", index=400)


@pytest.fixture
def node(tmp_path: Path, pki: Pki) -> Iterator[Node]:
    n = Node.init(tmp_path / "d", FixedClock(NOW), fqdn="vcs.example.com")
    n.trusted_cas.add(pem(pki.root) + pem(pki.intermediate))
    n.admins.add("alice", "read-write", PASSWORD)
    n.admins.add("bob", "read-only", PASSWORD)
    yield n
    n.close()


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def client_cert(
    pki: Pki, cn: str, *uris: str, units: tuple[str, ...] = (), dns: tuple[str, ...] = ()
) -> x509.Certificate:
    """A client certificate from the trusted CA: CN ``cn``, an OU for each of ``units``, a
    URI SAN for each of ``uris`` and a DNS SAN for each of ``dns``."""
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in uris]
    sans += [x509.DNSName(d) for d in dns]
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    attributes += [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, u) for u in units]
    return pki.int_issuer.issue(
        pki.leaf_key.public_key(),
        x509.Name(attributes),
        profile="client",
        alt_names=sans or None,
        not_before=NOW - dt.timedelta(days=1),
        not_after=NOW + dt.timedelta(days=30),
    )


# Each pattern of the report, with a named group so that it can be a username regex, and
# the certificate text that used to make the backtracking engine explode.
ATTACKS = [
    pytest.param(
        r"(?<Group1>(?:a?){28}a{28})",
        "a" * 28,
        (),
        (),
        "a" * 28,  # 2**28 ways to place the optional a's before the match is found
        id="optional-then-required",
    ),
    pytest.param(
        r"(?<Group1>(?:a?){28}a{28})",
        "carol",
        ("a" * 27,) * 8,
        (),
        None,  # 2**28 ways to fail, for each of the eight runs of 27 a's
        id="optional-then-required-no-match",
    ),
    pytest.param(
        r"(?<Group1>(?:a{1,30}){1,30}b)",
        "carol",
        (),
        (f"urn:x:{LONG}b",),
        "a" * 900 + "b",  # the leftmost match: 30 x 30 a's and the b
        id="nested-counted-repetition",
    ),
    pytest.param(
        r"(?<Group1>(?:a{1,30}){1,30}b)",
        "carol",
        (),
        (f"urn:x:{LONG}",),
        None,  # no b: 30**30 ways to split the a's before giving up
        id="nested-counted-repetition-no-match",
    ),
    pytest.param(
        r"(?<Group1>\w*)\w*\w*\w*\w*\w*\w*!",
        "carol",
        (),
        (f"urn:x:{LONG}",),
        None,  # no "!": n**7 ways to split 10,000 characters
        id="seven-word-runs",
    ),
    pytest.param(
        r"(?<Group1>\w*)\w*\w*\w*\w*\w*\w*!",
        "carol",
        (),
        (f"urn:x:{LONG}!",),
        LONG,
        id="seven-word-runs-match",
    ),
    pytest.param(
        r"(?<Group1>.*).*.*.*.*.*.*.*!",
        "carol",
        (),
        (f"urn:x:{LONG}",),
        None,  # n**8
        id="eight-dot-runs",
    ),
]


@pytest.mark.parametrize(("regex", "cn", "units", "uris", "username"), ATTACKS)
def test_catastrophic_username_regex_through_the_client_check(
    node: Node,
    pki: Pki,
    regex: str,
    cn: str,
    units: tuple[str, ...],
    uris: tuple[str, ...],
    username: str | None,
) -> None:
    report = node.client_check.check(
        pem(client_cert(pki, cn, *uris, units=units)), regex=regex, fmt="#Group1#"
    )
    assert report.result.valid, report.result.reason
    if username is None:
        assert report.username is None
        assert report.username_error is not None and report.username_error.startswith(NO_MATCH)
    else:
        assert report.username is not None and report.username.username == username


def basic(user: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{PASSWORD}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.mark.parametrize(("regex", "cn", "units", "uris", "username"), ATTACKS)
def test_catastrophic_username_regex_from_a_read_only_account(
    node: Node,
    pki: Pki,
    regex: str,
    cn: str,
    units: tuple[str, ...],
    uris: tuple[str, ...],
    username: str | None,
) -> None:
    """The attack of the report: ``POST /api/v1/check`` is open to read-only accounts."""
    body = {
        "certificate": pem(client_cert(pki, cn, *uris, units=units)).decode(),
        "regex": regex,
        "format": "#Group1#",
    }
    with TestClient(create_admin_app(node, secure_cookies=False)) as client:
        response = client.post("/api/v1/check", json=body, headers=basic("bob"))
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["valid"] is True
    assert report["username"] == username
    if username is None:
        assert report["username_error"].startswith(NO_MATCH)


def test_catastrophic_admin_login_regex(node: Node, pki: Pki) -> None:
    """The admin certificate-login regex is the same engine: a certificate whose CN is 28
    a's logs in at once with ``(?:a?){28}a{28}``."""
    node.admins.add("a" * 28, "read-write", PASSWORD)
    node.admin_security.set(
        mode="certificate-based-authentication",
        regex=r"/Subject: CN=(?<Group1>(?:a?){28}a{28})/",
        fmt="#Group1#",
        force=True,
    )
    result = node.admin_security.authenticate(pem(client_cert(pki, "a" * 28)))
    assert result.allowed and result.account is not None
    assert result.account.name == "a" * 28
    refused = node.admin_security.authenticate(pem(client_cert(pki, "a" * 27)))
    assert not refused.allowed and "the regex does not match" in refused.reason


def test_catastrophic_sip_access_rule(node: Node, pki: Pki) -> None:
    """A rule ``(?:a?){26}a{26}`` and a peer whose CN is 26 a's: decided at once."""
    node.sip.add_rule(priority=1, type="regex", pattern="(?:a?){26}a{26}", action="deny")
    validator = PeerValidator(node)
    config = node.sip.get()
    hostile = client_cert(pki, "a" * 26)
    verdict = validator.check(hostile.public_bytes(serialization.Encoding.DER), config)
    assert not verdict.accepted and verdict.code == "denied"
    assert "denied by access rule 1" in verdict.reason
    other = client_cert(pki, "b" * 26)
    assert validator.check(other.public_bytes(serialization.Encoding.DER), config).accepted
    # Near misses cost a backtracking engine 2**26 steps each: six of them stalled the
    # listener for minutes. RE2 answers at once: no name matches, the peer is allowed.
    near = client_cert(pki, "peer.example", dns=tuple(f"{'a' * 51}b{i}.example" for i in range(6)))
    assert validator.check(near.public_bytes(serialization.Encoding.DER), config).accepted
    # The pure decision, on a 1,024-character name (the longest a rule looks at).
    rule = make_rule(1, priority=1, type="regex", pattern="(?:a?){26}a{26}", action="deny")
    assert decide([rule], certificate_names(hostile)).allowed is False
    assert rule.matches("a" * 52) and not rule.matches("a" * 25 + "b")
    assert not rule.matches("a" * 1023 + "b")


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        (r"/Subject:.*CN=(?<Group1>\w+), OU=\1/", "backreferences such as \\1 are not supported"),
        (r"/(?<=CN=)(?<Group1>\w+)/", "lookbehind assertions such as (?<=…) are not supported"),
        (r"/CN=(?!admin)(?<Group1>\w+)/", "lookahead assertions such as (?!…) are not supported"),
        (r"/CN=(?<Group1>\pL{1000})/", "the regex is too large to run"),
        (r"/CN=(?<Group1>(?:\w{100}){100})/", "repetition {100} is too large"),
    ],
)
def test_what_the_engine_cannot_run_is_refused_and_changes_nothing(
    node: Node, pki: Pki, pattern: str, message: str
) -> None:

    before = node.admin_security.get()
    with pytest.raises(PolicyViolation) as info:
        node.admin_security.set(regex=pattern)
    assert info.value.code == "regex" and message in str(info.value)
    assert "\n" not in str(info.value)
    assert node.admin_security.get() == before
    with pytest.raises(PolicyViolation, match=r"not supported|too large"):
        node.client_check.check(pem(client_cert(pki, "carol")), regex=pattern, fmt="#Group1#")
    rule_pattern = pattern.strip("/")
    if len(rule_pattern) <= 256:
        with pytest.raises(PolicyViolation) as rule_info:
            node.sip.add_rule(priority=1, type="regex", pattern=rule_pattern, action="deny")
        assert rule_info.value.code == "rule-regex" and message in str(rule_info.value)
        assert node.sip.rules() == []


def test_a_stored_login_regex_the_engine_refuses_fails_closed(node: Node, pki: Pki) -> None:
    """A regex saved before RE2 (a lookbehind was fine for Python's engine): certificate
    logins are refused with the reason, never let through or answered with a traceback."""
    node.admins.add("carol", "read-write", PASSWORD)
    node.admin_security.set(mode="certificate-based-authentication", force=True)
    with node.store.transaction() as session:
        settings = SettingsRepository(session)
        stored = settings.get("admin.client_cert")
        assert isinstance(stored, dict)
        settings.set("admin.client_cert", {**stored, "regex": r"/(?<=CN=)(?<Group1>\w+)/"})
    result = node.admin_security.authenticate(pem(client_cert(pki, "carol")))
    assert not result.allowed and result.account is None
    assert result.reason == (
        "the username regex or format of this server cannot be used: lookbehind assertions "
        "such as (?<=…) are not supported (regexes run on RE2, in linear time)"
    )


def test_a_pattern_with_a_huge_program_is_refused(node: Node) -> None:
    """``.{1000}.{1000}`` is linear too, but 16,004 instructions per character."""
    with pytest.raises(PolicyViolation) as info:
        node.sip.add_rule(priority=1, type="regex", pattern=".{1000}.{1000}", action="deny")
    assert str(info.value) == (
        "the regex is too large to run (it compiles to 16,004 instructions; the limit is "
        "10,000 instructions): use fewer or smaller repetitions and character classes"
    )
    assert node.sip.rules() == []


def test_a_certificate_with_too_much_name_text_is_not_mapped(node: Node, pki: Pki) -> None:
    cert = client_cert(pki, "carol", f"urn:x:{'a' * 20_000}")
    report = node.client_check.check(pem(cert), regex=r"(?<Group1>\w+)", fmt="#Group1#")
    assert report.result.valid and report.username is None
    assert report.username_error == (
        "the certificate's subject and subject alternative names are longer than 16,384 "
        "characters: no username"
    )
