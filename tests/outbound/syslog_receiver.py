"""A throwaway rsyslogd (Debian rsyslog + rsyslog-gnutls) on a free 127.0.0.1 port: the real
receiver of the remote syslog tests. It writes what it parsed of each RFC 5424 message
(MSGID, structured data, text) to a file, one line per message."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certway.pki.keys import PrivateKey

TEMPLATE = "%msgid%|%hostname%|%app-name%|%pri%|%structured-data%|%msg%\\n"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pem(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


class Rsyslog:
    def __init__(self, workdir: Path, port: int, transport: str) -> None:
        self.workdir = workdir
        self.port = port
        self.transport = transport
        self.out = workdir / "received.log"

    def lines(self) -> list[str]:
        return self.out.read_text().splitlines() if self.out.exists() else []

    def messages(self, msgid: str | None = None) -> list[str]:
        return [line for line in self.lines() if msgid is None or line.startswith(msgid + "|")]


@contextmanager
def rsyslog(
    workdir: Path,
    *,
    transport: str = "tls",
    port: int | None = None,
    cert: x509.Certificate | None = None,
    key: PrivateKey | None = None,
    ca: x509.Certificate | None = None,
    chain: Sequence[x509.Certificate] = (),
) -> Iterator[Rsyslog]:
    """rsyslogd receiving on ``port`` over tls (gtls driver, server certificate ``cert``,
    presented with ``chain`` after it), tcp or udp, until the block ends."""
    binary = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
    if not Path(binary).exists() or (
        transport == "tls" and not list(Path("/usr/lib").glob("*/rsyslog/lmnsd_gtls.so"))
    ):
        pytest.skip("rsyslog / rsyslog-gnutls not installed (make test installs them)")
    workdir.mkdir(parents=True, exist_ok=True)
    chosen = port or free_port(socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM)
    server = Rsyslog(workdir, chosen, transport)
    lines = [f'global(workDirectory="{workdir}")']
    if transport == "tls":
        assert cert is not None and key is not None and ca is not None
        cert_file = _pem(
            workdir / "cert.pem",
            b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (cert, *chain)),
        )
        key_file = _pem(
            workdir / "key.pem",
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        ca_file = _pem(workdir / "ca.pem", ca.public_bytes(serialization.Encoding.PEM))
        lines += [
            f'global(DefaultNetstreamDriverCAFile="{ca_file}" '
            f'DefaultNetstreamDriverCertFile="{cert_file}" '
            f'DefaultNetstreamDriverKeyFile="{key_file}")',
            'module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" '
            'StreamDriver.AuthMode="anon")',
            f'input(type="imtcp" port="{chosen}" address="127.0.0.1")',
        ]
    elif transport == "tcp":
        lines += [
            'module(load="imtcp")',
            f'input(type="imtcp" port="{chosen}" address="127.0.0.1")',
        ]
    else:
        lines += [
            'module(load="imudp")',
            f'input(type="imudp" port="{chosen}" address="127.0.0.1")',
        ]
    lines += [
        f'template(name="received" type="string" string="{TEMPLATE}")',
        f'action(type="omfile" file="{server.out}" template="received" flushOnTXEnd="on" '
        'asyncWriting="off")',
    ]
    conf = workdir / "rsyslog.conf"
    conf.write_text("\n".join(lines) + "\n")
    check = subprocess.run([binary, "-N1", "-f", str(conf)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr + check.stdout
    process = subprocess.Popen(
        [binary, "-n", "-f", str(conf), "-i", str(workdir / "rsyslogd.pid")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        if transport != "udp":
            deadline = time.monotonic() + 15
            while True:
                try:
                    socket.create_connection(("127.0.0.1", chosen), timeout=1).close()
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        output = process.stdout.read().decode() if process.stdout else ""
                        raise AssertionError(f"rsyslogd did not start: {output}") from None
                    time.sleep(0.05)
        else:
            time.sleep(0.5)  # no connection to wait for: give it time to bind
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
