"""Offline keys and CSRs (T3) and the promise that secrets never leak."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certway.pki.keys import KEY_TYPES, load_private_key, private_key_der
from certway.store.db import Store
from certway.store.repositories import KeyRepository
from certway.store.schema import CaRow

from conftest import Cli, write


@pytest.mark.parametrize(
    "key_type", [t for t in KEY_TYPES if not t.startswith("rsa:")] + ["rsa:2048"]
)
def test_key_generate_types(cli: Cli, tmp_path: Path, key_type: str) -> None:
    out = tmp_path / "k.pem"
    cli.ok("key", "generate", "--type", key_type, "--out", out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    load_private_key(out.read_bytes())


def test_key_generate_encrypted(cli: Cli, tmp_path: Path) -> None:
    pw = write(tmp_path / "pw", b"correct horse\n")
    out = tmp_path / "k.pem"
    made = cli.ok("key", "generate", "--type", "ec:p384", "--out", out, "--passphrase-file", pw)
    assert f"wrote an ECDSA P-384 private key to {out} (encrypted)" in made.stdout
    assert b"ENCRYPTED PRIVATE KEY" in out.read_bytes()
    load_private_key(out.read_bytes(), b"correct horse")


def test_csr_create_with_expressway_options(cli: Cli, tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    cli.ok("key", "generate", "--type", "ec:p256", "--out", key)
    result = cli.ok(
        "csr", "create", "--key", key, "--cn", "exp-e1.example.com",
        "--cluster-fqdn", "exp-e.example.com", "--peer", "exp-e2.example.com",
        "--ucm-domain", "example.com", "--ucm-domain-format", "collab-edge",
        "--xmpp-domain", "xmpp.example.com", "--chat-alias", "chat.example.com",
        "--san", "IP:192.0.2.10", "--subject", "/C=GB/O=Acme", "--digest", "sha384", "--json",
    )  # fmt: skip
    data = json.loads(result.stdout)
    assert data["alt_names"] == [
        "DNS:exp-e1.example.com",
        "DNS:chat.example.com",
        "DNS:collab-edge.example.com",
        "DNS:exp-e.example.com",
        "DNS:exp-e2.example.com",
        "DNS:xmpp.example.com",
        "IP:192.0.2.10",
    ]
    csr = x509.load_pem_x509_csr(data["pem"].encode())
    assert csr.is_signature_valid
    assert csr.subject.rfc4514_string() == "CN=exp-e1.example.com,O=Acme,C=GB"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cn", "*.example.com"], "wildcards are not allowed"),
        (["--cn", "a.example.com", "--digest", "sha1"], "not allowed"),
        (["--cn", "a.example.com", "--role", "core", "--xmpp-domain", "x.com"], "edge-role"),
        (["--cn", "a.example.com", "--role", "core", "--phone-security-profile", "host"], "FQDN"),
        (["--cn", "a.example.com", "--subject", "/CN=b"], "--cn"),
        (["--cn", "a.example.com", "--san", "FOO:bar"], "must start with DNS:"),
        (["--cn", "a.example.com", "--san", "IP:999.1.1.1"], "not an IP address"),
    ],
)
def test_csr_create_refusals(cli: Cli, tmp_path: Path, args: list[str], message: str) -> None:
    key = tmp_path / "k.pem"
    cli.ok("key", "generate", "--type", "ec:p256", "--out", key)
    result = cli("csr", "create", "--key", key, *args)
    assert result.exit_code == 2, result
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_csr_create_with_garbage_key(cli: Cli, tmp_path: Path) -> None:
    key = write(
        tmp_path / "k.pem", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    )
    result = cli("csr", "create", "--key", key, "--cn", "a.example.com")
    assert result.exit_code == 2 and "private key" in result.stderr


def test_ca_keys_never_stored_or_printed_in_clear(cli: Cli, tmp_path: Path) -> None:
    printed = [
        cli.ok("ca", "create-root", "--name", "root", "--subject", "/CN=R").stdout_bytes,
        cli.ok(
            "ca", "create-intermediate", "--name", "i", "--parent", "root", "--subject", "/CN=I"
        ).stdout_bytes,
        cli.ok("ca", "list", "--json").stdout_bytes,
        cli.ok("ca", "cert", "--name", "i", "--chain").stdout_bytes,
    ]
    cert = tmp_path / "c.pem"
    cert.write_bytes(printed[-1])
    printed.append(cli.ok("decode", cert, "--json").stdout_bytes)
    store = Store.open(cli.data_dir)
    with store.transaction() as session:
        repo = KeyRepository(session, store.vault)
        keys = [repo.get(row.key_id) for row in session.query(CaRow).all()]
    store.close()
    on_disk = b"".join(p.read_bytes() for p in cli.data_dir.glob("certway.db*"))
    for key in keys:
        secrets = [
            private_key_der(key),
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        ]
        for secret in secrets:
            assert secret not in on_disk
            assert all(secret not in out for out in printed)
        scalar = key.private_numbers().private_value.to_bytes(32, "big")  # type: ignore[union-attr]
        assert scalar not in on_disk
        assert all(scalar.hex() not in out.decode().lower() for out in printed)


def test_p12_export_from_an_encrypted_key(cli: Cli, tmp_path: Path) -> None:
    """`convert --to p12` opens an encrypted key with the same passphrase file."""
    pw = write(tmp_path / "pw", b"pass phrase 1\n")
    key = tmp_path / "k.pem"
    cli.ok("key", "generate", "--type", "ec:p256", "--out", key, "--passphrase-file", pw)
    csr = tmp_path / "k.csr"
    cli.ok("csr", "create", "--key", key, "--passphrase-file", pw, "--cn", "p.example.com",
           "--out", csr)  # fmt: skip
    cert = tmp_path / "k.crt"
    cli.ok("ca", "sign", "--ca", "temporary-ca", "--csr", csr, "--out", cert)
    out = tmp_path / "k.p12"
    cli.ok("convert", cert, "--to", "p12", "--key", key, "--passphrase-file", pw, "--out", out)
    from cryptography.hazmat.primitives.serialization import pkcs12

    loaded = pkcs12.load_key_and_certificates(out.read_bytes(), b"pass phrase 1")
    assert loaded[1] is not None and loaded[1] == x509.load_pem_x509_certificate(cert.read_bytes())
