"""Help texts speak of features, never of specification IDs (SC2, RV5, ...)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer

from certway.cli.main import app

from conftest import Cli

SPEC_ID = re.compile(r"\b(SC|RV|CA|TC|DC|S|O|T|I)\d+\b")


def command_paths() -> list[tuple[str, ...]]:
    """Every command and group of ``certway``, as the words that reach it."""
    paths: list[tuple[str, ...]] = [()]

    def walk(command: Any, path: tuple[str, ...]) -> None:  # typer's (vendored) click Command
        for name, sub in getattr(command, "commands", {}).items():
            paths.append((*path, name))
            walk(sub, (*path, name))

    walk(typer.main.get_command(app), ())
    return paths


def test_every_command_is_found() -> None:
    paths = command_paths()
    assert ("server-cert", "csr", "generate") in paths and ("zone", "add") in paths
    assert len(paths) > 50


def test_the_pattern_finds_a_spec_id() -> None:
    assert SPEC_ID.search("The server certificate (SC1-SC5).")
    assert SPEC_ID.search("policies per service (RV5)")
    assert not SPEC_ID.search("TLS 1.2, RE2 regexes, SHA256, PKCS#12, port 5061")


@pytest.mark.parametrize("path", command_paths(), ids=lambda p: " ".join(p) or "certway")
def test_help_names_no_spec_ids(path: tuple[str, ...], tmp_path: Path) -> None:
    result = Cli(tmp_path)(*path, "--help")
    assert result.exit_code == 0, result.stderr
    assert "Usage:" in result.stdout
    found = SPEC_ID.findall(result.stdout)
    assert not found, f"certway {' '.join(path)} --help names {found}"
