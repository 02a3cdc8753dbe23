"""Cluster commands: init --database, export-key, init --join, cluster status, db migrate."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certway.pki.csr import CsrForm, build_csr

from conftest import Cli, test_key, write

PASSPHRASE = b"correct horse battery staple\n"


def _peers(url: str) -> int:
    with psycopg.connect(url) as db:
        row = db.execute("SELECT count(*) FROM peers").fetchone()
    assert row is not None
    return int(row[0])


def _files(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir()) if path.exists() else []


@pytest.fixture
def first(tmp_path: Path, pg_url: str) -> Cli:
    a = Cli(tmp_path / "a")
    result = a.ok("init", "--database", pg_url, "--fqdn", "a.example.test")
    assert "created the cluster as peer 1" in result.stdout
    return a


def _join(tmp_path: Path, first: Cli, url: str, name: str) -> Cli:
    key_file = tmp_path / "cluster.key"
    if not key_file.exists():
        write(tmp_path / "pass", PASSPHRASE)
        first.ok("cluster", "export-key", "--out", key_file, "--passphrase-file", tmp_path / "pass")
    peer = Cli(tmp_path / name)
    result = peer.ok(
        "init", "--database", url, "--join", key_file,
        "--passphrase-file", tmp_path / "pass", "--fqdn", f"{name}.example.test",
    )  # fmt: skip
    assert "joined the cluster" in result.stdout
    return peer


def test_a_peer_joins_and_shares_the_cluster_state(tmp_path: Path, first: Cli, pg_url: str) -> None:
    data = tmp_path / "a"
    assert {"master.key", "cluster.json"} <= set(_files(data))
    assert json.loads((data / "cluster.json").read_text())["node_id"] == 1
    second = _join(tmp_path, first, pg_url, "b")
    # Cluster-wide: a CA created on one peer signs on the other; the trusted list is shared.
    first.ok("ca", "create-root", "--name", "root", "--subject", "/CN=Cluster Root")
    csr, _ = build_csr(test_key("ec:p256", 3), CsrForm(common_name="leaf.example.test"))
    csr_file = write(tmp_path / "leaf.csr", csr.public_bytes(serialization.Encoding.PEM))
    signed = second.ok("ca", "sign", "--ca", "root", "--csr", csr_file)
    leaf = x509.load_pem_x509_certificate(signed.stdout_bytes)
    first.ok("ca", "revoke", "--ca", "root", "--serial", f"{leaf.serial_number:X}")
    crl = x509.load_pem_x509_crl(second.ok("ca", "crl", "--ca", "root").stdout_bytes)
    assert crl.get_revoked_certificate_by_serial_number(leaf.serial_number) is not None
    trusted_a = json.loads(first.ok("trust", "list", "--json").stdout)
    trusted_b = json.loads(second.ok("trust", "list", "--json").stdout)
    assert trusted_a == trusted_b
    # Per peer: each has its own server certificate, for its own FQDN.
    server_a = json.loads(first.ok("server-cert", "show", "--json").stdout)
    server_b = json.loads(second.ok("server-cert", "show", "--json").stdout)
    assert "a.example.test" in server_a["alt_names"][0] or "a.example.test" in str(server_a)
    assert "b.example.test" in str(server_b["alt_names"])
    assert server_a["sha256_fingerprint"] != server_b["sha256_fingerprint"]

    status = json.loads(second.ok("cluster", "status", "--json").stdout)
    assert status["clustered"] is True
    peers = {p["fqdn"]: p for p in status["peers"]}
    assert set(peers) == {"a.example.test", "b.example.test"}
    assert peers["b.example.test"]["this_node"] and not peers["a.example.test"]["this_node"]
    for peer in peers.values():
        assert peer["last_seen"] is not None
        assert peer["server_cert_not_after"] is not None
        assert peer["tls_result"] is None  # not checked yet
    # Each peer's node settings are its own; the other peers come from the cluster.
    node_b = json.loads(second.ok("node", "show", "--json").stdout)
    assert node_b["fqdn"] == "b.example.test" and node_b["peers"] == ["a.example.test"]
    assert json.loads(first.ok("node", "show", "--json").stdout)["fqdn"] == "a.example.test"
    table = first.ok("cluster", "status").stdout
    assert "b.example.test" in table and "not checked" in table


def test_exported_key_is_encrypted_and_versioned(tmp_path: Path, first: Cli) -> None:
    write(tmp_path / "pass", PASSPHRASE)
    first.ok(
        "cluster", "export-key", "--out", tmp_path / "k", "--passphrase-file", tmp_path / "pass"
    )
    exported = (tmp_path / "k").read_bytes()
    key = (tmp_path / "a" / "master.key").read_bytes()
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600
    for form in (key, key.hex().encode(), base64.b64encode(key)):
        assert form not in exported
    document = json.loads(exported)
    assert document["version"] == 1 and document["kdf"]["name"] == "argon2id"
    audit = first.ok("audit", "--json").stdout
    assert "cluster.export-key" in audit and PASSPHRASE.strip().decode() not in audit


def test_short_passphrase_is_refused(tmp_path: Path, first: Cli) -> None:
    write(tmp_path / "pass", b"short\n")
    result = first(
        "cluster", "export-key", "--out", tmp_path / "k", "--passphrase-file", tmp_path / "pass"
    )
    assert result.exit_code == 2 and "too short" in result.stderr
    assert not (tmp_path / "k").exists()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("passphrase", "wrong passphrase"),
        ("tamper", "wrong passphrase, or the file was changed"),
        ("version", "format version 2"),
        ("garbage", "not a certway cluster key export"),
    ],
)
def test_bad_join_changes_nothing(
    tmp_path: Path, first: Cli, pg_url: str, damage: str, message: str
) -> None:
    write(tmp_path / "pass", PASSPHRASE)
    first.ok(
        "cluster", "export-key", "--out", tmp_path / "k", "--passphrase-file", tmp_path / "pass"
    )
    document = json.loads((tmp_path / "k").read_text())
    if damage == "passphrase":
        write(tmp_path / "pass", b"another long passphrase\n")
    elif damage == "tamper":
        raw = bytearray(base64.b64decode(document["ciphertext"]))
        raw[0] ^= 1
        document["ciphertext"] = base64.b64encode(bytes(raw)).decode()
    elif damage == "version":
        document["version"] = 2
    if damage == "garbage":
        write(tmp_path / "k", b"not a key file")
    else:
        write(tmp_path / "k", json.dumps(document).encode())
    b = Cli(tmp_path / "b")
    result = b(
        "init", "--database", pg_url, "--join", tmp_path / "k",
        "--passphrase-file", tmp_path / "pass", "--fqdn", "b.example.test",
    )  # fmt: skip
    assert result.exit_code == 2 and message in result.stderr
    assert _files(tmp_path / "b") == []
    assert _peers(pg_url) == 1


def test_join_with_another_clusters_key_is_refused(
    tmp_path: Path, first: Cli, pg_url: str, pg_server: object
) -> None:
    other_db = pg_server.create_database()  # type: ignore[attr-defined]
    try:
        other = Cli(tmp_path / "other")
        other.ok("init", "--database", pg_server.url(other_db), "--fqdn", "x.example.test")  # type: ignore[attr-defined]
        write(tmp_path / "pass", PASSPHRASE)
        other.ok(
            "cluster", "export-key", "--out", tmp_path / "k", "--passphrase-file", tmp_path / "pass"
        )
        b = Cli(tmp_path / "b")
        result = b(
            "init", "--database", pg_url, "--join", tmp_path / "k",
            "--passphrase-file", tmp_path / "pass", "--fqdn", "b.example.test",
        )  # fmt: skip
        assert result.exit_code == 2
        assert "cluster key does not match the database's" in result.stderr
        assert _files(tmp_path / "b") == []
        assert _peers(pg_url) == 1
    finally:
        pg_server.drop_database(other_db)  # type: ignore[attr-defined]


def test_init_on_a_cluster_database_without_join_is_refused(
    tmp_path: Path, first: Cli, pg_url: str
) -> None:
    result = Cli(tmp_path / "b")("init", "--database", pg_url)
    assert result.exit_code == 2 and "--join" in result.stderr
    assert _files(tmp_path / "b") == []


def test_join_needs_its_own_fqdn(tmp_path: Path, first: Cli, pg_url: str) -> None:
    write(tmp_path / "pass", PASSPHRASE)
    first.ok(
        "cluster", "export-key", "--out", tmp_path / "k", "--passphrase-file", tmp_path / "pass"
    )
    b = Cli(tmp_path / "b")
    result = b(
        "init",
        "--database",
        pg_url,
        "--join",
        tmp_path / "k",
        "--passphrase-file",
        tmp_path / "pass",
    )
    assert result.exit_code == 2 and "--fqdn" in result.stderr
    result = b(
        "init", "--database", pg_url, "--join", tmp_path / "k",
        "--passphrase-file", tmp_path / "pass", "--fqdn", "a.example.test",
    )  # fmt: skip
    assert result.exit_code == 2 and "already has a peer named a.example.test" in result.stderr
    assert _files(tmp_path / "b") == [] and _peers(pg_url) == 1


def test_embedded_node_status_is_a_cluster_of_one(cli: Cli) -> None:
    status = json.loads(cli.ok("cluster", "status", "--json").stdout)
    assert status["clustered"] is False and [p["id"] for p in status["peers"]] == [1]


def test_db_migrate_moves_an_embedded_node_to_postgresql(
    tmp_path: Path, cli: Cli, pg_url: str
) -> None:
    cli.ok("ca", "create-root", "--name", "root", "--subject", "/CN=Moving Root")
    serials = []
    for index in range(3):
        csr, _ = build_csr(
            test_key("ec:p256", 20 + index), CsrForm(common_name=f"m{index}.example.test")
        )
        csr_file = write(tmp_path / f"m{index}.csr", csr.public_bytes(serialization.Encoding.PEM))
        cert = x509.load_pem_x509_certificate(
            cli.ok("ca", "sign", "--ca", "root", "--csr", csr_file).stdout_bytes
        )
        serials.append(f"{cert.serial_number:X}")
    cli.ok("ca", "revoke", "--ca", "root", "--serial", serials[0])
    crl_before = cli.ok("ca", "crl", "--ca", "root", "--der").stdout_bytes
    issued_before = json.loads(cli.ok("ca", "issued", "--ca", "root", "--json").stdout)
    server_before = json.loads(cli.ok("server-cert", "show", "--json").stdout)

    result = cli.ok("db", "migrate", "--to", pg_url, "--json")
    copied = json.loads(result.stdout)["copied"]
    # three, and the server certificate the temporary CA issued at init
    assert copied["issued_certificates"] == 4 and copied["revocations"] == 1
    assert (cli.data_dir / "cluster.json").exists()
    assert not (cli.data_dir / "certway.db").exists()
    assert (cli.data_dir / "certway.db.migrated").exists()

    status = json.loads(cli.ok("cluster", "status", "--json").stdout)
    assert status["clustered"] is True
    assert cli.ok("ca", "crl", "--ca", "root", "--der").stdout_bytes == crl_before
    assert json.loads(cli.ok("ca", "issued", "--ca", "root", "--json").stdout) == issued_before
    server_after = json.loads(cli.ok("server-cert", "show", "--json").stdout)
    assert server_after["sha256_fingerprint"] == server_before["sha256_fingerprint"]
    # The node keeps working on PostgreSQL: new rows get new ids, the CRL number goes on.
    cli.ok("ca", "revoke", "--ca", "root", "--serial", serials[1])
    crl_after = x509.load_der_x509_crl(cli.ok("ca", "crl", "--ca", "root", "--der").stdout_bytes)
    number = crl_after.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    before = x509.load_der_x509_crl(crl_before).extensions.get_extension_for_class(x509.CRLNumber)
    assert number > before.value.crl_number and len(crl_after) == 2


def test_db_migrate_refuses_a_non_empty_database(tmp_path: Path, cli: Cli, pg_url: str) -> None:
    with psycopg.connect(pg_url) as db:
        db.execute("CREATE TABLE something (id integer)")
    result = cli("db", "migrate", "--to", pg_url)
    assert result.exit_code == 2 and "not empty" in result.stderr
    assert (cli.data_dir / "certway.db").exists() and not (cli.data_dir / "cluster.json").exists()
    cli.ok("ca", "list")  # still the embedded node


def _stopped(url: str, node_id: int) -> None:
    """The peer was last seen an hour ago (its server stopped for good)."""
    with psycopg.connect(url) as db:
        db.execute(
            "UPDATE peers SET last_seen = last_seen - interval '1 hour' WHERE id = %s", (node_id,)
        )


def test_remove_peer(tmp_path: Path, first: Cli, pg_url: str) -> None:
    second = _join(tmp_path, first, pg_url, "b")
    status = json.loads(first.ok("cluster", "status", "--json").stdout)
    assert status["node_id"] == 1 and status["verification"] == "permissive"
    assert [p["id"] for p in status["peers"]] == [1, 2]
    assert "cluster TLS verification: permissive" in first.ok("cluster", "status").stdout

    # Just seen (its init recorded a heartbeat): still running, refused.
    refused = first("cluster", "remove-peer", "b.example.test")
    assert refused.exit_code == 2
    assert "peer 2 (b.example.test) was last seen" in refused.stderr
    assert "it is still running; stop certway on it first" in refused.stderr
    mine = first("cluster", "remove-peer", "1")
    assert mine.exit_code == 2 and "is this node: a node cannot remove itself" in mine.stderr
    unknown = first("cluster", "remove-peer", "c.example.test")
    assert unknown.exit_code == 2 and "the cluster has no peer 'c.example.test'" in unknown.stderr
    assert _peers(pg_url) == 2

    _stopped(pg_url, 2)
    removed = json.loads(first.ok("cluster", "remove-peer", "2", "--json").stdout)
    assert removed["peer"]["fqdn"] == "b.example.test" and removed["rows"]["peers"] == 1
    assert _peers(pg_url) == 1
    assert "cluster.remove-peer" in first.ok("audit", "--json").stdout
    # The removed peer's data directory no longer opens: it says why.
    gone = second("cluster", "status")
    assert gone.exit_code == 2 and "is not a peer of the cluster" in gone.stderr


def test_an_embedded_node_has_no_peers_to_remove(cli: Cli) -> None:
    result = cli("cluster", "remove-peer", "2")
    assert result.exit_code == 2
    assert "embedded (SQLite), a cluster of one: there are no peers to remove" in result.stderr
    status = json.loads(cli.ok("cluster", "status", "--json").stdout)
    assert status["clustered"] is False and status["node_id"] == 1
    assert [p["this_node"] for p in status["peers"]] == [True]
