"""A real ``certway serve`` on 127.0.0.1: HTTPS with the node's certificates, SNI, hot reload,
admin client-certificate security, API authorisation. Clients are httpx, Python's ssl and the
openssl binary."""

from __future__ import annotations

import datetime as dt
import getpass
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from certway.errors import PolicyViolation
from certway.pki.csr import CsrForm, build_csr
from certway.pki.keys import private_key_pem
from certway.serve import NodeServer
from certway.services.audit import SYSTEM, Actor, AuditEntry, current_actor
from certway.services.node import Node
from waiting import wait_for

from conftest import test_key
from pkitools import Pki, cucm_certificate
from revocation_servers import LocalHttpServer, der
from revocation_servers import pem as pem_of
from serving import running

PASSWORD = "correct horse battery"
FQDN = "vcs.example.com"


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node.init(tmp_path / "d", fqdn=FQDN)
    n.admins.add("alice", "read-write", PASSWORD)
    n.admins.add("bob", "read-only", PASSWORD)
    yield n
    n.close()


@pytest.fixture
def server(node: Node) -> Iterator[NodeServer]:
    with running(node) as srv:
        yield srv


def write_file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def trust_context(node: Node, *, client: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    """A client context trusting the node's trusted CAs (the temporary CA among them)."""
    pem = b"".join(
        c.public_bytes(serialization.Encoding.PEM) for c in node.trusted_cas.snapshot().certificates
    )
    context = ssl.create_default_context(cadata=pem.decode())
    context.check_hostname = False
    if client is not None:
        context.load_cert_chain(str(client[0]), str(client[1]))
    return context


def peer_certificate(
    port: int, context: ssl.SSLContext, server_name: str | None
) -> x509.Certificate:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def issue_server_cert(node: Node, ca: str, cn: str, sans: list[str]) -> tuple[bytes, bytes]:
    """A certificate + key (PEM) for ``cn`` from local CA ``ca``."""
    key = test_key("ec:p256", 90 + len(cn))
    csr, _ = build_csr(key, CsrForm(common_name=cn, additional_names=tuple(sans)))
    result = node.local_ca.sign(ca, csr.public_bytes(serialization.Encoding.PEM), days=30)
    return result.pem(with_chain=True), private_key_pem(key)


def test_status_over_https_with_basic_auth(node: Node, server: NodeServer) -> None:
    url = f"https://127.0.0.1:{server.admin_port}/api/v1/status"
    context = trust_context(node)
    response = httpx.get(url, auth=("alice", PASSWORD), verify=context)
    assert response.status_code == 200
    body = response.json()
    assert body["you"] == {"name": "alice", "access": "read-write"}
    assert "temporary-certificate" in [a["id"] for a in body["alarms"]]
    assert httpx.get(url, verify=context).status_code == 401
    wrong = httpx.get(url, auth=("alice", "wrong password!"), verify=context)
    assert wrong.status_code == 401
    assert wrong.headers["content-type"] == "application/problem+json"


def test_read_only_account_cannot_change_anything(node: Node, server: NodeServer) -> None:
    base = f"https://127.0.0.1:{server.admin_port}/api/v1"
    context = trust_context(node)
    response = httpx.post(
        f"{base}/domains", json={"name": "example.org"}, auth=("bob", PASSWORD), verify=context
    )
    assert response.status_code == 403
    assert "read-only" in response.json()["detail"]
    assert node.identities.domains() == []


@pytest.mark.interop
def test_served_certificate_and_tls_versions(node: Node, server: NodeServer, openssl: str) -> None:
    cert = peer_certificate(server.admin_port, trust_context(node), FQDN)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == FQDN
    result = subprocess.run(
        [openssl, "s_client", "-connect", f"127.0.0.1:{server.admin_port}",
         "-servername", FQDN, "-tls1_1"],
        input=b"", capture_output=True, timeout=20,
    )  # fmt: skip
    assert result.returncode != 0  # TLS 1.1 is refused
    result = subprocess.run(
        [openssl, "s_client", "-connect", f"127.0.0.1:{server.admin_port}",
         "-servername", FQDN, "-tls1_2"],
        input=b"", capture_output=True, timeout=20,
    )  # fmt: skip
    assert b"subject=CN = vcs.example.com" in result.stdout


def test_sni_selects_domain_certificates(node: Node, server: NodeServer) -> None:
    node.local_ca.create_root("lab", "/CN=Lab Root")
    node.trusted_cas.add(node.local_ca.certificate("lab").public_bytes(serialization.Encoding.PEM))
    node.identities.add_domain("example.org")
    chain, key = issue_server_cert(node, "lab", "example.org", ["vcs.example.org"])
    node.identities.upload("domain", "example.org", chain, key_data=key)
    context = trust_context(node)
    cn = NameOID.COMMON_NAME
    wait_for(
        lambda: (
            peer_certificate(server.admin_port, context, "example.org")
            .subject.get_attributes_for_oid(cn)[0]
            .value
            == "example.org"
        ),
        "the reload poller to pick up the domain certificate",
    )
    for name, expected in [
        ("example.org", "example.org"),
        ("vcs.example.org", "example.org"),  # host label + domain
        ("other.example.net", FQDN),
        (None, FQDN),
    ]:
        cert = peer_certificate(server.admin_port, context, name)
        assert cert.subject.get_attributes_for_oid(cn)[0].value == expected, name


def test_hot_reload_without_failed_handshakes(node: Node, server: NodeServer) -> None:
    node.local_ca.create_root("lab", "/CN=Lab Root")
    node.trusted_cas.add(node.local_ca.certificate("lab").public_bytes(serialization.Encoding.PEM))
    context = trust_context(node)
    old = peer_certificate(server.admin_port, context, FQDN)
    seen: list[x509.Certificate] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            try:
                seen.append(peer_certificate(server.admin_port, context, FQDN))
            except (OSError, ssl.SSLError) as exc:
                failures.append(exc)

    thread = threading.Thread(target=hammer)
    thread.start()
    wait_for(lambda: len(seen) >= 3, "handshakes before the upload")
    chain, key = issue_server_cert(node, "lab", FQDN, [])
    before = len(seen)
    node.identities.upload("server", "", chain, key_data=key)
    wait_for(
        lambda: sum(cert != old for cert in seen[before:]) >= 3,
        "handshakes with the new certificate",
    )
    stop.set()
    thread.join()
    assert failures == []
    assert seen[:before] and all(cert == old for cert in seen[:before])


def _client_cert(node: Node, tmp_path: Path, cn: str) -> tuple[Path, Path, x509.Certificate]:
    key = test_key("ec:p256", 120 + len(cn))
    csr, _ = build_csr(key, CsrForm(common_name=cn))
    signed = node.local_ca.sign(
        "users", csr.public_bytes(serialization.Encoding.PEM), profile="client"
    )
    cert_file = tmp_path / f"{cn}.pem"
    key_file = tmp_path / f"{cn}.key"
    cert_file.write_bytes(signed.pem(with_chain=True))
    key_file.write_bytes(private_key_pem(key))
    return cert_file, key_file, signed.certificate


def test_client_certificate_validation_and_authentication(
    node: Node, server: NodeServer, tmp_path: Path
) -> None:
    node.local_ca.create_root("users", "/CN=Users Root")
    users_ca = node.local_ca.certificate("users").public_bytes(serialization.Encoding.PEM)
    node.trusted_cas.add(users_ca)
    node.revocation.upload_manual(node.local_ca.current_crl("users").pem)
    good_cert, good_key, _ = _client_cert(node, tmp_path, "alice")
    bad_cert, bad_key, revoked = _client_cert(node, tmp_path, "mallory")
    node.local_ca.revoke("users", format(revoked.serial_number, "X"), reason="keyCompromise")
    node.revocation.upload_manual(node.local_ca.current_crl("users").pem)
    node.admin_security.set(mode="certificate-validation")
    url = f"https://127.0.0.1:{server.admin_port}/api/v1/status"
    wait_for(
        lambda: (
            httpx.get(
                url,
                auth=("alice", PASSWORD),
                verify=trust_context(node, client=(good_cert, good_key)),
            ).status_code
            == 200
        ),
        "the reload poller to pick up the users CA",
    )
    no_cert = httpx.get(url, auth=("alice", PASSWORD), verify=trust_context(node))
    assert no_cert.status_code == 403 and "needs a client certificate" in no_cert.json()["detail"]
    good = httpx.get(
        url, auth=("alice", PASSWORD), verify=trust_context(node, client=(good_cert, good_key))
    )
    assert good.status_code == 200
    bad = httpx.get(
        url, auth=("alice", PASSWORD), verify=trust_context(node, client=(bad_cert, bad_key))
    )
    assert bad.status_code == 403
    assert "revoked" in bad.json()["detail"] and "keyCompromise" in bad.json()["detail"]
    # An untrusted certificate is not a bare handshake failure: the app says why.
    node.local_ca.create_root("strangers", "/CN=Strangers Root")
    stranger_key = test_key("ec:p256", 160)
    stranger_csr, _ = build_csr(stranger_key, CsrForm(common_name="eve"))
    stranger = node.local_ca.sign(
        "strangers", stranger_csr.public_bytes(serialization.Encoding.PEM), profile="client"
    )
    stranger_cert = write_file(tmp_path / "eve.pem", stranger.pem())
    stranger_key_file = write_file(tmp_path / "eve.key", private_key_pem(stranger_key))
    untrusted = httpx.get(
        url,
        auth=("alice", PASSWORD),
        verify=trust_context(node, client=(stranger_cert, stranger_key_file)),
    )
    assert untrusted.status_code == 403
    assert "not in the trusted CA list" in untrusted.json()["detail"]
    # Certificate-based authentication: the CN names the account, no password needed.
    with pytest.raises(PolicyViolation, match="browser whose certificate"):
        node.admin_security.set(mode="certificate-based-authentication")
    node.admin_security.set(
        mode="certificate-based-authentication", current_certificate=good_cert.read_bytes()
    )
    wait_for(
        lambda: (
            httpx.get(url, verify=trust_context(node, client=(good_cert, good_key))).status_code
            == 200
        ),
        "certificate-based authentication to take effect",
    )
    me = httpx.get(url, verify=trust_context(node, client=(good_cert, good_key)))
    assert me.status_code == 200 and me.json()["you"]["name"] == "alice"
    node.admin_security.reset()


def test_a_client_certificate_presented_with_its_intermediate_passes_with_the_root_trusted(
    node: Node, server: NodeServer, tmp_path: Path
) -> None:
    """The admin listener judges a browser's certificate with the chain the browser sent:
    the node trusts the users' root alone, the browser presents its issuing CA."""
    pki = Pki("Users", at=dt.datetime.now(dt.UTC), index=170)
    node.trusted_cas.add(pki.root.public_bytes(serialization.Encoding.PEM))
    leaf = pki.leaf("alice", profile="client", sans=[])
    key_file = write_file(tmp_path / "alice.key", private_key_pem(pki.leaf_key))

    def presenting(label: str, *chain: x509.Certificate) -> ssl.SSLContext:
        certs = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (leaf, *chain))
        return trust_context(node, client=(write_file(tmp_path / label, certs), key_file))

    node.admin_security.set(mode="certificate-validation")
    url = f"https://127.0.0.1:{server.admin_port}/api/v1/status"
    with_intermediate = presenting("chained.pem", pki.intermediate)
    wait_for(
        lambda: (
            httpx.get(url, auth=("alice", PASSWORD), verify=with_intermediate).status_code == 200
        ),
        "the reload poller to pick up the users root",
    )
    alone = httpx.get(url, auth=("alice", PASSWORD), verify=presenting("alone.pem"))
    assert alone.status_code == 403
    assert "issuer CN=Users Issuing is not in the trusted CA list" in alone.json()["detail"]
    # a client's own root, presented but not trusted, is no anchor
    stranger = Pki("Strangers", at=dt.datetime.now(dt.UTC), index=173)
    leaf = stranger.leaf("alice", profile="client", sans=[], public_key=pki.leaf_key.public_key())
    own_root = presenting("own-root.pem", stranger.intermediate, stranger.root)
    refused = httpx.get(url, auth=("alice", PASSWORD), verify=own_root)
    assert refused.status_code == 403
    assert "the chain ends at CN=Strangers Root" in refused.json()["detail"]
    node.admin_security.reset()


def test_unknown_route_and_oversized_body(node: Node, server: NodeServer) -> None:
    base = f"https://127.0.0.1:{server.admin_port}/api/v1"
    context = trust_context(node)
    big = httpx.post(
        f"{base}/trusted-cas",
        content=b"x" * (9 * 1024 * 1024),
        headers={"content-type": "application/json"},
        auth=("alice", PASSWORD),
        verify=context,
    )
    assert big.status_code == 413
    bad = httpx.post(
        f"{base}/trusted-cas", json={"data": "garbage"}, auth=("alice", PASSWORD), verify=context
    )
    assert bad.status_code == 400 and bad.headers["content-type"] == "application/problem+json"


def test_change_from_another_process_is_live(node: Node, server: NodeServer) -> None:
    """The CLI on the same data directory (here: a second Node, its own connection and
    caches) changes the server certificate; the running server serves it without a restart."""
    other = Node.open(node.store.data_dir)
    try:
        other.local_ca.create_root("cli-lab", "/CN=CLI Lab Root")
        other.trusted_cas.add(
            other.local_ca.certificate("cli-lab").public_bytes(serialization.Encoding.PEM)
        )
        chain, key = issue_server_cert(other, "cli-lab", FQDN, [])
        other.identities.upload("server", "", chain, key_data=key)
    finally:
        other.close()
    context = trust_context(node)
    wait_for(
        lambda: (
            peer_certificate(server.admin_port, context, FQDN).issuer.rfc4514_string()
            == "CN=CLI Lab Root"
        ),
        "the server to serve the certificate uploaded by another process",
    )


def test_sip_listener_runs_with_the_server(node: Node, server: NodeServer) -> None:
    """certway serve also runs the SIP TLS listener (here on a free port), presenting the
    node's server certificate (the SIP behaviour itself is tested in tests/sip)."""
    context = trust_context(node)
    with (
        socket.create_connection(("127.0.0.1", server.sip_port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=FQDN) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        cert = x509.load_der_x509_certificate(der)
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == FQDN


def _sip_options_answer(port: int, context: ssl.SSLContext) -> bytes:
    """First line of the answer to one SIP OPTIONS over TLS, b"" when the listener closed."""
    request = (
        b"OPTIONS sip:vcs.example.com SIP/2.0\r\nVia: SIP/2.0/TLS peer.example.com;branch=z9hG4bK-1"
        b"\r\nMax-Forwards: 70\r\nFrom: <sip:p@peer.example.com>;tag=1\r\nTo: <sip:vcs.example.com>"
        b"\r\nCall-ID: one@peer.example.com\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=FQDN) as tls,
        ):
            tls.sendall(request)
            return tls.recv(65536).split(b"\r\n", 1)[0]
    except (ssl.SSLError, ConnectionError):
        return b""


def test_own_ca_revocation_reaches_every_service_without_a_crl(
    node: Node, server: NodeServer, tmp_path: Path
) -> None:
    """One revocation path: a certificate revoked with `ca revoke` is refused by the admin
    listener, the SIP listener and `certway check` alike, with no CRL uploaded or fetched."""
    node.local_ca.create_root("users", "/CN=Users Root")
    node.trusted_cas.add(
        node.local_ca.certificate("users").public_bytes(serialization.Encoding.PEM)
    )
    cert_file, key_file, cert = _client_cert(node, tmp_path, "alice")
    node.admin_security.set(mode="certificate-validation")
    context = trust_context(node, client=(cert_file, key_file))
    url = f"https://127.0.0.1:{server.admin_port}/api/v1/status"

    def admin_status() -> int:
        return httpx.get(url, auth=("alice", PASSWORD), verify=context).status_code

    wait_for(lambda: admin_status() == 200, "the admin listener to accept the certificate")
    wait_for(  # the SIP listener sees the new trusted CA at its next poll
        lambda: _sip_options_answer(server.sip_port, context) == b"SIP/2.0 200 OK",
        "the SIP listener to accept the certificate",
    )
    assert node.client_check.check(cert_file.read_bytes()).result.valid

    node.local_ca.revoke("users", format(cert.serial_number, "X"), reason="keyCompromise")
    checked = node.client_check.check(cert_file.read_bytes()).result
    assert checked.code == "revoked" and "local CA 'users'" in checked.reason
    wait_for(lambda: admin_status() == 403, "the admin listener to refuse the revoked certificate")
    refused = httpx.get(url, auth=("alice", PASSWORD), verify=context)
    assert "revoked" in refused.json()["detail"] and "keyCompromise" in refused.json()["detail"]
    wait_for(
        lambda: _sip_options_answer(server.sip_port, context) == b"",
        "the SIP listener to refuse the revoked certificate",
    )
    node.admin_security.reset()


def test_trusted_self_signed_peer_certificate_logs_in_and_checks_valid(
    node: Node, server: NodeServer, tmp_path: Path
) -> None:
    """A CUCM-style self-signed CA:TRUE certificate on the trusted list is a valid client of
    the admin listener and of the SIP listener, and `certway check` calls it valid."""
    cucm = cucm_certificate("alice")
    pem = cucm.public_bytes(serialization.Encoding.PEM)
    node.trusted_cas.add(pem)
    cert_file = write_file(tmp_path / "cucm.pem", pem)
    key_file = write_file(tmp_path / "cucm.key", private_key_pem(test_key("ec:p256", 901)))
    assert node.client_check.check(pem).result.valid
    node.admin_security.set(mode="certificate-validation")
    context = trust_context(node, client=(cert_file, key_file))
    url = f"https://127.0.0.1:{server.admin_port}/api/v1/status"
    wait_for(
        lambda: httpx.get(url, auth=("alice", PASSWORD), verify=context).status_code == 200,
        "the admin listener to accept the trusted self-signed certificate",
    )
    wait_for(
        lambda: _sip_options_answer(server.sip_port, context) == b"SIP/2.0 200 OK",
        "the SIP listener to accept the trusted self-signed certificate",
    )
    node.admin_security.reset()


def test_only_notifications_of_what_the_reload_reads_wake_it() -> None:
    """On PostgreSQL each commit notifies its topics to every peer. A certificate issued
    must not wake the reload loop (a reload per certificate on every peer); a revocation,
    a TLS or SIP change must, and so must a reconnection (every topic)."""
    from certway.serve import ADMIN_TOPICS, wakes_reload
    from certway.services.local_ca import LocalCA
    from certway.services.sip_settings import SipSettings
    from certway.store.topics import Topic

    assert not wakes_reload(frozenset({Topic.CA_ISSUED}))
    for topic in (*ADMIN_TOPICS, *SipSettings.LISTENER_TOPICS, *LocalCA.RECORD_TOPICS):
        assert wakes_reload(frozenset({topic})), topic
    assert wakes_reload(frozenset(Topic))


def test_the_servers_own_work_is_audited_as_the_system(tmp_path: Path) -> None:
    """What certway serve does on its own is audited as the system, never as the OS user who
    started it (the command line's actor): the scheduler's first CRL of a CA created before
    the start, the scheduled CRL source update (on the fetch pool) and a CRL re-signed for a
    reader of the publication listener. The CLI's own changes stay the OS user's."""
    now = dt.datetime.now(dt.UTC)  # the server runs on the real clock
    source_pki = Pki("Scheduled Source", at=now, index=960)
    node = Node.init(tmp_path / "d", fqdn=FQDN)
    try:
        node.local_ca.create_root("lab", "/CN=Lab Root")  # no CRL yet: the scheduler signs it
        node.trusted_cas.add(pem_of(source_pki.root, source_pki.intermediate))
        with LocalHttpServer({"/source.crl": der(source_pki.crl(days=30))}) as http:
            node.revocation.set_sources([f"{http.url}/source.crl"])
            node.revocation.set_schedule(daily_at="00:00", enabled=True)  # due at once

            def audited(action: str, target: str) -> AuditEntry | None:
                found = [
                    e for e in node.audit.entries() if (e.action, e.target) == (action, target)
                ]
                return found[-1] if found else None

            with running(node) as server:
                wait_for(lambda: audited("ca.crl.publish", "lab"), "the scheduler's first CRL")
                wait_for(lambda: audited("crl.update", "CRL sources"), "the scheduled update")
                node.local_ca.create_root("late", "/CN=Late Root")  # after the scheduler's round
                url = f"http://127.0.0.1:{server.publish_port}/crl/late.crl"
                assert httpx.get(url).status_code == 200
        entries = [
            audited("ca.crl.publish", "lab"),
            audited("crl.update", "CRL sources"),
            audited("ca.crl.publish", "late"),
        ]
        assert [(e.actor, e.via, e.outcome) if e else None for e in entries] == [
            ("certway", "system", "ok")
        ] * 3
        created = audited("ca.create-root", "late")
        assert created is not None and (created.actor, created.via) == (getpass.getuser(), "cli")
    finally:
        node.close()


def test_every_scheduled_job_acts_as_the_system(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each job of the scheduler's round (on the fetch pool or a worker thread) runs as the
    system: ACME renewals, the CRL source update, the local CRLs, the cluster heartbeat, the
    alarms."""
    seen: dict[str, Actor] = {}

    def recording(name: str, answer: object) -> object:
        def job(*_args: object) -> object:
            seen[name] = current_actor()
            return answer

        return job

    monkeypatch.setattr(node.acme, "run_if_due", recording("acme renewals", []))
    monkeypatch.setattr(node.revocation, "run_if_due", recording("CRL update", False))
    monkeypatch.setattr(node.local_ca, "cas", recording("local CRLs", []))
    monkeypatch.setattr(node.cluster, "heartbeat", recording("heartbeat", None))
    monkeypatch.setattr(node.alarms, "current", recording("alarms", []))
    with running(node, publish=False, sip=False):
        wait_for(lambda: len(seen) == 5, "a round of the scheduler")
    assert seen == dict.fromkeys(seen, SYSTEM)


def test_no_quiet_topic_is_one_the_reload_loop_needs() -> None:
    from certway.serve import RELOAD_TOPICS
    from certway.store.topics import QUIET_TOPICS

    # a quiet topic sends no notification on PostgreSQL: only polling would see it move
    assert not (QUIET_TOPICS & RELOAD_TOPICS)


def test_a_default_publication_url_naming_another_port_is_pointed_out() -> None:
    from certway.serve import publication_note
    from certway.services.node_settings import NodeConfig

    default = NodeConfig(fqdn="ca.example.com")
    note = publication_note(default, ("127.0.0.1", 9080))
    assert note is not None
    reason, url = note
    assert "http://ca.example.com:8080" in reason and "port 9080" in reason
    assert url == "http://ca.example.com:9080"
    assert publication_note(default, ("127.0.0.1", 8080)) is None  # it names this listener
    assert publication_note(default, None) is None  # no publication listener
    chosen = NodeConfig(fqdn="ca.example.com", publish_url="http://crl.example.com")
    assert publication_note(chosen, ("127.0.0.1", 9080)) is None  # set on purpose (a proxy)
