"""Full TLS handshakes against ``certway serve`` vs nginx, same ECDSA P-256 certificate, one run.

    .venv/bin/python bench/bench_tls.py            # full: 10,000 vs 1 domains (~3 min)
    .venv/bin/python bench/bench_tls.py --quick    # 1,000 vs 1 domains, short blocks (~1 min)

Servers (each its own process, so its CPU time is separable, all on 127.0.0.1 free ports):

- nginx (Debian ``nginx-light``; skipped with a message when not installed): one worker,
  ``ssl_session_cache off; ssl_session_tickets off;``, config in a temporary directory,
  started and always stopped by the bench; CPU = the worker process.
- ``certway serve`` (``NodeServer``, admin listener only) on a node with one domain, once per
  event loop (``asyncio``, ``uvloop`` when installed), and on a node with N domains (10,000).
  All nodes present the same uploaded P-256 server certificate (and the domains one shared
  P-256 key), issued by a ``cryptography`` CA added to the nodes' trusted CA lists; nginx
  gets the same certificate + key from files.

Clients: ``--clients`` (2) separate processes, each opening connections in a loop: a new
``ssl`` client context state per connection (no session passed, so every handshake is full;
no resumption), certificate verification off on the client (less client CPU), handshake, close.
Blocks of ``--seconds`` per server, interleaved over ``--rounds`` rounds; the server's CPU time
comes from ``/proc/<pid>/stat`` (utime + stime) before/after each block.

Reported per server: handshakes/s and server CPU µs per handshake (median of the blocks), and
the ratios certway/nginx (rate, and nginx CPU ÷ certway CPU per handshake, so higher is better;
target >= 0.60), and N domains vs 1 (target: within 10%).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import os
import platform
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from benchlib import cpu_seconds, free_port, serve_announcing_port, stop, system_busy, wait_port

FQDN = "edge1.example.com"
HOST_LABEL = "edge1"
TARGET_VS_NGINX = 0.60
TARGET_DOMAINS = 0.10


# -- certificates --------------------------------------------------------------------------
@dataclass
class Pki:
    ca_key: ec.EllipticCurvePrivateKey
    ca_cert: x509.Certificate
    leaf_key: ec.EllipticCurvePrivateKey

    @property
    def ca_pem(self) -> bytes:
        return self.ca_cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def make_pki() -> Pki:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bench TLS Root CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    return Pki(ca_key, ca_cert, ec.generate_private_key(ec.SECP256R1()))


def leaf(pki: Pki, cn: str, sans: Sequence[str]) -> bytes:
    """A P-256 serverAuth + clientAuth certificate (PEM) for ``cn`` with the shared key."""
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(pki.ca_cert.subject)
        .public_key(pki.leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in sans]), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(pki.ca_key.public_key()), False
        )
        .sign(pki.ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def domain_name(i: int) -> str:
    return f"d{i:05d}.example.net"


def build_node(data_dir: Path, pki: Pki, server_pem: bytes, domains: int) -> None:
    """A node with the bench server certificate and ``domains`` domain certificates, through
    the public service API (a few ms per domain; not timed)."""
    from certway.services.node import Node

    start = time.perf_counter()
    node = Node.init(data_dir, fqdn=FQDN)
    try:
        node.trusted_cas.add(pki.ca_pem)
        node.identities.upload("server", "", server_pem + pki.ca_pem, key_data=pki.key_pem)
        for i in range(domains):
            domain = domain_name(i)
            node.identities.add_domain(domain)
            node.identities.upload(
                "domain",
                domain,
                leaf(pki, domain, [domain, f"{HOST_LABEL}.{domain}"]),
                key_data=pki.key_pem,
            )
            if domains >= 2000 and (i + 1) % (domains // 4) == 0:
                print(f"    {i + 1:,}/{domains:,} domains uploaded", flush=True)
    finally:
        node.close()
    print(
        f"  (setup: node with {domains:,} domain(s), {time.perf_counter() - start:.1f} s)",
        flush=True,
    )


# -- servers -------------------------------------------------------------------------------
@dataclass
class Server:
    label: str
    port: int
    cpu_pid: int  # the process whose CPU is measured
    names: Sequence[str]  # SNI names the clients cycle through
    expect_cn: str
    blocks: list[tuple[int, int, float, float, float]] = field(default_factory=list)
    # (handshakes, errors, wall s, server cpu s, machine busy fraction)
    protocol: str = ""

    def rate(self) -> float:
        return statistics.median(n / wall for n, _e, wall, _c, _b in self.blocks)

    def cpu_per(self) -> float:
        return statistics.median(cpu / max(n, 1) for n, _e, _w, cpu, _b in self.blocks)

    def errors(self) -> int:
        return sum(e for _n, e, _w, _c, _b in self.blocks)

    def busy(self) -> float:
        return statistics.median(b for *_x, b in self.blocks)


@contextmanager
def nginx(work: Path, cert: Path, key: Path) -> Iterator[Server | None]:
    binary = shutil.which("nginx", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    if binary is None:
        print(
            "  nginx is not installed: the nginx baseline is SKIPPED "
            "(install it with: scripts/ensure-debian-packages.sh nginx-light)",
            flush=True,
        )
        yield None
        return
    port = free_port()
    root = work / "nginx"
    root.mkdir()
    temp = "\n".join(
        f"    {d}_temp_path {root}/{d};"
        for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = root / "nginx.conf"
    conf.write_text(
        textwrap.dedent(
            f"""\
            daemon off;
            master_process on;
            worker_processes 1;
            pid {root}/nginx.pid;
            error_log {root}/error.log warn;
            events {{ worker_connections 4096; }}
            http {{
                access_log off;
            {temp}
                server {{
                    listen 127.0.0.1:{port} ssl;
                    server_name {FQDN};
                    ssl_certificate {cert};
                    ssl_certificate_key {key};
                    ssl_protocols TLSv1.2 TLSv1.3;
                    ssl_session_cache off;
                    ssl_session_tickets off;
                    location / {{ return 200 "ok\\n"; }}
                }}
            }}
            """
        )
    )
    proc = subprocess.Popen([binary, "-p", str(root), "-c", str(conf)], stderr=subprocess.PIPE)
    try:
        wait_port(port, proc, "nginx")
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        if len(children) != 1:
            raise RuntimeError(f"expected one nginx worker, found {children}")
        version = subprocess.run([binary, "-v"], capture_output=True, text=True).stderr.strip()
        print(f"  {version}, worker pid {children[0]}, port {port}", flush=True)
        yield Server("nginx (1 worker)", port, int(children[0]), [FQDN], FQDN)
    finally:
        stop(proc)


@contextmanager
def certway(
    data_dir: Path, loop: str, label: str, names: Sequence[str], cn: str
) -> Iterator[Server]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(data_dir), "--loop", loop],
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        if not line.startswith("PORT "):
            raise RuntimeError(f"certway serve did not start ({line!r})")
        port = int(line.split()[1])
        wait_port(port, proc, label)
        yield Server(label, port, proc.pid, names, cn)
    finally:
        stop(proc)


def serve(data_dir: Path, loop_name: str) -> None:
    """Child process: ``NodeServer`` with the admin listener only, until SIGTERM."""
    import asyncio

    from certway.serve import NodeServer, ServeOptions, new_event_loop
    from certway.services.node import Node

    node = Node.open(data_dir)
    server = NodeServer(
        node,
        ServeOptions(admin=("127.0.0.1", 0), publish=None, sip=None, scheduler_interval=3600),
    )
    # "uvloop": what ``certway serve`` runs in (``certway.serve.new_event_loop``).
    loop = new_event_loop() if loop_name == "uvloop" else asyncio.new_event_loop()

    serve_announcing_port(server, loop, lambda: server.admin_port, node)


# -- clients -------------------------------------------------------------------------------
def client(port: int, names: Sequence[str], seconds: float) -> tuple[int, int, str, str]:
    """Full handshakes in a loop for ``seconds``: (count, errors, first CN, protocol)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    count = errors = 0
    first_cn = protocol = ""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        name = names[count % len(names)]
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
                context.wrap_socket(raw, server_hostname=name) as tls,
            ):
                if not first_cn:
                    der = tls.getpeercert(binary_form=True)
                    assert der is not None
                    attr = x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(
                        NameOID.COMMON_NAME
                    )
                    first_cn = str(attr[0].value)
                    protocol = f"{tls.version()} {tls.cipher()[0]}"  # type: ignore[index]
            count += 1
        except (OSError, ssl.SSLError):
            errors += 1
    return count, errors, first_cn, protocol


def block(pool: ProcessPoolExecutor, server: Server, clients: int, seconds: float) -> None:
    cpu0, busy0, wall0 = cpu_seconds(server.cpu_pid), system_busy(), time.monotonic()
    futures = [pool.submit(client, server.port, server.names, seconds) for _ in range(clients)]
    results = [f.result() for f in futures]
    wall = time.monotonic() - wall0
    cpu1, busy1 = cpu_seconds(server.cpu_pid), system_busy()
    count = sum(r[0] for r in results)
    errors = sum(r[1] for r in results)
    for r in results:
        if r[2] and r[2] != server.expect_cn:
            raise AssertionError(f"{server.label}: got CN {r[2]!r}, expected {server.expect_cn!r}")
    busy = (busy1[0] - busy0[0]) / max(busy1[1] - busy0[1], 1)
    server.blocks.append((count, errors, wall, cpu1 - cpu0, busy))
    server.protocol = results[0][3]


# -- main ----------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 domains, short blocks")
    parser.add_argument("--domains", type=int, default=None)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=None, help="per block")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--loop", default="asyncio", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.loop)
        return
    domains = args.domains or (1000 if args.quick else 10_000)
    seconds = args.seconds or (2.0 if args.quick else 3.0)
    rounds = args.rounds or (3 if args.quick else 5)
    try:
        uvloop_version = importlib.metadata.version("uvloop")
        loops = ["asyncio", "uvloop"]
    except importlib.metadata.PackageNotFoundError:
        loops, uvloop_version = ["asyncio"], "not installed"
    print(
        f"bench_tls: Python {platform.python_version()}, {ssl.OPENSSL_VERSION}, "
        f"uvloop {uvloop_version}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; "
        f"{args.clients} client processes, {rounds} rounds x {seconds:.0f} s blocks",
        flush=True,
    )
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="certway-bench-tls-") as tmp:
        work = Path(tmp)
        pki = make_pki()
        server_pem = leaf(pki, FQDN, [FQDN])
        cert_file, key_file = work / "server.pem", work / "server.key"
        cert_file.write_bytes(server_pem + pki.ca_pem)
        key_file.write_bytes(pki.key_pem)
        key_file.chmod(0o600)
        build_node(work / "one", pki, server_pem, 1)
        build_node(work / "many", pki, server_pem, domains)
        one = domain_name(0)
        picks = [domain_name(i * domains // 10 + domains // 20) for i in range(10)]
        with ExitStack() as stack:
            servers: list[Server] = []
            ng = stack.enter_context(nginx(work, cert_file, key_file))
            if ng is not None:
                servers.append(ng)
            by_loop: dict[str, Server] = {}
            for loop in loops:
                by_loop[loop] = stack.enter_context(
                    certway(
                        work / "one", loop, f"certway {loop}, 1 domain, SNI server", [FQDN], FQDN
                    )
                )
                servers.append(by_loop[loop])
            main_loop = loops[-1]
            one_dom = stack.enter_context(
                certway(
                    work / "one",
                    main_loop,
                    f"certway {main_loop}, 1 domain, SNI domain",
                    [one],
                    one,
                )
            )
            many_srv = stack.enter_context(
                certway(
                    work / "many",
                    main_loop,
                    f"certway {main_loop}, {domains:,} domains, SNI server",
                    [FQDN],
                    FQDN,
                )
            )
            many_dom = stack.enter_context(
                certway(
                    work / "many",
                    main_loop,
                    f"certway {main_loop}, {domains:,} domains, SNI domain (10 names)",
                    picks,
                    picks[0],
                )
            )
            # many_dom cycles 10 names; its CN check only holds for the first name of a client
            servers += [one_dom, many_srv, many_dom]
            with ProcessPoolExecutor(args.clients) as pool:
                for s in servers:  # warm-up: contexts built, code paths hot
                    block(pool, s, args.clients, 1.0)
                    s.blocks.clear()
                for r in range(rounds):
                    order = servers if r % 2 == 0 else list(reversed(servers))
                    for s in order:
                        block(pool, s, args.clients, seconds)
                    print(f"  round {r + 1}/{rounds} done", flush=True)
        report(servers, ng, by_loop, one_dom, many_srv, many_dom, domains)
    print(f"total {time.monotonic() - started:.0f} s, load {os.getloadavg()[0]:.2f}")


def at_least(value: float) -> str:
    return "PASS" if value >= TARGET_VS_NGINX else "MISS"


def report(
    servers: list[Server],
    ng: Server | None,
    by_loop: dict[str, Server],
    one_dom: Server,
    many_srv: Server,
    many_dom: Server,
    domains: int,
) -> None:
    print()
    head = f"{'server':52} {'handshakes/s':>12} {'CPU/handshake':>14} {'errors':>6} {'busy':>5}"
    print(f"{head}  protocol")
    for s in servers:
        print(
            f"{s.label:52} {s.rate():12.0f} {s.cpu_per() * 1e6:11.0f} µs {s.errors():6d} "
            f"{s.busy():5.0%}  {getattr(s, 'protocol', '')}"
        )
    print()
    if ng is not None:
        for loop, s in by_loop.items():
            rate = s.rate() / ng.rate()
            cpu = ng.cpu_per() / s.cpu_per()
            print(
                f"certway ({loop}) / nginx: rate {rate:.2f} [{at_least(rate)}], "
                f"CPU per handshake (nginx ÷ certway) {cpu:.2f} [{at_least(cpu)}]  "
                f"(target >= {TARGET_VS_NGINX:.2f})"
            )
    else:
        print("certway / nginx: SKIPPED (nginx not installed)")
    base = by_loop[list(by_loop)[-1]]
    for what, big, small in (
        ("SNI server name", many_srv, base),
        ("SNI domain name", many_dom, one_dom),
    ):
        rate = big.rate() / small.rate()
        cpu = big.cpu_per() / small.cpu_per()

        def verdict(v: float) -> str:
            return "PASS" if abs(v - 1) <= TARGET_DOMAINS else "MISS"

        print(
            f"{domains:,} domains / 1, {what}: rate {rate:.2f} [{verdict(rate)}], "
            f"CPU per handshake {cpu:.2f} [{verdict(cpu)}] (target: within {TARGET_DOMAINS:.0%})"
        )


if __name__ == "__main__":
    main()
