"""Username mapping rules (S2): regex dialects, formats, errors."""

from __future__ import annotations

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


def test_lookbehind_is_not_mistaken_for_a_group() -> None:
    regex = compile_regex(r"(?<=CN=)(?<User>\w+)")
    assert list(regex.groupindex) == ["User"]


@pytest.mark.parametrize(
    ("pattern", "fmt", "message"),
    [
        ("Subject:(?<Group1>[", "#Group1#", "invalid regex"),
        ("", "#Group1#", "empty"),
        ("CN=(?<Group1>.*)", "#User#", "no group of that name"),
        ("CN=(?<Group1>.*)", "plain", "names no group"),
        ("x" * 2000, "#Group1#", "longer than"),
        ("CN=(?<Group1>(a+)+)", "#Group1#", "exponential time"),
    ],
)
def test_bad_regex_or_format(pki: Pki, pattern: str, fmt: str, message: str) -> None:
    with pytest.raises(PolicyViolation, match=message):
        map_username(pki.leaf(), pattern, fmt)


def test_no_match_is_reported(pki: Pki) -> None:
    with pytest.raises(PolicyViolation, match="does not match") as info:
        map_username(pki.leaf(), r"Subject:.*UID=(?<Group1>\w+)", "#Group1#")
    assert info.value.code == "regex-no-match"
