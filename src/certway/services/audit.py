"""The audit log: every change with who, what, when, from where and the outcome.

Adapters set who is acting (``acting_as``); services mark each changing method
``@audited(...)`` (or wrap the change in ``audit.action(...)``) and add details with
``audit.note(...)``. The row of a change is written **in the same database transaction as
the change**: the action joins (``Store.hooked``) the first write transaction opened inside
it and adds its row just before that commits, so a change is never committed without its
row, whatever kills the process. Later transactions of the same action update the row's
details; an action that writes nothing gets its row on its own when it ends. A refused or
failed action is rolled back, and recorded on its own (or its row, when an earlier
transaction of it had committed, is marked so).

Details never hold secrets: only names, fingerprints, serials and our own error messages
(which never quote key material). ``note`` before the change's transaction ends: what is
noted later costs a separate write to bring the row up to date.
"""

from __future__ import annotations

import datetime as dt
import functools
import getpass
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Concatenate, Literal, ParamSpec, Protocol, TypeVar

from certway.clock import Clock
from certway.errors import CertwayError
from certway.store.db import Session, Store
from certway.store.repositories import AuditRepository
from certway.store.schema import AuditRow

__all__ = [
    "SYSTEM",
    "VIA",
    "Actor",
    "Audit",
    "AuditEntry",
    "Via",
    "acting_as",
    "audited",
    "audited_by_its_write",
    "current_actor",
]


Via = Literal["cli", "api", "ui", "acme", "system"]
"""Where a change came from: the ``via`` of its audit row (one of ``VIA``)."""
VIA: dict[Via, str] = {
    "cli": "the command line, as the local OS user",
    "api": "the REST API, as an administrator account or API token",
    "ui": "the web admin UI, as an administrator account",
    "acme": "an ACME client's request to certway's ACME server, as its ACME account",
    "system": "the server on its own: scheduled work, renewals, publication, cluster sync",
}
"""Every ``via`` of the audit log and what it means (the README's audit section says the
same)."""


@dataclass(frozen=True, slots=True)
class Actor:
    name: str
    via: Via = "cli"
    address: str | None = None


SYSTEM = Actor("certway", "system")
"""The server itself: what ``certway serve`` does on its own (the scheduler's CRL re-signing
and source updates, ACME renewals, publication, cluster and syslog work), never the local
OS user the fallback of ``current_actor`` names."""


def _local_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


_ACTOR: ContextVar[Actor | None] = ContextVar("certway_actor", default=None)


def current_actor() -> Actor:
    """Who is acting here: the actor set by ``acting_as``, else the local OS user through
    the command line (the CLI sets no actor). Anything that runs without a user of its own
    (``certway serve``'s jobs) must set ``SYSTEM``; new threads start with no actor set."""
    return _ACTOR.get() or Actor(_local_user(), "cli")


@contextmanager
def acting_as(actor: Actor) -> Iterator[Actor]:
    """Attribute the changes made inside the block to ``actor``."""
    token = _ACTOR.set(actor)
    try:
        yield actor
    finally:
        _ACTOR.reset(token)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: dt.datetime
    actor: str
    via: str
    address: str | None
    action: str
    target: str
    outcome: str
    detail: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "actor": self.actor,
            "via": self.via,
            "address": self.address,
            "action": self.action,
            "target": self.target,
            "outcome": self.outcome,
            "detail": self.detail,
        }


_SCOPES: ContextVar[tuple[_Scope, ...]] = ContextVar("certway_audit_scopes", default=())


class _Scope:
    """One audited action: joins the write transactions opened while it runs."""

    def __init__(self, audit: Audit, action: str, target: str) -> None:
        self.audit = audit
        self.action = action
        self.target = target
        self.actor = current_actor()
        self.detail: dict[str, Any] = {}
        self.row_id: int | None = None  # the committed row
        self.written = ""  # its details as committed
        self._pending: tuple[int, str] | None = None

    def before_commit(self, session: Session) -> None:
        detail = _json(self.detail)
        if self.row_id is None:
            row = self.audit._row(self.action, self.target, "ok", detail, self.actor)
            self._pending = (AuditRepository(session).add(row), detail)
        elif detail != self.written:
            written = AuditRepository(session).get(self.row_id)
            if written is None:
                raise LookupError(f"audit row {self.row_id} is gone")
            written.detail = detail
            self._pending = (self.row_id, detail)

    def committed(self) -> None:
        if self._pending is not None:
            self.row_id, self.written = self._pending
            self._pending = None


def _json(detail: dict[str, Any]) -> str:
    return json.dumps(detail, sort_keys=True, default=str)


class Audit:
    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    @contextmanager
    def action(self, action: str, target: str = "") -> Iterator[dict[str, Any]]:
        """Record ``action`` on ``target`` with its outcome, the row in the same transaction
        as the change (see the module docstring); the block may add details to the dict."""
        scope = _Scope(self, action, target)
        token = _SCOPES.set((*_SCOPES.get(), scope))
        try:
            with self._store.hooked(scope):
                yield scope.detail
        except CertwayError as exc:
            self._settle(scope, "refused", {**scope.detail, "error": str(exc)})
            raise
        except Exception as exc:
            self._settle(scope, "failed", {**scope.detail, "error": type(exc).__name__})
            raise
        finally:
            _SCOPES.reset(token)
        if scope.row_id is None or _json(scope.detail) != scope.written:
            self._settle(scope, "ok", scope.detail)

    def note(self, **detail: Any) -> None:
        """Add details to the innermost audited action running here (none: ignored). Call it
        before the change's transaction ends, so the details commit with the change."""
        scopes = _SCOPES.get()
        if scopes:
            scopes[-1].detail.update(detail)

    def record(self, action: str, target: str, outcome: str, detail: dict[str, Any]) -> None:
        """A row on its own (an outcome with no change to join: a refused login...)."""
        with self._store.transaction(hooks=False) as session:
            AuditRepository(session).add(
                self._row(action, target, outcome, _json(detail), current_actor())
            )

    def record_failure(self, action: str, target: str, exc: Exception) -> None:
        """The row of an action that did not happen, as ``audited`` records it: "refused" with
        the message of a ``CertwayError``, else "failed" with the error's type only."""
        if isinstance(exc, CertwayError):
            self.record(action, target, "refused", {"error": str(exc)})
        else:
            self.record(action, target, "failed", {"error": type(exc).__name__})

    def _row(self, action: str, target: str, outcome: str, detail: str, actor: Actor) -> AuditRow:
        return AuditRow(**self._values(action, target, outcome, detail, actor))

    def values(self, action: str, target: str, detail: dict[str, Any]) -> dict[str, Any]:
        """The columns of the "ok" row of ``action`` by the current actor, now: for a change
        that inserts its own row with it (``audited_by_its_write``)."""
        return self._values(action, target, "ok", _json(detail), current_actor())

    def _values(
        self, action: str, target: str, outcome: str, detail: str, actor: Actor
    ) -> dict[str, Any]:
        return {
            "at": self._clock.now(),
            "actor": actor.name,
            "via": actor.via,
            "address": actor.address,
            "action": action,
            "target": target,
            "outcome": outcome,
            "detail": detail,
        }

    def _settle(self, scope: _Scope, outcome: str, detail: dict[str, Any]) -> None:
        """The action's final outcome: its committed row updated, or a row of its own."""
        with self._store.transaction(hooks=False) as session:
            log = AuditRepository(session)
            row = log.get(scope.row_id) if scope.row_id is not None else None
            if row is None:
                log.add(self._row(scope.action, scope.target, outcome, _json(detail), scope.actor))
            else:
                row.outcome = outcome
                row.detail = _json(detail)

    def entries(self, *, since: dt.datetime | None = None, limit: int = 1000) -> list[AuditEntry]:
        with self._store.reading() as session:
            return [_entry(r) for r in AuditRepository(session).newest(since=since, limit=limit)]

    def entries_after(self, position: int, limit: int) -> list[tuple[int, AuditEntry]]:
        """Entries recorded after the one numbered ``position``, oldest first, with their
        numbers (what forwards the log elsewhere keeps its place by)."""
        with self._store.reading() as session:
            return [(r.id, _entry(r)) for r in AuditRepository(session).after(position, limit)]

    def last_position(self) -> int:
        with self._store.reading() as session:
            return AuditRepository(session).last_id()


def _entry(r: AuditRow) -> AuditEntry:
    return AuditEntry(
        r.at,
        r.actor,
        r.via,
        r.address,
        r.action,
        r.target,
        r.outcome,
        json.loads(r.detail) if r.detail else {},
    )


class _Audited(Protocol):
    _audit: Audit


P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S", bound=_Audited)


def audited(
    action: str, *, target: Callable[..., str] | None = None
) -> Callable[[Callable[Concatenate[S, P], R]], Callable[Concatenate[S, P], R]]:
    """Record every call of a service method in the audit log, with its outcome, the row in
    the same transaction as the change. ``target`` gets the call's arguments (default: the
    first one); the method adds details with ``self._audit.note(...)`` (never secrets).
    """

    def wrap(method: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
        @functools.wraps(method)
        def inner(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
            if target is not None:
                what = target(*args, **kwargs)
            else:
                what = str(args[0]) if args else ""
            with self._audit.action(action, what):
                return method(self, *args, **kwargs)

        inner.__certway_audited__ = action  # type: ignore[attr-defined]
        return inner

    return wrap


def audited_by_its_write(
    action: str,
) -> Callable[[Callable[Concatenate[S, P], R]], Callable[Concatenate[S, P], R]]:
    """Like ``audited``, for a hot method whose write inserts its own "ok" row in the change's
    transaction (``Audit.values``: certway.services.local_ca's ``sign``). Here only the other
    outcomes are recorded: a refusal or a failure gets its row on its own, as ``audited``
    records them. The target is the first argument."""

    def wrap(method: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
        @functools.wraps(method)
        def inner(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return method(self, *args, **kwargs)
            except Exception as exc:
                self._audit.record_failure(action, str(args[0]) if args else "", exc)
                raise

        inner.__certway_audited__ = action  # type: ignore[attr-defined]
        return inner

    return wrap
