"""The one compile path of administrator regexes: RE2, its refusals said plainly."""

from __future__ import annotations

import pytest

from certway.adminregex import compile_admin_regex
from certway.errors import PolicyViolation

LINEAR = "(regexes run on RE2, in linear time)"


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        (r"(a)\1", f"backreferences such as \\1 are not supported {LINEAR}"),
        (r"(?P<x>a)(?P=x)", f"backreferences such as (?P=name) are not supported {LINEAR}"),
        (r"(?<x>a)\k<x>", f"backreferences such as \\k<name> are not supported {LINEAR}"),
        (r"a(?=b)", f"lookahead assertions such as (?=…) are not supported {LINEAR}"),
        (r"a(?!b)", f"lookahead assertions such as (?!…) are not supported {LINEAR}"),
        (r"(?<=a)b", f"lookbehind assertions such as (?<=…) are not supported {LINEAR}"),
        (r"(?<!a)b", f"lookbehind assertions such as (?<!…) are not supported {LINEAR}"),
        (r"(?>a+)b", f"atomic groups (?>…) are not supported {LINEAR}"),
        (r"a++b", f"possessive quantifiers such as ++ are not supported {LINEAR}"),
        (r"(a)?(?(1)b|c)", f"conditional groups (?(…)…) are not supported {LINEAR}"),
        (r"a\Z", "invalid regex: \\Z is not supported: use \\z for the end of the text"),
        (r"a{1001}", "invalid regex: repetition {1001} is too large (at most 1000, and nested "
         "repetitions multiply)"),
        ("(a", "invalid regex: missing ): (a"),
        ("", "the regex is empty"),
        ("a" * 1025, "the regex is longer than 1024 characters"),
    ],
)  # fmt: skip
def test_refusals_name_the_problem(pattern: str, message: str) -> None:
    with pytest.raises(PolicyViolation) as info:
        compile_admin_regex(pattern, code="some-code")
    assert str(info.value) == message
    assert info.value.code == "some-code"


def test_dotnet_and_python_groups_both_name_groups() -> None:
    regex = compile_admin_regex(r"(?<user>\w+)@(?P<domain>[a-z.]+)", code="x")
    assert regex.group_names == ("user", "domain")
    match = regex.search("mail: alice@example.com")
    assert match is not None
    assert match.text == "alice@example.com"
    assert match.groups == {"user": "alice", "domain": "example.com"}


def test_an_unused_group_is_empty() -> None:
    match = compile_admin_regex(r"(?<a>x)|(?<b>y)", code="x").search("y")
    assert match is not None and match.groups == {"a": "", "b": "y"}


def test_search_fullmatch_and_case() -> None:
    exact = compile_admin_regex(r"edge\.example\.com", code="x")
    assert exact.fullmatch("edge.example.com") and not exact.fullmatch("EDGE.example.com")
    assert not exact.fullmatch("edge.example.com.evil")
    assert exact.search("a.edge.example.com.b") is not None
    anycase = compile_admin_regex(r"edge\.example\.com", code="x", ignore_case=True)
    assert anycase.fullmatch("EDGE.Example.COM")


def test_text_that_is_not_valid_unicode_does_not_raise() -> None:
    regex = compile_admin_regex(r"b(?<g>\C)", code="x")  # \C: one byte
    match = regex.search("ab\u00e9")
    assert match is not None and match.groups == {"g": "\ufffd"}
    assert compile_admin_regex(r"ab.cd", code="x").fullmatch("ab\ud800cd")
