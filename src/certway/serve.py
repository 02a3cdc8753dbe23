"""``certway serve``: the HTTPS admin listener, the plain-HTTP publication listener, the hot
reload poller and the scheduler, in one asyncio loop; Ctrl-C / SIGTERM stop it cleanly.

The poller and the scheduler run their (short) blocking work on asyncio's default executor.
Anything that fetches over the network runs on the node's fetch pool instead (SIP peer
validations, the scheduled CRL update), so slow revocation servers never hold them up; the
scheduled CRL update runs in the background while the scheduler keeps ticking.

Everything the server does on its own is audited as the system (``audit.SYSTEM``): ``run``
sets that actor, which the tasks it starts inherit with their context (as do
``asyncio.to_thread`` and the fetch pool's ``run``), and the threads it starts set it
themselves. A request acts as its authenticated caller (``web.context``), never as the system.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import uvicorn

from certway.errors import CertwayError, StoreError
from certway.outbound.syslog import SyslogSender
from certway.services.alarms import AlarmKind
from certway.services.audit import SYSTEM, acting_as
from certway.services.cluster import HEARTBEAT_INTERVAL
from certway.services.local_ca import LocalCA
from certway.services.node import Node
from certway.services.node_settings import DEFAULT_PUBLISH_PORT, NodeConfig
from certway.services.sip_settings import SipSettings
from certway.sip.listener import SipListener
from certway.sip.zones import run_pinger
from certway.store.topics import Topic, TopicListener, TopicRepository, listener_for
from certway.tls.contexts import ClientCertMode, ServerTls, TlsState
from certway.web.asgi_tls import TlsHttpToolsProtocol

__all__ = ["NodeServer", "ServeOptions", "new_event_loop", "parse_listen"]

log = logging.getLogger("certway.serve")
_DB_ALARM = str(AlarmKind.DATABASE_UNREACHABLE)
T = TypeVar("T")


def parse_listen(text: str, default_port: int) -> tuple[str, int]:
    """``HOST:PORT``, ``HOST`` or ``:PORT`` (IPv6 in brackets)."""
    from certway.errors import PolicyViolation

    host, port = text, str(default_port)
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":") or port
    elif text.count(":") == 1:
        host, port = text.split(":")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise PolicyViolation("listen", f"'{text}' is not HOST:PORT (port 0-65535)")
    return host or "127.0.0.1", int(port)


def publication_note(config: NodeConfig, publish: tuple[str, int] | None) -> tuple[str, str] | None:
    """What to tell the operator when the default publication URL (the node's FQDN and the
    default port) does not name the publication listener being started, and the URL that
    would: local CAs would put a CRL/OCSP address in their certificates where nothing
    answers. None when it does, when the URL was set (a proxy may stand in front), or with no
    publication listener."""
    if publish is None or config.publish_url is not None or publish[1] == DEFAULT_PUBLISH_PORT:
        return None
    return (
        f"the publication URL is the default, {config.publication_base}, but the CRL/OCSP "
        f"publication listener uses port {publish[1]}: local CAs created from now on would "
        "name an address where nothing answers",
        f"http://{config.fqdn}:{publish[1]}",
    )


def check_listeners(options: ServeOptions) -> None:
    """Refuse to start, saying which, when a listener's port is taken (or cannot be bound):
    checked before anything is created or printed, so that a second ``certway serve`` on the
    same ports stops with one clear line instead of a half-started server."""
    import errno
    import socket

    from certway.errors import PolicyViolation

    listeners = [("the HTTPS admin listener", "--admin-listen", options.admin)]
    if options.publish is not None:
        listeners.append(("the CRL/OCSP publication listener", "--publish-listen", options.publish))
    if options.sip is not None:
        listeners.append(("the SIP TLS listener", "--sip-listen", options.sip))
    seen: dict[tuple[str, int], str] = {}
    for what, flag, (host, port) in listeners:
        if port != 0 and (host, port) in seen:
            raise PolicyViolation(
                "listen", f"{flag} {host}:{port} is also given to {seen[host, port]}"
            )
        seen[host, port] = flag
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        except socket.gaierror:
            raise PolicyViolation(
                "listen", f"{flag}: '{host}' is not an address or a name of this machine"
            ) from None
        family, kind, proto, _name, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    reason = "is already in use (another certway serve, or another program)"
                elif exc.errno == errno.EACCES:
                    reason = "cannot be used without privileges (ports below 1024)"
                elif exc.errno == errno.EADDRNOTAVAIL:
                    reason = "is not on an address of this machine"
                else:
                    reason = f"cannot be bound ({exc.strerror})"
                raise PolicyViolation(
                    "listen",
                    f"port {port} on {host} for {what} {reason}: choose another with {flag}",
                ) from None


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The loop ``certway serve`` runs in: uvloop when installed (its TLS transport costs less
    CPU per handshake than asyncio's, see BENCHMARKS.md "TLS handshakes"), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


@dataclass(frozen=True, slots=True)
class ServeOptions:
    admin: tuple[str, int] = ("127.0.0.1", 8443)
    publish: tuple[str, int] | None = ("127.0.0.1", 8080)
    sip: tuple[str, int] | None = ("127.0.0.1", 5061)
    reload_interval: float = 0.5
    # On PostgreSQL, LISTEN for the change topics other peers commit (the poller, every
    # reload_interval, stays as the fallback); off: polling only.
    notify: bool = True
    # Cluster peers check each other's certificates (mutual TLS health endpoint) this often.
    peer_check_interval: float = 15.0
    # The scheduler round, which also records the peer's heartbeat (a peer silent for
    # cluster.STOPPED_AFTER counts as stopped).
    scheduler_interval: float = HEARTBEAT_INTERVAL.total_seconds()
    syslog_retry: float = 1.0  # first pause after a failed delivery (doubles up to 60 s)
    acme_http: tuple[str, int] | None = None
    """Where ACME HTTP-01 challenges are answered (``/.well-known/acme-challenge/`` only)."""


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to ``NodeServer``."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


# What the admin listener's TLS contexts depend on: its certificates, the trusted CAs (client
# CAs), CRLs and revocation policies, the client-certificate security and the TLS profiles.
ADMIN_TOPICS = (
    Topic.IDENTITY,
    Topic.TRUSTED_CAS,
    Topic.REVOCATION,
    Topic.ADMIN_SECURITY,
    Topic.TLS,
    Topic.ACME,
)


# What the reload loop re-reads: the admin listener's contexts, the SIP listener's contexts,
# settings and the local CAs' revocation records. Other changes (a certificate issued, an
# audit entry) wake nothing: issuance would otherwise cost every peer a reload per certificate.
RELOAD_TOPICS = (
    frozenset(ADMIN_TOPICS)
    | frozenset(SipSettings.LISTENER_TOPICS)
    | frozenset(LocalCA.RECORD_TOPICS)
)


def wakes_reload(topics: frozenset[Topic]) -> bool:
    """Whether notified ``topics`` concern what the reload loop re-reads."""
    return bool(topics & RELOAD_TOPICS)


def change_counters(node: Node, topics: tuple[Topic, ...] = ADMIN_TOPICS) -> tuple[int, ...]:
    with node.store.reading() as session:
        return TopicRepository(session).versions(topics)


class NodeServer:
    """Everything ``certway serve`` runs for one node."""

    def __init__(self, node: Node, options: ServeOptions) -> None:
        from certway.web.app import create_admin_app

        self.node = node
        self.options = options
        self.tls = ServerTls(
            defer_client_verification=True,  # a refused certificate gets a page saying why
            state=self._tls_state,
            identity_for=node.identities.certificate_for_sni,
            key_for=node.identities.private_key,
            challenge_for=node.acme.alpn_challenge,
        )
        self._servers: list[_Server] = []
        admin_host, admin_port = options.admin
        self.admin_config = uvicorn.Config(
            create_admin_app(node),
            host=admin_host,
            port=admin_port,
            http=TlsHttpToolsProtocol,
            ssl_context_factory=lambda _config, _default: self.tls.server_context(),
            log_config=None,
            access_log=False,
            lifespan="off",
        )
        self._servers.append(_Server(self.admin_config))
        if options.publish is not None:
            from certway.web.publish import create_publish_app

            host, port = options.publish
            self._servers.append(
                _Server(
                    uvicorn.Config(
                        create_publish_app(node),
                        host=host,
                        port=port,
                        log_config=None,
                        access_log=False,
                        lifespan="off",
                    )
                )
            )
        self._acme_http: _Server | None = None
        if options.acme_http is not None:
            from certway.web.acme_http import create_acme_http_app

            host, port = options.acme_http
            self._acme_http = _Server(
                uvicorn.Config(
                    create_acme_http_app(node),
                    host=host,
                    port=port,
                    log_config=None,
                    access_log=False,
                    lifespan="off",
                )
            )
            self._servers.append(self._acme_http)
        self.sip: SipListener | None = None
        self._sip_started = options.sip is None
        if options.sip is not None:
            self.sip = SipListener(node, options.sip[0], options.sip[1], sip_settings=node.sip)
        self.syslog = SyslogSender(node, retry=options.syslog_retry)
        self._stopping = asyncio.Event()
        self._changed = asyncio.Event()  # set by the topic listener: reload now
        self._topic_listener: TopicListener | None = None
        self.reloads = 0  # reloads done (tests and the bench watch it)
        self._seen_alarms: set[str] = set()
        self._crl_update: asyncio.Task[None] | None = None
        self._acme_renewal: asyncio.Task[None] | None = None

    def _tls_state(self) -> TlsState:
        # A client certificate is asked for (never required) in every mode, "not required"
        # included, where it is then ignored: switching to certificate-based authentication
        # is only accepted when the administrator's own connection presents a certificate
        # that logs in as a read-write account, and a connection that was never asked for
        # one has none to present.
        cas = self.node.trusted_cas.snapshot().certificates
        return TlsState(
            change_counters(self.node),
            ClientCertMode.REQUEST,
            tuple(cas),
            self.node.tls.profile("admin-https"),
        )

    @property
    def started(self) -> bool:
        return all(s.started for s in self._servers) and self._sip_started

    @property
    def sip_port(self) -> int:
        if self.sip is None:
            raise RuntimeError("no SIP listener")
        return self.sip.port

    @staticmethod
    def _port(server: _Server) -> int:
        for listener in getattr(server, "servers", []):
            for sock in listener.sockets:
                return int(sock.getsockname()[1])
        raise RuntimeError("not listening")

    @property
    def admin_port(self) -> int:
        """The HTTPS admin port actually bound (useful with port 0)."""
        return self._port(self._servers[0])

    @property
    def publish_port(self) -> int:
        return self._port(self._servers[1])

    @property
    def acme_http_port(self) -> int:
        """The ACME HTTP-01 port actually bound."""
        if self._acme_http is None:
            raise RuntimeError("no ACME HTTP-01 listener")
        return self._port(self._acme_http)

    def stop(self) -> None:
        for server in self._servers:
            server.should_exit = True
        self._stopping.set()

    async def _in_thread(self, fn: Callable[[], T]) -> T:
        return await asyncio.to_thread(fn)

    def _start_topic_listener(self) -> None:
        """On PostgreSQL: a thread LISTENing for the topics any peer commits; each batch
        wakes the reload loop at once."""
        if not self.options.notify:
            return
        loop = asyncio.get_running_loop()

        def changed(topics: frozenset[Topic]) -> None:
            log.debug("event=topics-notified topics=%s", ",".join(sorted(topics)))
            if wakes_reload(topics):
                loop.call_soon_threadsafe(self._changed.set)

        self._topic_listener = listener_for(self.node.store.engine, changed)
        if self._topic_listener is not None:
            self._topic_listener.start()

    async def _reload_loop(self) -> None:
        """Hot reload: pick up changes made by the API, the UI or the CLI, on this peer or
        another, at once when notified (PostgreSQL) and otherwise by polling the topics'
        counters every ``reload_interval``."""
        while not self._stopping.is_set():
            self._changed.clear()
            try:
                if await self._in_thread(self.tls.refresh):
                    self.reloads += 1
                    log.info("event=reload what=tls-contexts versions=%s", self._versions())
                if self.sip is not None and await self._in_thread(self.sip.refresh):
                    log.info("event=reload what=sip")
            except StoreError as exc:  # keep serving with the previous contexts and state
                if self.node.alarms.database_unreachable(str(exc)):
                    log.error("event=alarm severity=critical id=%s text=%r", _DB_ALARM, str(exc))
                    self._seen_alarms.add(_DB_ALARM)
            except Exception as exc:  # keep serving with the previous contexts
                log.error("event=reload-failed error=%s", type(exc).__name__)
            else:
                if self.node.alarms.database_reachable():
                    log.info("event=alarm-cleared id=%s", _DB_ALARM)
                    self._seen_alarms.discard(_DB_ALARM)
            stop = asyncio.ensure_future(self._stopping.wait())
            change = asyncio.ensure_future(self._changed.wait())
            try:
                await asyncio.wait(
                    {stop, change},
                    timeout=self.options.reload_interval,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                stop.cancel()
                change.cancel()

    def _versions(self) -> str:
        versions = self.tls.state.versions
        return ",".join(f"{t}:{v}" for t, v in zip(ADMIN_TOPICS, versions, strict=False))

    def _in_cluster(self) -> bool:
        return self.node.store.engine.dialect.name == "postgresql"

    async def _peer_check_loop(self) -> None:
        """Each peer checks the others: it calls their health endpoint with its server
        certificate and judges theirs (``tls.peer_check``); the result goes to the peers
        table (``cluster status``) and an alarm follows a peer whose certificate fails."""
        from certway.tls.peer_check import check_peer

        if not self._in_cluster():
            return
        while not self.started:  # the admin port is known once it listens
            if self._stopping.is_set():
                return
            await asyncio.sleep(0.05)
        host, _port = self.options.admin
        address = f"{host}:{self.admin_port}"
        try:
            await self._in_thread(lambda: self.node.cluster_tls.register_address(address))
        except Exception as exc:
            log.error("event=peer-register-failed error=%s", type(exc).__name__)
        while not self._stopping.is_set():
            try:
                for node_id, fqdn, peer_address in await self._in_thread(
                    self.node.cluster_tls.others
                ):
                    result = await asyncio.to_thread(check_peer, self.node, fqdn, peer_address)
                    await asyncio.to_thread(self.node.cluster_tls.record, node_id, result)
                    log.log(
                        logging.INFO if result.valid and not result.refused else logging.WARNING,
                        "event=peer-tls peer=%s valid=%s refused=%s reason=%r",
                        fqdn,
                        result.valid,
                        result.refused,
                        result.reason,
                    )
            except Exception as exc:
                log.error("event=peer-check-failed error=%s", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.options.peer_check_interval)

    def _refresh_crls(self) -> None:
        """Each local CA's CRL is re-signed before it goes stale. One CA that cannot sign
        (its token is unavailable: an alarm says so) does not hold up the others."""
        for ca in self.node.local_ca.cas():
            try:
                self.node.local_ca.current_crl(ca.name)
            except CertwayError as exc:
                log.error("event=crl-refresh-failed ca=%s error=%r", ca.name, str(exc))

    async def _update_crls_if_due(self) -> None:
        """The daily CRL source update, on the fetch pool (each download has its deadline)."""
        try:
            if await self.node.fetch_pool.run(self.node.revocation.run_if_due):
                log.info("event=crl-update what=scheduled")
        except Exception as exc:  # the sources keep their last good CRLs
            log.error("event=crl-update-failed error=%s", type(exc).__name__)

    async def _renew_acme_if_due(self) -> None:
        """ACME renewals that are due, on the fetch pool (orders take seconds to minutes)."""
        try:
            renewed = await self.node.fetch_pool.run(self.node.acme.run_if_due)
            for slot in renewed:
                log.info("event=acme-renewal what=%s", slot)
        except Exception as exc:  # failures are recorded per slot and raise alarms
            log.error("event=acme-renewal-failed error=%s", type(exc).__name__)

    async def _finish_crl_update(self) -> None:
        """At stop, give a scheduled CRL update under way the time of one download to end
        (the download under way ends by its deadline), then stop waiting for it."""
        task = self._crl_update
        if task is None or task.done():
            return
        await asyncio.wait({task}, timeout=self.node.fetch_limits.update_deadline)
        if not task.done():
            log.warning("event=crl-update-abandoned reason=stopping")
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _scheduler_loop(self) -> None:
        """Daily CRL updates from URL sources, local CRL refresh, alarms in the log."""
        while not self._stopping.is_set():
            try:
                if self._crl_update is None or self._crl_update.done():
                    self._crl_update = asyncio.create_task(self._update_crls_if_due())
                if self._acme_renewal is None or self._acme_renewal.done():
                    self._acme_renewal = asyncio.create_task(self._renew_acme_if_due())
                await self._in_thread(self._refresh_crls)
                await self._in_thread(self.node.cluster.heartbeat)
                alarms = await self._in_thread(self.node.alarms.current)
                current = {a.id for a in alarms}
                for alarm in alarms:
                    if alarm.id not in self._seen_alarms:
                        log.warning(
                            "event=alarm severity=%s id=%s text=%r",
                            alarm.severity,
                            alarm.id,
                            alarm.text,
                        )
                for cleared in self._seen_alarms - current:
                    log.info("event=alarm-cleared id=%s", cleared)
                self._seen_alarms = current
            except Exception as exc:
                log.error("event=scheduler-failed error=%s", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.options.scheduler_interval)

    def serve_forever(self) -> None:
        """Run until Ctrl-C / SIGTERM in a new event loop (``new_event_loop``)."""
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            runner.run(self.run())

    async def run(self, *, install_signals: bool = True) -> None:
        """Serve until ``stop``; everything started here acts as the system (module docstring)."""
        with acting_as(SYSTEM):
            await self._run(install_signals)

    async def _run(self, install_signals: bool) -> None:
        loop = asyncio.get_running_loop()
        if install_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.stop)
        certway_log = logging.getLogger("certway")
        certway_log.addHandler(self.syslog.events)
        self.syslog.start()
        if self.sip is not None:
            await self.sip.start()
            self._sip_started = True
        self._start_topic_listener()
        tasks: list[asyncio.Task[Any]] = [asyncio.create_task(s.serve()) for s in self._servers]
        tasks.append(asyncio.create_task(self._reload_loop()))
        tasks.append(asyncio.create_task(self._scheduler_loop()))
        tasks.append(asyncio.create_task(self._peer_check_loop()))
        tasks.append(asyncio.create_task(run_pinger(self.node, self.node.zones, self._stopping)))
        try:
            await asyncio.gather(*tasks)
        finally:
            self.stop()
            if self._topic_listener is not None:
                await asyncio.to_thread(self._topic_listener.stop)
            await self._finish_crl_update()
            if self._acme_renewal is not None and not self._acme_renewal.done():
                await asyncio.wait({self._acme_renewal}, timeout=5)
            if self.sip is not None:
                await self.sip.stop()
            await asyncio.to_thread(self.syslog.stop)
            certway_log.removeHandler(self.syslog.events)
            await self.node.store.close_on_loop()
            if install_signals:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)
