"""The Expressway flow end to end, through the CLI, with a real external CA run by openssl.

``init`` → temporary-certificate alarm → ``server-cert csr generate`` → ``csr show --pem`` →
an openssl CA (not certway's) signs it with ``openssl x509 -req -copy_extensions copy`` →
``trust add`` → ``server-cert upload`` → ``show`` reports the new certificate and the alarm is
gone. All along, the CSR's private key never appears in any output or any file outside the
encrypted store.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from certway.pki.keys import PrivateKey, private_key_der
from certway.store.db import Store
from certway.store.repositories import KeyRepository, SlotRepository

from conftest import Cli, CliResult, write

pytestmark = pytest.mark.interop


def run(openssl: str, cwd: Path, *args: str | Path) -> str:
    proc = subprocess.run(
        [openssl, *[str(a) for a in args]],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, f"openssl {' '.join(map(str, args))}:\n{proc.stderr}"
    return proc.stdout + proc.stderr


class ExternalCa:
    """A two-level CA run by the openssl binary alone: root (self-signed) → issuing CA."""

    def __init__(self, openssl: str, folder: Path) -> None:
        self.openssl = openssl
        self.folder = folder
        folder.mkdir()
        write(
            folder / "ca.ext",
            b"basicConstraints=critical,CA:TRUE,pathlen:0\n"
            b"keyUsage=critical,keyCertSign,cRLSign\n"
            b"subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
        )
        write(
            folder / "leaf.ext",
            b"basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
            b"subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
        )
        run(
            openssl, folder, "req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:P-256", "-nodes", "-keyout", "root.key", "-out", "root.pem",
            "-subj", "/O=External Corp/CN=External Root CA", "-days", "3650", "-sha256",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip
        run(
            openssl, folder, "req", "-new", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:P-256", "-nodes", "-keyout", "issuing.key", "-out", "issuing.csr",
            "-subj", "/O=External Corp/CN=External Issuing CA",
        )  # fmt: skip
        run(
            openssl, folder, "x509", "-req", "-in", "issuing.csr", "-CA", "root.pem",
            "-CAkey", "root.key", "-CAcreateserial", "-out", "issuing.pem", "-days", "1825",
            "-sha256", "-extfile", "ca.ext",
        )  # fmt: skip
        self.root = folder / "root.pem"
        self.issuing = folder / "issuing.pem"

    def sign(self, csr: Path, out: Path) -> Path:
        run(
            self.openssl, self.folder, "x509", "-req", "-in", csr, "-CA", self.issuing,
            "-CAkey", "issuing.key", "-CAcreateserial", "-out", out, "-days", "397",
            "-sha256", "-copy_extensions", "copy", "-extfile", "leaf.ext",
        )  # fmt: skip
        return out


def secrets_of(key: PrivateKey) -> list[bytes]:
    """Every form the key could leak in: PKCS#8 DER and PEM (body lines), SEC1 DER, scalar."""
    pkcs8_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    body = b"".join(pkcs8_pem.splitlines()[1:-1])
    sec1 = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    scalar = key.private_numbers().private_value.to_bytes(32, "big")
    return [
        private_key_der(key),
        pkcs8_pem,
        body,
        *pkcs8_pem.splitlines()[1:-1],  # each 64-character line of the PEM body
        sec1,
        base64.b64encode(sec1),
        scalar,
        scalar.hex().encode(),
        scalar.hex().upper().encode(),
        ":".join(f"{b:02x}" for b in scalar).encode(),  # openssl -text style
    ]


def test_expressway_flow_with_an_external_openssl_ca(openssl: str, tmp_path: Path) -> None:
    cli = Cli(tmp_path / "data")
    outputs: list[CliResult] = []

    def ok(*args: str | Path) -> CliResult:
        result = cli.ok(*args)
        outputs.append(result)
        return result

    ok("init", "--fqdn", "vcs.example.com")
    before = json.loads(ok("server-cert", "show", "--json").stdout)
    assert before["temporary"] is True and before["version"] == 1
    alarms = json.loads(ok("alarms", "--json").stdout)
    assert "temporary-certificate" in [a["id"] for a in alarms]
    assert "temporary one issued by the factory CA" in ok("alarms").stdout

    generated = ok(
        "server-cert", "csr", "generate", "--key-type", "ec:p256",
        "--add-san", "vcs-alt.example.com,192.0.2.10", "--org", "Acme Ltd", "--country", "GB",
        "--locality", "London",
    )  # fmt: skip
    assert "CSR generated for vcs.example.com" in generated.stdout
    csr_pem = ok("server-cert", "csr", "show", "--pem").stdout_bytes
    csr_file = write(tmp_path / "vcs.csr", csr_pem)
    csr = x509.load_pem_x509_csr(csr_pem)
    assert csr.subject.rfc4514_string() == "CN=vcs.example.com,O=Acme Ltd,L=London,C=GB"
    # openssl reads it and checks its self-signature.
    checked = run(openssl, tmp_path, "req", "-in", csr_file, "-verify", "-noout")
    assert "self-signature verify OK" in checked
    # The pending CSR does not disturb the active certificate.
    assert json.loads(ok("server-cert", "show", "--json").stdout)["version"] == 1

    ca = ExternalCa(openssl, tmp_path / "external-ca")
    signed = ca.sign(csr_file, tmp_path / "vcs.pem")
    ok("trust", "add", ca.root)
    uploaded = ok("server-cert", "upload", signed, "--chain", ca.issuing)
    assert "activated version 2" in uploaded.stdout

    shown = json.loads(ok("server-cert", "show", "--json").stdout)
    assert shown["version"] == 2
    assert shown["issuer"] == "O=External Corp, CN=External Issuing CA"
    assert shown["subject"] == "C=GB, L=London, O=Acme Ltd, CN=vcs.example.com"
    assert shown["chain"] == ["O=External Corp, CN=External Issuing CA"]
    assert shown["temporary"] is False and shown["source"] == "upload"
    assert shown["warnings"] == []
    assert shown["alt_names"] == [
        "DNS:vcs.example.com",
        "DNS:vcs-alt.example.com",
        "IP:192.0.2.10",
    ]
    # What the node serves is what openssl issued, with the issuing CA behind it.
    served = x509.load_pem_x509_certificates(shown["pem"].encode())
    assert served[0] == x509.load_pem_x509_certificate(signed.read_bytes())
    assert served[1] == x509.load_pem_x509_certificate(ca.issuing.read_bytes())
    # ... and openssl accepts that chain with the external root.
    write(tmp_path / "served.pem", shown["pem"].encode())
    verified = run(
        openssl, tmp_path, "verify", "-x509_strict", "-purpose", "sslserver", "-CAfile",
        ca.root, "-untrusted", tmp_path / "served.pem", signed,
    )  # fmt: skip
    assert f"{signed}: OK" in verified
    alarms = json.loads(ok("alarms", "--json").stdout)
    assert "temporary-certificate" not in [a["id"] for a in alarms]
    assert "temporary" not in ok("alarms").stdout
    assert ok("server-cert", "csr", "show").stdout.strip() == "no CSR is pending"
    history = json.loads(ok("server-cert", "history", "--json").stdout)
    assert [(v["version"], v["source"], v["active"]) for v in history] == [
        (1, "factory", False),
        (2, "upload", True),
    ]
    ok("audit", "--json")
    ok("server-cert", "show")

    # The key behind the active certificate is the CSR's: read it from the vault.
    store = Store.open(cli.data_dir)
    try:
        with store.transaction() as session:
            slot = SlotRepository(session).get("server")
            assert slot is not None and slot.active_version_id is not None
            version = SlotRepository(session).version(slot.active_version_id)
            assert version is not None
            key = KeyRepository(session, store.vault).get(version.key_id)
    finally:
        store.close()
    assert key.public_key() == served[0].public_key()

    printed = b"".join(r.stdout_bytes + r.stderr.encode() for r in outputs)
    files = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert cli.data_dir / "certway.db" in files
    for secret in secrets_of(key):
        assert secret not in printed
        for path, data in files.items():
            assert secret not in data, f"key material found in {path}"
