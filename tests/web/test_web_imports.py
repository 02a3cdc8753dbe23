"""The web layer's imports point one way: the app imports the routers and the shared context,
and nothing imports the app back (not even inside a function, where a cycle would hide)."""

from __future__ import annotations

import ast
from pathlib import Path

import certway.web

WEB = Path(certway.web.__file__).parent


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth of its code."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_nothing_in_the_web_layer_imports_the_app() -> None:
    modules = [p for p in WEB.rglob("*.py") if p != WEB / "app.py"]
    assert len(modules) > 20  # the api/ and ui/ packages are read too
    offenders = {str(p.relative_to(WEB)) for p in modules if "certway.web.app" in imported(p)}
    assert offenders == set()


def test_routers_reach_the_zone_pinger_only_through_sip_zones_functions() -> None:
    """A "check now" is one call (``check_zone`` / ``check_zone_now``), not a pinger built in
    an HTTP handler."""
    for path in [*WEB.joinpath("api").glob("*.py"), *WEB.joinpath("ui").glob("*.py")]:
        assert "certway.sip.zones.ZonePinger" not in imported(path), path
