"""Administrator-supplied regexes that run on hot paths (every handshake, every request) are
checked when they are set: no backreferences and no nested unbounded repetition (``(a+)+``)
or ambiguous alternatives inside a repeat — the shapes that make Python's backtracking engine
take exponential time. Standard library only.
"""

from __future__ import annotations

import importlib
from typing import Any

from certway.errors import PolicyViolation

__all__ = ["check_regex_shape"]

# The regex parser of the standard library (``re._parser``, typed as Any): the parse tree
# shows the repetitions and backreferences of a pattern.
_PARSER: Any = importlib.import_module("re._parser")
_OPS: Any = importlib.import_module("re._constants")


def _literal_stops(item: Any, follower: Any) -> bool:
    """True when repeated ``item`` (a plain character set or literal) cannot match the
    literal character ``follower``: then ``([a-z]+\\.)+`` splits a name one way only."""
    if follower is None or follower[0] is not _OPS.LITERAL:
        return False
    chars = {chr(follower[1]).lower(), chr(follower[1]).upper()}
    if len(item) != 1:
        return False
    op, arg = item[0]
    if op is _OPS.LITERAL:
        return chr(arg).lower() not in {c.lower() for c in chars}
    if op is _OPS.NOT_LITERAL:  # [^.]
        return chr(arg).lower() in {c.lower() for c in chars}
    if op is not _OPS.IN:
        return False
    members = list(arg)
    if members and members[0][0] is _OPS.NEGATE:  # [^.]: stops at a listed character
        return any(
            (m_op is _OPS.LITERAL and chr(m).lower() in {c.lower() for c in chars})
            or (m_op is _OPS.RANGE and any(m[0] <= ord(c) <= m[1] for c in chars))
            for m_op, m in members[1:]
        )
    for member_op, member in members:
        if member_op is _OPS.LITERAL:
            if chr(member) in chars or chr(member).lower() in {c.lower() for c in chars}:
                return False
        elif member_op is _OPS.RANGE:
            low, high = member
            if any(low <= ord(c) <= high for c in chars):
                return False
        else:  # NEGATE, CATEGORY (\\w, \\d, ...): not analysed, so not allowed
            return False
    return True


def _check_shape(tree: Any, *, code: str, inside_repeat: bool = False) -> None:
    """Refuse backreferences and an unbounded repetition inside another repetition, unless a
    literal the inner repetition cannot match ends it (the shapes of exponential and high
    polynomial backtracking: ``(a+)+``, ``(.*a){20}``)."""
    items = list(tree)
    for index, (op, arg) in enumerate(items):
        follower = items[index + 1] if index + 1 < len(items) else None
        if op is _OPS.GROUPREF or op is _OPS.GROUPREF_EXISTS:
            raise PolicyViolation(code, "backreferences are not allowed in this regex")
        if op in (_OPS.MAX_REPEAT, _OPS.MIN_REPEAT, _OPS.POSSESSIVE_REPEAT):
            _low, high, sub = arg
            unbounded = high == _OPS.MAXREPEAT
            if inside_repeat and unbounded and not _literal_stops(list(sub), follower):
                raise PolicyViolation(
                    code,
                    "a repetition inside a repetition, such as (a+)+ or (.*x){5}, can take "
                    "exponential time: rewrite the regex (e.g. ([a-z0-9-]+\\.)+ is fine)",
                )
            _check_shape(sub, code=code, inside_repeat=inside_repeat or high > 1)
        elif op is _OPS.SUBPATTERN:
            _check_shape(arg[-1], code=code, inside_repeat=inside_repeat)
        elif op is _OPS.BRANCH:
            if inside_repeat:
                firsts = [
                    chr(b[0][1]).lower() if b and b[0][0] is _OPS.LITERAL else None for b in arg[1]
                ]
                if None in firsts or len(set(firsts)) != len(firsts):
                    raise PolicyViolation(
                        code,
                        "alternatives inside a repetition must start with different "
                        "characters, such as (foo|bar)+: (a|aa)+ can take exponential time",
                    )
            for branch in arg[1]:
                _check_shape(branch, code=code, inside_repeat=inside_repeat)
        elif op in (_OPS.ASSERT, _OPS.ASSERT_NOT):
            _check_shape(arg[1], code=code, inside_repeat=inside_repeat)
        elif op is _OPS.ATOMIC_GROUP:
            _check_shape(arg, code=code, inside_repeat=inside_repeat)


def check_regex_shape(pattern: str, *, code: str = "regex") -> None:
    """Refuse a pattern whose shape can backtrack exponentially; PolicyViolation(code)."""
    try:
        tree = _PARSER.parse(pattern)
    except (Exception, RecursionError) as exc:  # re.error and the parser's own errors
        raise PolicyViolation(code, f"'{pattern}' is not a valid regex: {exc}") from None
    _check_shape(tree, code=code)
