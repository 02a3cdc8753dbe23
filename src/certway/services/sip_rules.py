"""Certificate access rules for SIP TLS peers: who may connect once the chain is valid.

A rule has a priority (lower first), a pattern type (exact, prefix, suffix, regex), a pattern
and an action (allow, deny). It is matched against the certificate's common name(s) and every
subject alternative name (DNS, IP, URI, email). The first rule, by priority, that matches any
of those names decides; when none matches the peer is allowed.

Matching ignores case (certificate names are mostly DNS names, which do). A regex must match
a whole name. Regexes come from administrators but run on every handshake, so they run on
RE2 (``certway.adminregex``), in time linear in the name whatever the pattern; a pattern of
more than ``MAX_PATTERN`` characters, or one using what RE2 cannot run (backreferences,
lookarounds), is refused when the rule is made. Names longer than ``MAX_NAME`` characters are
cut before matching.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from certway.adminregex import AdminRegex, compile_admin_regex
from certway.errors import PolicyViolation

__all__ = [
    "MAX_NAME",
    "MAX_PATTERN",
    "AccessRule",
    "Decision",
    "RuleAction",
    "RuleType",
    "certificate_names",
    "compile_regex",
    "decide",
    "make_rule",
]

MAX_PATTERN = 256
MAX_NAME = 1024
MAX_PRIORITY = 65535


class RuleType(StrEnum):
    """How a rule's pattern matches a certificate name (the values are stored as is)."""

    EXACT = "exact"
    PREFIX = "prefix"
    SUFFIX = "suffix"
    REGEX = "regex"


class RuleAction(StrEnum):
    """What a matching rule does with the peer (the values are stored as is)."""

    ALLOW = "allow"
    DENY = "deny"


def compile_regex(pattern: str) -> AdminRegex:
    """A rule regex (RE2, any case) for whole names; PolicyViolation when RE2 cannot run it."""
    if len(pattern) > MAX_PATTERN:
        raise PolicyViolation("rule-regex", f"the regex is longer than {MAX_PATTERN} characters")
    return compile_admin_regex(pattern, code="rule-regex", ignore_case=True)


@dataclass(frozen=True, slots=True)
class AccessRule:
    id: int
    priority: int
    type: RuleType
    pattern: str
    action: RuleAction

    def matches(self, name: str) -> bool:
        name = name[:MAX_NAME]
        if self.type is RuleType.REGEX:
            return compile_regex(self.pattern).fullmatch(name)
        wanted, given = self.pattern.casefold(), name.casefold()
        if self.type is RuleType.EXACT:
            return given == wanted
        if self.type is RuleType.PREFIX:
            return given.startswith(wanted)
        return given.endswith(wanted)

    def describe(self) -> str:
        return f"rule {self.id} ({self.action} {self.type} '{self.pattern}')"

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "priority": self.priority,
            "type": self.type.value,
            "pattern": self.pattern,
            "action": self.action.value,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> AccessRule:
        return make_rule(
            int(raw["id"]),
            priority=int(raw["priority"]),
            type=str(raw["type"]),
            pattern=str(raw["pattern"]),
            action=str(raw["action"]),
        )


def _choice(kind: type[RuleType] | type[RuleAction], value: str, what: str) -> Any:
    # StrEnum members are str: a member and its name in any case both give the member.
    try:
        return kind(value.lower())
    except ValueError:
        allowed = "|".join(m.value for m in kind)
        raise PolicyViolation("rule", f"{what} must be {allowed}, not '{value}'") from None


def make_rule(
    rule_id: int,
    *,
    priority: int,
    type: RuleType | str,
    pattern: str,
    action: RuleAction | str,
) -> AccessRule:
    """A checked rule (PolicyViolation with a clear message when anything is wrong)."""
    if not 0 <= priority <= MAX_PRIORITY:
        raise PolicyViolation("rule", f"priority must be between 0 and {MAX_PRIORITY}")
    kind: RuleType = _choice(RuleType, type, "the pattern type")
    verdict: RuleAction = _choice(RuleAction, action, "the action")
    if not pattern or len(pattern) > MAX_PATTERN:
        raise PolicyViolation("rule", f"the pattern must have 1 to {MAX_PATTERN} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in pattern):
        raise PolicyViolation("rule", "the pattern contains control characters")
    if kind is RuleType.REGEX:
        compile_regex(pattern)
    return AccessRule(rule_id, priority, kind, pattern, verdict)


def certificate_names(cert: x509.Certificate) -> list[str]:
    """Every name a rule is matched against: the CN(s), then DNS, IP, URI and email SANs."""
    names: list[str] = []
    for attr in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        value = attr.value
        names.append(value if isinstance(value, str) else value.decode("utf-8", "replace"))
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return names
    for kind in (x509.DNSName, x509.IPAddress, x509.UniformResourceIdentifier, x509.RFC822Name):
        names.extend(str(value) for value in san.get_values_for_type(kind))
    return names


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    rule: AccessRule | None = None
    """The rule that decided; None when no rule matched (default allow)."""
    name: str | None = None
    """The certificate name the rule matched."""

    def describe(self) -> str:
        if self.rule is None:
            return "no access rule matched: allowed by default"
        verb = "allowed" if self.allowed else "denied"
        return f"{verb} by access {self.rule.describe()} matching '{self.name}'"


def ordered(rules: Iterable[AccessRule]) -> list[AccessRule]:
    return sorted(rules, key=lambda r: (r.priority, r.id))


def decide(rules: Sequence[AccessRule], names: Sequence[str]) -> Decision:
    """The first rule by priority (then id) matching any name decides; default allow."""
    for rule in ordered(rules):
        for name in names:
            if rule.matches(name):
                return Decision(rule.action is RuleAction.ALLOW, rule, name)
    return Decision(True)
