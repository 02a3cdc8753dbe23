"""The ACME client against Debian's ``pebble`` (the ACME CA) and ``pebble-challtestsrv`` (its
DNS, answering 127.0.0.1 for every name).

Each test runs a real ``certway serve`` (NodeServer) on free 127.0.0.1 ports, then a pebble of
its own whose validation ports point at that server: ``httpPort`` at the HTTP-01 responder,
``tlsPort`` at the HTTPS admin listener (TLS-ALPN-01). Pebble's own HTTPS certificate is
issued by a test CA made here; that CA goes into certway's trusted CA list. The ACME server is
judged like every server certway connects to (``ValidationState.server_refusal`` of the
``acme`` service: trusted list, revocation policy, host name), at the node's clock; renewal
runs on the node's fixed clock.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certway.clock import FixedClock, SystemClock
from certway.errors import FetchError, PolicyViolation
from certway.pki.issue import Issuer
from certway.services.identities import CsrOptions
from certway.services.node import Node
from waiting import wait_for

from conftest import test_key
from pkitools import DAY, Pki, name
from serving import running

pytestmark = pytest.mark.interop

FQDN = "vcs.example.com"


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    with contextlib.closing(socket.socket()) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + 30
    while not listening(port):
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {log.read_text(errors='replace')[-2000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not listen within 30 s")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def challtestsrv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """pebble-challtestsrv as DNS only: every A query answers 127.0.0.1, no AAAA."""
    binary = shutil.which("pebble-challtestsrv")
    if binary is None:
        pytest.skip("pebble-challtestsrv is not installed (make deps-system installs pebble)")
    dns, management = free_port(), free_port()
    log = tmp_path_factory.mktemp("challtestsrv") / "log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [
                binary,
                "-dns01",
                f"127.0.0.1:{dns}",
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-doh",
                "",
                "-management",
                f"127.0.0.1:{management}",
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
            ]
            if _has_doh_flag(binary)
            else [
                binary,
                "-dns01",
                f"127.0.0.1:{dns}",
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-management",
                f"127.0.0.1:{management}",
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_port(management, proc, "pebble-challtestsrv", log)
        yield dns
    finally:
        proc.kill()
        proc.wait(10)


def _has_doh_flag(binary: str) -> bool:
    run = subprocess.run([binary, "-h"], capture_output=True, text=True, check=False)
    return "-doh" in run.stdout + run.stderr


@pytest.fixture(scope="module")
def pebble_tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, bytes]:
    """Pebble's HTTPS certificate (127.0.0.1, localhost) from a test CA; the CA's PEM. It is
    valid for years: the node's clock, which the renewal test moves years ahead (pebble's
    certificates last five), is the time the ACME server's certificate is judged at."""
    pki = Pki("Pebble HTTPS", at=SystemClock().now(), index=70)
    leaf = pki.leaf(
        "localhost", alt_names=LOCAL_NAMES, issuer=pki.root_issuer, profile="server", days=2500
    )
    return (
        *_tls_files(tmp_path_factory.mktemp("pebble-tls"), pki, leaf),
        pki.root.public_bytes(serialization.Encoding.PEM),
    )


LOCAL_NAMES: list[x509.GeneralName] = [
    x509.DNSName("localhost"),
    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
]


def _tls_files(
    where: Path, pki: Pki, leaf: x509.Certificate, chain: Sequence[x509.Certificate] = ()
) -> tuple[Path, Path]:
    """``leaf`` (then ``chain``, which pebble presents after it) and the PKI's leaf key as
    pebble's certificate and key files."""
    cert = where / "cert.pem"
    key = where / "key.pem"
    cert.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (leaf, *chain)))
    key.write_bytes(
        pki.leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key.chmod(0o600)
    return cert, key


Pebble = Callable[..., str]


@pytest.fixture
def pebble(
    tmp_path: Path, challtestsrv: int, pebble_tls: tuple[Path, Path, bytes]
) -> Iterator[Pebble]:
    """Start pebble validating against the given ports; returns its directory URL."""
    binary = shutil.which("pebble")
    if binary is None:
        pytest.skip("pebble is not installed (make deps-system installs pebble)")
    procs: list[subprocess.Popen[bytes]] = []

    def start(*, http_port: int, tls_port: int, tls: tuple[Path, Path] | None = None) -> str:
        """``tls``: pebble's HTTPS certificate and key files instead of ``pebble_tls``'s."""
        port, management = free_port(), free_port()
        cert, key = tls or pebble_tls[:2]
        config = tmp_path / f"pebble-{port}.json"
        config.write_text(
            json.dumps(
                {
                    "pebble": {
                        "listenAddress": f"127.0.0.1:{port}",
                        "managementListenAddress": f"127.0.0.1:{management}",
                        "certificate": str(cert),
                        "privateKey": str(key),
                        "httpPort": http_port,
                        "tlsPort": tls_port,
                        "ocspResponderURL": "",
                        "externalAccountBindingRequired": False,
                    }
                }
            )
        )
        log = tmp_path / f"pebble-{port}.log"
        env = {
            **os.environ,
            "PEBBLE_VA_NOSLEEP": "1",
            "PEBBLE_WFE_NONCEREJECT": "0",
            "PEBBLE_AUTHZREUSE": "0",
        }
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                [binary, "-config", str(config), "-dnsserver", f"127.0.0.1:{challtestsrv}"],
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=env,
            )
        procs.append(proc)
        _wait_port(port, proc, "pebble", log)
        return f"https://127.0.0.1:{port}/dir"

    yield start
    for proc in procs:
        proc.kill()
        proc.wait(10)


@pytest.fixture
def node(tmp_path: Path, pebble_tls: tuple[Path, Path, bytes]) -> Iterator[Node]:
    clock = FixedClock(SystemClock().now())
    n = Node.init(tmp_path / "node", clock, fqdn=FQDN)
    n.trusted_cas.add(pebble_tls[2])
    yield n
    n.close()


def _presented(port: int, server_name: str) -> x509.Certificate:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def test_http01_signs_the_server_csr_and_it_goes_live_without_restart(
    node: Node, pebble: Pebble
) -> None:
    with running(node, sip=False, publish=False, acme_http=True) as server:
        directory = pebble(http_port=server.acme_http_port, tls_port=free_port())
        account = node.acme.create_account(directory, "admin@example.com", accept_terms=True)
        assert account.status == "valid" and account.uri.startswith("https://127.0.0.1:")
        assert node.acme.refresh_account().status == "valid"
        node.identities.generate_csr("server", "", CsrOptions(key_type="ec:p256"))
        before = node.identities.active("server")
        assert before is not None

        result = node.acme.sign("server")

        assert result["deployed"] is True
        live = node.identities.active("server")
        assert live is not None and live.version == before.version + 1
        assert "Pebble" in live.certificate.issuer.rfc4514_string()
        assert node.identities.info("server").source == "acme"
        assert node.identities.pending_csr("server") is None
        # The running listener presents it (hot reload), and the temporary-certificate alarm
        # is gone.
        wait_for(
            lambda: _presented(server.admin_port, FQDN) == live.certificate,
            "the admin listener to present the ACME certificate",
        )
        assert not any(a.id == "temporary-certificate" for a in node.alarms.current())
        # The HTTP-01 responder answers nothing else, and no challenge is left published.
        import httpx

        base = f"http://127.0.0.1:{server.acme_http_port}"
        assert httpx.get(f"{base}/").status_code == 404
        assert httpx.get(f"{base}/api/v1/status").status_code == 404
        assert httpx.get(f"{base}/.well-known/acme-challenge/abc").status_code == 404
        # Revocation at the CA, with the account key.
        revoked = node.acme.revoke("server", reason="superseded")
        assert revoked["serial"] == format(live.certificate.serial_number, "X")
        with pytest.raises(FetchError, match="refused the revocation"):
            node.acme.revoke("server")  # already revoked: pebble says so
        deactivated = node.acme.deactivate_account()
        assert deactivated.status == "deactivated"
        with pytest.raises(PolicyViolation, match="deactivated"):
            node.acme.renew_now("server")


def test_tls_alpn01_signs_a_domain_csr_through_the_admin_listener(
    node: Node, pebble: Pebble
) -> None:
    with running(node, sip=False, publish=False) as server:
        directory = pebble(http_port=free_port(), tls_port=server.admin_port)
        node.acme.create_account(directory, "admin@example.com", accept_terms=True)
        node.acme.set_schedule(auto_deploy=False)
        node.identities.add_domain("conf.example.com")
        node.identities.generate_csr("domain", "conf.example.com", CsrOptions(key_type="ec:p256"))

        result = node.acme.sign("domain", "conf.example.com", challenge="tls-alpn-01")

        assert result["deployed"] is False
        assert node.identities.active("domain", "conf.example.com") is None  # staged only
        assert "domain:conf.example.com" in node.acme.pending()
        deployed = node.acme.deploy("domain", "conf.example.com")
        assert deployed["version"] == 1
        live = node.identities.active("domain", "conf.example.com")
        assert live is not None
        wait_for(
            lambda: _presented(server.admin_port, "conf.example.com") == live.certificate,
            "the domain certificate on its SNI name",
        )
        assert node.acme.pending() == {}


def test_renewal_runs_on_the_fixed_clock_and_a_failing_challenge_keeps_the_live_certificate(
    node: Node, pebble: Pebble
) -> None:
    clock = node.clock
    assert isinstance(clock, FixedClock)
    # The server's scheduler ticks every 0.3 s: it renews by itself once the clock says so.
    with running(node, sip=False, publish=False, acme_http=True, scheduler_interval=0.3) as server:
        directory = pebble(http_port=server.acme_http_port, tls_port=free_port())
        node.acme.create_account(directory, "admin@example.com", accept_terms=True)
        node.identities.generate_csr("server", "", CsrOptions(key_type="ec:p256"))
        node.acme.sign("server")
        first = node.identities.active("server")
        assert first is not None
        assert node.acme.run_if_due() == []  # just issued: not due
        due = node.acme.renewal_due("server", "")
        assert due is not None
        validity = first.certificate.not_valid_after_utc - first.certificate.not_valid_before_utc
        assert due == first.certificate.not_valid_before_utc + validity * 2 / 3

        clock.advance(due - clock.now() + dt.timedelta(minutes=1))
        wait_for(
            lambda: node.identities.active("server") != first,
            "the scheduler to renew the certificate",
            timeout=60,
        )
        second = node.identities.active("server")
        assert second is not None and second.version == first.version + 1
        assert second.certificate.serial_number != first.certificate.serial_number
        assert second.key_id != first.key_id  # a new key for each renewal
        assert node.acme.status()["certificates"][0]["failures"] == 0

    # The HTTP-01 responder is gone: pebble cannot validate, the live certificate stays.
    clock.advance(
        dt.timedelta(days=(second.certificate.not_valid_after_utc - clock.now()).days - 10)
    )
    with pytest.raises(FetchError, match="validation failed"):
        node.acme.renew_now("server")
    still = node.identities.active("server")
    assert still is not None and still.version == second.version
    alarms = {a.id: a for a in node.alarms.current()}
    assert "acme-renewal:server" in alarms
    assert "failed 1 time" in alarms["acme-renewal:server"].text
    assert alarms["acme-renewal-expiring:server"].severity == "critical"
    status = node.acme.status()["certificates"][0]
    assert status["failures"] == 1 and status["next_attempt"] is not None
    # The scheduler waits for the back-off before the next attempt.
    assert node.acme.run_if_due() == []
    assert node.acme.status()["certificates"][0]["failures"] == 1


def _refusal(node: Node, cert: x509.Certificate) -> str:
    """What the node's one validation path says of ``cert`` as the ACME server 127.0.0.1."""
    refusal = node.peer_validation.state("acme").server_refusal(
        cert.public_bytes(serialization.Encoding.DER),
        name="127.0.0.1",
        at=node.clock.now(),
        server="the ACME server",
    )
    assert refusal is not None
    return refusal


def test_an_acme_server_not_in_the_trusted_list_is_refused(
    tmp_path: Path, pebble: Pebble, pebble_tls: tuple[Path, Path, bytes]
) -> None:
    n = Node.init(tmp_path / "untrusting", FixedClock(SystemClock().now()), fqdn=FQDN)
    try:
        directory = pebble(http_port=free_port(), tls_port=free_port())
        with pytest.raises(FetchError) as refused:
            n.acme.create_account(directory, "admin@example.com", accept_terms=True)
        # The words every outbound client uses (syslog, LDAP): the node's validation's.
        pebble_cert = x509.load_pem_x509_certificate(pebble_tls[0].read_bytes())
        assert str(refused.value) == (
            f"cannot read the ACME directory {directory}: {_refusal(n, pebble_cert)}"
        )
        assert str(refused.value).endswith(
            "the ACME server's certificate CN=localhost is refused: "
            "issuer CN=Pebble HTTPS Root is not in the trusted CA list"
        )
        assert n.acme.account() is None
    finally:
        n.close()


def test_an_acme_server_revoked_by_a_held_crl_is_refused_per_the_acme_policy(
    node: Node, pebble: Pebble, tmp_path: Path
) -> None:
    """Revocation of the ACME server's certificate counts as for every peer: a CRL the node
    holds revokes it; without one, the ``acme`` policy's fallback decides (soft or hard)."""
    pki = Pki("Revoked ACME", at=SystemClock().now(), index=73)
    leaf = pki.leaf("localhost", alt_names=LOCAL_NAMES, issuer=pki.root_issuer, profile="server")
    node.trusted_cas.add(pki.root.public_bytes(serialization.Encoding.PEM))
    crl = pki.crl([(leaf, "keyCompromise")], issuer=pki.root_issuer)
    node.revocation.upload_manual(crl.public_bytes(serialization.Encoding.PEM))
    tls = tmp_path / "revoked-tls"
    tls.mkdir()
    directory = pebble(http_port=free_port(), tls_port=free_port(), tls=_tls_files(tls, pki, leaf))

    with pytest.raises(FetchError) as revoked:
        node.acme.create_account(directory, "admin@example.com", accept_terms=True)
    message = str(revoked.value)
    assert message.startswith(
        f"cannot read the ACME directory {directory}: the ACME server's certificate "
        "CN=localhost is refused: the certificate is revoked on "
    )
    assert "(keyCompromise) by CRL #1 from the manual CRL upload" in message
    assert node.acme.account() is None
    (last,) = node.audit.entries(limit=1)  # the refusal, in the audit log with its reason
    assert (last.action, last.outcome, last.detail["error"]) == (
        "acme.account.create",
        "refused",
        message,
    )

    # No CRL for its CA: the status is unknown, and the acme policy says what that means.
    node.revocation.remove_manual()
    node.revocation.set_policy("acme", fallback="revoked")
    with pytest.raises(FetchError, match="revocation status of the certificate cannot be"):
        node.acme.create_account(directory, "admin@example.com", accept_terms=True)
    assert node.acme.account() is None
    node.revocation.set_policy("acme", fallback="not-revoked")
    assert node.acme.create_account(directory, "admin@example.com", accept_terms=True).status == (
        "valid"
    )


def test_an_acme_server_presenting_its_intermediates_needs_only_its_root_trusted(
    node: Node, pebble: Pebble, tmp_path: Path
) -> None:
    """Let's Encrypt's case: ISRG Root X1 is trusted, the server presents the intermediate
    of the day (R10, R11, …). When the CA rotates to another intermediate, the same trusted
    list (the root alone) still accepts it (a second node, as the first has its account)."""
    pki = Pki("Rotating ACME", at=SystemClock().now(), index=79)
    node.trusted_cas.add(pki.root.public_bytes(serialization.Encoding.PEM))
    leaf = pki.leaf("localhost", alt_names=LOCAL_NAMES, profile="server")  # from R10, say
    first = tmp_path / "first-tls"
    first.mkdir()
    directory = pebble(
        http_port=free_port(),
        tls_port=free_port(),
        tls=_tls_files(first, pki, leaf, [pki.intermediate]),
    )
    assert node.acme.create_account(directory, "admin@example.com", accept_terms=True).status == (
        "valid"
    )
    # the CA rotates: a new intermediate under the same root, never added to a trusted list
    now = SystemClock().now()
    rotated_key = test_key("ec:p256", 82)
    rotated = pki.root_issuer.issue(
        rotated_key.public_key(),
        name("Rotating ACME Issuing 2"),
        profile="sub-ca",
        not_before=now - DAY,
        not_after=now + 300 * DAY,
    )
    leaf2 = pki.leaf(
        "localhost",
        alt_names=LOCAL_NAMES,
        profile="server",
        issuer=Issuer(rotated, rotated_key),
    )
    alone = tmp_path / "alone-tls"
    alone.mkdir()
    second = tmp_path / "second-tls"
    second.mkdir()
    leaf_only = pebble(
        http_port=free_port(), tls_port=free_port(), tls=_tls_files(alone, pki, leaf2)
    )
    rotated_chain = pebble(
        http_port=free_port(), tls_port=free_port(), tls=_tls_files(second, pki, leaf2, [rotated])
    )
    other = Node.init(tmp_path / "other", FixedClock(now), fqdn=FQDN)
    try:
        other.trusted_cas.add(pki.root.public_bytes(serialization.Encoding.PEM))
        # the server presenting its leaf alone is refused: the path comes from the chain
        with pytest.raises(FetchError) as refused:
            other.acme.create_account(leaf_only, "admin@example.com", accept_terms=True)
        assert str(refused.value).endswith(
            "the ACME server's certificate CN=localhost is refused: "
            "issuer CN=Rotating ACME Issuing 2 is not in the trusted CA list"
        )
        account = other.acme.create_account(rotated_chain, "admin@example.com", accept_terms=True)
        assert account.status == "valid"
    finally:
        other.close()


def test_an_acme_server_whose_certificate_does_not_name_its_host_is_refused(
    node: Node, pebble: Pebble, tmp_path: Path
) -> None:
    pki = Pki("Misnamed ACME", at=SystemClock().now(), index=76)
    leaf = pki.leaf("acme.example", issuer=pki.root_issuer, profile="server")
    node.trusted_cas.add(pki.root.public_bytes(serialization.Encoding.PEM))
    tls = tmp_path / "misnamed-tls"
    tls.mkdir()
    directory = pebble(http_port=free_port(), tls_port=free_port(), tls=_tls_files(tls, pki, leaf))
    with pytest.raises(FetchError) as refused:
        node.acme.create_account(directory, "admin@example.com", accept_terms=True)
    assert str(refused.value).endswith(
        "the ACME server's certificate CN=acme.example is refused: the certificate does not "
        "name '127.0.0.1' (it names DNS:acme.example)"
    )
    assert node.acme.account() is None


def test_the_cli_signs_through_a_running_server(
    tmp_path: Path, pebble: Pebble, pebble_tls: tuple[Path, Path, bytes]
) -> None:
    """``certway acme …`` in one process, ``certway serve`` in another: the challenges pass
    through the store, the served certificate changes without a restart."""
    from conftest import Cli

    cli = Cli(tmp_path / "data")
    cli.ok("init", "--fqdn", FQDN)
    ca = tmp_path / "pebble-https-ca.pem"
    ca.write_bytes(pebble_tls[2])
    cli.ok("trust", "add", ca)
    node = Node.open(tmp_path / "data")
    try:
        with running(node, sip=False, publish=False, acme_http=True) as server:
            directory = pebble(http_port=free_port(), tls_port=server.admin_port)
            refused = cli("acme", "account", "create", "--directory", directory, "--email", "x")
            assert refused.exit_code == 2 and "'x' is not an e-mail address" in refused.stderr
            terms = cli(
                "acme", "account", "create", "--directory", directory,
                "--email", "admin@example.com",
            )  # fmt: skip
            assert terms.exit_code == 2 and "accept the terms of service" in terms.stderr
            assert "(--accept-terms)" in terms.stderr
            assert cli.ok("acme", "account", "show").stdout.strip() == "no ACME account"
            created = cli.ok(
                "acme", "account", "create", "--directory", directory,
                "--email", "admin@example.com", "--accept-terms",
            )  # fmt: skip
            assert "ACME account created" in created.stdout
            shown = json.loads(cli.ok("acme", "account", "show", "--json").stdout)
            assert shown["status"] == "valid" and shown["key"].startswith("EC")
            assert "PRIVATE" not in created.stdout + cli.ok("acme", "status", "--json").stdout
            no_csr = cli("acme", "sign")
            assert no_csr.exit_code == 2 and "no CSR is pending" in no_csr.stderr
            cli.ok("server-cert", "csr", "generate", "--key-type", "ec:p256")
            signed = cli.ok("acme", "sign", "--challenge", "tls-alpn-01")
            assert "the server certificate is live" in signed.stdout
            live = node.identities.active("server")
            assert live is not None and "Pebble" in live.certificate.issuer.rfc4514_string()
            wait_for(
                lambda: _presented(server.admin_port, FQDN) == live.certificate,
                "the admin listener to present the ACME certificate",
            )
            status = json.loads(cli.ok("acme", "status", "--json").stdout)
            assert [c["slot"] for c in status["certificates"]] == ["server"]
            assert status["certificates"][0]["challenge"] == "tls-alpn-01"
            schedule = cli.ok("acme", "schedule", "--days", "sat,sun", "--time", "04:00")
            assert "sat,sun from 04:00 UTC" in schedule.stdout
            bad = cli("acme", "schedule", "--days", "someday")
            assert bad.exit_code == 2 and "days must be some of" in bad.stderr
            revoked = cli.ok("acme", "revoke", "--reason", "superseded")
            assert f"revoked serial {format(live.certificate.serial_number, 'X')}" in revoked.stdout
            assert cli.ok("acme", "account", "deactivate").exit_code == 0
    finally:
        node.close()
