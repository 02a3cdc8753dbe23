"""Username mapping rules (S2): regex dialects, formats, errors."""

from __future__ import annotations

import re

import pytest

from certway.errors import PolicyViolation
from certway.trust.identity import DEFAULT_FORMAT, DEFAULT_REGEX, compile_regex, map_username

from pkitools import Pki


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki("Id", index=60)


def test_default_expressway_regex_takes_the_cn(pki: Pki) -> None:
    cert = pki.leaf("alice.example.com")
    assert map_username(cert, DEFAULT_REGEX, DEFAULT_FORMAT).username == "alice.example.com"


@pytest.mark.parametrize(
    "pattern",
    [
        r"Subject:.*CN=(?<Group1>[^.,]*)",
        r"Subject:.*CN=(?P<Group1>[^.,]*)",
        r"/Subject:.*CN=(?<Group1>[^.,]*)/",
    ],
)
def test_both_group_syntaxes_and_delimiters(pki: Pki, pattern: str) -> None:
    cert = pki.leaf("bob.example.com")
    assert map_username(cert, pattern, "pre-#Group1#-suf").username == "pre-bob-suf"


def test_named_groups_are_found_in_both_syntaxes() -> None:
    regex = compile_regex(r"/(?<User>\w+)@(?P<Domain>[a-z.]+)/")
    assert regex.group_names == ("User", "Domain")


@pytest.mark.parametrize(
    ("pattern", "groups"),
    [
        (r"[(?<x>a)](?<y>b)", ("y",)),  # inside a class: not a group
        (r"\(?<x>a\)", ()),  # an escaped parenthesis
        (r"\\(?<x>a)", ("x",)),  # an escaped backslash, then a group
        (r"[]](?<y>b)", ("y",)),  # ] first in a class is a member
        (r"[[:alpha:]](?<z>c)", ("z",)),
    ],
)
def test_dotnet_group_rewriting_reads_escapes_and_classes(
    pattern: str, groups: tuple[str, ...]
) -> None:
    assert compile_regex(pattern).group_names == groups


def test_lookbehind_is_refused_not_mistaken_for_a_group() -> None:
    with pytest.raises(PolicyViolation, match="lookbehind assertions") as info:
        compile_regex(r"(?<=CN=)(?<User>\w+)")
    assert info.value.code == "regex"


@pytest.mark.parametrize(
    ("pattern", "fmt", "message"),
    [
        ("Subject:(?<Group1>[", "#Group1#", "invalid regex"),
        ("", "#Group1#", "empty"),
        ("CN=(?<Group1>.*)", "#User#", "no group of that name"),
        ("CN=(?<Group1>.*)", "plain", "names no group"),
        ("x" * 2000, "#Group1#", "longer than"),
        (r"CN=(?<Group1>\w+),CN=\1", "#Group1#", "backreferences such as \\1"),
        (r"CN=(?<Group1>(?!admin)\w+)", "#Group1#", "lookahead assertions"),
        (r"CN=(?<Group1>\pL{1000})", "#Group1#", "too large to run"),
    ],
)
def test_bad_regex_or_format(pki: Pki, pattern: str, fmt: str, message: str) -> None:
    with pytest.raises(PolicyViolation, match=re.escape(message)):
        map_username(pki.leaf(), pattern, fmt)


def test_no_match_is_reported(pki: Pki) -> None:
    with pytest.raises(PolicyViolation, match="does not match") as info:
        map_username(pki.leaf(), r"Subject:.*UID=(?<Group1>\w+)", "#Group1#")
    assert info.value.code == "regex-no-match"
