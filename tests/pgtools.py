"""PostgreSQL for the tests: the server at 127.0.0.1:5432 when one answers (trust auth, user
postgres or root), else a throwaway server from Debian's ``postgresql`` package (initdb in a
temporary directory, its own free port on 127.0.0.1, stopped at the end). Each test gets a
database of its own, created and dropped around it.

``CERTWAY_TEST_PG=throwaway`` forces the throwaway server; ``CERTWAY_TEST_PG=postgresql://…``
names the server to use instead of 127.0.0.1:5432.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg import sql

__all__ = ["PgServer", "find_or_start_server", "temporary_database"]

_DEFAULT_HOST = "127.0.0.1"
_DEFAULT_PORT = 5432


def _bin(name: str) -> str:
    """A PostgreSQL server program (Debian keeps them out of PATH)."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    if found:
        return found[0]
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} not found: install Debian's postgresql package")
    return path


def _answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgServer:
    """A PostgreSQL server the tests may create databases in (admin URL without database)."""

    def __init__(self, admin_url: str, *, data: Path | None = None, run_as: str | None = None):
        self.admin_url = admin_url
        self._data = data
        self._run_as = run_as
        self.throwaway = data is not None

    def url(self, database: str) -> str:
        base, _, _ = self.admin_url.rpartition("/")
        return f"{base}/{database}"

    @classmethod
    def start_throwaway(cls) -> PgServer:
        """initdb + pg_ctl start in a temporary directory, on a free port of 127.0.0.1."""
        initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")  # "not found" before anything else
        root = Path(tempfile.mkdtemp(prefix="certway-pg-"))
        data = root / "data"
        run_as = None
        if os.geteuid() == 0:  # the server refuses to run as root
            run_as = "postgres"
            account = pwd.getpwnam(run_as)
            os.chown(root, account.pw_uid, account.pw_gid)
        port = _free_port()
        server = cls(f"postgresql://postgres@127.0.0.1:{port}/postgres", data=data, run_as=run_as)
        server._run(initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        options = f"-p {port} -c listen_addresses=127.0.0.1 -k {root} -c fsync=off"
        server._run(pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start")
        return server

    def _run(self, *argv: str) -> None:
        prefix = ["runuser", "-u", self._run_as, "--"] if self._run_as else []
        result = subprocess.run(
            [*prefix, *argv], capture_output=True, text=True, timeout=120, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {result.stderr.strip() or result.stdout}")

    def stop(self) -> None:
        if self._data is None:
            return
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self._run(_bin("pg_ctl"), "-D", str(self._data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self._data.parent, ignore_errors=True)
        self._data = None

    def create_database(self) -> str:
        name = f"certway_test_{secrets.token_hex(6)}"
        with psycopg.connect(self.admin_url, autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    @contextlib.contextmanager
    def database(self) -> Iterator[str]:
        """A new empty database (its URL), dropped at the end."""
        name = self.create_database()
        try:
            yield self.url(name)
        finally:
            self.drop_database(name)


def find_or_start_server(mode: str | None = None) -> PgServer:
    """The server to test against (see the module's docstring)."""
    mode = mode if mode is not None else os.environ.get("CERTWAY_TEST_PG", "")
    if mode.startswith("postgresql://"):
        return PgServer(mode)
    if mode != "throwaway":
        for user in ("postgres", "root"):
            url = f"postgresql://{user}@{_DEFAULT_HOST}:{_DEFAULT_PORT}/postgres"
            if _answers(url):
                return PgServer(url)
    return PgServer.start_throwaway()


@contextlib.contextmanager
def temporary_database(server: PgServer) -> Iterator[str]:
    with server.database() as url:
        yield url
