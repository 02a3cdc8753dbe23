"""Cluster propagation: how long a change committed on one peer takes to reach the listeners
of the others — LISTEN/NOTIFY (the default on PostgreSQL) against polling the topic counters
(``certway serve --poll-only``, every 0.5 s), measured in the same run.

N peers (separate ``certway serve`` processes) share one PostgreSQL database. A writer
changes the admin listener's TLS profile (one committed transaction moving ``Topic.TLS``);
each peer logs ``event=reload what=tls-contexts versions=...,tls:K`` once its listener has
rebuilt its contexts, and the latency is the time from the commit to the moment that line is
read from the peer's log pipe. Samples are spread over the poll period (a random pause
between changes), so polling's latency is its average, not a lucky phase.

    python bench/bench_cluster.py [--samples 30] [--peers 3 6] [--database postgresql://…]

Without ``--database`` it creates a database on the server at 127.0.0.1:5432 (trust auth), or
starts a throwaway server with Debian's PostgreSQL binaries (tests/pgtools.py), and drops it.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from certway.services.node import Node
from certway.store.topics import Topic, TopicRepository
from certway.store.vault import load_master_key
from peers import Peer
from pgtools import find_or_start_server

from benchlib import Row, add_row, print_table


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def build_cluster(url: str, root: Path, n: int) -> list[Path]:
    dirs = [root / f"p{i}" for i in range(n)]
    Node.init(dirs[0], database=url, fqdn="p0.bench.test").close()
    key = load_master_key(dirs[0])
    for i in range(1, n):
        Node.init(dirs[i], database=url, join_key=key, fqdn=f"p{i}.bench.test").close()
    return dirs


def reloaded(peer: Peer, version: int, since: int) -> float | None:
    """When ``peer`` logged its reload to TLS version ``version`` (log lines from ``since``)."""
    marker = f"tls:{version}"
    for at, line in peer.lines[since:]:
        versions = line.rstrip().rpartition("versions=")[2].split(",")
        if "event=reload what=tls-contexts" in line and marker in versions:
            return at
    return None


def measure(dirs: list[Path], samples: int, *, poll_only: bool) -> list[float]:
    extra = ("--poll-only",) if poll_only else ()
    peers = [Peer(d, "--peer-check-interval", "3600", *extra) for d in dirs]
    writer = Node.open(dirs[0])
    latencies: list[float] = []
    try:
        for peer in peers:
            peer.wait_listening()
        time.sleep(2)  # the listeners' first reload and LISTEN are done
        profiles = ("modern", "intermediate")
        for i in range(samples):
            marks = [len(p.lines) for p in peers]
            writer.tls.set("admin-https", profiles[i % 2])
            committed = time.monotonic()
            with writer.store.reading() as session:
                (version,) = TopicRepository(session).versions((Topic.TLS,))
            deadline = committed + 30
            seen: list[float | None] = [None] * len(peers)
            while None in seen and time.monotonic() < deadline:
                for j, peer in enumerate(peers):
                    if seen[j] is None:
                        seen[j] = reloaded(peer, version, marks[j])
                time.sleep(0.002)
            if None in seen:
                raise SystemExit(f"a peer did not reload within 30 s (version {version})")
            latencies.extend(at - committed for at in seen if at is not None)
            time.sleep(random.uniform(0.05, 0.6))
    finally:
        writer.close()
        for peer in peers:
            peer.stop()
    return latencies


def delivery(url: str, n: int, samples: int) -> tuple[list[float], list[float]]:
    """Commit → every one of ``n`` listeners told, without the rebuild: LISTEN/NOTIFY
    (``TopicListener``, one connection each) against a 0.5 s poller of the counters (one
    thread each), the same changes."""
    import threading

    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.orm import Session

    from certway.store.topics import listener_for

    engine = create_engine(make_url(url).set(drivername="postgresql+psycopg"))
    heard: list[list[float]] = [[] for _ in range(n)]
    polled: list[list[tuple[float, int]]] = [[] for _ in range(n)]
    stop = threading.Event()

    def poller(i: int) -> None:
        last = -1
        while not stop.is_set():
            with Session(engine) as session:
                (version,) = TopicRepository(session).versions((Topic.ZONES,))
            if version != last:
                polled[i].append((time.monotonic(), version))
                last = version
            stop.wait(0.5)

    listeners = []
    for i in range(n):
        listener = listener_for(
            engine,
            lambda topics, i=i: (
                heard[i].append(time.monotonic()) if Topic.ZONES in topics else None
            ),
        )
        assert listener is not None
        listener.start()
        listeners.append(listener)
    threads = [threading.Thread(target=poller, args=(i,), daemon=True) for i in range(n)]
    for thread in threads:
        thread.start()
    for listener in listeners:
        listener.connected.wait(30)
    time.sleep(1)
    notify: list[float] = []
    poll: list[float] = []
    try:
        for _ in range(samples):
            marks = [len(h) for h in heard]
            with Session(engine) as session, session.begin():
                TopicRepository(session).bump(Topic.ZONES)
            committed = time.monotonic()
            with Session(engine) as session:
                (version,) = TopicRepository(session).versions((Topic.ZONES,))
            deadline = committed + 10
            while time.monotonic() < deadline and (
                any(len(h) <= m for h, m in zip(heard, marks, strict=True))
                or any(not p or p[-1][1] < version for p in polled)
            ):
                time.sleep(0.001)
            notify.extend(h[m] - committed for h, m in zip(heard, marks, strict=True))
            for p in polled:
                poll.extend(at - committed for at, v in p if v == version)
            time.sleep(random.uniform(0.05, 0.6))
    finally:
        stop.set()
        for listener in listeners:
            listener.stop()
        engine.dispose()
    return notify, poll


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--peers", type=int, nargs="+", default=[3, 6])
    parser.add_argument("--database", help="an empty PostgreSQL database (else one is made)")
    args = parser.parse_args()
    server = None if args.database else find_or_start_server()
    print(f"bench_cluster: {args.samples} changes per run, peers {args.peers}", flush=True)
    try:
        for n in args.peers:
            results: dict[bool, list[float]] = {}
            for poll_only in (False, True):
                with tempfile.TemporaryDirectory(prefix="certway-bench-") as tmp:
                    if args.database:
                        url = args.database
                        dirs = build_cluster(url, Path(tmp), n)
                        results[poll_only] = measure(dirs, args.samples, poll_only=poll_only)
                    else:
                        assert server is not None
                        with server.database() as url:
                            dirs = build_cluster(url, Path(tmp), n)
                            results[poll_only] = measure(dirs, args.samples, poll_only=poll_only)
            notify, poll = results[False], results[True]
            if server is not None:
                with server.database() as url:
                    from sqlalchemy import create_engine
                    from sqlalchemy.engine import make_url

                    from certway.store.schema import Base

                    engine = create_engine(make_url(url).set(drivername="postgresql+psycopg"))
                    Base.metadata.create_all(engine)
                    engine.dispose()
                    told, polled = delivery(url, n, args.samples)
                for label, p in (("p50", 50), ("p99", 99)):
                    mine, base = percentile(told, p), percentile(polled, p)
                    add_row(
                        Row(
                            f"{n} peers",
                            f"commit → every listener told (no rebuild), {label}",
                            f"{mine * 1000:.1f} ms",
                            f"{base * 1000:.0f} ms (polling)",
                            base / mine if mine > 0 else None,
                        )
                    )
            for label, p in (("p50", 50), ("p99", 99)):
                mine, base = percentile(notify, p), percentile(poll, p)
                add_row(
                    Row(
                        f"{n} peers",
                        f"change → every peer's listener reloaded, {label}",
                        f"{mine * 1000:.0f} ms",
                        f"{base * 1000:.0f} ms (polling)",
                        base / mine if mine > 0 else None,
                        "≤ 1 s",
                        mine <= 1.0,
                    )
                )
            print(
                f"  {n} peers: notify mean {statistics.mean(notify) * 1000:.0f} ms, "
                f"polling mean {statistics.mean(poll) * 1000:.0f} ms "
                f"({len(notify)} peer reloads each)",
                flush=True,
            )
    finally:
        if server is not None:
            server.stop()
    print_table("ratio = polling latency / LISTEN-NOTIFY latency (higher: NOTIFY is faster)")


if __name__ == "__main__":
    main()
