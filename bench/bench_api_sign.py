"""REST issuance: ``POST /api/v1/local-ca/{name}/sign`` with an API token against ``cfssl serve``
(Debian ``golang-cfssl``), the same P-256 CA signing the same P-256 CSR, c=1 and c=4, one run.

    .venv/bin/python bench/bench_api_sign.py            # 3 rounds of 5 s blocks per server
    .venv/bin/python bench/bench_api_sign.py --quick    # 2 rounds of 2 s blocks

Servers (each its own process, on 127.0.0.1 free ports, all over TLS with a P-256 server
certificate, keep-alive):

- ``certway serve`` (``NodeServer``, admin listener only, uvloop) on a fresh node whose local CA
  ``bench`` is the bench CA imported (its key sealed in the store). Each request is
  authenticated with a read-write API token (``Authorization: Bearer``), checked, signed
  (profile server-client, 365 days), recorded in the CA's inventory and audited before the
  answer (SQLite, WAL; requests arriving together share a commit).
- ``cfssl serve -ca … -ca-key … -tls-cert … -tls-key …`` with a default signing profile
  (365 days, server + client auth); ``POST /api/v1/cfssl/sign`` ``{"certificate_request": …}``,
  no authentication, in two set-ups:
  - as a signer only (no ``-db-config``): it keeps nothing, so nothing it signs can be revoked;
  - with its certificate database (``-db-config``, SQLite with cfssl's own ``certificates``
    table, as its certdb README sets it up): every certificate is recorded before the answer,
    what ``cfssl revoke`` and its OCSP responses need, and what certway does.

Clients: ``c`` separate processes, each with one keep-alive TLS connection (``http.client``),
posting the same CSR in a loop for the block's length and checking every answer holds a
certificate. Blocks alternate between the servers over the rounds; the median rate per server
and concurrency is reported, with the ratios certway / cfssl (target >= 1.0 against both).

Last, the least a Python signer can spend: the CPU ``cryptography`` itself takes, in process,
to load and check the CSR and build, sign and write the same certificate certway issued (no
HTTP, no TLS, no record), beside cfssl's whole request per certificate.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import shutil
import sqlite3
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from benchlib import (
    Row,
    add_row,
    cpu_seconds,
    free_port,
    print_table,
    serve_announcing_port,
    stop,
    wait_port,
)

CA_NAME = "bench"
TARGET = 1.0


@dataclass
class Server:
    label: str
    port: int
    path: str
    headers: dict[str, str]
    body: bytes
    kind: str  # certway | cfssl | cfssl-db, and with --postgres certway-pg | cfssl-pg
    pid: int


# -- material --------------------------------------------------------------------------------
def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_material(work: Path) -> dict[str, Path]:
    """The bench CA (P-256, self-signed), a TLS server certificate for cfssl, and the CSR."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("Bench CA"))
        .issuer_name(_name("Bench CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    tls_key = ec.generate_private_key(ec.SECP256R1())
    tls = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(tls_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(_name("leaf.example.com"))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("leaf.example.com")]), critical=False
        )
        .sign(leaf_key, hashes.SHA256())
    )
    files = {
        "ca": work / "ca.pem",
        "ca_key": work / "ca-key.pem",
        "tls": work / "tls.pem",
        "tls_key": work / "tls-key.pem",
        "csr": work / "leaf.csr",
        "config": work / "cfssl.json",
    }
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files["ca_key"].write_bytes(_pem_key(ca_key))
    files["tls"].write_bytes(tls.public_bytes(serialization.Encoding.PEM))
    files["tls_key"].write_bytes(_pem_key(tls_key))
    files["csr"].write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    profile = {"expiry": "8760h", "usages": ["digital signature", "server auth", "client auth"]}
    files["config"].write_text(json.dumps({"signing": {"default": profile}}))
    return files


# -- servers ---------------------------------------------------------------------------------
# cfssl's certificate database for SQLite, as its certdb/sqlite goose migration creates it
# (the schema of Debian's 1.2.0 release)
CFSSL_CERTDB_SCHEMA = """
CREATE TABLE certificates (
  serial_number            blob NOT NULL,
  authority_key_identifier blob NOT NULL,
  ca_label                 blob,
  status                   blob NOT NULL,
  reason                   int,
  expiry                   timestamp,
  revoked_at               timestamp,
  pem                      blob NOT NULL,
  PRIMARY KEY(serial_number, authority_key_identifier)
);
CREATE TABLE ocsp_responses (
  serial_number            blob NOT NULL,
  authority_key_identifier blob NOT NULL,
  body                     blob NOT NULL,
  expiry                   timestamp,
  PRIMARY KEY(serial_number, authority_key_identifier)
);
"""


def cfssl_certdb(work: Path) -> tuple[Path, Path]:
    """A new SQLite certificate database for cfssl and its ``-db-config`` file."""
    database, config = work / "cfssl-certs.db", work / "cfssl-db.json"
    with sqlite3.connect(database) as db:
        db.executescript(CFSSL_CERTDB_SCHEMA)
    config.write_text(json.dumps({"driver": "sqlite3", "data_source": str(database)}))
    return database, config


def recorded_by_cfssl(database: Path) -> int:
    with sqlite3.connect(database) as db:
        return int(db.execute("SELECT COUNT(*) FROM certificates").fetchone()[0])


# the same table in cfssl's certdb/pg migration
CFSSL_CERTDB_PG_SCHEMA = CFSSL_CERTDB_SCHEMA.replace("blob", "bytea").replace(
    "timestamp", "timestamptz"
)


def cfssl_certdb_pg(work: Path, url: str) -> Path:
    """cfssl's certificate tables in the PostgreSQL database ``url``; its ``-db-config``."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        for statement in CFSSL_CERTDB_PG_SCHEMA.split(";"):
            if statement.strip():
                connection.execute(statement)
    config = work / "cfssl-pg.json"
    config.write_text(json.dumps({"driver": "postgres", "data_source": f"{url}?sslmode=disable"}))
    return config


def recorded_by_cfssl_pg(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as connection:
        row = connection.execute("SELECT COUNT(*) FROM certificates").fetchone()
        return int(row[0]) if row else 0


@contextmanager
def cfssl(
    files: dict[str, Path], *, db_config: Path | None = None, kind: str = "cfssl"
) -> Iterator[Server | None]:
    binary = shutil.which("cfssl")
    if binary is None:
        print("  cfssl not installed (Debian golang-cfssl; `make bench` installs it)", flush=True)
        yield None
        return
    port = free_port()
    command = [
        binary, "serve", "-address", "127.0.0.1", "-port", str(port),
        "-ca", str(files["ca"]), "-ca-key", str(files["ca_key"]),
        "-config", str(files["config"]),
        "-tls-cert", str(files["tls"]), "-tls-key", str(files["tls_key"]),
        "-loglevel", "5",
    ]  # fmt: skip
    if db_config is not None:
        command += ["-db-config", str(db_config)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc, "cfssl serve")
        body = json.dumps({"certificate_request": files["csr"].read_text()}).encode()
        yield Server(
            f"cfssl serve ({kind})",
            port,
            "/api/v1/cfssl/sign",
            {"Content-Type": "application/json"},
            body,
            kind,
            proc.pid,
        )
    finally:
        stop(proc)


def build_node(data_dir: Path, files: dict[str, Path], database: str | None = None) -> str:
    """A node whose local CA ``bench`` is the bench CA (on ``database``: PostgreSQL; default
    SQLite); a read-write API token for it."""
    from certway.services.node import Node

    node = Node.init(data_dir, fqdn="bench.example.com", database=database)
    try:
        node.local_ca.import_ca(CA_NAME, files["ca"].read_bytes(), files["ca_key"].read_bytes())
        return node.api_tokens.create("bench", "read-write").token
    finally:
        node.close()


@contextmanager
def certway(
    data_dir: Path, files: dict[str, Path], token: str, kind: str = "certway"
) -> Iterator[Server]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(data_dir)], stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        if not line.startswith("PORT "):
            raise RuntimeError(f"certway serve did not start ({line!r})")
        port = int(line.split()[1])
        wait_port(port, proc, "certway serve")
        body = json.dumps({"csr": files["csr"].read_text()}).encode()
        yield Server(
            f"certway serve ({kind})",
            port,
            f"/api/v1/local-ca/{CA_NAME}/sign",
            {"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
            body,
            kind,
            proc.pid,
        )
    finally:
        stop(proc)


@contextmanager
def postgres_databases() -> Iterator[tuple[str, str]]:
    """Two new databases (certway's, cfssl's) on the machine's PostgreSQL server, or on a
    throwaway one (tests/pgtools.py); dropped, and the server stopped, at the end."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from pgtools import find_or_start_server

    server = find_or_start_server()
    try:
        with server.database() as ours, server.database() as theirs:
            yield ours, theirs
    finally:
        server.stop()


def serve(data_dir: Path) -> None:
    """Child process: ``NodeServer`` with the admin listener only, until SIGTERM."""
    import logging

    from certway.serve import NodeServer, ServeOptions, new_event_loop
    from certway.services.node import Node

    logging.disable(logging.WARNING)  # no access log lines in the measurement
    node = Node.open(data_dir)
    server = NodeServer(
        node, ServeOptions(admin=("127.0.0.1", 0), publish=None, sip=None, scheduler_interval=3600)
    )
    loop = new_event_loop()

    serve_announcing_port(server, loop, lambda: server.admin_port, node)


# -- clients ---------------------------------------------------------------------------------
def client(server: Server, seconds: float) -> tuple[int, int]:
    """Sign requests in a loop on one keep-alive connection: (certificates, errors)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    connection = http.client.HTTPSConnection("127.0.0.1", server.port, context=context)
    done = errors = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        connection.request("POST", server.path, body=server.body, headers=server.headers)
        response = connection.getresponse()
        answer = json.loads(response.read())
        if response.status != 200:
            errors += 1
            continue
        pem = (
            answer["pem"] if server.kind.startswith("certway") else answer["result"]["certificate"]
        )
        if "BEGIN CERTIFICATE" not in pem:
            errors += 1
            continue
        done += 1
    connection.close()
    return done, errors


def issued_by(server: Server) -> x509.Certificate:
    """One certificate ``server`` issues for the bench CSR."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    connection = http.client.HTTPSConnection("127.0.0.1", server.port, context=context)
    try:
        connection.request("POST", server.path, body=server.body, headers=server.headers)
        response = connection.getresponse()
        answer = json.loads(response.read())
        if response.status != 200:
            raise RuntimeError(f"{server.label}: {response.status} {answer}")
    finally:
        connection.close()
    return x509.load_pem_x509_certificate(answer["pem"].encode())


def library_floor(files: dict[str, Path], like: x509.Certificate, seconds: float = 1.0) -> float:
    """CPU ms per certificate that ``cryptography`` itself spends, in this process, on what
    any Python signer must do for one request: load the CSR, check its signature, build a
    certificate with ``like``'s names and extensions, sign it with the CA key, write it as
    PEM. No HTTP, no TLS, no authentication, no record: the least a Python server can spend
    per certificate with the library certway uses."""
    csr_pem = files["csr"].read_bytes()
    ca = x509.load_pem_x509_certificate(files["ca"].read_bytes())
    ca_key = serialization.load_pem_private_key(files["ca_key"].read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    lifetime = like.not_valid_after_utc - like.not_valid_before_utc

    def one() -> bytes:
        csr = x509.load_pem_x509_csr(csr_pem)
        if not csr.is_signature_valid:
            raise RuntimeError("the bench CSR's signature does not verify")
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(csr.subject)
            .issuer_name(ca.subject)
            .public_key(csr.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + lifetime)
        )
        for extension in like.extensions:
            builder = builder.add_extension(extension.value, extension.critical)
        return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    for _ in range(50):
        one()
    done, start, deadline = 0, time.process_time(), time.monotonic() + seconds
    while time.monotonic() < deadline:
        one()
        done += 1
    return (time.process_time() - start) * 1000 / done


def block(
    pool: ProcessPoolExecutor, server: Server, clients: int, seconds: float
) -> tuple[float, float]:
    """(certificates per second, server CPU ms per certificate) of one block."""
    start, cpu = time.monotonic(), cpu_seconds(server.pid)
    results = [f.result() for f in [pool.submit(client, server, seconds) for _ in range(clients)]]
    wall, cpu = time.monotonic() - start, cpu_seconds(server.pid) - cpu
    errors = sum(r[1] for r in results)
    if errors:
        raise RuntimeError(f"{server.label}: {errors} failed requests")
    done = sum(r[0] for r in results)
    return done / wall, cpu * 1000 / max(done, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2 s blocks")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="also both on PostgreSQL (127.0.0.1:5432 when it answers, else a throwaway server)",
    )
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return
    rounds, seconds = (2, 2.0) if args.quick else (args.rounds, args.seconds)
    print(f"REST issuance, P-256 CA signing a P-256 CSR: {rounds} rounds of {seconds:g} s blocks")
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        work = Path(tmp)
        files = make_material(work)
        token = build_node(work / "node", files)
        certdb, db_config = cfssl_certdb(work)
        servers = [stack.enter_context(certway(work / "node", files, token))]
        for config, kind in ((None, "cfssl"), (db_config, "cfssl-db")):
            other = stack.enter_context(cfssl(files, db_config=config, kind=kind))
            if other is not None:
                servers.append(other)
        pg_urls: tuple[str, str] | None = None
        if args.postgres:
            pg_urls = stack.enter_context(postgres_databases())
            pg_token = build_node(work / "node-pg", files, database=pg_urls[0])
            servers.append(
                stack.enter_context(certway(work / "node-pg", files, pg_token, kind="certway-pg"))
            )
            pg_config = cfssl_certdb_pg(work, pg_urls[1])
            other = stack.enter_context(cfssl(files, db_config=pg_config, kind="cfssl-pg"))
            if other is not None:
                servers.append(other)
        pool = stack.enter_context(ProcessPoolExecutor(max_workers=4))
        for server in servers:  # warm-up: connections, caches, first CRL
            block(pool, server, 1, 0.5)
        rates: dict[tuple[str, int], list[float]] = {}
        cpu: dict[tuple[str, int], list[float]] = {}
        for _ in range(rounds):
            for clients in (1, 4):
                for server in servers:
                    rate, ms = block(pool, server, clients, seconds)
                    rates.setdefault((server.kind, clients), []).append(rate)
                    cpu.setdefault((server.kind, clients), []).append(ms)
        kinds = {server.kind for server in servers}
        if "cfssl-db" in kinds and recorded_by_cfssl(certdb) == 0:
            raise RuntimeError("cfssl recorded nothing in its certificate database")
        if pg_urls is not None and "cfssl-pg" in kinds and recorded_by_cfssl_pg(pg_urls[1]) == 0:
            raise RuntimeError("cfssl recorded nothing in its PostgreSQL certificate database")
        comparisons = [
            ("certway", "cfssl", "cfssl"),
            ("certway", "cfssl-db", "cfssl+certdb"),
            *([("certway-pg", "cfssl-pg", "cfssl+certdb, both PostgreSQL")] if pg_urls else []),
        ]
        for ours_kind, kind, label in comparisons:
            for clients in (1, 4):
                ours = statistics.median(rates[(ours_kind, clients)])
                found = rates.get((kind, clients))
                theirs = statistics.median(found) if found else None
                ratio = ours / theirs if theirs else None
                add_row(
                    Row(
                        "REST issuance",
                        f"certificates/s, c={clients}, vs {label}",
                        f"{ours:.0f}/s",
                        f"{label} {theirs:.0f}/s" if theirs else "cfssl not run",
                        ratio,
                        f">= {TARGET:.1f}",
                        None if ratio is None else ratio >= TARGET,
                    )
                )
        floor = library_floor(files, issued_by(servers[0]))
        cfssl_ms = cpu.get(("cfssl", 1))
        add_row(
            Row(
                "REST issuance",
                "CPU ms/certificate: cryptography alone (check, build, sign; no HTTP, no record)",
                f"{floor:.2f} ms",
                f"cfssl whole request, c=1 {statistics.median(cfssl_ms):.2f} ms"
                if cfssl_ms
                else "cfssl not run",
                statistics.median(cfssl_ms) / floor if cfssl_ms else None,
            )
        )
        for clients in (1, 4):
            for ours_kind, kind, label in comparisons:
                ours = statistics.median(cpu[(ours_kind, clients)])
                found = cpu.get((kind, clients))
                theirs = statistics.median(found) if found else None
                add_row(
                    Row(
                        "REST issuance",
                        f"server CPU ms/certificate, c={clients}, vs {label}",
                        f"{ours:.2f} ms",
                        f"{label} {theirs:.2f} ms" if theirs else "cfssl not run",
                        theirs / ours if theirs else None,
                    )
                )
    print_table(
        "ratio = certway rate / cfssl rate, and cfssl CPU / certway CPU per certificate "
        "(higher is better); median of the rounds"
    )


if __name__ == "__main__":
    main()
