"""Where a change came from (``via``): the values the code writes, what each means, and the
README's description of the audit log agree."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

from certway.services.audit import SYSTEM, VIA, Via, current_actor

ROOT = Path(__file__).resolve().parents[2]


def test_every_via_is_described() -> None:
    assert tuple(VIA) == get_args(Via)
    assert all(VIA.values())
    assert {SYSTEM.via, current_actor().via} <= set(VIA)


def test_the_readme_names_every_via_of_the_audit_log() -> None:
    readme = (ROOT / "README.md").read_text()
    [audit] = [line for line in readme.splitlines() if line.startswith("| `certway audit ")]
    assert [via for via in VIA if f"`{via}`" not in audit] == []
