"""Faults in a cluster: PostgreSQL restarted under serving peers, a peer killed mid-write.

Both on a PostgreSQL server of the test's own (tests/pgserver.py), never the shared one.
"""

from __future__ import annotations

import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from certway.services.node import Node
from certway.store.topics import Topic, TopicRepository
from certway.store.vault import load_master_key
from peers import Peer
from pgserver import PgServer, restartable_pg_fixture  # noqa: F401 (restartable_pg)
from waiting import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform == "win32", reason="POSIX")]

ALARM = "id=database-unreachable"


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from certway.cli.main import main; main()",
         "--data-dir", str(data_dir), *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def handshake(port: int) -> bool:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw) as tls,
        ):
            return tls.getpeercert(binary_form=True) is not None
    except OSError:
        return False


def tls_version(node: Node) -> int:
    with node.store.reading() as session:
        return TopicRepository(session).versions((Topic.TLS,))[0]


def test_postgresql_restarted_while_peers_serve(tmp_path: Path, restartable_pg: PgServer) -> None:
    url = restartable_pg.create_database()
    dirs = [tmp_path / "p0", tmp_path / "p1"]
    first = Node.init(dirs[0], database=url, fqdn="p0.example.test")
    first.local_ca.create_root("lab", "/CN=Fault Lab Root")
    first.close()
    Node.init(dirs[1], database=url, join_key=load_master_key(dirs[0]), fqdn="p1.example.test")
    peers = [Peer(d, "--peer-check-interval", "3600") for d in dirs]
    try:
        for peer in peers:
            peer.wait_listening()
        before = cli(dirs[0], "ca", "create-intermediate", "--name", "issuing", "--parent", "lab",
                     "--subject", "/CN=Fault Issuing")  # fmt: skip
        assert before.returncode == 0, before.stderr

        restartable_pg.stop()
        for peer in peers:
            wait_for(lambda p=peer: ALARM in p.log, "the database-unreachable alarm", 60)
            assert "event=alarm severity=critical" in peer.log
            assert handshake(peer.admin) and handshake(peer.sip)  # still serving
        refused = cli(dirs[1], "tls", "set", "--service", "admin-https", "--profile", "modern")
        assert refused.returncode != 0
        assert "database" in (refused.stdout + refused.stderr)

        restartable_pg.start()
        for peer in peers:
            wait_for(
                lambda p=peer: f"event=alarm-cleared {ALARM}" in p.log, "the alarm cleared", 60
            )
        # nothing written before was lost, the refused change left nothing behind
        node = Node.open(dirs[1])
        try:
            assert {"lab", "issuing"} <= {ca.name for ca in node.local_ca.cas()}
            assert node.tls.profile("admin-https").name == "intermediate"
            # and a change after the restart reaches every peer again (the listeners are back)
            node.tls.set("admin-https", "modern")
            version = tls_version(node)
        finally:
            node.close()
        for peer in peers:
            wait_for(lambda p=peer: f"tls:{version}" in p.log, "the reload after the restart", 60)
    finally:
        for peer in peers:
            peer.stop()


CHILD = """
import sys, time
from pathlib import Path
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import event
from sqlalchemy.orm import Session
from certway.pki.text import serial_hex
from certway.services.node import Node

data_dir, stop_at = sys.argv[1], int(sys.argv[2])
transactions = 0


@event.listens_for(Session, "before_commit")
def committing(session):
    global transactions
    if session.connection().get_execution_options().get("certway_read_only"):
        return  # a read
    transactions += 1
    if transactions == stop_at:
        session.flush()
        print("stopped", flush=True)
        time.sleep(120)  # killed here: the statements are sent, the commit is not


node = Node.open(Path(data_dir))
key = ec.generate_private_key(ec.SECP256R1()).public_key()
for i in range(1000):
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"peer{i}.example.com")])
    issued = node.local_ca.issue_certificate("lab", key, name, alt_names=[], days=30)
    node.local_ca.revoke("lab", serial_hex(issued.certificate.serial_number), reason="superseded")
"""


def snapshot(url: str) -> dict[str, object]:
    with psycopg.connect(url.replace("+psycopg", "")) as db:
        issued = {s for (s,) in db.execute("SELECT serial FROM issued_certificates")}
        revoked = {s for (s,) in db.execute("SELECT serial FROM revocations")}
        audit = db.execute("SELECT action, target, outcome FROM audit_log").fetchall()
        covered = db.execute("SELECT MAX(covers_revocation_id) FROM crls").fetchone()
        last = db.execute("SELECT MAX(id) FROM revocations").fetchone()
        # issuance moves ca-issued, a revocation ca-records
        topic = db.execute(
            "SELECT COALESCE(SUM(version), 0) FROM change_topics"
            " WHERE topic IN ('ca-records', 'ca-issued')"
        )
        records = topic.fetchone()
    return {
        "issued": issued,
        "revoked": revoked,
        "audited_revocations": {
            t.rsplit(" ", 1)[-1] for a, t, o in audit if a == "ca.revoke" and o == "ok"
        },
        "crl_covers_last": (covered[0] if covered else None) == (last[0] if last else None),
        "records_topic": records[0] if records else 0,
    }


def test_a_peer_killed_mid_write_leaves_nothing_partial(
    tmp_path: Path, restartable_pg: PgServer
) -> None:
    url = restartable_pg.create_database()
    dirs = [tmp_path / "p0", tmp_path / "p1"]
    first = Node.init(dirs[0], database=url, fqdn="p0.example.test", factory=False)
    first.local_ca.create_root("lab", "/CN=Kill Lab Root")
    first.close()
    Node.init(
        dirs[1], database=url, join_key=load_master_key(dirs[0]), fqdn="p1.example.test",
        factory=False,
    ).close()  # fmt: skip
    for stop_at in (3, 4, 7, 8):  # inside an issue, inside a revocation, a few rounds in
        before = snapshot(url)
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(dirs[1]), str(stop_at)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None
            line = child.stdout.readline().strip()
            assert line == "stopped", (line, child.stderr.read() if child.stderr else "")
            child.send_signal(signal.SIGKILL)
            assert child.wait(timeout=60) == -signal.SIGKILL
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            for stream in (child.stdout, child.stderr):
                if stream is not None:
                    stream.close()
        after = snapshot(url)
        # what committed is whole: every revocation audited and in the CRL, each topic moved
        assert after["revoked"] == after["audited_revocations"]
        assert after["revoked"] <= after["issued"]  # type: ignore[operator]
        assert after["crl_covers_last"]
        # ... and the topic moved once per committed change, not for the one cut short
        moved = after["records_topic"] - before["records_topic"]  # type: ignore[operator]
        new_issued = len(after["issued"]) - len(before["issued"])  # type: ignore[arg-type]
        new_revoked = len(after["revoked"]) - len(before["revoked"])  # type: ignore[arg-type]
        assert moved == new_issued + new_revoked
        # the other peer writes at once (the killed peer's lock went with its connection)
        other = Node.open(dirs[0])
        try:
            other.local_ca.publish_crl("lab")
        finally:
            other.close()
