"""What the bench scripts share: result rows, the summary table, units, timing helpers."""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
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
