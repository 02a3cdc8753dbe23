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
        match = re.search(r"'admin' was created; its password, shown once:\s+(\S+)", text)
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


def test_a_port_in_use_is_named_before_anything_is_created(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for flags, message in (
            (["--publish-listen", f"127.0.0.1:{port}"],
             f"port {port} on 127.0.0.1 for the CRL/OCSP publication listener is already in use"),
            (["--admin-listen", f"127.0.0.1:{port}"],
             f"port {port} on 127.0.0.1 for the HTTPS admin listener is already in use"),
            (["--sip-listen", f"127.0.0.1:{free_port()}", "--publish-listen",
              f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{port}"], "already in use"),
            (["--sip-listen", "127.0.0.1:5999", "--publish-listen", "127.0.0.1:5999"],
             "--sip-listen 127.0.0.1:5999 is also given to --publish-listen"),
        ):  # fmt: skip
            defaults = ["--admin-listen", f"127.0.0.1:{free_port()}",
                        "--publish-listen", f"127.0.0.1:{free_port()}",
                        "--sip-listen", f"127.0.0.1:{free_port()}"]  # fmt: skip
            done = subprocess.run(
                [sys.executable, "-c", "from certway.cli.main import main; main()",
                 "--data-dir", str(tmp_path / "d"), "serve", *defaults, *flags],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            assert done.returncode == 2, done.stderr
            assert message in done.stderr, done.stderr
            assert "password" not in done.stdout + done.stderr
            assert not (tmp_path / "d").exists()  # no data directory, no admin account


def test_make_serve_installs_only_runtime_packages(tmp_path: Path) -> None:
    """`make serve` on a fresh checkout: the package without its test tools; `make test`
    adds them."""
    import shutil

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    repo = Path(__file__).resolve().parents[2]

    def plan(target: str) -> str:
        done = subprocess.run(
            ["make", "-n", "-C", str(repo), f"VENV={tmp_path / 'venv'}", target],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    serve = plan("serve")
    assert "pip install --quiet -e ." in serve and "[test]" not in serve
    assert "certway --data-dir" in serve
    assert "pip install --quiet -e '.[test]'" in plan("lint")
