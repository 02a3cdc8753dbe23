"""Password logins throttled per account and per source address, with a cap on the password
hashes running at once. State lives in memory, per server process, bounded in size.

The rules (numbers from ``ThrottlePolicy``; the README's "Security limits" lists them):

- An account is refused for ``block_seconds`` after ``account_failures`` failed logins (from
  any addresses); a source address after ``address_failures`` (for any accounts). Failures
  are forgotten ``block_seconds`` after the last one. IPv6 addresses count per /64.
- A success clears only the failures of that account from that address (the typos its user
  just proved were typos): they come off the account's and the address's counts too. Other
  accounts' and addresses' failures stay.
- Attempts in flight count: an attempt starts only while failures + attempts in flight stay
  under both limits, so a burst of concurrent requests gets no more guesses than a sequence.
- At most ``hashing_slots`` password checks run at once (argon2id takes 64 MiB each). An
  attempt that cannot start waits up to ``wait_seconds``; with ``max_waiting`` attempts
  already waiting, or when the wait runs out, it is refused as busy (503).
- Each table keeps at most ``max_tracked`` entries, the oldest failures forgotten first.
  Forgetting cannot be used to wipe an account's failures: refilling a table needs
  ``max_tracked`` failed password checks, far more than fit in a block at
  ``hashing_slots`` checks at a time.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TypeVar

from certway.waiting import check_may_wait

__all__ = [
    "MAX_ACCOUNT_KEY",
    "LoginGuard",
    "LoginRefused",
    "ThrottlePolicy",
    "account_key",
    "address_key",
]

log = logging.getLogger("certway.web.logins")

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)

MAX_ACCOUNT_KEY = 64
"""Longer names cannot be accounts: they share one entry, so they cannot fill memory."""


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    account_failures: int = 5
    address_failures: int = 10
    block_seconds: float = 60.0
    hashing_slots: int = 2
    max_waiting: int = 8
    wait_seconds: float = 3.0
    max_tracked: int = 10_000


class LoginRefused(Exception):
    """The attempt was not checked: blocked after failures (429) or too busy (503)."""

    def __init__(self, status: int, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.retry_after = retry_after


@dataclass(slots=True)
class _Failures:
    count: int = 0
    last: float = 0.0  # clock time of the last failure


def account_key(name: str) -> str:
    return name if 0 < len(name) <= MAX_ACCOUNT_KEY else "(not an account name)"


def address_key(address: str) -> str:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is None:
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed.ipv4_mapped if isinstance(parsed, ipaddress.IPv6Address) else parsed)


class LoginGuard:
    """Admits password checks under the rules above; ``check`` is the one entry point."""

    def __init__(
        self,
        policy: ThrottlePolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy or ThrottlePolicy()
        self._clock = clock
        self._cond = threading.Condition()
        # Failures, each table in the order of the last failure (oldest first).
        self._accounts: OrderedDict[str, _Failures] = OrderedDict()
        self._addresses: OrderedDict[str, _Failures] = OrderedDict()
        self._pairs: OrderedDict[tuple[str, str], _Failures] = OrderedDict()
        # Attempts in flight (at most ``hashing_slots`` in all, so these stay tiny).
        self._running_accounts: Counter[str] = Counter()
        self._running_addresses: Counter[str] = Counter()
        self._waiting = 0

    def check(self, account: str, address: str, verify: Callable[[], T | None]) -> T | None:
        """Run ``verify`` (a password check: the account, or None when wrong) if the rules
        let this attempt in, and count its outcome. Raises ``LoginRefused`` otherwise. An
        exception from ``verify`` counts as neither success nor failure."""
        name, source = account_key(account), address_key(address)
        self._admit(name, source)
        outcome: bool | None = None
        try:
            result = verify()
            outcome = result is not None
            return result
        finally:
            self._finish(name, source, outcome)

    def in_progress(self) -> tuple[int, int]:
        """How many password checks are running, and how many attempts wait to start."""
        with self._cond:
            return self._running_accounts.total(), self._waiting

    def tracked(self) -> tuple[int, int, int]:
        """How many accounts, addresses and account+address pairs have failures remembered."""
        with self._cond:
            return len(self._accounts), len(self._addresses), len(self._pairs)

    # -- admission --------------------------------------------------------------------------
    def _admit(self, name: str, source: str) -> None:
        policy = self.policy
        deadline = time.monotonic() + policy.wait_seconds
        with self._cond:
            if self._try_admit(name, source):
                return
            if self._waiting >= policy.max_waiting:
                raise _busy()
            check_may_wait("a password check's turn")
            self._waiting += 1
            try:
                while True:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise _busy()
                    self._cond.wait(remaining)
                    if self._try_admit(name, source):
                        return
            finally:
                self._waiting -= 1

    def _try_admit(self, name: str, source: str) -> bool:
        """True when admitted; raises when blocked; False when it must wait."""
        policy = self.policy
        now = self._clock()
        self._expire(now)
        account = self._accounts.get(name, _NONE)
        address = self._addresses.get(source, _NONE)
        blocked = [
            failures.last + policy.block_seconds - now
            for failures, limit in (
                (account, policy.account_failures),
                (address, policy.address_failures),
            )
            if failures.count >= limit
        ]
        if blocked:
            wait = max(1, math.ceil(max(blocked)))
            raise LoginRefused(429, f"too many failed logins: try again in {wait} s", wait)
        running = self._running_accounts[name], self._running_addresses[source]
        if (
            self._running_accounts.total() >= policy.hashing_slots
            or account.count + running[0] >= policy.account_failures
            or address.count + running[1] >= policy.address_failures
        ):
            return False
        self._running_accounts[name] += 1
        self._running_addresses[source] += 1
        return True

    # -- outcome ----------------------------------------------------------------------------
    def _finish(self, name: str, source: str, succeeded: bool | None) -> None:
        policy = self.policy
        with self._cond:
            self._running_accounts -= Counter({name: 1})  # drops it at zero
            self._running_addresses -= Counter({source: 1})
            now = self._clock()
            self._expire(now)
            if succeeded:
                self._succeeded(name, source)
            elif succeeded is False:
                account = _failed(self._accounts, name, now)
                address = _failed(self._addresses, source, now)
                _failed(self._pairs, (name, source), now)
                if account.count == policy.account_failures:
                    log.warning(
                        "event=login-blocked account=%r seconds=%d", name, policy.block_seconds
                    )
                if address.count == policy.address_failures:
                    log.warning(
                        "event=login-blocked source=%s seconds=%d", source, policy.block_seconds
                    )
                for table in (self._accounts, self._addresses):
                    _bound(table, policy.max_tracked)
                _bound(self._pairs, policy.max_tracked)
            self._cond.notify_all()

    def _succeeded(self, name: str, source: str) -> None:
        """The pair's failures were its user's typos: take them off every count."""
        pair = self._pairs.pop((name, source), None)
        if pair is None:
            return
        for table, key in ((self._accounts, name), (self._addresses, source)):
            failures = table.get(key)
            if failures is not None:
                failures.count -= pair.count
                if failures.count <= 0:
                    del table[key]

    def _expire(self, now: float) -> None:
        horizon = now - self.policy.block_seconds
        _expire(self._accounts, horizon)
        _expire(self._addresses, horizon)
        _expire(self._pairs, horizon)


_NONE = _Failures()


def _failed(table: OrderedDict[K, _Failures], key: K, now: float) -> _Failures:
    failures = table.setdefault(key, _Failures())
    failures.count += 1
    failures.last = now
    table.move_to_end(key)
    return failures


def _expire(table: OrderedDict[K, _Failures], horizon: float) -> None:
    """Forget failures older than the block: the oldest first, until a recent one."""
    while table:
        key, failures = next(iter(table.items()))
        if failures.last > horizon:
            return
        del table[key]


def _bound(table: OrderedDict[K, _Failures], limit: int) -> None:
    """Beyond ``limit`` entries, forget the oldest failures."""
    while len(table) > limit:
        table.popitem(last=False)


def _busy() -> LoginRefused:
    return LoginRefused(503, "too many login attempts in progress: try again in a moment", 1)
