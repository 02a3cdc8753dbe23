"""The composition root: one node = one store + the services working on it."""

from __future__ import annotations

from pathlib import Path

from certway.clock import Clock, SystemClock
from certway.services.local_ca import LocalCA
from certway.store.db import Store

__all__ = ["Node"]


class Node:
    """A certway node. Nothing is created at import time: tests build as many as they like."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self.local_ca = LocalCA(store, clock)

    @classmethod
    def init(cls, data_dir: Path, clock: Clock | None = None) -> Node:
        """Create the data directory (master key 0600, database) if needed, then open it."""
        return cls(Store.create(data_dir), clock or SystemClock())

    @classmethod
    def open(cls, data_dir: Path, clock: Clock | None = None) -> Node:
        return cls(Store.open(data_dir), clock or SystemClock())

    def close(self) -> None:
        self.store.close()
