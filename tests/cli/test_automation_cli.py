"""``certway api-token`` and ``certway ca sign-batch``: happy paths and bad input."""

from __future__ import annotations

import json
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certway.pki.csr import CsrForm, build_csr
from certway.services.node import Node

from conftest import Cli, store_snapshot, test_key, write


def csr_pem(cn: str, index: int) -> bytes:
    csr, _ = build_csr(test_key("ec:p256", index), CsrForm(common_name=cn))
    return csr.public_bytes(serialization.Encoding.PEM)


def test_token_is_printed_once_then_listed_and_revoked(cli: Cli) -> None:
    created = cli.ok("api-token", "create", "ci", "--access", "read-write", "--expires", "30")
    token = created.stdout.strip()
    assert token.startswith("certway_") and "\n" not in token  # stdout: the token alone
    assert "shown this once" in created.stderr and token not in created.stderr

    node = Node.open(cli.data_dir)
    try:
        assert node.api_tokens.authenticate(token).access == "read-write"
    finally:
        node.close()

    listed = cli.ok("api-token", "list", "--json")
    assert token not in listed.stdout and token.rsplit("_", 1)[1] not in listed.stdout
    (entry,) = json.loads(listed.stdout)
    assert (entry["name"], entry["access"], entry["status"]) == ("ci", "read-write", "active")
    assert "token" not in entry and entry["expires_at"]
    table = cli.ok("api-token", "list").stdout
    assert "ci" in table and token not in table

    cli.ok("api-token", "revoke", "ci")
    assert json.loads(cli.ok("api-token", "list", "--json").stdout)[0]["status"] == "revoked"
    again = cli("api-token", "revoke", "ci")
    assert again.exit_code == 2 and "already revoked" in again.stderr

    as_json = json.loads(
        cli.ok("api-token", "create", "ro", "--access", "read-only", "--json").stdout
    )
    assert as_json["token"].startswith("certway_") and as_json["access"] == "read-only"


def test_token_bad_input_changes_nothing(cli: Cli) -> None:
    before = store_snapshot(cli.data_dir)
    for args, message in (
        (("x y", "--access", "read-only"), "token name 'x y'"),
        (("x", "--access", "admin"), "access must be read-write or read-only"),
        (("x", "--access", "read-only", "--expires", "0"), "the expiry must be 1 to 3650 days"),
    ):
        result = cli("api-token", "create", *args)
        assert result.exit_code == 2 and message in result.stderr, result.stderr
    missing = cli("api-token", "revoke", "nobody")
    assert missing.exit_code == 2 and "no API token named 'nobody'" in missing.stderr
    assert store_snapshot(cli.data_dir) == before


def test_sign_batch_writes_each_certificate_and_reports_refusals(cli: Cli, tmp_path: Path) -> None:
    cli.ok("ca", "create-root", "--name", "lab", "--subject", "/CN=Lab Root")
    files = [write(tmp_path / f"host{i}.csr", csr_pem(f"host{i}.example.com", i)) for i in range(3)]
    out_dir = tmp_path / "out"
    done = cli.ok("ca", "sign-batch", "--ca", "lab", *files, "--out-dir", out_dir, "--chain")
    assert f"signed 3 of 3 CSRs with CA 'lab' -> {out_dir}" in done.stdout
    root = x509.load_pem_x509_certificate(cli.ok("ca", "cert", "--name", "lab").stdout_bytes)
    for i in range(3):
        certs = x509.load_pem_x509_certificates((out_dir / f"host{i}.pem").read_bytes())
        assert len(certs) == 1  # a root signs: the chain below the root is empty
        certs[0].verify_directly_issued_by(root)
        assert certs[0].subject.rfc4514_string() == f"CN=host{i}.example.com"
    issued = json.loads(cli.ok("ca", "issued", "--ca", "lab", "--json").stdout)
    assert len(issued) == 3

    bad = write(
        tmp_path / "bad.csr",
        b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
    )
    good = write(tmp_path / "good.csr", csr_pem("good.example.com", 7))
    mixed = cli("ca", "sign-batch", "--ca", "lab", bad, good, "--out-dir", out_dir, "--json")
    assert mixed.exit_code == 1
    results = json.loads(mixed.stdout)
    assert results[0]["csr"] == str(bad) and results[0]["error"]
    assert results[1]["certificate"] == str(out_dir / "good.pem")
    assert not (out_dir / "bad.pem").exists()


def test_sign_batch_bad_input_signs_nothing(cli: Cli, tmp_path: Path) -> None:
    cli.ok("ca", "create-root", "--name", "lab", "--subject", "/CN=Lab Root")
    a = write(tmp_path / "a.csr", csr_pem("a.example.com", 1))
    other = tmp_path / "sub"
    other.mkdir()
    same_name = write(other / "a.csr", csr_pem("b.example.com", 2))
    before = store_snapshot(cli.data_dir)
    for args, message in (
        (("--ca", "nope", a), "no CA named 'nope'"),
        (("--ca", "lab", a, same_name), "would both be written to a.pem"),
        (("--ca", "lab", tmp_path / "missing.csr"), "does not exist"),
        (("--ca", "lab", "--profile", "weird", a), "unknown profile 'weird'"),
        (("--ca", "lab", "--days", "0", a), "days"),
    ):
        result = cli("ca", "sign-batch", *args, "--out-dir", tmp_path / "out")
        assert result.exit_code == 2 and message in result.stderr, (args, result.stderr)
    assert store_snapshot(cli.data_dir) == before
    assert not (tmp_path / "out").exists()


def test_sign_batch_refuses_to_overwrite_certificates_without_force(
    cli: Cli, tmp_path: Path
) -> None:
    cli.ok("ca", "create-root", "--name", "lab", "--subject", "/CN=Lab Root")
    files = [write(tmp_path / f"h{i}.csr", csr_pem(f"h{i}.example.com", i)) for i in range(3)]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    kept = {name: write(out_dir / name, f"keep {name}".encode()) for name in ("h0.pem", "h2.pem")}
    before = store_snapshot(cli.data_dir)
    refused = cli("ca", "sign-batch", "--ca", "lab", *files, "--out-dir", out_dir)
    assert refused.exit_code == 2, refused.stderr
    assert (
        f"2 files exist: {kept['h0.pem']}, {kept['h2.pem']}; give --force to overwrite them"
        in refused.stderr
    )
    one = cli("ca", "sign-batch", "--ca", "lab", files[0], "--out-dir", out_dir)
    assert one.exit_code == 2
    assert f"{kept['h0.pem']} exists; give --force to overwrite it" in one.stderr
    # refused before signing: no certificate issued, no file written or changed
    assert store_snapshot(cli.data_dir) == before
    assert sorted(p.name for p in out_dir.iterdir()) == ["h0.pem", "h2.pem"]
    assert all(path.read_bytes() == f"keep {name}".encode() for name, path in kept.items())

    forced = cli.ok("ca", "sign-batch", "--ca", "lab", *files, "--out-dir", out_dir, "--force")
    assert "signed 3 of 3 CSRs" in forced.stdout
    for i in range(3):
        cert = x509.load_pem_x509_certificate((out_dir / f"h{i}.pem").read_bytes())
        assert cert.subject.rfc4514_string() == f"CN=h{i}.example.com"


def test_sign_batch_counts_one_csr_in_the_singular(cli: Cli, tmp_path: Path) -> None:
    cli.ok("ca", "create-root", "--name", "lab", "--subject", "/CN=Lab Root")
    csr = write(tmp_path / "solo.csr", csr_pem("solo.example.com", 1))
    done = cli.ok("ca", "sign-batch", "--ca", "lab", csr, "--out-dir", tmp_path / "out")
    assert f"signed 1 of 1 CSR with CA 'lab' -> {tmp_path / 'out'}" in done.stdout
