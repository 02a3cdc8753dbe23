"""The layers hold: import-linter checks the contracts of pyproject.toml ([tool.importlinter]).

Dependencies only point down (README "Architecture") and only the store speaks SQL. The
checks run in a subprocess on a given source tree, so the same contracts can be run on a
copy of the package with a rule broken on purpose, to show that they catch it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_LINT = "from importlinter.cli import lint_imports_command; lint_imports_command()"


def _lint_imports(project: Path) -> subprocess.CompletedProcess[str]:
    """Run the contracts of ``project``/pyproject.toml on ``project``/src/certway."""
    env = {**os.environ, "PYTHONPATH": str(project / "src"), "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-c", _LINT, "--config", str(project / "pyproject.toml"), "--no-cache"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_layers_hold() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 2 kept, 0 broken." in result.stdout


def _prepend(path: Path, line: str) -> None:
    text = path.read_text()
    head, _, rest = text.partition("from __future__ import annotations\n")
    assert rest, f"{path} has no __future__ import to put the line after"
    path.write_text(f"{head}from __future__ import annotations\n{line}\n{rest}")


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        # pki is below services: an upward import
        (
            "pki/keys.py",
            "import certway.services.node",
            "certway.pki.keys -> certway.services.node",
        ),
        # services are below sip (the cycle this contract ended)
        (
            "services/sip_settings.py",
            "from certway.sip import listener",
            "certway.services.sip_settings -> certway.sip.listener",
        ),
        # SQL outside the store
        ("services/admins.py", "from sqlalchemy import select", "certway.services.admins"),
        ("web/app.py", "import sqlalchemy.orm", "certway.web.app"),
        # a new top-level module must be given its place among the layers
        ("newcomer.py", "", "certway.newcomer"),
    ],
)
def test_a_broken_rule_fails_the_check(tmp_path: Path, module: str, line: str, broken: str) -> None:
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(
        ROOT / "src" / "certway",
        tmp_path / "src" / "certway",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    target = tmp_path / "src" / "certway" / module
    if target.exists():
        _prepend(target, line)
    else:
        target.write_text('"""A module no layer was given to."""\n')
    result = _lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "BROKEN" in result.stdout
    assert broken in result.stdout
