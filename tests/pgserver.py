"""A throwaway PostgreSQL server (Debian's ``postgresql`` binaries: initdb + pg_ctl) on a free
port, that a test may stop, start and restart; and a fresh database for a test.

Never the machine's shared server: restarting that would pull it from under everyone else.
As root, the server runs as the ``postgres`` user (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["PgServer", "restartable_pg_fixture"]


def _bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for base in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (base / name).exists():
            return str(base / name)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:  # (tests/pgtools.py finds or starts the shared one; this one restarts)
    """One PostgreSQL server in a temporary directory; trust authentication on 127.0.0.1."""

    def __init__(self) -> None:
        initdb, self._pg_ctl = _bin("initdb"), _bin("pg_ctl")
        if initdb is None or self._pg_ctl is None:
            pytest.skip("PostgreSQL server binaries (Debian package postgresql) not installed")
        self._as: list[str] = []
        if os.geteuid() == 0:
            pwd.getpwnam("postgres")  # the Debian package's user
            self._as = ["runuser", "-u", "postgres", "--"]
        self.root = Path(tempfile.mkdtemp(prefix="certway-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        if self._as:
            shutil.chown(self.root, "postgres")
        self._run(initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def _run(self, *args: str) -> None:
        subprocess.run(
            [*self._as, *args], check=True, capture_output=True, timeout=120, cwd=self.root
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off "
            "-c max_connections=100"
        )
        self._run(self._pg_ctl or "", "-D", str(self.data), "-o", options, "-w", "-t", "60",
                  "-l", str(self.root / "log"), "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run(self._pg_ctl or "", "-D", str(self.data), "-m", mode, "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        import psycopg

        name = f"certway_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url().replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(name="restartable_pg")
def restartable_pg_fixture() -> Iterator[PgServer]:
    """A PostgreSQL server of the test's own, started (it may stop and restart it)."""
    server = PgServer()
    try:
        server.start()
        yield server
    finally:
        server.destroy()
