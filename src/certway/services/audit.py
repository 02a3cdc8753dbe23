"""The audit log (O2): every change with who, what, when, from where and the outcome.

Adapters set who is acting (``acting_as``); services wrap each change in
``audit.action(...)``. Refused and failed attempts are recorded too. Details never hold
secrets: only names, fingerprints, serials and our own error messages (which never quote
key material).
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
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from sqlalchemy import select

from certway.clock import Clock
from certway.errors import CertwayError
from certway.store.db import Store
from certway.store.schema import AuditRow

__all__ = ["Actor", "Audit", "AuditEntry", "acting_as", "audited", "current_actor"]


@dataclass(frozen=True, slots=True)
class Actor:
    name: str
    via: str = "cli"  # cli | api | ui | system
    address: str | None = None


def _local_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


_ACTOR: ContextVar[Actor | None] = ContextVar("certway_actor", default=None)


def current_actor() -> Actor:
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


class Audit:
    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    @contextmanager
    def action(self, action: str, target: str = "") -> Iterator[dict[str, Any]]:
        """Record ``action`` on ``target`` with its outcome; the block may add details."""
        detail: dict[str, Any] = {}
        try:
            yield detail
        except CertwayError as exc:
            self.record(action, target, "refused", {**detail, "error": str(exc)})
            raise
        except Exception as exc:
            self.record(action, target, "failed", {**detail, "error": type(exc).__name__})
            raise
        self.record(action, target, "ok", detail)

    def record(self, action: str, target: str, outcome: str, detail: dict[str, Any]) -> None:
        actor = current_actor()
        with self._store.transaction() as session:
            session.add(
                AuditRow(
                    at=self._clock.now(),
                    actor=actor.name,
                    via=actor.via,
                    address=actor.address,
                    action=action,
                    target=target,
                    outcome=outcome,
                    detail=json.dumps(detail, sort_keys=True, default=str),
                )
            )

    def entries(self, *, since: dt.datetime | None = None, limit: int = 1000) -> list[AuditEntry]:
        query = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
        if since is not None:
            query = query.where(AuditRow.at >= since)
        with self._store.reading() as session:
            rows = session.scalars(query).all()
            return [
                AuditEntry(
                    r.at,
                    r.actor,
                    r.via,
                    r.address,
                    r.action,
                    r.target,
                    r.outcome,
                    json.loads(r.detail) if r.detail else {},
                )
                for r in reversed(rows)
            ]


class _Audited(Protocol):
    _audit: Audit


P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S", bound=_Audited)


def audited(
    action: str,
    *,
    target: Callable[..., str] | None = None,
    detail: Callable[[Any], dict[str, Any]] | None = None,
) -> Callable[[Callable[Concatenate[S, P], R]], Callable[Concatenate[S, P], R]]:
    """Record every call of a service method in the audit log, with its outcome.

    ``target`` gets the call's arguments (default: the first one); ``detail`` gets the
    result and returns what to record about it (never secrets).
    """

    def wrap(method: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
        @functools.wraps(method)
        def inner(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
            if target is not None:
                what = target(*args, **kwargs)
            else:
                what = str(args[0]) if args else ""
            with self._audit.action(action, what) as extra:
                result = method(self, *args, **kwargs)
                if detail is not None:
                    extra.update(detail(result))
                return result

        return inner

    return wrap
