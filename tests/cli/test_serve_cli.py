"""``certway serve`` as a user runs it: a process that prints the admin URL and, on first
start only, the generated admin password; serves; stops cleanly on SIGTERM."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(data_dir: Path) -> tuple[subprocess.Popen[str], list[str], int]:
    admin, publish, sip = free_port(), free_port(), free_port()
    process = subprocess.Popen(
        [
            sys.executable, "-c", "from certway.cli.main import main; main()",
            "--data-dir", str(data_dir), "serve",
            "--admin-listen", f"127.0.0.1:{admin}",
            "--publish-listen", f"127.0.0.1:{publish}",
            "--sip-listen", f"127.0.0.1:{sip}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", admin), timeout=0.5):
                break
        except OSError:
            if process.poll() is not None:
                raise AssertionError(f"certway serve exited: {process.stderr.read()}") from None
            time.sleep(0.1)
    # The banner is printed before the listeners start.
    while True:
        line = process.stdout.readline()
        lines.append(line)
        if line.startswith("SIP over TLS"):
            break
    return process, lines, admin


def stop(process: subprocess.Popen[str]) -> tuple[int, str]:
    process.send_signal(signal.SIGTERM)
    try:
        _out, err = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    return process.returncode, err


@pytest.mark.slow
def test_first_start_prints_password_once_and_sigterm_stops_cleanly(tmp_path: Path) -> None:
    data_dir = tmp_path / "d"
    process, lines, admin = start(data_dir)
    try:
        text = "".join(lines)
        assert f"https://127.0.0.1:{admin}/" in text
        match = re.search(r"log in as 'admin' with password (\S+)", text)
        assert match, text
        response = httpx.get(
            f"https://127.0.0.1:{admin}/api/v1/status",
            auth=("admin", match.group(1)),
            verify=False,  # noqa: S501 - the temporary CA; certificates are tested elsewhere
        )
        assert response.status_code == 200
        assert "temporary-certificate" in response.text
    finally:
        code, err = stop(process)
    assert code == 0, err
    assert "certway stopped" in err
    assert "Traceback" not in err

    again, lines, _admin = start(data_dir)
    try:
        assert "password" not in "".join(lines)
    finally:
        code, err = stop(again)
    assert code == 0, err
