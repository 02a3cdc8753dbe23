"""SIP over mutual TLS: OPTIONS → 200 transactions/s, certway's SIP listener vs kamailio, one run.

    .venv/bin/python bench/bench_sip.py            # full: 1,000,000-entry CRL (~2.5 min)
    .venv/bin/python bench/bench_sip.py --quick    # 100,000-entry CRL, short blocks (~1 min)

One transaction = new TCP connection, full TLS handshake presenting a client certificate (no
session passed, so no resumption), one SIP ``OPTIONS`` sent, the ``200 OK`` read, close.

PKI (built with ``cryptography``, untimed setup): an *external* P-256 CA ("Bench SIP CA") issues
the server certificate (serverAuth + clientAuth) and the client certificates (clientAuth), and a
CRL with ``--crl`` (1,000,000) revoked serials, built with ``revoked_entry`` + ``build_crl``.

Servers, all on 127.0.0.1 free ports, all presenting the same server certificate + key + chain:

- kamailio (Debian ``kamailio`` + ``kamailio-tls-modules``; skipped with a message when not
  installed), foreground, config and runtime files in a temporary directory, always killed with
  its process group. ``tls.cfg``: ``verify_certificate = yes``, ``require_certificate = yes``,
  ``ca_list`` = the external CA; route: ``OPTIONS`` → ``sl_send_reply("200", "OK")``.
  ``children=1 tcp_children=1`` (``--kamailio-workers``): one process does the TLS + SIP work,
  like certway's one event loop. Not 2: Debian's kamailio 5.6.3 with OpenSSL 3 corrupts its
  shared memory with more than one TLS worker under load ("qm_free(): BUG: freeing already
  freed pointer ... tls_init.c: ser_free", a worker dies by SIGSEGV within a second, then every
  connection is refused; kamailio issue #3791, fixed by ``tls_threads_mode`` in 5.7.5+ which
  5.6 lacks). Run twice: with Debian's default memory manager (q_malloc, built with memory
  debugging: ~4 ms CPU per transaction, OpenSSL allocates in kamailio's shared memory) and with
  ``-x tlsf -X tlsf`` (~1.1 ms); the target is judged against the faster TLSF one.
  kamailio does *no* revocation check (it is not given the CRL), so the baseline
  does strictly less work. CPU = all processes of its process group (attendant, tcp main, the
  tcp worker, timers).
- certway: ``NodeServer`` (what ``certway serve`` runs: uvloop, SIP listener, admin listener,
  reload poller) in its own process, on a node with mutual TLS ``require``, client EKU checking
  on, ``sip-tls`` revocation policy on with CRL checking on and OCSP/CDP off (no network), the
  external CA in the trusted list and its CRL uploaded with ``revocation.upload_manual``. Two
  client certificates are measured against the same server process:
  (1) from the external CA → checked against the held CRL's index (the path the target is about);
  (2) from a local CA of the node ("own CA") → checked against the local CA's records.
  CPU = the server process (all threads: event loop, validation threads, poller).

Before timing, each server is checked: a client without a certificate gets no 200 from any
server; certway refuses an external-CA certificate whose serial is in the CRL (proves the CRL is
held and consulted) and an own-CA certificate revoked by the local CA.

Clients: ``--clients`` (2) processes, each a loop of transactions for ``--seconds`` per block;
blocks interleaved over ``--rounds`` rounds (order reversed every other round) after a warm-up
block per server; median per server. Server CPU = utime + stime from ``/proc/<pid>/stat``
before/after each block. Ratios certway ÷ kamailio (1 tcp worker): rate, and kamailio CPU ÷
certway CPU per transaction (higher is better for both); target >= 0.50 against TLSF kamailio.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import glob
import importlib.metadata
import os
import platform
import random
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from benchlib import (
    Row,
    add_row,
    cpu_seconds,
    free_port,
    print_table,
    rate,
    serve_announcing_port,
    stop,
    system_busy,
    wait_port,
)

FQDN = "edge1.example.com"
TARGET = 0.50
REASON = x509.ReasonFlags.key_compromise


# -- certificates --------------------------------------------------------------------------
def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass
class Ca:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


def make_ca() -> Ca:
    now = dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bench SIP CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return Ca(key, cert)


def issue(
    ca: Ca, cn: str, ekus: Sequence[x509.ObjectIdentifier], serial: int | None = None
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    now = dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(list(ekus)), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), False
        )
        .sign(ca.key, hashes.SHA256())
    )
    return cert, key


def build_big_crl(ca: Ca, size: int) -> tuple[bytes, int]:
    """DER of a CRL of ``ca`` with ``size`` random 63-bit serials, and one of them."""
    from certway.pki.crl import CrlParams, build_crl, revoked_entry
    from certway.pki.issue import Issuer

    rng = random.Random(size)
    serials = list({rng.getrandbits(63) | 1 << 62 for _ in range(size + size // 100)})[:size]
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    revoked_at = now - dt.timedelta(days=1)
    entries = [revoked_entry(s, revoked_at, REASON) for s in serials]
    params = CrlParams(1, now - dt.timedelta(hours=1), now + dt.timedelta(days=7))
    crl = build_crl(Issuer(ca.cert, ca.key), entries, params)
    der = crl.public_bytes(serialization.Encoding.DER)
    return der, serials[size // 2]


@dataclass
class Files:
    server_chain: Path  # server certificate + CA (what certway sends too)
    server_key: Path
    ca: Path
    clients: dict[str, tuple[Path, Path]]  # label → (certificate, key)


def write_client(work: Path, label: str, cert: x509.Certificate, key: bytes) -> tuple[Path, Path]:
    cert_path, key_path = work / f"{label}.pem", work / f"{label}.key"
    cert_path.write_bytes(pem(cert))
    key_path.write_bytes(key)
    key_path.chmod(0o600)
    return cert_path, key_path


def build_node(work: Path, crl_size: int) -> Files:
    """The node and every certificate file the servers and clients use (untimed setup)."""
    from certway.pki.text import serial_hex
    from certway.services.node import Node
    from certway.services.sip_settings import MutualTls

    ca = make_ca()
    server, server_key = issue(
        ca, FQDN, [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    client_ext, client_ext_key = issue(ca, "peer1.example.net", [ExtendedKeyUsageOID.CLIENT_AUTH])
    start = time.perf_counter()
    crl_der, revoked_serial = build_big_crl(ca, crl_size)
    built = time.perf_counter() - start
    revoked_ext, revoked_ext_key = issue(
        ca, "revoked.example.net", [ExtendedKeyUsageOID.CLIENT_AUTH], serial=revoked_serial
    )
    files = Files(work / "server.pem", work / "server.key", work / "ca.pem", {})
    files.server_chain.write_bytes(pem(server) + pem(ca.cert))
    files.server_key.write_bytes(key_pem(server_key))
    files.server_key.chmod(0o600)
    files.ca.write_bytes(pem(ca.cert))
    files.clients["external"] = write_client(work, "ext", client_ext, key_pem(client_ext_key))
    files.clients["external-revoked"] = write_client(
        work, "ext-revoked", revoked_ext, key_pem(revoked_ext_key)
    )

    node = Node.init(work / "node", fqdn=FQDN)
    try:
        node.trusted_cas.add(pem(ca.cert))
        node.identities.upload(
            "server", "", pem(server) + pem(ca.cert), key_data=key_pem(server_key)
        )
        node.sip.set(mutual_tls=MutualTls.REQUIRE.value, eku_check=True)
        node.revocation.set_policy("sip-tls", ocsp=False, cdp=False)
        t0 = time.perf_counter()
        accepted = node.revocation.upload_manual(crl_der)
        uploaded = time.perf_counter() - t0
        if len(accepted) != 1:
            raise RuntimeError(f"CRL upload accepted {accepted!r}")
        # own CA: a local CA of the node, trusted, with one good and one revoked client cert
        node.local_ca.create_root("own", "/CN=certway bench own CA")
        node.trusted_cas.add(pem(node.local_ca.certificate("own")))
        for label in ("own", "own-revoked"):
            key = ec.generate_private_key(ec.SECP256R1())
            cn = f"{label}.example.net"
            issued = node.local_ca.issue_certificate(
                "own",
                key.public_key(),
                x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]),
                alt_names=[x509.DNSName(cn)],
                profile="client",
                days=30,
            )
            files.clients[label] = write_client(work, label, issued.certificate, key_pem(key))
            if label == "own-revoked":
                node.local_ca.revoke(
                    "own", serial_hex(issued.certificate.serial_number), reason="keyCompromise"
                )
        policy = node.revocation.policy("sip-tls")
        print(
            f"  (setup: {crl_size:,}-entry CRL ({len(crl_der) / 2**20:.0f} MB DER) built in "
            f"{built:.1f} s, upload_manual {uploaded:.1f} s; sip-tls policy: enabled="
            f"{policy.enabled} crl={policy.crl} ocsp={policy.ocsp} cdp={policy.cdp} "
            f"scope={policy.scope.value}; mutual TLS {node.sip.get().mutual_tls.value})",
            flush=True,
        )
    finally:
        node.close()
    del crl_der
    gc.collect()
    return files


# -- servers -------------------------------------------------------------------------------
def descendants(pid: int) -> list[int]:
    found, todo = [pid], [pid]
    while todo:
        current = todo.pop()
        with suppress(FileNotFoundError):
            for task in Path(f"/proc/{current}/task").iterdir():
                for child in (task / "children").read_text().split():
                    found.append(int(child))
                    todo.append(int(child))
    return found


@dataclass
class Server:
    label: str
    port: int
    pids: list[int]  # the processes whose CPU is measured
    client: str  # which client certificate the clients present
    blocks: list[tuple[int, int, float, float, float]] = field(default_factory=list)
    # (transactions, errors, wall s, server cpu s, machine busy fraction)
    protocol: str = ""

    def rate(self) -> float:
        return statistics.median(n / wall for n, _e, wall, _c, _b in self.blocks)

    def cpu_per(self) -> float:
        return statistics.median(cpu / max(n, 1) for n, _e, _w, cpu, _b in self.blocks)

    def errors(self) -> int:
        return sum(e for _n, e, _w, _c, _b in self.blocks)

    def busy(self) -> float:
        return statistics.median(b for *_x, b in self.blocks)


def kamailio_paths() -> tuple[str, str] | None:
    binary = shutil.which("kamailio", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    found = sorted(glob.glob("/usr/lib/*/kamailio/modules/tls.so"))
    found += sorted(glob.glob("/usr/lib/kamailio/modules/tls.so"))
    if binary is None or not found:
        return None
    return binary, os.path.dirname(found[0])


@contextmanager
def kamailio(
    work: Path, files: Files, workers: int, allocator: str | None
) -> Iterator[Server | None]:
    paths = kamailio_paths()
    if paths is None:
        print(
            "  kamailio (or its tls module) is not installed: the kamailio baseline is SKIPPED "
            "(make deps-system installs kamailio + kamailio-tls-modules)",
            flush=True,
        )
        yield None
        return
    binary, modules = paths
    port = free_port()
    root = work / f"kamailio-{workers}-{allocator or 'default'}"
    root.mkdir()
    tls_cfg = root / "tls.cfg"
    tls_cfg.write_text(
        f"""[server:default]
method = TLSv1.2+
verify_certificate = yes
require_certificate = yes
certificate = {files.server_chain}
private_key = {files.server_key}
ca_list = {files.ca}
"""
    )
    config = root / "kamailio.cfg"
    config.write_text(
        f"""#!KAMAILIO
debug=1
log_stderror=yes
children={workers}
tcp_children={workers}
auto_aliases=no
dns=no
rev_dns=no
enable_tls=yes
disable_tcp=no
tcp_max_connections=4096
tls_max_connections=4096
listen=tls:127.0.0.1:{port}
loadpath "{modules}"
loadmodule "tls.so"
loadmodule "sl.so"
loadmodule "textops.so"
modparam("tls", "config", "{tls_cfg}")
request_route {{
    if (is_method("OPTIONS")) {{
        sl_send_reply("200", "OK");
        exit;
    }}
    sl_send_reply("405", "Method Not Allowed");
}}
"""
    )
    log = (root / "kamailio.log").open("wb")
    command = [binary, "-DD", "-E", "-f", str(config), "-P", str(root / "kamailio.pid")]
    command += ["-Y", str(root), "-w", str(root), "-m", "64", "-M", "8"]
    if allocator is not None:  # shared and private memory managers
        command += ["-x", allocator, "-X", allocator]
    proc = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: every child is killed with it
    )
    try:
        try:
            wait_port(port, proc, "kamailio")
        except (RuntimeError, TimeoutError):
            print((root / "kamailio.log").read_text(errors="replace")[-3000:])
            raise
        time.sleep(0.3)  # every child forked
        pids = descendants(proc.pid)
        version = subprocess.run([binary, "-v"], capture_output=True, text=True).stdout
        memory = f"-x {allocator} -X {allocator}" if allocator else "default q_malloc"
        label = f"kamailio, tcp_children={workers}, {memory}"
        print(
            f"  {version.splitlines()[0].strip()}: {label}: {len(pids)} processes, port {port}",
            flush=True,
        )
        yield Server(label, port, pids, "external")
    finally:
        if proc.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        log.close()


@contextmanager
def certway(data_dir: Path) -> Iterator[tuple[int, int]]:
    """``NodeServer`` in a child process: (SIP port, pid)."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(data_dir)], stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        if not line.startswith("PORT "):
            raise RuntimeError(f"certway serve did not start ({line!r})")
        port = int(line.split()[1])
        wait_port(port, proc, "certway")
        yield port, proc.pid
    finally:
        stop(proc)


def serve(data_dir: Path) -> None:
    """Child process: what ``certway serve`` runs (uvloop), SIP listener on a free port."""
    import logging

    from certway.serve import NodeServer, ServeOptions, new_event_loop
    from certway.services.node import Node

    logging.basicConfig(level=logging.WARNING, format="    [certway] %(message)s")
    node = Node.open(data_dir)
    server = NodeServer(
        node,
        ServeOptions(
            admin=("127.0.0.1", 0), publish=None, sip=("127.0.0.1", 0), scheduler_interval=3600
        ),
    )
    loop = new_event_loop()

    serve_announcing_port(server, loop, lambda: server.sip_port, node)


# -- clients -------------------------------------------------------------------------------
def options_request(port: int, n: int) -> bytes:
    tag = f"{os.getpid()}x{n}"
    return (
        f"OPTIONS sip:{FQDN}:{port};transport=tls SIP/2.0\r\n"
        f"Via: SIP/2.0/TLS 127.0.0.1:5099;branch=z9hG4bK{tag};rport\r\n"
        f"Max-Forwards: 70\r\n"
        f"From: <sip:bench@peer1.example.net>;tag={tag}\r\n"
        f"To: <sip:{FQDN}>\r\n"
        f"Call-ID: {tag}@bench\r\n"
        f"CSeq: 1 OPTIONS\r\n"
        f"Contact: <sip:bench@127.0.0.1:5099;transport=tls>\r\n"
        f"Content-Length: 0\r\n\r\n"
    ).encode()


def context_for(cert: tuple[Path, Path] | None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # less client CPU; the server is ours
    if cert is not None:
        context.load_cert_chain(str(cert[0]), str(cert[1]))
    return context


def transaction(context: ssl.SSLContext, port: int, n: int) -> tuple[str, str]:
    """One transaction: (status line or '' if refused, protocol)."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=FQDN) as tls,
    ):
        tls.sendall(options_request(port, n))
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = tls.recv(4096)
            if not chunk:
                break
            data += chunk
        protocol = f"{tls.version()} {tls.cipher()[0]}"  # type: ignore[index]
    return data.split(b"\r\n", 1)[0].decode(errors="replace"), protocol


def probe(port: int, cert: tuple[Path, Path] | None) -> str:
    """The status line one transaction gets, or why it failed."""
    try:
        status, _ = transaction(context_for(cert), port, 0)
        return status or "closed without an answer"
    except (OSError, ssl.SSLError) as exc:
        return f"refused ({type(exc).__name__}: {str(exc)[:60]})"


def client(port: int, cert: tuple[Path, Path], seconds: float) -> tuple[int, int, str, str]:
    """Transactions in a loop for ``seconds``: (count, errors, first bad status, protocol)."""
    context = context_for(cert)
    count = errors = 0
    bad = protocol = ""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            status, protocol = transaction(context, port, count)
            if status.startswith("SIP/2.0 200"):
                count += 1
            else:
                errors += 1
                bad = bad or status or "closed without an answer"
        except (OSError, ssl.SSLError) as exc:
            errors += 1
            bad = bad or f"{type(exc).__name__}: {exc}"
    return count, errors, bad, protocol


def block(pool: ProcessPoolExecutor, server: Server, files: Files, n: int, secs: float) -> None:
    cert = files.clients[server.client]
    cpu0, busy0, wall0 = cpu_seconds(*server.pids), system_busy(), time.monotonic()
    results = [f.result() for f in [pool.submit(client, server.port, cert, secs) for _ in range(n)]]
    wall = time.monotonic() - wall0
    cpu1, busy1 = cpu_seconds(*server.pids), system_busy()
    count, errors = sum(r[0] for r in results), sum(r[1] for r in results)
    bad = next((r[2] for r in results if r[2]), "")
    if errors > count // 100:
        raise AssertionError(f"{server.label}: {errors} failed transactions, e.g. {bad!r}")
    busy = (busy1[0] - busy0[0]) / max(busy1[1] - busy0[1], 1)
    server.blocks.append((count, errors, wall, cpu1 - cpu0, busy))
    server.protocol = results[0][3]


def check(what: str, got: str, ok: bool) -> None:
    print(f"  check {what}: {got} [{'ok' if ok else 'WRONG'}]", flush=True)
    if not ok:
        raise AssertionError(f"{what}: {got}")


# -- main ----------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100k-entry CRL, short blocks")
    parser.add_argument("--crl", type=int, default=None, help="CRL entries (1,000,000)")
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=None, help="per block")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument(
        "--kamailio-workers", type=int, default=1, help="kamailio tcp_children (1; see above)"
    )
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    crl_size = args.crl or (100_000 if args.quick else 1_000_000)
    secs = args.seconds or (2.0 if args.quick else 3.0)
    rounds = args.rounds or (3 if args.quick else 5)
    try:
        uvloop_version = importlib.metadata.version("uvloop")
    except importlib.metadata.PackageNotFoundError:
        uvloop_version = "not installed"
    print(
        f"bench_sip: Python {platform.python_version()}, {ssl.OPENSSL_VERSION}, uvloop "
        f"{uvloop_version}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; "
        f"{args.clients} client processes, {rounds} rounds x {secs:g} s blocks",
        flush=True,
    )
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="certway-bench-sip-") as tmp:
        work = Path(tmp)
        files = build_node(work, crl_size)
        with ExitStack() as stack:
            servers: list[Server] = []
            kams = [
                stack.enter_context(kamailio(work, files, args.kamailio_workers, allocator))
                for allocator in (None, "tlsf")
            ]
            servers += [k for k in kams if k is not None]
            port, pid = stack.enter_context(certway(work / "node"))
            ext = Server(
                f"certway, external-CA client ({crl_size:,}-entry CRL)", port, [pid], "external"
            )
            own = Server("certway, own-CA client (local CA records)", port, [pid], "own")
            servers += [ext, own]

            t0 = time.perf_counter()
            first = probe(port, files.clients["external"])  # builds the CRL index
            check(
                f"certway, first external-CA transaction (loads the CRL index) "
                f"{time.perf_counter() - t0:.1f} s",
                first,
                first.startswith("SIP/2.0 200"),
            )
            for s in [k for k in kams if k is not None]:
                got = probe(s.port, None)
                check(f"{s.label}, no client certificate", got, not got.startswith("SIP/2.0"))
                got = probe(s.port, files.clients["external"])
                check(f"{s.label}, external-CA client", got, got.startswith("SIP/2.0 200"))
            got = probe(port, None)
            check("certway, no client certificate", got, not got.startswith("SIP/2.0"))
            got = probe(port, files.clients["external-revoked"])
            check(
                "certway, external-CA client whose serial is in the CRL",
                got,
                not got.startswith("SIP/2.0"),
            )
            got = probe(port, files.clients["own-revoked"])
            check("certway, own-CA client revoked by the local CA", got, not got.startswith("SIP"))
            got = probe(port, files.clients["own"])
            check("certway, own-CA client", got, got.startswith("SIP/2.0 200"))

            with ProcessPoolExecutor(args.clients) as pool:
                for s in servers:  # warm-up
                    block(pool, s, files, args.clients, 1.0)
                    s.blocks.clear()
                for r in range(rounds):
                    order = servers if r % 2 == 0 else list(reversed(servers))
                    for s in order:
                        block(pool, s, files, args.clients, secs)
                    print(f"  round {r + 1}/{rounds} done", flush=True)
        report(servers, [k for k in kams if k is not None], ext, own)
    print(f"total {time.monotonic() - started:.0f} s, load {os.getloadavg()[0]:.2f}")


def report(servers: list[Server], kams: list[Server], ext: Server, own: Server) -> None:
    print()
    head = f"{'server':56} {'transactions/s':>14} {'CPU/transaction':>16} {'errors':>6} {'busy':>5}"
    print(f"{head}  protocol")
    for s in servers:
        print(
            f"{s.label:56} {s.rate():14.0f} {s.cpu_per() * 1e6:13.0f} µs {s.errors():6d} "
            f"{s.busy():5.0%}  {s.protocol}"
        )
    if not kams:
        print("\ncertway / kamailio: SKIPPED (kamailio not installed)")
        return
    print()
    for kam in reversed(kams):  # the target is judged against the faster (tlsf) kamailio
        judged = kam is kams[-1]
        for s in (ext, own):
            r = s.rate() / kam.rate()
            c = kam.cpu_per() / s.cpu_per()
            for what, measured, baseline, ratio in (
                ("rate", rate(s.rate()), rate(kam.rate()), r),
                (
                    "CPU/transaction (kamailio ÷ certway)",
                    f"{s.cpu_per() * 1e6:,.0f} µs",
                    f"{kam.cpu_per() * 1e6:,.0f} µs",
                    c,
                ),
            ):
                add_row(
                    Row(
                        kam.label,
                        f"{s.label}: {what}",
                        measured,
                        baseline,
                        ratio,
                        f">= {TARGET:.2f}" if judged else "",
                        ratio >= TARGET if judged else None,
                    )
                )
    print_table(
        "Ratios: certway rate ÷ kamailio rate; kamailio CPU ÷ certway CPU per transaction "
        f"(higher is better for both); target >= {TARGET:.2f}, judged against kamailio with "
        "the TLSF allocator (the faster, stricter baseline); the q_malloc rows are information.",
        measured="certway",
    )


if __name__ == "__main__":
    main()
