"""Administrator-supplied regexes (username mapping, SIP access rules, the admin
certificate-login regex), all compiled here and run by RE2 (``google-re2``).

RE2 runs in time linear in the text, whatever the pattern: ``(?:a?){28}a{28}``,
``\\w*\\w*\\w*!`` or ``(a+)+`` cost what ``a`` costs. The price is that RE2 has no
backtracking features: backreferences (``\\1``, ``(?P=name)``, ``\\k<name>``), lookahead
and lookbehind (``(?=…)``, ``(?!…)``, ``(?<=…)``, ``(?<!…)``), atomic groups, possessive
quantifiers and conditionals are refused with a one-line ``PolicyViolation`` naming the
construct. So is a pattern longer than ``MAX_PATTERN`` characters, a repetition count above
1000 (nested counts multiply), or a pattern that compiles to more than ``MAX_PROGRAM`` RE2
instructions: a search costs at worst the text's length times the program's size (when RE2's
fast DFA runs out of its cache, ``MAX_MEMORY``, it falls back to simulating the program).
At most ``CACHED`` compiled patterns are kept, so patterns sent to the certificate test
cannot pile up memory.

Named groups may be written the .NET/PCRE way ``(?<Group1>…)`` (as Expressway shows them)
or the Python way ``(?P<Group1>…)``; the first is rewritten to the second before RE2 sees
it. ``\\w``, ``\\d``, ``\\s`` and ``\\b`` are ASCII-only in RE2 (``\\pL`` is any letter).

Standard library and ``re2`` only; Python's backtracking ``re`` never runs an
administrator's pattern.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import re2

from certway.errors import PolicyViolation

__all__ = [
    "CACHED",
    "MAX_MEMORY",
    "MAX_PATTERN",
    "MAX_PROGRAM",
    "AdminRegex",
    "RegexMatch",
    "compile_admin_regex",
]

MAX_PATTERN = 1024
"""Characters in a pattern (after ``/…/`` delimiters are removed by the caller)."""
MAX_PROGRAM = 10_000
"""RE2 instructions a compiled pattern may have (``Subject:.*CN=(?<Group1>[^,]*)`` has 33)."""
MAX_MEMORY = 8 << 20
"""Bytes RE2 may use for one compiled pattern, its program and its DFA cache (RE2's default
``max_mem``; a smaller cache makes RE2 fall back to its slower simulation sooner)."""
CACHED = 32
"""Compiled patterns kept for reuse (the login regex and the SIP rules run on every
connection)."""


@dataclass(frozen=True, slots=True)
class RegexMatch:
    """What a search found: the matched text and every named group ("" when unused)."""

    text: str
    groups: Mapping[str, str]


class AdminRegex:
    """One compiled administrator pattern. ``search`` finds it anywhere in a text,
    ``fullmatch`` only as the whole text; both take time linear in the text."""

    __slots__ = ("_compiled", "group_names", "pattern")

    def __init__(self, pattern: str, compiled: Any, group_names: tuple[str, ...]) -> None:
        self.pattern = pattern
        """The pattern as the administrator wrote it."""
        self.group_names = group_names
        """Its named groups, in the order they open."""
        self._compiled = compiled

    def search(self, text: str) -> RegexMatch | None:
        found = self._compiled.search(_utf8(text))
        if found is None:
            return None
        return RegexMatch(
            _text(found.group(0)),
            {name: _text(found.group(name) or b"") for name in self.group_names},
        )

    def fullmatch(self, text: str) -> bool:
        return self._compiled.fullmatch(_utf8(text)) is not None

    def __repr__(self) -> str:
        return f"AdminRegex({self.pattern!r})"


def _utf8(text: str) -> bytes:
    # Matching bytes keeps RE2's offsets in bytes (no re-decoding) and lets a lone surrogate
    # through instead of raising (RE2 reads it as one more character).
    return text.encode("utf-8", "surrogatepass")


def _text(data: bytes) -> str:
    # A group can end inside a character (``\C`` matches one byte): never raise for that.
    return data.decode("utf-8", "replace")


@functools.lru_cache(maxsize=CACHED)
def compile_admin_regex(pattern: str, *, code: str, ignore_case: bool = False) -> AdminRegex:
    """Compile ``pattern`` with RE2; ``PolicyViolation(code)`` with a one-line reason when it
    is too long, invalid, or uses a construct RE2 cannot run."""
    if not pattern:
        raise PolicyViolation(code, "the regex is empty")
    if len(pattern) > MAX_PATTERN:
        raise PolicyViolation(code, f"the regex is longer than {MAX_PATTERN} characters")
    options = re2.Options()
    options.max_mem = MAX_MEMORY
    options.case_sensitive = not ignore_case
    options.log_errors = False  # the error is raised to the caller, not printed by RE2
    try:
        compiled = re2.compile(_python_groups(pattern), options)
    except re2.error as exc:
        raise PolicyViolation(code, _explain(_re2_message(exc), pattern)) from None
    finally:
        re2.purge()  # re2 keeps its own cache of 128 patterns: ours (CACHED) is the only one
    size = compiled.programsize
    if size > MAX_PROGRAM:
        raise PolicyViolation(code, _TOO_LARGE.format(f"it compiles to {size:,} instructions"))
    names = tuple(sorted(compiled.groupindex, key=compiled.groupindex.__getitem__))
    return AdminRegex(pattern, compiled, names)


# -- (?<name>…) → (?P<name>…) ----------------------------------------------------------------
def _python_groups(pattern: str) -> str:
    """Rewrite each .NET/PCRE named group ``(?<name>`` as ``(?P<name>``, leaving escaped
    characters, character classes and lookbehinds ``(?<=``/``(?<!`` alone."""
    out: list[str] = []
    index, size = 0, len(pattern)
    in_class = False
    while index < size:
        char = pattern[index]
        if char == "\\":  # an escape: copy it with the escaped character
            out.append(pattern[index : index + 2])
            index += 2
            continue
        if in_class:
            if pattern.startswith("[:", index):  # [[:alpha:]]
                end = pattern.find(":]", index + 2)
                if end != -1:
                    out.append(pattern[index : end + 2])
                    index = end + 2
                    continue
            if char == "]":
                in_class = False
            out.append(char)
            index += 1
            continue
        if char == "[":
            in_class = True
            start = index + 1
            if pattern.startswith("^", start):
                start += 1
            if pattern.startswith("]", start):  # []…] and [^]…]: the first ] is a member
                start += 1
            out.append(pattern[index:start])
            index = start
            continue
        if pattern.startswith("(?<", index):
            name_end = pattern.find(">", index + 3)
            name = pattern[index + 3 : name_end] if name_end != -1 else ""
            if _is_group_name(name):
                out.append(f"(?P<{name}>")
                index = name_end + 1
                continue
        out.append(char)
        index += 1
    return "".join(out)


def _is_group_name(name: str) -> bool:
    return (
        bool(name)
        and (name[0].isascii() and (name[0].isalpha() or name[0] == "_"))
        and all(c.isascii() and (c.isalnum() or c == "_") for c in name)
    )


# -- RE2's errors, said plainly ------------------------------------------------------------------
_TOO_LARGE = (
    f"the regex is too large to run ({{}}; the limit is {MAX_PROGRAM:,} instructions): use "
    "fewer or smaller repetitions and character classes"
)
_LINEAR = "regexes run on RE2, in linear time"
_PERL_OPERATORS = (
    ("(?<=", "lookbehind assertions such as (?<=…) are not supported"),
    ("(?<!", "lookbehind assertions such as (?<!…) are not supported"),
    ("(?=", "lookahead assertions such as (?=…) are not supported"),
    ("(?!", "lookahead assertions such as (?!…) are not supported"),
    ("(?P=", "backreferences such as (?P=name) are not supported"),
    ("(?>", "atomic groups (?>…) are not supported"),
    ("(?(", "conditional groups (?(…)…) are not supported"),
    ("(?#", "comments (?#…) are not supported"),
)


def _re2_message(exc: re2.error) -> str:
    raw = exc.args[0] if exc.args else ""
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def _explain(message: str, pattern: str) -> str:
    """A one-line reason for an RE2 compile error such as ``invalid perl operator: (?=``."""
    kind, _, arg = message.partition(": ")
    if kind == "invalid perl operator":
        if arg == "(?P" and "(?P=" in pattern:  # RE2 quotes only "(?P" for (?P=name)
            arg = "(?P="
        for prefix, reason in _PERL_OPERATORS:
            if arg.startswith(prefix):
                return f"{reason} ({_LINEAR})"
        return f"invalid regex: unsupported group syntax {arg} ({_LINEAR})"
    if kind == "invalid escape sequence":
        if arg[1:2].isdigit() or arg in ("\\k", "\\g"):
            example = arg if arg[1:2].isdigit() else arg + "<name>"
            return f"backreferences such as {example} are not supported ({_LINEAR})"
        if arg == "\\Z":
            return "invalid regex: \\Z is not supported: use \\z for the end of the text"
    if kind == "bad repetition operator" and arg[-1:] == "+" and len(arg) == 2:
        return f"possessive quantifiers such as {arg} are not supported ({_LINEAR})"
    if kind == "invalid repetition size":
        return (
            f"invalid regex: repetition {arg} is too large (at most 1000, and nested "
            "repetitions multiply)"
        )
    if message.startswith("pattern too large"):
        return _TOO_LARGE.format(f"its compiled form needs more than {MAX_MEMORY >> 20} MiB")
    return f"invalid regex: {message}"
