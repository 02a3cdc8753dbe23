"""Password logins: throttled per account and per source address, concurrent attempts counted,
password hashing capped, every failure logged and audited.

The attacks: the throttle counted failures per address only and any success from that
address cleared it; concurrent requests all passed the check before the first failure was
counted; each attempt ran argon2id (64 MiB) with no cap (RSS reached 2.5 GB); failed logins
appeared nowhere. And a login opened a write transaction, so it waited for any writer.

Served-app tests run a real ``certway serve`` and hit it from many threads. The password
hasher is wrapped to count the checks, record how many run at once and, where the test
needs a deterministic burst, hold them at a gate until every request has arrived.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from cryptography.hazmat.primitives import serialization

from certway.serve import NodeServer
from certway.services.node import Node
from certway.web.logins import MAX_ACCOUNT_KEY, LoginGuard, LoginRefused, ThrottlePolicy

from serving import running

PASSWORD = "correct horse battery"
WRONG = "not the password at all"
USERS = [f"user{i}" for i in range(10)]


class GatedHasher:
    """A PasswordHasher that counts its runs, records the most at once, and holds each run
    until ``gate`` is set."""

    def __init__(self, inner: PasswordHasher) -> None:
        self.inner = inner
        self.gate = threading.Event()
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.runs = 0

    def _run(self, work: Callable[[], Any]) -> Any:
        with self.lock:
            self.running += 1
            self.runs += 1
            self.peak = max(self.peak, self.running)
        try:
            assert self.gate.wait(60), "the test never opened the gate"
            return work()
        finally:
            with self.lock:
                self.running -= 1

    def verify(self, digest: str, password: str) -> bool:
        return bool(self._run(lambda: self.inner.verify(digest, password)))

    def hash(self, password: str) -> str:
        return str(self._run(lambda: self.inner.hash(password)))

    def check_needs_rehash(self, digest: str) -> bool:
        return self.inner.check_needs_rehash(digest)


@pytest.fixture
def hasher(monkeypatch: pytest.MonkeyPatch) -> GatedHasher:
    quick = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    monkeypatch.setattr("certway.services.admins._HASHER", quick)
    gated = GatedHasher(quick)
    gated.gate.set()  # open unless a test closes it
    return gated


@pytest.fixture
def node(tmp_path: Path, hasher: GatedHasher, monkeypatch: pytest.MonkeyPatch) -> Iterator[Node]:
    n = Node.init(tmp_path / "d", fqdn="vcs.example.com")
    n.admins.add("alice", "read-write", PASSWORD)
    n.admins.add("bob", "read-only", PASSWORD)
    for user in USERS:
        n.admins.add(user, "read-only", PASSWORD)
    monkeypatch.setattr("certway.services.admins._HASHER", hasher)
    yield n
    n.close()


@pytest.fixture
def server(node: Node) -> Iterator[NodeServer]:
    with running(node, publish=False, sip=False) as srv:
        yield srv


def guard(server: NodeServer) -> LoginGuard:
    found: LoginGuard = server.admin_config.app.state.web.logins  # type: ignore[union-attr]
    return found


def patient(server: NodeServer) -> LoginGuard:
    """The default limits, but waiting attempts wait long enough for a slow, busy machine."""
    server.admin_config.app.state.web.logins = LoginGuard(  # type: ignore[union-attr]
        ThrottlePolicy(wait_seconds=60)
    )
    return guard(server)


class Client:
    def __init__(self, node: Node, server: NodeServer) -> None:
        pem = b"".join(
            c.public_bytes(serialization.Encoding.PEM)
            for c in node.trusted_cas.snapshot().certificates
        )
        import ssl

        context = ssl.create_default_context(cadata=pem.decode())
        context.check_hostname = False
        self.context = context
        self.base = f"https://127.0.0.1:{server.admin_port}"

    def api(self, user: str, password: str) -> httpx.Response:
        return httpx.get(
            f"{self.base}/api/v1/status", auth=(user, password), verify=self.context, timeout=120
        )

    def form(self, user: str, password: str) -> httpx.Response:
        return httpx.post(
            f"{self.base}/login",
            data={"user": user, "password": password},
            verify=self.context,
            timeout=120,
        )


def eventually(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 60
    while not check():
        assert time.monotonic() < deadline, "the server never got there"
        time.sleep(0.01)


def burst(calls: list[Callable[[], httpx.Response]]) -> list[Any]:
    """Start every call at once; the futures, in order."""
    pool = ThreadPoolExecutor(len(calls))
    start = threading.Barrier(len(calls))

    def run(call: Callable[[], httpx.Response]) -> httpx.Response:
        start.wait()
        return call()

    futures = [pool.submit(run, call) for call in calls]
    pool.shutdown(wait=False)
    return futures


# -- served app --------------------------------------------------------------------------------
def test_concurrent_wrong_passwords_get_no_more_guesses_than_sequential_ones(
    node: Node, server: NodeServer, hasher: GatedHasher
) -> None:
    client = Client(node, server)
    logins = patient(server)
    hasher.gate.clear()
    futures = burst([lambda: client.api("alice", WRONG) for _ in range(30)])
    # 2 checks run (held at the gate), 8 attempts wait for them, the other 20 are refused.
    eventually(lambda: sum(f.done() for f in futures) == 20)
    assert logins.in_progress() == (2, 8)
    assert hasher.running == 2
    hasher.gate.set()
    statuses = [f.result().status_code for f in futures]
    assert statuses.count(401) == 5  # the account's limit, burst or not
    assert statuses.count(503) == 20
    assert statuses.count(429) == 5  # waited, then found the account blocked
    assert hasher.runs == 5 and hasher.peak == 2
    busy = next(f.result() for f in futures if f.result().status_code == 503)
    assert busy.json()["detail"] == "too many login attempts in progress: try again in a moment"
    assert busy.headers["retry-after"] == "1"
    # the right password now changes nothing: the account is blocked, and no hash runs
    blocked = client.api("alice", PASSWORD)
    assert blocked.status_code == 429
    assert "too many failed logins: try again in" in blocked.json()["detail"]
    assert int(blocked.headers["retry-after"]) > 0
    assert client.form("alice", PASSWORD).status_code == 429
    assert hasher.runs == 5


def test_hashing_cap_bounds_concurrent_password_checks(
    node: Node, server: NodeServer, hasher: GatedHasher
) -> None:
    client = Client(node, server)
    logins = patient(server)
    hasher.gate.clear()
    futures = burst([lambda user=user: client.api(user, PASSWORD) for user in USERS])  # type: ignore[misc]
    eventually(lambda: logins.in_progress() == (2, 8))
    assert hasher.running == 2 and not any(f.done() for f in futures)
    hasher.gate.set()
    assert [f.result().status_code for f in futures] == [200] * len(USERS)
    assert hasher.peak == 2 and hasher.runs == len(USERS)


def test_a_success_does_not_clear_other_accounts_or_the_address(
    node: Node, server: NodeServer, hasher: GatedHasher
) -> None:
    client = Client(node, server)
    for _ in range(5):
        assert client.api("alice", WRONG).status_code == 401
    assert client.api("alice", PASSWORD).status_code == 429
    # bob logs in from the same address: his success clears nothing of alice's
    assert client.api("bob", PASSWORD).status_code == 200
    assert client.form("bob", PASSWORD).status_code == 303
    assert client.api("alice", PASSWORD).status_code == 429
    # nor of the address's: 5 more failures (other names) make 10 from here, and the
    # address is blocked for every account, bob included
    for user in USERS[:4]:
        assert client.api(user, WRONG).status_code == 401
    assert client.api("bob", PASSWORD).status_code == 200
    assert client.form("nobody", WRONG).status_code == 401
    assert client.api("bob", PASSWORD).status_code == 429
    assert client.api(USERS[9], PASSWORD).status_code == 429


def test_failed_logins_are_logged_and_audited_without_the_password(
    node: Node, server: NodeServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = Client(node, server)
    caplog.set_level(logging.INFO)
    assert client.api("alice", WRONG).status_code == 401
    assert client.form("mallory", WRONG).status_code == 401
    assert client.api("bob", PASSWORD).status_code == 200
    failed = [r.getMessage() for r in caplog.records if "event=login-failed" in r.getMessage()]
    assert failed == [
        "event=login-failed account='alice' source=127.0.0.1 via=api",
        "event=login-failed account='mallory' source=127.0.0.1 via=ui",
    ]
    entries = [e for e in node.audit.entries() if e.action == "admin.login"]
    assert [(e.target, e.outcome, e.via, e.address) for e in entries] == [
        ("alice", "refused", "api", "127.0.0.1"),
        ("mallory", "refused", "ui", "127.0.0.1"),
    ]
    assert {e.actor for e in entries} == {"(unauthenticated)"}
    everything = caplog.text + repr([e.as_dict() for e in node.audit.entries()])
    assert WRONG not in everything and PASSWORD not in everything


def test_login_does_not_wait_for_a_writer(node: Node) -> None:
    """A long write (a big CRL import, another process) must not stall logins."""
    writer = sqlite3.connect(node.store.data_dir / "certway.db", isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")  # holds the database's write lock
        account = node.admins.verify("alice", PASSWORD)
        assert account is not None and account.name == "alice"
        assert node.admins.verify("alice", WRONG) is None
    finally:
        writer.execute("ROLLBACK")
        writer.close()


# -- the guard's rules, with a clock of our own -------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def attempt(logins: LoginGuard, account: str, address: str, ok: bool) -> str:
    try:
        result = logins.check(account, address, lambda: "account" if ok else None)
    except LoginRefused as refused:
        return str(refused.status)
    return "ok" if result else "wrong"


def test_success_clears_only_its_own_account_and_address_pair() -> None:
    clock = Clock()
    logins = LoginGuard(clock=clock)
    for _ in range(3):
        assert attempt(logins, "alice", "192.0.2.1", ok=False) == "wrong"
    for _ in range(1):
        assert attempt(logins, "alice", "192.0.2.2", ok=False) == "wrong"
    # alice's typos from .1 are forgiven by her success from .1 ...
    assert attempt(logins, "alice", "192.0.2.1", ok=True) == "ok"
    # ... but not the failure from .2: 4 more make 5 for the account
    for _ in range(4):
        assert attempt(logins, "alice", "192.0.2.1", ok=False) == "wrong"
    assert attempt(logins, "alice", "192.0.2.3", ok=True) == "429"
    # the block ends one block period after the last failure
    clock.now += 59
    assert attempt(logins, "alice", "192.0.2.3", ok=True) == "429"
    clock.now += 2
    assert attempt(logins, "alice", "192.0.2.3", ok=True) == "ok"
    assert logins.tracked() == (0, 0, 0)  # all forgotten


def test_address_limit_spans_accounts_and_ipv6_counts_per_64() -> None:
    logins = LoginGuard(clock=Clock())
    for i in range(10):
        assert attempt(logins, f"guess{i}", f"2001:db8:1:1::{i + 1}", ok=False) == "wrong"
    assert attempt(logins, "alice", "2001:db8:1:1:ffff::9", ok=True) == "429"
    assert attempt(logins, "alice", "2001:db8:1:2::1", ok=True) == "ok"
    assert attempt(logins, "alice", "::ffff:192.0.2.7", ok=True) == "ok"


def test_cycling_names_and_addresses_keeps_memory_bounded() -> None:
    logins = LoginGuard(ThrottlePolicy(max_tracked=500), clock=Clock())
    for i in range(5_000):
        address = f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"
        assert attempt(logins, f"user-{i}", address, ok=False) == "wrong"
    assert logins.tracked() == (500, 500, 500)
    # names longer than any account share one entry, whatever their length
    logins = LoginGuard(clock=Clock())
    for i in range(5):
        assert attempt(logins, "x" * (MAX_ACCOUNT_KEY + 1) + str(i), f"10.0.0.{i}", False) == (
            "wrong"
        )
    assert logins.tracked() == (1, 5, 5)
    assert attempt(logins, "y" * 10_000, "10.0.0.9", ok=False) == "429"
