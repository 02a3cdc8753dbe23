"""Real ACME clients against certway's ACME server: ``certbot certonly --standalone`` (PyPI
certbot) and Debian's ``lego`` with HTTP-01, TLS-ALPN-01 and DNS-01, including renewal and
revocation. Names resolve through Debian's ``pebble-challtestsrv`` (every A query answers
127.0.0.1; TXT records are set through its management API): certway validates with
``--dns-server`` pointing at it, lego checks DNS-01 propagation with ``--dns.resolvers``."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certway.services.acme_server import AcmeSettings
from certway.services.node import Node
from waiting import wait_for

from serving import running

pytestmark = [pytest.mark.interop, pytest.mark.slow]

CA = "acme-interop"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def needs(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.fail(f"{binary} is not installed: run 'make deps-system'")
    return path


@dataclass
class Env:
    node: Node
    directory: str
    bundle: Path
    http_port: int
    tls_port: int
    dns: str  # 127.0.0.1:PORT of pebble-challtestsrv
    management: str  # its management API
    tmp: Path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("acme-interop")
    dns_port, management_port = free_port(socket.SOCK_DGRAM), free_port()
    challtestsrv = subprocess.Popen(
        [
            needs("pebble-challtestsrv"),
            "-defaultIPv4",
            "127.0.0.1",
            "-defaultIPv6",
            "",
            "-dns01",
            f"127.0.0.1:{dns_port}",
            "-management",
            f"127.0.0.1:{management_port}",
            "-http01",
            "",
            "-https01",
            "",
            "-tlsalpn01",
            "",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    management = f"http://127.0.0.1:{management_port}"

    def management_up() -> bool:
        try:
            httpx.post(f"{management}/clear-txt", json={"host": "probe.example."}, timeout=1)
        except httpx.HTTPError:
            return False
        return True

    node = Node.init(tmp / "d", fqdn="vcs.example.com")
    try:
        wait_for(management_up, "pebble-challtestsrv")
        http_port, tls_port = free_port(), free_port()
        node.local_ca.create_root(CA, "/CN=certway ACME interop root")
        node.acme_server.enable(
            CA,
            AcmeSettings(
                allow=r"[a-z0-9-]+\.example\.net",
                dns_server=f"127.0.0.1:{dns_port}",
                http01_port=http_port,
                tls_alpn01_port=tls_port,
                days=30,
            ),
        )
        bundle = tmp / "admin-ca.pem"
        bundle.write_bytes(
            b"".join(
                c.public_bytes(serialization.Encoding.PEM)
                for c in node.trusted_cas.snapshot().certificates
            )
        )
        with running(node, publish=False, sip=False) as server:
            yield Env(
                node,
                f"https://localhost:{server.admin_port}/acme/{CA}/directory",
                bundle,
                http_port,
                tls_port,
                f"127.0.0.1:{dns_port}",
                management,
                tmp,
            )
    finally:
        node.close()
        challtestsrv.terminate()
        challtestsrv.wait(timeout=10)


def run(args: list[str], env: dict[str, str], *, expect_ok: bool = True) -> str:
    result = subprocess.run(
        args, capture_output=True, text=True, env={**os.environ, **env}, timeout=300, check=False
    )
    output = result.stdout + result.stderr
    if expect_ok:
        assert result.returncode == 0, output
    return output


def issued_for(node: Node, name: str) -> list[str]:
    """The inventory status of the CA's certificates naming ``name``, oldest first."""
    return [i.status for i in node.local_ca.issued(CA) if f"DNS:{name}" in i.alt_names]


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificates(path.read_bytes())[0]


def certbot_script() -> str:
    """certbot of this environment (the ``test`` extra)."""
    path = Path(sys.executable).parent / "certbot"
    if not path.exists():
        pytest.fail("certbot is not installed: pip install -e '.[test]'")
    return str(path)


# -- certbot -------------------------------------------------------------------------------------
def test_certbot_standalone_issue_renew_revoke(env: Env) -> None:
    name = "certbot.example.net"
    base = env.tmp / "certbot"
    certbot = [
        certbot_script(),
        "--non-interactive",
        "--config-dir",
        str(base / "config"),
        "--work-dir",
        str(base / "work"),
        "--logs-dir",
        str(base / "logs"),
        "--server",
        env.directory,
    ]
    environ = {"REQUESTS_CA_BUNDLE": str(env.bundle)}
    run(
        [
            *certbot,
            "certonly",
            "--standalone",
            "--agree-tos",
            "-m",
            "ops@example.net",
            "--http-01-port",
            str(env.http_port),
            "--http-01-address",
            "127.0.0.1",
            "-d",
            name,
        ],
        environ,
    )
    live = base / "config" / "live" / name
    first = load_cert(live / "cert.pem")
    assert first.issuer == env.node.local_ca.certificate(CA).subject
    chain = x509.load_pem_x509_certificates((live / "fullchain.pem").read_bytes())
    assert chain[0] == first
    assert issued_for(env.node, name) == ["valid"]
    accounts = env.node.acme_server.show(CA).accounts
    [item] = [i for i in env.node.local_ca.issued(CA) if f"DNS:{name}" in i.alt_names]
    assert item.acme_account in {a.id for a in accounts}

    run(
        [
            *certbot,
            "renew",
            "--force-renewal",
            "--no-random-sleep-on-renew",
            "--http-01-port",
            str(env.http_port),
            "--http-01-address",
            "127.0.0.1",
        ],
        environ,
    )
    second = load_cert(live / "cert.pem")
    assert second.serial_number != first.serial_number
    assert issued_for(env.node, name) == ["valid", "valid"]

    run(
        [
            *certbot,
            "revoke",
            "--cert-path",
            str(live / "cert.pem"),
            "--reason",
            "superseded",
            "--no-delete-after-revoke",
        ],
        environ,
    )
    statuses = {
        i.serial: (i.status, i.reason)
        for i in env.node.local_ca.issued(CA)
        if f"DNS:{name}" in i.alt_names
    }
    assert statuses[f"{second.serial_number:X}"] == ("revoked", "superseded")
    assert statuses[f"{first.serial_number:X}"] == ("valid", None)
    crl = x509.load_der_x509_crl(env.node.local_ca.current_crl(CA).der)
    assert crl.get_revoked_certificate_by_serial_number(second.serial_number) is not None


def test_certbot_name_not_allowed_is_refused(env: Env) -> None:
    base = env.tmp / "certbot-refused"
    output = run(
        [
            certbot_script(),
            "--non-interactive",
            "--config-dir",
            str(base / "config"),
            "--work-dir",
            str(base / "work"),
            "--logs-dir",
            str(base / "logs"),
            "--server",
            env.directory,
            "certonly",
            "--standalone",
            "--agree-tos",
            "--register-unsafely-without-email",
            "--http-01-port",
            str(env.http_port),
            "-d",
            "intruder.example.org",
        ],
        {"REQUESTS_CA_BUNDLE": str(env.bundle)},
        expect_ok=False,
    )
    assert "rejectedIdentifier" in output or "not a name this server issues for" in output
    assert issued_for(env.node, "intruder.example.org") == []


# -- lego ----------------------------------------------------------------------------------------
def lego(env: Env, path: Path, name: str, *args: str) -> list[str]:
    return [
        needs("lego"),
        "--server",
        env.directory,
        "--email",
        "ops@example.net",
        "--accept-tos",
        "--path",
        str(path),
        "--domains",
        name,
        "--dns.resolvers",
        env.dns,
        *args,
    ]


def lego_env(env: Env) -> dict[str, str]:
    return {"LEGO_CA_CERTIFICATES": str(env.bundle)}


@pytest.mark.parametrize("challenge", ["http", "tls"])
def test_lego_issue_renew_revoke(env: Env, challenge: str) -> None:
    name = f"lego-{challenge}.example.net"
    path = env.tmp / f"lego-{challenge}"
    solver = (
        ["--http", "--http.port", f"127.0.0.1:{env.http_port}"]
        if challenge == "http"
        else ["--tls", "--tls.port", f"127.0.0.1:{env.tls_port}"]
    )
    run([*lego(env, path, name, *solver), "run"], lego_env(env))
    cert_file = path / "certificates" / f"{name}.crt"
    first = load_cert(cert_file)
    assert issued_for(env.node, name) == ["valid"]

    run(
        [*lego(env, path, name, *solver), "renew", "--days", "45", "--no-random-sleep"],
        lego_env(env),
    )
    second = load_cert(cert_file)
    assert second.serial_number != first.serial_number
    assert issued_for(env.node, name) == ["valid", "valid"]

    run([*lego(env, path, name, *solver), "revoke", "--keep"], lego_env(env))
    statuses = {i.serial: i.status for i in env.node.local_ca.issued(CA)}
    assert statuses[f"{second.serial_number:X}"] == "revoked"
    assert statuses[f"{first.serial_number:X}"] == "valid"


def test_lego_dns01(env: Env) -> None:
    name = "lego-dns.example.net"
    path = env.tmp / "lego-dns"
    script = env.tmp / "set-txt.sh"
    script.write_text(
        "#!/bin/sh\n"
        'case "$1" in\n'
        f'  present) curl -fsS -d "{{\\"host\\":\\"$2\\",\\"value\\":\\"$3\\"}}" '
        f"{env.management}/set-txt ;;\n"
        f'  cleanup) curl -fsS -d "{{\\"host\\":\\"$2\\"}}" {env.management}/clear-txt ;;\n'
        "esac\n"
    )
    script.chmod(0o755)
    needs("curl")
    run(
        [*lego(env, path, name, "--dns", "exec", "--dns.disable-cp"), "run"],
        {**lego_env(env), "EXEC_PATH": str(script), "EXEC_PROPAGATION_TIMEOUT": "30"},
    )
    cert = load_cert(path / "certificates" / f"{name}.crt")
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == [name]
    assert issued_for(env.node, name) == ["valid"]
