"""Shared fixtures: a fixed clock and pre-generated test keys (fast, deterministic suite)."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from certway.clock import FixedClock
from certway.pki.keys import PrivateKey, generate_key
from pgtools import PgServer, find_or_start_server

NOW = dt.datetime(2026, 11, 27, 12, 0, 0, tzinfo=dt.UTC)

_KEYS: dict[str, PrivateKey] = {}


def test_key(key_type: str = "ec:p256", index: int = 0) -> PrivateKey:
    """A key generated once per test process (RSA generation is the slow part of a suite)."""
    name = f"{key_type}#{index}"
    if name not in _KEYS:
        _KEYS[name] = generate_key(key_type)
    return _KEYS[name]


test_key.__test__ = False  # type: ignore[attr-defined]


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def openssl() -> str:
    path = shutil.which("openssl")
    if path is None:
        pytest.skip("openssl is not installed (make test installs it)")
    return path


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


AUDIT_TABLES = ("audit_log", "alarm_state")


def store_snapshot(data_dir: Path) -> list[str]:
    """Every row of every state table, to compare before and after a refused command.

    The audit log is left out on purpose: refused attempts are recorded there.
    """
    import sqlite3

    with sqlite3.connect(data_dir / "certway.db") as db:
        return [
            line
            for line in db.iterdump()
            if not any(f'INSERT INTO "{t}"' in line for t in AUDIT_TABLES)
        ]


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


class CliResult:
    def __init__(self, exit_code: int, stdout: bytes, stderr: str) -> None:
        self.exit_code = exit_code
        self.stdout_bytes = stdout
        self.stderr = stderr

    @property
    def stdout(self) -> str:
        return self.stdout_bytes.decode("utf-8", "replace")

    def __repr__(self) -> str:
        return f"CliResult(exit_code={self.exit_code}, stderr={self.stderr!r})"


class Cli:
    """Runs ``certway`` in-process against one data directory (fast; same code path as main)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    def __call__(self, *args: str | Path, input: bytes | None = None) -> CliResult:
        from typer.testing import CliRunner

        from certway.cli.main import app

        runner = CliRunner()
        result = runner.invoke(
            app,
            ["--data-dir", str(self.data_dir), *[str(a) for a in args]],
            input=input,
            catch_exceptions=False,
        )
        return CliResult(result.exit_code, result.stdout_bytes, result.stderr)

    def ok(self, *args: str | Path, input: bytes | None = None) -> CliResult:
        result = self(*args, input=input)
        assert result.exit_code == 0, result.stderr
        return result


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """A CLI bound to a fresh, initialised data directory."""
    runner = Cli(tmp_path / "data")
    runner.ok("init")
    return runner


# -- a throwaway SoftHSM2 token per test run (token-backed CAs) ----------------------------
PIN = "pin-5e1f7a93c2"  # the user PIN of the test tokens; distinctive, so a leak would be found
MODULES = ("/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so")


@dataclass(frozen=True)
class SoftHsm:
    module: str
    label: str  # a token certway logs in to
    fresh_label: str  # a token nobody logs in to (wrong-PIN checks)
    tokendir: Path  # SoftHSM's token directory (moved away to take the tokens out)


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsm]:
    util = shutil.which("softhsm2-util")
    module = next((m for m in MODULES if Path(m).is_file()), None)
    if util is None or module is None:
        pytest.skip("SoftHSM2 is not installed (make test installs the Debian package softhsm2)")
    pytest.importorskip(
        "pkcs11", reason="python-pkcs11 is not installed (pip install -e '.[test]')"
    )
    base = tmp_path_factory.mktemp("softhsm")
    (base / "tokens").mkdir()
    conf = base / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {base / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)  # read by the module when it is first loaded
    for label in ("certway-test", "certway-fresh"):
        subprocess.run(
            [util, "--init-token", "--free", "--label", label, "--pin", PIN, "--so-pin", "so-9d2c"],
            check=True,
            capture_output=True,
        )
    yield SoftHsm(module, "certway-test", "certway-fresh", base / "tokens")
    if previous is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = previous


# -- PostgreSQL (cluster mode): a server per test run, a database per test (tests/pgtools.py) --
@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    try:
        server = find_or_start_server()
    except RuntimeError as exc:
        if "not found" not in str(exc):
            raise  # installed but broken: a failure, not a skip
        # no server answers and Debian's postgresql is not installed
        pytest.skip(f"PostgreSQL is unavailable ({exc}; make test installs it)")
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped after the test."""
    with pg_server.database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def node_database(request: pytest.FixtureRequest) -> str | None:
    """For tests that run on both engines: None (embedded SQLite) or a PostgreSQL URL to pass
    to ``Node.init(..., database=...)``."""
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def quick_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2id with test-strength parameters: the same hash format and verify path, but
    ~0.1 ms instead of ~150 ms for each password check (``usefixtures("quick_hashes")``)."""
    from argon2 import PasswordHasher

    monkeypatch.setattr(
        "certway.services.admins._HASHER",
        PasswordHasher(time_cost=1, memory_cost=8, parallelism=1),
    )


@pytest.fixture
def loop_statements(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One item per statement sent on an event loop's own PostgreSQL connection
    (``Store.statement_on_loop``), counted as it is sent."""
    from certway.store.db import Store

    sent: list[int] = []
    original = Store.statement_on_loop

    async def counted(store: Store, sql: str, parameters: object) -> None:
        sent.append(1)
        await original(store, sql, parameters)

    monkeypatch.setattr(Store, "statement_on_loop", counted)
    return sent
