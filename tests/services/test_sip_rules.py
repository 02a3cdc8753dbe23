"""Certificate access rules (pure), the SIP settings service and the ``certway sip`` commands."""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from certway.errors import NotFound, PolicyViolation
from certway.services.node import Node
from certway.services.sip_rules import (
    AccessRule,
    RuleAction,
    RuleType,
    certificate_names,
    compile_regex,
    decide,
    make_rule,
)
from certway.services.sip_settings import SIP_VERSION, MutualTls, SipSettings
from certway.store.repositories import SettingsRepository

from conftest import Cli
from pkitools import Pki


def rule(rule_id: int, priority: int, kind: str, pattern: str, action: str) -> AccessRule:
    return make_rule(rule_id, priority=priority, type=kind, pattern=pattern, action=action)


# -- matching ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "pattern", "name", "expected"),
    [
        ("exact", "peer.example.com", "PEER.example.com", True),
        ("exact", "peer.example.com", "peer.example.com.evil", False),
        ("prefix", "peer.", "peer.example.com", True),
        ("prefix", "peer.", "xpeer.example.com", False),
        ("suffix", ".example.com", "a.b.example.com", True),
        ("suffix", ".example.com", "example.com.evil.org", False),
        ("regex", r"[a-z]+\.example\.com", "edge.example.com", True),
        ("regex", r"[a-z]+\.example\.com", "edge.example.com.evil.org", False),  # whole name
        ("regex", r"sip:.*@example\.com", "sip:alice@example.com", True),
    ],
)
def test_rule_types(kind: str, pattern: str, name: str, expected: bool) -> None:
    assert rule(1, 10, kind, pattern, "allow").matches(name) is expected


def test_first_match_by_priority_wins() -> None:
    rules = [
        rule(1, 20, "suffix", ".example.com", "allow"),
        rule(2, 10, "exact", "bad.example.com", "deny"),
    ]
    denied = decide(rules, ["bad.example.com"])
    assert not denied.allowed and denied.rule is not None and denied.rule.id == 2
    assert denied.name == "bad.example.com"
    assert "denied by access rule 2" in denied.describe()
    allowed = decide(rules, ["good.example.com"])
    assert allowed.allowed and allowed.rule is not None and allowed.rule.id == 1


def test_default_is_allow() -> None:
    decision = decide([rule(1, 1, "exact", "x.example.com", "deny")], ["y.example.com"])
    assert decision.allowed and decision.rule is None
    assert "allowed by default" in decision.describe()


def test_deny_everything_with_an_allow_list() -> None:
    rules = [
        rule(1, 1, "suffix", ".partner.example", "allow"),
        rule(2, 100, "regex", ".*", "deny"),
    ]
    assert decide(rules, ["edge.partner.example"]).allowed
    assert not decide(rules, ["edge.other.example"]).allowed


def test_any_name_of_the_certificate_can_match() -> None:
    pki = Pki("Rules", index=300)
    cert = pki.leaf("cn.example.com", sans=["dns.example.com"])
    names = certificate_names(cert)
    assert names == ["cn.example.com", "dns.example.com"]
    assert not decide([rule(1, 1, "exact", "dns.example.com", "deny")], names).allowed


def test_ip_uri_and_email_sans_are_names() -> None:
    pki = Pki("Rules", index=300)
    cert = (
        x509.CertificateBuilder()
        .subject_name(pki.root.subject)
        .issuer_name(pki.root.subject)
        .public_key(pki.leaf_key.public_key())
        .serial_number(7)
        .not_valid_before(pki.root.not_valid_before_utc)
        .not_valid_after(pki.root.not_valid_after_utc)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.IPAddress(ipaddress.ip_address("192.0.2.7")),
                    x509.UniformResourceIdentifier("sip:edge@example.com"),
                    x509.RFC822Name("ops@example.com"),
                ]
            ),
            False,
        )
        .sign(pki.root_key, hashes.SHA256())
    )
    names = certificate_names(cert)
    assert names[1:] == ["192.0.2.7", "sip:edge@example.com", "ops@example.com"]
    assert not decide([rule(1, 1, "exact", "192.0.2.7", "deny")], names).allowed


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        (r"(\w+)\1", "backreferences such as \\1 are not supported"),
        (r"(?<!x)edge", "lookbehind assertions"),
        (r"edge(?=\.)", "lookahead assertions"),
        ("[", "invalid regex: missing ]"),
        ("a" * 300, "longer than 256"),
    ],
)
def test_regexes_re2_cannot_run_are_refused(pattern: str, message: str) -> None:
    with pytest.raises(PolicyViolation, match=re.escape(message)) as info:
        compile_regex(pattern)
    assert info.value.code == "rule-regex"


@pytest.mark.parametrize(
    "pattern",
    [
        r".*\.example\.com",
        r"([a-z0-9-]+\.)+example\.com",
        r"([^.]+\.)+com",
        "(foo|bar)+",
        "(a+)+",  # exponential for a backtracking engine; linear on RE2
        "(a|aa)+",
        r"(?<host>[a-z]+)\.example\.com",
    ],
)
def test_usual_regexes_are_accepted(pattern: str) -> None:
    compile_regex(pattern)


def test_nested_repetition_runs_in_linear_time() -> None:
    r = rule(1, 1, "regex", "(a+)+b", "deny")
    assert not r.matches("a" * 1000)  # backtracking would take 2**1000 steps
    assert r.matches("A" * 1000 + "B")  # any case


def test_long_names_are_cut_before_regex_matching() -> None:
    r = rule(1, 1, "regex", "a*b", "deny")
    assert not r.matches("a" * 100_000 + "b")  # cut at MAX_NAME: no b, and fast


@pytest.mark.parametrize(
    ("priority", "kind", "pattern", "action", "message"),
    [
        (-1, "exact", "x", "allow", "priority"),
        (1, "glob", "x", "allow", "pattern type"),
        (1, "exact", "", "allow", "1 to 256"),
        (1, "exact", "x", "maybe", "action"),
        (1, "exact", "a\nb", "allow", "control"),
    ],
)
def test_bad_rules_are_refused(
    priority: int, kind: str, pattern: str, action: str, message: str
) -> None:
    with pytest.raises(PolicyViolation, match=message):
        rule(1, priority, kind, pattern, action)


def test_rule_round_trips_through_dict() -> None:
    original = rule(4, 7, "Regex", r".*\.example\.com", "DENY")
    assert original.type is RuleType.REGEX and original.action is RuleAction.DENY
    assert AccessRule.from_dict(original.as_dict()) == original


# -- the settings service ----------------------------------------------------------------------
@pytest.fixture
def node(tmp_path: Path, node_database: str | None) -> Iterator[Node]:
    n = Node.init(tmp_path / "d", fqdn="sip.example.com", database=node_database)
    yield n
    n.close()


@pytest.fixture
def sip(node: Node) -> SipSettings:
    return SipSettings(node.store, node.clock, node.audit)


def test_defaults(sip: SipSettings) -> None:
    config = sip.get()
    assert config.mutual_tls is MutualTls.REQUEST and config.eku_check and config.rules == ()


def test_set_changes_modes_bumps_version_and_is_audited(node: Node, sip: SipSettings) -> None:
    before = sip.version()
    config = sip.set(mutual_tls="require", eku_check="off")
    assert config.mutual_tls is MutualTls.REQUIRE and not config.eku_check
    assert sip.get() == config
    assert sip.version() == before + 1
    entry = node.audit.entries()[-1]
    assert entry.action == "sip.set" and entry.outcome == "ok"
    assert entry.detail["mutual_tls"] == "require" and entry.detail["eku_check"] == "off"
    with node.store.transaction() as session:
        raw = SettingsRepository(session).get("sip")
        assert SettingsRepository(session).get(SIP_VERSION) == before + 1
    assert raw["mutual_tls"] == "require"
    assert node.settings.mutual_tls_in_use()


def test_bad_setting_changes_nothing(node: Node, sip: SipSettings) -> None:
    with pytest.raises(PolicyViolation, match="off, request or require"):
        sip.set(mutual_tls="sometimes")
    with pytest.raises(PolicyViolation, match="on or off"):
        sip.set(eku_check="maybe")
    assert sip.version() == 0
    assert node.audit.entries()[-1].outcome == "refused"


def test_rules_are_added_listed_by_priority_and_removed(sip: SipSettings) -> None:
    first = sip.add_rule(priority=50, type="suffix", pattern=".example.com", action="allow")
    second = sip.add_rule(priority=10, type="exact", pattern="bad.example.com", action="deny")
    assert (first.id, second.id) == (1, 2)
    assert [r.id for r in sip.rules()] == [2, 1]
    assert sip.remove_rule(2) == second
    third = sip.add_rule(priority=1, type="regex", pattern=".*", action="deny")
    assert third.id == 3  # ids are never reused
    assert [r.id for r in sip.rules()] == [3, 1]
    with pytest.raises(NotFound, match="no SIP access rule has id 2"):
        sip.remove_rule(2)
    with pytest.raises(PolicyViolation, match="backreferences"):
        sip.add_rule(priority=1, type="regex", pattern=r"(a+)\1", action="deny")
    assert [r.id for r in sip.rules()] == [3, 1]


def test_a_rule_given_as_enums_is_stored_as_the_same_strings(sip: SipSettings) -> None:
    by_enum = sip.add_rule(
        priority=5, type=RuleType.SUFFIX, pattern=".example.com", action=RuleAction.DENY
    )
    by_name = sip.add_rule(priority=6, type="Suffix", pattern=".example.org", action="DENY")
    assert (by_enum.type, by_enum.action) == (by_name.type, by_name.action)
    stored = sip.get().as_dict()["rules"]  # what the settings JSON holds
    assert [(r["type"], r["action"]) for r in stored] == [("suffix", "deny")] * 2


Invoke = Callable[..., tuple[int, str, str]]


# -- the CLI -------------------------------------------------------------------------------------
@pytest.fixture
def run(node: Node, tmp_path: Path) -> Invoke:
    """``certway`` on the node's data directory: (exit code, stdout, stderr)."""
    cli = Cli(tmp_path / "d")

    def invoke(*args: str) -> tuple[int, str, str]:
        result = cli(*args)
        return result.exit_code, result.stdout, result.stderr

    return invoke


def test_cli_show_set_and_rules(run: Invoke) -> None:
    code, stdout, _ = run("sip", "show")
    assert code == 0 and "mutual TLS:   request" in stdout and "EKU checking: on" in stdout
    code, stdout, _ = run("sip", "set", "--mutual-tls", "require", "--eku-check", "off")
    assert code == 0 and "mutual TLS require, EKU checking off" in stdout
    code, stdout, _ = run(
        "sip", "rule", "add", "--priority", "5", "--type", "suffix",
        "--pattern", ".bad.example", "--action", "deny",
    )  # fmt: skip
    assert code == 0 and "added rule 1" in stdout
    code, stdout, _ = run("sip", "rule", "list", "--json")
    assert json.loads(stdout) == [
        {"id": 1, "priority": 5, "type": "suffix", "pattern": ".bad.example", "action": "deny"}
    ]
    code, stdout, _ = run("sip", "show", "--json")
    shown = json.loads(stdout)
    assert shown["mutual_tls"] == "require" and shown["eku_check"] == "off"
    assert len(shown["rules"]) == 1
    code, stdout, _ = run("sip", "rule", "remove", "1")
    assert code == 0 and "removed rule 1" in stdout
    code, stdout, _ = run("sip", "rule", "list")
    assert "no access rules" in stdout


def test_cli_errors_are_one_red_line(run: Invoke) -> None:
    code, _, stderr = run("sip", "set", "--mutual-tls", "sometimes")
    assert code == 2 and "error: mutual TLS must be off, request or require" in stderr
    code, _, stderr = run(
        "sip", "rule", "add", "--priority", "1", "--type", "regex",
        "--pattern", "(?=a)a", "--action", "deny",
    )  # fmt: skip
    assert code == 2 and "error: lookahead assertions such as (?=…) are not supported" in stderr
    code, _, stderr = run("sip", "rule", "remove", "9")
    assert code == 2 and "no SIP access rule has id 9" in stderr
    code, _, stderr = run("sip", "set")
    assert code == 2
