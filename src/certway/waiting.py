"""Work that must not wait: the event loop's own thread answering a request itself.

Handing a request to a worker thread and back costs two thread switches, and on a virtual
machine with two cores those are a large share of a short request: a no-op round trip to a
worker thread measured 100-230 us of CPU, and answering a REST signature on the event loop
itself saved 10-35% of the server's CPU per certificate (bench/bench_api_sign.py, A/B). But
the event loop serves every connection of its listeners: it must never wait (for a lock
another writer holds, a network round trip, a password hash, a token), or all it serves waits.

So a request may be *tried* on the event loop inside ``without_waiting``: every place that
could wait calls ``check_may_wait`` first, which raises ``WouldWait`` in that block, before
the wait and before anything is changed for good; the caller then answers the request again
from the start on a worker thread, where waiting is fine. Places that check:

- the store: any PostgreSQL work (network), a SQLite write lock held by someone else (tried
  without a busy timeout), a pool with no free connection, a group commit led by another
  thread (certway.store.db, certway.store.group);
- password checks and the login throttle's queue (certway.web);
- outbound HTTP (OCSP, CRL, AIA: certway.fetch), the LDAP server (certway.directory), a
  PKCS#11 token (certway.hsm).

``WouldWait`` derives from ``BaseException``, like ``GeneratorExit``: it is a signal, not an
error, so no ``except Exception`` on its way (an audit decorator recording failures, a
revocation check treating an error as "unknown") can take it for an outcome of the request.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["WouldWait", "check_may_wait", "may_wait", "without_waiting"]

_NO_WAITING: ContextVar[bool] = ContextVar("certway_no_waiting", default=False)


class WouldWait(BaseException):
    """Raised inside ``without_waiting`` where the work would wait; ``str()``: for what."""


def may_wait() -> bool:
    """False inside ``without_waiting``."""
    return not _NO_WAITING.get()


def check_may_wait(what: str) -> None:
    """Raise ``WouldWait`` inside ``without_waiting``: the caller is about to wait for
    ``what`` (a lock, the network, a password hash)."""
    if _NO_WAITING.get():
        raise WouldWait(what)


@contextmanager
def without_waiting() -> Iterator[None]:
    """Run the block on the understanding that it never waits (see the module docstring)."""
    token = _NO_WAITING.set(True)
    try:
        yield
    finally:
        _NO_WAITING.reset(token)
