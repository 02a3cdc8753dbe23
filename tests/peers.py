"""``certway serve`` peers as separate processes on free 127.0.0.1 ports (cluster tests)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

__all__ = ["Peer", "free_port"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Peer:
    """One ``certway --data-dir D serve`` process; its log lines are kept (with the time each
    was read) for the tests and the bench to look at."""

    def __init__(self, data_dir: Path, *extra: str) -> None:
        self.data_dir = data_dir
        self.admin, self.publish, self.sip = free_port(), free_port(), free_port()
        self.process = subprocess.Popen(
            [
                sys.executable, "-c", "from certway.cli.main import main; main()",
                "--data-dir", str(data_dir), "serve",
                "--admin-listen", f"127.0.0.1:{self.admin}",
                "--publish-listen", f"127.0.0.1:{self.publish}",
                "--sip-listen", f"127.0.0.1:{self.sip}",
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        self.lines: list[tuple[float, str]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    @property
    def log(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def wait_listening(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.admin), timeout=0.5):
                    return
            except OSError:
                if self.process.poll() is not None:
                    raise AssertionError(f"certway serve exited:\n{self.log}") from None
                time.sleep(0.1)
        raise AssertionError(f"certway serve did not listen within {timeout:g} s:\n{self.log}")

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.admin}{path}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=5)
