"""What the services and the web layer say names no command-line option nor command: the UI
and the API show these messages as they are, so a setting is named as every interface knows
it ("StartTLS", "the bind DN"); the CLI adds its own option or command to the line it
prints."""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "certway"
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
COMMAND = re.compile(r"'certway [a-z][a-z-]*(?: [a-z][a-z-]*)*")
CONSOLE_ONLY = {("services/tokens.py", "'certway token add")}
"""Allowed: a PKCS#11 module outside the system's module directories is registered on the
node's console only (the UI and the API may not name an arbitrary library to load)."""
COMMAND_TO_RUN = "'certway --data-dir "
"""Allowed: after a restore from the UI or the API, the restored node is started on the
server's console, and the answer says with which command (web/api/backup.py)."""


def _docstrings(tree: ast.AST) -> set[int]:
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
        # attribute docstrings: a string expression statement after an assignment
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Expr) and isinstance(child.value, ast.Constant):
                found.add(id(child.value))
    return found


def _flags_in_messages(source: str, where: str, pattern: re.Pattern[str] = FLAG) -> list[str]:
    """``where:line: --option`` for each option (or ``pattern``) named in a string that is
    not a docstring."""
    tree = ast.parse(source, where)
    skip = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            text = node.value
            if COMMAND_TO_RUN in text or text.startswith("certway --data-dir"):
                continue
            found.extend(
                f"{where}:{node.lineno}: {flag}"
                for flag in pattern.findall(text)
                if (where, flag) not in CONSOLE_ONLY
            )
    return found


def test_service_and_web_messages_name_no_cli_option() -> None:
    files = sorted([*(SRC / "services").rglob("*.py"), *(SRC / "web").rglob("*.py")])
    assert len(files) > 40
    found = [
        hit
        for path in files
        for hit in _flags_in_messages(path.read_text(), str(path.relative_to(SRC)))
    ]
    assert found == []


def test_the_check_finds_an_option_in_a_message_but_not_in_a_docstring() -> None:
    source = (
        '"""Docstrings may name ``--url``."""\n'
        "def f(x):\n"
        '    """Or ``--bind-dn``."""\n'
        '    raise ValueError(f"{x}: use ldap:// with --starttls")\n'
    )
    assert _flags_in_messages(source, "probe.py") == ["probe.py:4: --starttls"]


def test_service_and_web_messages_name_no_cli_command() -> None:
    files = sorted([*(SRC / "services").rglob("*.py"), *(SRC / "web").rglob("*.py")])
    found = [
        hit
        for path in files
        for hit in _flags_in_messages(path.read_text(), str(path.relative_to(SRC)), COMMAND)
    ]
    assert found == []
