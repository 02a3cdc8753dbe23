"""The admin listener's client-certificate settings are asked for on every request, so they
are cached: a change made through this node applies at once, one made by another process
(the CLI, a cluster peer) once the cache is older than ``RECHECK_SECONDS``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from certway.clock import FixedClock
from certway.services import admin_security
from certway.services.admin_security import Mode
from certway.services.api_tokens import RECHECK_SECONDS
from certway.services.node import Node

from conftest import NOW


class Monotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def monotonic(monkeypatch: pytest.MonkeyPatch) -> Monotonic:
    clock = Monotonic()
    monkeypatch.setattr(admin_security.time, "monotonic", clock)
    return clock


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[tuple[Node, Node]]:
    server = Node.init(tmp_path / "d", FixedClock(NOW), factory=False)
    cli = Node.open(tmp_path / "d", FixedClock(NOW))
    yield server, cli
    cli.close()
    server.close()


def test_a_change_here_applies_at_once(nodes: tuple[Node, Node], monotonic: Monotonic) -> None:
    server, _cli = nodes
    assert server.admin_security.get().mode is Mode.NOT_REQUIRED
    server.admin_security.set(mode="certificate-validation", force=True)
    assert server.admin_security.get().mode is Mode.VALIDATION


def test_another_process_change_applies_once_the_cache_is_stale(
    nodes: tuple[Node, Node], monotonic: Monotonic
) -> None:
    server, cli = nodes
    assert server.admin_security.get().mode is Mode.NOT_REQUIRED
    cli.admin_security.set(mode="certificate-validation", force=True)
    monotonic.now += RECHECK_SECONDS / 2
    assert server.admin_security.get().mode is Mode.NOT_REQUIRED  # still the cached read
    monotonic.now += RECHECK_SECONDS / 2
    assert server.admin_security.get().mode is Mode.VALIDATION
