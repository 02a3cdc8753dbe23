"""Run a real ``certway serve`` (NodeServer) in a background thread on free 127.0.0.1 ports."""

from __future__ import annotations

import asyncio
import threading
import time
import traceback
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

from certway.serve import NodeServer, ServeOptions
from certway.services.node import Node


@contextmanager
def running(
    node: Node,
    *,
    publish: bool = True,
    sip: bool = True,
    reload_interval: float = 0.2,
    scheduler_interval: float = 3600,
    default_workers: int | None = None,
    acme_http: bool = False,
) -> Iterator[NodeServer]:
    """``default_workers`` sizes the loop's default executor (asyncio's default depends on the
    machine's CPU count)."""
    options = ServeOptions(
        admin=("127.0.0.1", 0),
        publish=("127.0.0.1", 0) if publish else None,
        sip=("127.0.0.1", 0) if sip else None,
        reload_interval=reload_interval,
        scheduler_interval=scheduler_interval,
        acme_http=("127.0.0.1", 0) if acme_http else None,
    )
    server = NodeServer(node, options)
    loop = asyncio.new_event_loop()
    if default_workers is not None:
        loop.set_default_executor(ThreadPoolExecutor(default_workers))
    failure: list[BaseException] = []

    def run() -> None:
        try:
            loop.run_until_complete(server.run(install_signals=False))
        except BaseException as exc:  # surfaced to the test below
            failure.append(exc)
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="certway-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30  # generous: the suite runs on 2 busy cores
    while not server.started:
        if failure or not thread.is_alive():
            detail = "".join(traceback.format_exception(failure[0])) if failure else "exited"
            raise RuntimeError(f"certway serve did not start:\n{detail}")
        if time.monotonic() > deadline:
            raise TimeoutError("certway serve did not start within 30 s")
        time.sleep(0.02)
    try:
        yield server
    finally:
        loop.call_soon_threadsafe(server.stop)
        thread.join(timeout=15)


T = TypeVar("T")


class LoopThread:
    """An asyncio loop in a background thread (the listener's home in these tests)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 15) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(cancel_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()
