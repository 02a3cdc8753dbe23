"""Group commit: the writes of many threads committed in one transaction.

Issuing a certificate writes two small rows (the inventory row and the audit row); on its own
that costs a whole write transaction (the write lock, the statements, the commit and its
flush to disk). When several requests arrive together, ``GroupCommit.run`` lets them share
one: the first caller becomes the *leader*, takes every write queued so far (its own first),
queues their rows in one ``DirectUnit`` and commits it (certway.store.direct: on PostgreSQL
one statement for the whole group); the callers that queued meanwhile wait and get their own
result (or error) once it has committed. Should writes be waiting when the leader is done,
the first of their callers leads the next group (no caller serves the others for long). A
caller alone pays what a transaction of its own costs, nothing more.

Requests rarely finish their own work (checking and signing a CSR) at the same instant, so a
caller may announce its write before that work (``GroupCommit.coming``): a leader about to
commit waits for the announced writes, at most ``MAX_WAIT`` (2 ms), and commits them with its
own. Under concurrent load groups then form; a caller alone never waits.

Each write keeps the guarantees of a transaction of its own:

- it returns only after its transaction committed;
- the commit hooks of its caller (``Store.hooked``: the audit row of an audited change) run in
  the same transaction, just before the commit;
- if any write of a group raises, or the commit fails, the group is rolled back and each of
  its writes runs again in a transaction of its own, so a failing write fails alone, with its
  own error. A write must therefore change nothing but the database through its unit (it
  queues rows there: they are written at the commit).

Tried without waiting (certway.waiting: a request answered on the event loop), a write runs
only when no other leads, as a group of its own, and its leader waits for no announced write;
otherwise ``WouldWait`` before anything is queued.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Generic, TypeVar

from certway.store.db import CommitHook, Store
from certway.store.direct import DirectUnit
from certway.waiting import WouldWait, may_wait

__all__ = ["GroupCommit"]

T = TypeVar("T")
log = logging.getLogger("certway.store")

MAX_GROUP = 64
"""Most writes committed together (a larger group only makes its first callers wait)."""
MAX_WAIT = 0.002
"""Longest a leader waits for announced writes (``GroupCommit.coming``) before committing."""

_ANNOUNCED: ContextVar[GroupCommit[Any] | None] = ContextVar(
    "certway_group_announced", default=None
)


class _Write(Generic[T]):
    __slots__ = ("done", "error", "hooks", "lead", "result", "write")

    def __init__(self, write: Callable[[DirectUnit], T], hooks: Sequence[CommitHook]) -> None:
        self.write = write
        self.hooks = hooks
        self.done = threading.Event()
        self.lead = False  # woken to lead the next group, not because it is done
        self.result: T | None = None
        self.error: BaseException | None = None

    def outcome(self) -> T:
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]


class GroupCommit(Generic[T]):
    """Writes of one kind (``write(unit) -> T``, ``unit`` a ``DirectUnit``) committed in
    groups on ``store``; ``finish(unit)`` runs once per transaction after its writes (a change
    topic's bump)."""

    def __init__(
        self,
        store: Store,
        *,
        finish: Callable[[DirectUnit], None] = lambda _unit: None,
        limit: int = MAX_GROUP,
    ) -> None:
        self._store = store
        self._finish = finish
        self._limit = limit
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)  # a write queued, or a caller gave up
        self._queue: list[_Write[T]] = []
        self._leading = False
        self._coming = 0  # callers that announced a write (``coming``) and have not run it yet

    @contextmanager
    def coming(self) -> Iterator[None]:
        """Announce a write this thread will ``run`` before the block ends, after work of its
        own (a signature): a leader about to commit waits for it, up to ``MAX_WAIT``
        seconds, so that writes prepared together commit together. A block left without a
        ``run`` (an error) withdraws the announcement."""
        with self._lock:
            self._coming += 1
        token = _ANNOUNCED.set(self)
        try:
            yield
        finally:
            pending = _ANNOUNCED.get() is self
            _ANNOUNCED.reset(token)
            if pending:
                self._arrive()

    def _arrive(self) -> None:
        with self._lock:
            self._coming -= 1
            self._arrived.notify_all()

    def run(self, write: Callable[[DirectUnit], T]) -> T:
        """Run ``write`` in a write transaction, possibly shared with other threads' writes;
        its result once committed (see the module docstring)."""
        self._store.check_not_writing()  # a leader would wait for this thread's own lock
        job: _Write[T] = _Write(write, self._store.joining_hooks())
        announced = _ANNOUNCED.get() is self
        waits = may_wait()
        with self._lock:
            if not waits and self._leading:
                raise WouldWait("a group commit led by another thread")
            if announced:
                _ANNOUNCED.set(None)
            self._queue.append(job)
            if announced:
                self._coming -= 1
                self._arrived.notify_all()
            lead = not self._leading
            self._leading = True
        if not lead:
            job.done.wait()
            if not job.lead:
                return job.outcome()
            job.done.clear()
        self._lead()
        return job.outcome()

    def _lead(self) -> None:
        """Commit the next group, then hand the lead to the first waiting caller (tried
        without waiting: its own write alone, now)."""
        limit = self._limit if may_wait() else 1
        with self._lock:
            deadline = time.monotonic() + MAX_WAIT
            while limit > 1 and self._coming and len(self._queue) < limit:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._arrived.wait(left)
            group = self._queue[:limit]
            del self._queue[:limit]
        try:
            self._commit(group)
        finally:
            for job in group:  # the leader was interrupted: nobody waits for ever
                if not job.done.is_set():
                    job.error = job.error or RuntimeError("the write was interrupted")
                    job.done.set()
            with self._lock:
                if self._queue:
                    following = self._queue[0]
                    following.lead = True
                    following.done.set()
                else:
                    self._leading = False

    def _commit(self, group: list[_Write[T]]) -> None:
        if len(group) > 1:
            try:
                results = self._transaction(group)
            except Exception as exc:  # each write again on its own, to get its own error
                log.debug("group of %d writes rolled back (%s): one by one", len(group), exc)
            else:
                for job, result in zip(group, results, strict=True):
                    job.result = result
                    job.done.set()
                return
        for job in group:
            try:
                (job.result,) = self._transaction([job])
            except BaseException as exc:  # handed to the caller, raised there
                job.error = exc
            job.done.set()

    def _transaction(self, group: list[_Write[T]]) -> list[T]:
        """The writes of ``group`` and their callers' commit hooks, in one transaction."""
        hooks = [hook for job in group for hook in job.hooks]
        unit = DirectUnit()
        results = [job.write(unit) for job in group]
        self._finish(unit)
        unit.commit(self._store, hooks)
        for hook in hooks:
            hook.committed()
        return results
