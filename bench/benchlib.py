"""What the bench scripts share: result rows, the summary table, units, timing helpers, the
servers' ports and processes, CPU accounting from /proc."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Row:
    section: str
    what: str
    measured: str
    baseline: str
    ratio: float | None = None
    target: str = ""
    met: bool | None = None


ROWS: list[Row] = []


def add_row(row: Row) -> None:
    """Record a result and print it at once (long runs show progress)."""
    ROWS.append(row)
    ratio = f"{row.ratio:.2f}" if row.ratio is not None else "-"
    verdict = "" if row.met is None else ("PASS" if row.met else "MISS")
    print(
        f"  {row.what}: certway {row.measured} | baseline {row.baseline} | ratio {ratio} "
        f"{row.target} {verdict}".rstrip(),
        flush=True,
    )


def print_table(legend: str, *, measured: str = "certway") -> None:
    """Every recorded row as an aligned table, then what the ratios mean."""
    headers = ("section", "measurement", measured, "baseline", "ratio", "target", "result")
    cells = [
        (
            r.section,
            r.what,
            r.measured,
            r.baseline,
            f"{r.ratio:.2f}" if r.ratio is not None else "-",
            r.target or "-",
            "-" if r.met is None else ("PASS" if r.met else "MISS"),
        )
        for r in ROWS
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    print()
    print(line)
    print("-" * len(line))
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip())
    print(legend)


def seconds(value: float) -> str:
    return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"


def rate(per_second: float) -> str:
    return f"{per_second:,.0f}/s"


def mb(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:,.0f} MB"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def per_op(fn: Callable[[], object], n: int) -> float:
    """Seconds per call of ``fn`` over ``n`` calls."""
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def serve_announcing_port(
    server: Any, loop: asyncio.AbstractEventLoop, port: Callable[[], int], node: Any
) -> None:
    """Run a ``NodeServer`` in ``loop`` until it stops, printing ``PORT n`` (``port()``) once
    it listens, for the parent process of a bench; closes the loop and the node after."""

    async def announce() -> None:
        while not server.started:
            await asyncio.sleep(0.02)
        print(f"PORT {port()}", flush=True)

    async def main() -> None:
        task = asyncio.create_task(announce())
        await server.run()
        task.cancel()

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
        node.close()


# -- servers and CPU accounting ------------------------------------------------------------
TICK = os.sysconf("SC_CLK_TCK")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A free port of 127.0.0.1 (TCP, or UDP with ``socket.SOCK_DGRAM``)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    """Return once ``port`` accepts connections; fail if ``proc`` exits first."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{what} did not listen on {port}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 15 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_seconds(*pids: int) -> float:
    """utime + stime of processes (all their threads), from /proc/<pid>/stat; a process
    gone meanwhile counts nothing."""
    total = 0
    for pid in pids:
        with contextlib.suppress(FileNotFoundError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / TICK


def system_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)
