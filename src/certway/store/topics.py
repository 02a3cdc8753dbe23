"""Change topics: what a committed change touched, so caches and listeners know to reload.

Each write transaction records the topics it changed (``TopicRepository.bump``): the topic's
counter in the ``change_topics`` table moves by one, in the same transaction as the change,
so a counter never moves without its change nor the other way round. On PostgreSQL the same
transaction also sends ``NOTIFY certway_topics, '<topic>'``, which PostgreSQL delivers only
when (and if) it commits: every peer's ``TopicListener`` hears it at once. Polling the
counters stays the fallback (and the only way on SQLite).

Each cache or listener declares the topics it depends on (a tuple of ``Topic``) and compares
``TopicRepository.versions(topics)`` with the versions it was built from.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterable
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import String, bindparam, case, func, literal, null, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select
from sqlalchemy.sql.dml import Insert, ReturningInsert

from certway.store.schema import ChangeTopicRow

__all__ = [
    "CHANNEL",
    "QUIET_TOPICS",
    "Topic",
    "TopicListener",
    "TopicRepository",
    "listener_for",
    "topic_bump_from",
    "topic_statements",
]

CHANNEL = "certway_topics"
log = logging.getLogger("certway.topics")


class Topic(StrEnum):
    """The kinds of change a cache or a listener can depend on."""

    TRUSTED_CAS = "trusted-cas"  # the trusted CA list
    REVOCATION = "revocation"  # CRLs held, CRL sources and schedule, revocation policies
    LOCAL_CAS = "local-cas"  # the local CAs themselves (created, imported)
    CA_RECORDS = "ca-records"  # the local CAs' revocations and their CRLs
    CA_ISSUED = "ca-issued"  # certificates the local CAs issued (their inventory)
    IDENTITY = "identity"  # server, client and domain certificates, CSRs, node settings
    SIP = "sip"  # SIP TLS settings and access rules
    ADMIN_SECURITY = "admin-security"  # client-certificate security of the admin listener
    TLS = "tls"  # TLS profiles of the services
    ZONES = "zones"  # neighbour zones
    ADMINS = "admins"  # administrator accounts
    TOKENS = "tokens"  # PKCS#11 tokens
    CLUSTER = "cluster"  # cluster settings (TLS verification of the peers)
    ACME = "acme"  # the ACME client: account, TLS-ALPN-01 challenges, staged certificates
    ACME_SERVER = "acme-server"  # the ACME server settings of the local CAs
    SYSLOG = "syslog"  # remote syslog receivers
    API_TOKENS = "api-tokens"  # API tokens
    LDAP = "ldap"  # LDAP admin authentication settings


QUIET_TOPICS = frozenset({Topic.CA_ISSUED})
"""Topics counted but not announced: nothing reloads on them, so on PostgreSQL their change
sends no notification (every peer's listener would wake for it: once per certificate issued
anywhere in the cluster). Their counters move all the same."""


@functools.cache
def topic_statements(dialect: str) -> Insert | ReturningInsert[Any]:
    """The upsert that moves a topic's counter, built once: every change runs it, and building
    the statement costs more than running it. On PostgreSQL the same statement sends the
    topic's notification (``RETURNING pg_notify(...)``: one round trip, not two), unless the
    topic is quiet (``QUIET_TOPICS``)."""
    upsert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return _counting(
        dialect, upsert(ChangeTopicRow).values(topic=bindparam("topic", type_=String), version=1)
    )


def topic_bump_from(rows: Select[str, int]) -> Insert | ReturningInsert[Any]:
    """``topic_statements("postgresql")`` with the topic and the first version (1) selected
    by ``rows``, for a write made of one statement (certway.store.direct: the topic CTE
    selects from the write lock's query)."""
    return _counting(
        "postgresql", postgresql.insert(ChangeTopicRow).from_select(["topic", "version"], rows)
    )


def _counting(dialect: str, insert: Any) -> Insert | ReturningInsert[Any]:
    bump = insert.on_conflict_do_update(
        index_elements=[ChangeTopicRow.topic],
        set_={"version": ChangeTopicRow.version + 1},
    )
    if dialect == "postgresql":
        topic = ChangeTopicRow.topic
        notify = case(
            (topic.in_([literal(t.value) for t in sorted(QUIET_TOPICS)]), null()),
            else_=func.pg_notify(CHANNEL, topic),
        )
        return cast(ReturningInsert[Any], bump.returning(notify))
    return cast(Insert, bump)


class TopicRepository:
    """The counters of the change topics."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def bump(self, *topics: Topic) -> None:
        """Record that this transaction changed ``topics``: each counter moves by one in one
        statement (two processes bumping at once both count); on PostgreSQL a notification
        per topic leaves when the transaction commits, not before, and never if it rolls back."""
        connection = self._session.connection()
        bump = topic_statements(connection.dialect.name)
        for topic in dict.fromkeys(topics):
            connection.execute(bump, {"topic": topic.value})  # PostgreSQL: notified at commit
        for obj in list(self._session.identity_map.values()):
            if isinstance(obj, ChangeTopicRow):
                self._session.expire(obj)  # loaded before the statement: old value

    def versions(self, topics: Iterable[Topic] = tuple(Topic)) -> tuple[int, ...]:
        """The counters of ``topics``, in that order (0 for a topic never changed)."""
        wanted = tuple(topics)
        rows = self._session.execute(
            select(ChangeTopicRow.topic, ChangeTopicRow.version).where(
                ChangeTopicRow.topic.in_([t.value for t in wanted])
            )
        ).all()
        found = {topic: int(version) for topic, version in rows}
        return tuple(found.get(t.value, 0) for t in wanted)


class TopicListener:
    """One connection per node that ``LISTEN``s for topic notifications (PostgreSQL only).

    ``on_change(topics)`` runs on the listener's thread for each notification as it arrives;
    ``on_state(connected)`` when the connection is lost or back. A lost connection is retried
    every ``retry`` seconds; meanwhile the node's poller is what picks changes up."""

    def __init__(
        self,
        url: str,
        on_change: Callable[[frozenset[Topic]], None],
        on_state: Callable[[bool], None] = lambda _connected: None,
        *,
        retry: float = 1.0,
    ) -> None:
        self._url = url
        self._on_change = on_change
        self._on_state = on_state
        self._retry = retry
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="certway-topics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        import psycopg

        was_connected: bool | None = None
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._url, autocommit=True, connect_timeout=3) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.connected.set()
                    if was_connected is not True:
                        was_connected = True
                        self._on_state(True)
                    # Changes committed while we were away: let the caller re-read them all.
                    self._on_change(frozenset(Topic))
                    while not self._stop.is_set():
                        # Each notification is handed on as it arrives (the generator ends
                        # after the timeout, to look at the stop flag and the server).
                        for notification in conn.notifies(timeout=0.5):
                            if notification.payload in _VALUES:
                                self._on_change(frozenset({Topic(notification.payload)}))
                        conn.execute("SELECT 1")  # notice a dead server without a notification
            except psycopg.Error as exc:
                self.connected.clear()
                if was_connected is not False:
                    was_connected = False
                    log.warning("event=topic-listener-lost error=%s", type(exc).__name__)
                    self._on_state(False)
                self._stop.wait(self._retry)


_VALUES = frozenset(t.value for t in Topic)


def listener_for(
    engine: Engine,
    on_change: Callable[[frozenset[Topic]], None],
    on_state: Callable[[bool], None] = lambda _connected: None,
) -> TopicListener | None:
    """A ``TopicListener`` on the database of ``engine``; None when it has no notifications
    (SQLite: polling the counters is the way there)."""
    if engine.dialect.name != "postgresql":
        return None
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    return TopicListener(url, on_change, on_state)
