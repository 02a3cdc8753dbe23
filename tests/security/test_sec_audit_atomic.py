"""Every audited change commits with its audit row, in one transaction.

The attack (well, the accident): SIGKILL during 20 revocations left 2 committed revocations
with no audit row, because the row was written in a transaction of its own after the change.

A child process issues, revokes and signs (from a CSR) certificates in a loop; it stops right
after the N-th write transaction it commits (a SQLAlchemy ``after_commit`` listener, and one
around the direct transactions of issuance, in the child), and the parent kills it there
with SIGKILL. Whatever N, every issued certificate and revocation in
the database has its audit row (and every "ok" row its change; each revocation its CRL).
Then every audited service method is called with separate audit writes forbidden: each
must have written its row inside its own transaction, and moved at least one change topic.
"""

from __future__ import annotations

import inspect
import json
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from certway.clock import FixedClock
from certway.pki.csr import CsrForm, build_csr
from certway.pki.keys import private_key_pem
from certway.services import audit as audit_module
from certway.services.acme_server import AcmeSettings
from certway.services.identities import CsrOptions
from certway.services.node import Node
from certway.store.topics import TopicRepository

from conftest import NOW, PIN, SoftHsm, test_key
from pkitools import Pki

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")

CA = "lab"
LOOPS = 6

CHILD = """
import contextlib, sys, time
from pathlib import Path
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from cryptography.hazmat.primitives import hashes, serialization
from certway.pki.text import serial_hex
from certway.services.node import Node
from certway.store.db import Store

data_dir, ca, stop_at, loops = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
commits = 0
wrote = False


@event.listens_for(Engine, "before_cursor_execute")
def writing(_conn, _cursor, statement, *_args):
    # ORM flushes and Core statements alike (issuance inserts without the ORM)
    global wrote
    wrote = wrote or statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))


def after_write():
    global commits
    commits += 1
    if commits == stop_at:
        print("stopped", flush=True)
        time.sleep(120)  # killed here, right after this commit


@event.listens_for(Session, "after_commit")
def committed(session):
    global wrote
    if wrote:
        wrote = False
        after_write()


direct = Store.direct_transaction


@contextlib.contextmanager
def direct_then_stop(self):
    # issuance's writes run on the driver's cursor (certway.store.direct): no Session commit
    global wrote
    with direct(self) as connection:
        yield connection
    wrote = False
    after_write()


Store.direct_transaction = direct_then_stop


node = Node.open(Path(data_dir))
private = ec.generate_private_key(ec.SECP256R1())
key = private.public_key()
for i in range(loops):
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"peer{i}.example.com")])
    issued = node.local_ca.issue_certificate(ca, key, name, alt_names=[], days=30)
    node.local_ca.revoke(ca, serial_hex(issued.certificate.serial_number), reason="superseded")
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(private, hashes.SHA256())
    node.local_ca.sign(ca, csr.public_bytes(serialization.Encoding.PEM))
print("done", commits, flush=True)
"""


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    node = Node.init(tmp_path / "d", fqdn="vcs.example.com", factory=False)
    node.local_ca.create_root(CA, "/CN=Lab Root")
    node.close()
    return tmp_path / "d"


def commits_per_loop(data_dir: Path) -> int:
    """How many write transactions one issue + revoke takes (a child left to finish says)."""
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(data_dir), CA, "0", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return int(result.stdout.split()[-1])


def kill_after_commit(data_dir: Path, stop_at: int) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(data_dir), CA, str(stop_at), str(LOOPS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline().strip()
        assert line == "stopped", f"the child did not stop: {line!r} {child.stderr.read()!r}"  # type: ignore[union-attr]
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=60) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()  # type: ignore[union-attr]
        child.stderr.close()  # type: ignore[union-attr]


def check_every_change_has_its_row(data_dir: Path) -> tuple[int, int]:
    with sqlite3.connect(data_dir / "certway.db") as db:
        issued = {s for (s,) in db.execute("SELECT serial FROM issued_certificates")}
        revoked = {s for (s,) in db.execute("SELECT serial FROM revocations")}
        rows = db.execute("SELECT action, target, outcome, detail FROM audit_log").fetchall()
        covered = db.execute("SELECT MAX(covers_revocation_id) FROM crls").fetchone()[0]
        last_revocation = db.execute("SELECT MAX(id) FROM revocations").fetchone()[0]
    issue_rows = {
        json.loads(d)["serial"]
        for a, _t, o, d in rows
        if a in ("ca.issue", "ca.sign") and o == "ok"
    }
    revoke_rows = {
        t.removeprefix(f"{CA} serial ") for a, t, o, _d in rows if a == "ca.revoke" and o == "ok"
    }
    assert issued == issue_rows
    assert revoked == revoke_rows
    assert covered == last_revocation  # no revocation without its CRL either
    return len(issued), len(revoked)


@pytest.mark.slow
def test_sigkill_in_a_loop_of_revocations_leaves_every_change_with_its_row(
    data_dir: Path,
) -> None:
    per_loop = commits_per_loop(data_dir)
    assert check_every_change_has_its_row(data_dir) == (2, 1)  # issued + signed, revoked
    # Kill right after each commit of the second loop in turn: after an issue, after a
    # revocation, and after any other transaction a loop may take.
    for stop_at in range(per_loop + 1, 2 * per_loop + 1):
        kill_after_commit(data_dir, stop_at)
        check_every_change_has_its_row(data_dir)
    issued, revoked = check_every_change_has_its_row(data_dir)
    assert issued > revoked  # one kill came between an issue and its revocation


# -- every audited method writes its row inside its own transaction ----------------------------
def audited_actions() -> dict[str, str]:
    """Every ``@audited`` service method: action → Class.method."""
    import importlib
    import pkgutil

    import certway.services

    found: dict[str, str] = {}
    for module_info in pkgutil.walk_packages(certway.services.__path__, "certway.services."):
        module = importlib.import_module(module_info.name)
        for cls_name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__:
                continue
            for name, member in vars(cls).items():
                action = getattr(member, "__certway_audited__", None)
                if action is not None:
                    found[action] = f"{cls_name}.{name}"
    return found


def topic_versions(node: Node) -> tuple[int, ...]:
    with node.store.reading() as session:
        return TopicRepository(session).versions()


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Node]:
    monkeypatch.setattr(
        "certway.services.admins._HASHER",
        PasswordHasher(time_cost=1, memory_cost=8, parallelism=1),
    )
    n = Node.init(tmp_path / "d", FixedClock(NOW), fqdn="vcs.example.com")
    n.admins.add("admin", "read-write", "a long password")
    yield n
    n.close()


def test_every_audited_change_writes_its_row_in_its_own_transaction(
    node: Node, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    def separate_write(*_args: Any, **_kw: Any) -> None:
        raise AssertionError("an audit row written in a transaction of its own")

    monkeypatch.setattr(audit_module.Audit, "_settle", separate_write)
    pki = Pki("Audit", index=30)
    ca_pem = pki.root.public_bytes(serialization.Encoding.PEM)
    crl_pem = pki.crl(issuer=pki.root_issuer).public_bytes(serialization.Encoding.PEM)
    calls: list[tuple[str, Callable[[], Any]]] = []

    def call(action: str, run: Callable[[], Any]) -> None:
        calls.append((action, run))

    # administrators and security
    call("admin.add", lambda: node.admins.add("carol", "read-write", "a long password"))
    call("admin.passwd", lambda: node.admins.set_password("carol", "another long one"))
    call("admin.access", lambda: node.admins.set_access("carol", "read-only"))
    call("admin.remove", lambda: node.admins.remove("carol"))
    call("admin-security.set", lambda: node.admin_security.set(mode="certificate-validation"))
    call("node.set", lambda: node.settings.set(role="core"))
    # SIP and zones
    call("sip.set", lambda: node.sip.set(mutual_tls="require"))
    call(
        "sip.rule.add",
        lambda: node.sip.add_rule(priority=1, type="exact", pattern="a", action="allow"),
    )
    call("sip.rule.remove", lambda: node.sip.remove_rule(node.sip.get().rules[0].id))
    call("zone.add", lambda: node.zones.add("core", peers=["127.0.0.1"]))
    call("zone.remove", lambda: node.zones.remove("core"))
    call("syslog.add", lambda: node.syslog.add("127.0.0.1:6514"))
    call("syslog.remove", lambda: node.syslog.remove("127.0.0.1:6514"))
    # trust and revocation
    call("trust.add", lambda: node.trusted_cas.add(ca_pem))
    call(
        "trust.remove",
        lambda: node.trusted_cas.remove([node.trusted_cas.entries()[-1].fingerprint]),
    )
    call("trust.reset", lambda: node.trusted_cas.reset())
    call("trust.add-factory", lambda: node.trusted_cas.add_factory(pki.root))
    call("crl.upload", lambda: node.revocation.upload_manual(crl_pem))
    call("crl.remove", lambda: node.revocation.remove_manual())
    call("crl.sources.set", lambda: node.revocation.set_sources([]))
    call("crl.update", lambda: node.revocation.update_now())
    call("crl.schedule", lambda: node.revocation.set_schedule(daily_at="03:00"))
    call("revocation.set", lambda: node.revocation.set_policy("sip-tls", ocsp=False))
    call("tls.set", lambda: node.tls.set("sip-tls", "modern"))
    call("acme.schedule", lambda: node.acme.set_schedule(time_of_day="03:00"))
    call("cluster.tls-verification.set", lambda: node.cluster_tls.set_verification("enforce"))
    # LDAP admin authentication
    call(
        "ldap.set",
        lambda: node.ldap.set(
            url="ldaps://ldap.example.com",
            base_dn="dc=example,dc=com",
            bind_dn="cn=bind,dc=example,dc=com",
            bind_password="a bind password",
        ),
    )
    call(
        "ldap.group.add", lambda: node.ldap.add_group("cn=g,dc=example,dc=com", access="read-only")
    )
    call("ldap.group.remove", lambda: node.ldap.remove_group("cn=g,dc=example,dc=com"))
    call("admin-auth.set", lambda: node.ldap.set_source("both"))
    # local CA
    call("ca.create-root", lambda: node.local_ca.create_root("lab", "/CN=Lab Root"))
    call(
        "ca.create-intermediate",
        lambda: node.local_ca.create_intermediate("issuing", "lab", "/CN=Lab Issuing"),
    )
    call(
        "ca.import",
        lambda: node.local_ca.import_ca("ext", ca_pem, private_key_pem(pki.root_key)),
    )
    csr = build_csr(test_key("ec:p256", 7), CsrForm(common_name="peer.example.com"))[0]
    csr_pem = csr.public_bytes(serialization.Encoding.PEM)
    call("ca.sign", lambda: node.local_ca.sign("lab", csr_pem))
    call("ca.sign-batch", lambda: node.local_ca.sign_batch("lab", [csr_pem, csr_pem]))
    call("ca.issue-with-key", lambda: node.local_ca.issue_with_key("lab", "k.example.com"))
    call("api-token.create", lambda: node.api_tokens.create("ci", "read-only"))
    call("api-token.revoke", lambda: node.api_tokens.revoke("ci"))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x.example.com")])
    issued: list[x509.Certificate] = []
    call(
        "ca.issue",
        lambda: issued.append(
            node.local_ca.issue_certificate(
                "lab", test_key("ec:p256", 8).public_key(), subject, alt_names=[]
            ).certificate
        ),
    )
    call("ca.revoke", lambda: node.local_ca.revoke("lab", format(issued[0].serial_number, "X")))
    call("ca.crl.publish", lambda: node.local_ca.publish_crl("lab"))
    # the ACME server of a CA
    call("ca.acme.enable", lambda: node.acme_server.enable("lab", AcmeSettings()))
    call("ca.acme.eab-create", lambda: node.acme_server.create_eab_key("lab"))
    call("ca.acme.disable", lambda: node.acme_server.disable("lab"))
    # node certificates
    call("domain.add", lambda: node.identities.add_domain("conf.example.com"))
    call(
        "csr.generate",
        lambda: node.identities.generate_csr("domain", "conf.example.com", CsrOptions()),
    )
    call("csr.discard", lambda: node.identities.discard_csr("domain", "conf.example.com"))
    call("domain.remove", lambda: node.identities.remove_domain("conf.example.com"))
    server_key = test_key("ec:p256", 9)
    server_csr = build_csr(
        server_key,
        CsrForm(common_name="vcs.example.com", additional_names=("vcs.example.com",)),
    )[0]
    call(
        "certificate.upload",
        lambda: node.identities.upload(
            "server",
            "",
            node.local_ca.sign(
                "lab",
                server_csr.public_bytes(serialization.Encoding.PEM),
                profile="server-client",
            ).pem(with_chain=True),
            key_data=private_key_pem(server_key),
        ),
    )
    call("certificate.restore", lambda: node.identities.restore("server", "", 1))
    call("client-cert.copy-server", lambda: node.identities.copy_server_to_client())
    call("cluster.export-key", lambda: node.cluster.export_key("a long passphrase here"))
    declared = audited_actions()
    # PKCS#11 tokens: with the SoftHSM2 token of the run (skipped only without SoftHSM2)
    try:
        hsm: SoftHsm | None = request.getfixturevalue("softhsm")
    except pytest.skip.Exception:
        hsm = None
    if hsm is not None:
        token = hsm
        call(
            "token.add",
            lambda: node.tokens.add("hsm", module=token.module, token_label=token.label, pin=PIN),
        )
    else:
        declared.pop("token.add")

    # Actions that change nothing in this node's database: their row is recorded on its own
    # when they end (tests/services/test_backup.py checks those rows).
    for read_only in ("backup.create", "backup.restore-new-node"):
        declared.pop(read_only)
    # Needs a cluster on PostgreSQL: tests/services/test_cluster_peers.py checks it alike.
    declared.pop("cluster.remove-peer")
    assert {action for action, _ in calls} == set(declared), "every audited method is called"
    for action, run in calls:
        before = len(node.audit.entries(limit=100_000))
        topics_before = topic_versions(node)
        run()
        rows = node.audit.entries(limit=100_000)[before:]
        mine = [r for r in rows if r.action == action]
        assert len(mine) == 1 and mine[0].outcome == "ok", (action, rows)
        # ... and tells the caches and listeners (of every peer) what it changed
        assert topic_versions(node) != topics_before, f"{action} bumps no change topic"
