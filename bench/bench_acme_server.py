"""ACME server: complete orders per second, certway's server vs Debian's ``pebble``, same run.

    .venv/bin/python bench/bench_acme_server.py            # 2 rounds of 20 s blocks per server
    .venv/bin/python bench/bench_acme_server.py --quick    # 1 round of 6 s blocks (smoke run)

One complete order = new order → authorization (fetched by the client) → HTTP-01 challenge
answered → authorization polled until valid → finalize (CSR) → order polled until valid →
certificate chain downloaded. Every order names a new host (``t<thread>-<n>.example.net``),
so no server can reuse an earlier authorization (a reused one stops the run). The client is
the certbot project's ``acme`` library (``ClientV2``), ``THREADS`` threads, each with its own
connection; polls every 5 ms (the library's own polling sleeps a whole second). One account
per server, registered before the timing; the certificate key (P-256) is made once, a CSR
per order.

Both servers run as their own processes on 127.0.0.1 and validate for real, against the same
pre-solved HTTP-01 responder (answers every token with ``token.thumbprint`` of the account
key) and the same DNS (``pebble-challtestsrv``, every name → 127.0.0.1):

- certway: ``certway serve`` with a local root CA and ``ca acme enable --dns-server ...
  --http-01-port <responder>`` (rate limit lifted);
- pebble: ``PEBBLE_VA_NOSLEEP=1`` (no random validation delay), ``PEBBLE_WFE_NONCEREJECT=0``
  (no deliberately refused nonces), ``PEBBLE_AUTHZREUSE=0`` (no reused authorizations: every
  order validates, as with certway), ``-dnsserver`` the same challtestsrv.

Blocks alternate (certway, pebble, certway, pebble); each side's best block counts. The ratio
is certway's orders/s ÷ pebble's (target ≥ 1.0). Client, servers and responder share this
machine's cores, so absolute numbers move with its load; the ratio is the result.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.server
import itertools
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import josepy as jose
from acme import challenges, client, messages
from acme import crypto_util as acme_crypto
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certway.services.node import Node

from benchlib import ROWS, Row, add_row, free_port, print_table, rate

THREADS = 4
POLL = 0.005
CERTWAY = str(Path(sys.executable).parent / "certway")


def wait_until(check: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (httpx.HTTPError, OSError):
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} did not start within {timeout} s")
        time.sleep(0.1)


class Responder:
    """The pre-solved HTTP-01 responder: any token → ``token.thumbprint``."""

    def __init__(self, thumbprint: str) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                token = self.path.rsplit("/", 1)[-1]
                body = f"{token}.{thumbprint}".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def self_signed(tmp: Path) -> tuple[Path, Path]:
    """pebble's own HTTPS certificate (localhost, 127.0.0.1)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "pebble-cert.pem", tmp / "pebble-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@contextmanager
def process(
    args: list[str], env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        args,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def certway_setup(tmp: Path, dns: str, http_port: int) -> Path:
    data = tmp / "certway-data"

    def cli(*args: str) -> None:
        subprocess.run([CERTWAY, "--data-dir", str(data), *args], check=True, capture_output=True)

    cli("init", "--fqdn", "bench.example.com")
    cli("ca", "create-root", "--name", "bench", "--subject", "/CN=certway ACME bench root")
    cli(
        "ca",
        "acme",
        "enable",
        "--ca",
        "bench",
        "--challenges",
        "http-01",
        "--allow",
        r"[a-z0-9-]+\.example\.net",
        "--dns-server",
        dns,
        "--http-01-port",
        str(http_port),
        "--orders-per-hour",
        "1000000",
    )
    return data


def certway_bundle(data: Path) -> bytes:
    """The certway admin listener's CA (the temporary CA of a new node)."""
    node = Node.open(data)
    try:
        certificates = node.trusted_cas.snapshot().certificates
    finally:
        node.close()
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


class Bench:
    def __init__(self, directory: str, key: jose.JWKEC, cert_key: bytes) -> None:
        self.directory_url = directory
        self.key = key
        self.cert_key = cert_key
        self.serial = itertools.count()  # names never repeat within a run
        net = client.ClientNetwork(key, alg=jose.ES256, user_agent="certway-bench")
        self.directory = client.ClientV2.get_directory(directory, net)
        acme = client.ClientV2(self.directory, net)
        self.account = acme.new_account(
            messages.NewRegistration.from_data(terms_of_service_agreed=True)
        )

    def client(self) -> client.ClientV2:
        net = client.ClientNetwork(
            self.key, account=self.account, alg=jose.ES256, user_agent="certway-bench"
        )
        return client.ClientV2(self.directory, net)

    def one_order(self, acme: client.ClientV2, name: str) -> None:
        order = acme.new_order(acme_crypto.make_csr(self.cert_key, [name]))
        for authzr in order.authorizations:
            if authzr.body.status == messages.STATUS_VALID:
                raise RuntimeError("an authorization was reused: the comparison would be unfair")
            challb = next(
                c for c in authzr.body.challenges if isinstance(c.chall, challenges.HTTP01)
            )
            acme.answer_challenge(challb, challb.response(acme.net.key))
        for authzr in order.authorizations:
            while authzr.body.status != messages.STATUS_VALID:
                if authzr.body.status == messages.STATUS_INVALID:
                    raise RuntimeError(f"authorization failed: {authzr.body}")
                time.sleep(POLL)
                authzr, _ = acme.poll(authzr)
        order = acme.begin_finalization(order)
        body = order.body
        while body.status != messages.STATUS_VALID or body.certificate is None:
            if body.status == messages.STATUS_INVALID:
                raise RuntimeError(f"order failed: {body.error}")
            time.sleep(POLL)
            body = messages.Order.from_json(acme._post_as_get(order.uri).json())
        pem = acme._post_as_get(body.certificate).text
        if "BEGIN CERTIFICATE" not in pem:
            raise RuntimeError("no certificate downloaded")

    def block(self, seconds: float) -> float:
        """Complete orders per second over ``seconds`` with ``THREADS`` clients."""
        serial = self.serial
        done = [0] * THREADS
        errors: list[BaseException] = []
        stop = time.monotonic() + seconds
        clients = [self.client() for _ in range(THREADS)]

        def work(index: int) -> None:
            try:
                while time.monotonic() < stop:
                    self.one_order(clients[index], f"t{index}-{next(serial)}.example.net")
                    done[index] += 1
            except BaseException as exc:
                errors.append(exc)

        start = time.monotonic()
        threads = [threading.Thread(target=work, args=(i,)) for i in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - start
        if errors:
            raise errors[0]
        return sum(done) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round of short blocks")
    args = parser.parse_args()
    rounds, seconds = (1, 6.0) if args.quick else (2, 20.0)
    for binary in ("pebble", "pebble-challtestsrv"):
        if shutil.which(binary) is None:
            raise SystemExit(f"{binary} is not installed: run 'make deps-system'")
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, {THREADS} client threads")

    key = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    thumbprint = jose.b64encode(key.thumbprint()).decode()
    cert_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    responder = Responder(thumbprint)

    with tempfile.TemporaryDirectory(prefix="bench-acme-") as tmp_name:
        tmp = Path(tmp_name)
        dns_port = free_port(socket.SOCK_DGRAM)
        dns = f"127.0.0.1:{dns_port}"
        challtestsrv_args = [
            "pebble-challtestsrv",
            "-defaultIPv4",
            "127.0.0.1",
            "-defaultIPv6",
            "",
            "-dns01",
            dns,
            "-management",
            f"127.0.0.1:{free_port()}",
            "-http01",
            "",
            "-https01",
            "",
            "-tlsalpn01",
            "",
        ]
        data = certway_setup(tmp, dns, responder.port)
        pebble_cert, pebble_key = self_signed(tmp)
        bundle = tmp / "bundle.pem"
        bundle.write_bytes(certway_bundle(data) + pebble_cert.read_bytes())
        os.environ["REQUESTS_CA_BUNDLE"] = str(bundle)
        certway_port, pebble_port = free_port(), free_port()
        config = tmp / "pebble.json"
        config.write_text(
            json.dumps(
                {
                    "pebble": {
                        "listenAddress": f"127.0.0.1:{pebble_port}",
                        "managementListenAddress": f"127.0.0.1:{free_port()}",
                        "certificate": str(pebble_cert),
                        "privateKey": str(pebble_key),
                        "httpPort": responder.port,
                        "tlsPort": free_port(),
                        "ocspResponderURL": "",
                        "externalAccountBindingRequired": False,
                    }
                }
            )
        )
        pebble_env = {
            "PEBBLE_VA_NOSLEEP": "1",
            "PEBBLE_WFE_NONCEREJECT": "0",
            "PEBBLE_AUTHZREUSE": "0",
        }
        certway_args = [
            CERTWAY,
            "--data-dir",
            str(data),
            "serve",
            "--admin-listen",
            f"127.0.0.1:{certway_port}",
            "--publish-listen",
            f"127.0.0.1:{free_port()}",
            "--sip-listen",
            f"127.0.0.1:{free_port()}",
        ]
        pebble_args = ["pebble", "-config", str(config), "-dnsserver", dns, "-strict=false"]
        with (
            process(challtestsrv_args),
            process(certway_args),
            process(pebble_args, pebble_env),
        ):
            urls = {
                "certway": f"https://localhost:{certway_port}/acme/bench/directory",
                "pebble": f"https://localhost:{pebble_port}/dir",
            }
            for what, url in urls.items():
                wait_until(
                    lambda url=url: httpx.get(url, verify=str(bundle)).status_code == 200, what
                )
            benches = {what: Bench(url, key, cert_key) for what, url in urls.items()}
            for bench in benches.values():  # warm up: connections, caches, first issuance
                bench.block(1.0)
            best = {"certway": 0.0, "pebble": 0.0}
            for round_number in range(rounds):
                for what, bench in benches.items():
                    value = bench.block(seconds)
                    best[what] = max(best[what], value)
                    print(f"  round {round_number + 1} {what}: {value:.1f} orders/s", flush=True)
    ratio = best["certway"] / best["pebble"]
    add_row(
        Row(
            "ACME server",
            f"complete orders/s ({THREADS} clients, HTTP-01)",
            rate(best["certway"]),
            f"pebble {rate(best['pebble'])}",
            ratio,
            ">= 1.00",
            ratio >= 1.0,
        )
    )
    assert ROWS
    print_table("ratio = certway orders/s ÷ pebble orders/s (higher is better)")


if __name__ == "__main__":
    main()
