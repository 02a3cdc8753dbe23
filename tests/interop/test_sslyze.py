"""sslyze, as an auditor would run it, against a real ``certway serve``: the HTTPS admin
listener and, presenting a trusted client certificate, the SIP TLS listener, checked against
Mozilla's "intermediate" configuration (the default profile) and, with ``modern`` selected,
against Mozilla's "modern" one.

The only finding allowed is path validation of the node's certificate: it comes from the
factory's temporary CA, which no public trust store holds.

sslyze runs in an environment of its own (``tests/interop/sslyze-requirements.txt``, made by
``make deps-sslyze`` or on first use here): it pins a ``cryptography`` older than the one
certway's path validator needs, so it cannot share certway's environment.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import venv
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from certway.pki.csr import CsrForm, build_csr
from certway.pki.keys import private_key_pem
from certway.services.identities import TEMPORARY_CA
from certway.services.node import Node

from conftest import test_key, write
from serving import running

FQDN = "vcs.example.com"
HERE = Path(__file__).parent
ROOT = HERE.parent.parent
REQUIREMENTS = HERE / "sslyze-requirements.txt"
SCAN = HERE / "sslyze_scan.py"
PEM = serialization.Encoding.PEM
ONLY_ALLOWED = {"certificate_path_validation"}


def _sslyze_env() -> Path:
    """The Python of the sslyze environment, made once (under a lock: xdist workers)."""
    configured = os.environ.get("CERTWAY_SSLYZE_PYTHON")
    if configured:
        return Path(configured)
    env = ROOT / ".venv-sslyze"
    python = env / "bin" / "python"
    stamp = env / ".installed"
    with open(ROOT / ".venv-sslyze.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists() and stamp.read_text() == REQUIREMENTS.read_text():
            return python
        if not python.exists():
            venv.create(env, with_pip=True)
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "-r", str(REQUIREMENTS)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            pytest.skip(f"sslyze cannot be installed here: {done.stderr.strip()[-500:]}")
        stamp.write_text(REQUIREMENTS.read_text())
    return python


@pytest.fixture(scope="module")
def sslyze() -> Path:
    return _sslyze_env()


def scan(
    python: Path, port: int, config: str, client: tuple[Path, Path] | None = None
) -> dict[str, str]:
    """sslyze's findings for 127.0.0.1:``port`` against Mozilla's ``config``."""
    extra = [str(p) for p in client] if client else []
    done = subprocess.run(
        [str(python), str(SCAN), "127.0.0.1", str(port), FQDN, config, *extra],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout)
    assert "error" not in answer, answer["error"]
    issues: dict[str, str] = answer["issues"]
    return issues


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node.init(tmp_path / "d", fqdn=FQDN)
    yield n
    n.close()


def sip_client(node: Node, tmp_path: Path) -> tuple[Path, Path]:
    """A client certificate the SIP listener trusts (from the factory's temporary CA)."""
    key = test_key("ec:p256", 700)
    csr, _ = build_csr(key, CsrForm(common_name="peer.example.com"))
    result = node.local_ca.sign(TEMPORARY_CA, csr.public_bytes(PEM), profile="client", days=30)
    return (
        write(tmp_path / "peer.crt", result.pem(with_chain=True)),
        write(tmp_path / "peer.key", private_key_pem(key)),
    )


def short_lived_server_certificate(node: Node) -> None:
    """Mozilla's "modern" configuration wants certificates of 90 days at most."""
    key = test_key("ec:p256", 701)
    csr, _ = build_csr(key, CsrForm(common_name=FQDN, additional_names=("localhost",)))
    result = node.local_ca.sign(TEMPORARY_CA, csr.public_bytes(PEM), days=90)
    node.identities.upload("server", "", result.pem(with_chain=True), key_data=private_key_pem(key))


@pytest.mark.parametrize("profile", ["intermediate", "modern"])
def test_listeners_pass_mozillas_configuration(
    sslyze: Path, node: Node, tmp_path: Path, profile: str
) -> None:
    if profile == "modern":
        node.tls.set("admin-https", "modern")
        node.tls.set("sip-tls", "modern")
        short_lived_server_certificate(node)
    client = sip_client(node, tmp_path)
    with running(node, publish=False) as server, ThreadPoolExecutor(2) as pool:
        admin = pool.submit(scan, sslyze, server.admin_port, profile)
        sip = pool.submit(scan, sslyze, server.sip_port, profile, client)
        findings = {"admin HTTPS": admin.result(), "SIP TLS": sip.result()}
    for listener, issues in findings.items():
        assert set(issues) == ONLY_ALLOWED, f"{listener}: {issues}"
        assert FQDN in issues["certificate_path_validation"]


def test_the_scan_finds_what_the_profile_forbids(sslyze: Path, node: Node) -> None:
    """The check can fail: the "intermediate" listener is not "modern" (it accepts TLS 1.2)
    and the factory certificate lives longer than "modern" allows."""
    with running(node, publish=False, sip=False) as server:
        issues = scan(sslyze, server.admin_port, "modern")
    assert {"tls_versions", "ciphers", "maximum_certificate_lifespan"} <= set(issues)
