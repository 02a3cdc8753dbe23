"""The node commands (issue #4): node settings, server/client/domain certificates, alarms and
audit. Happy paths, JSON output, and refusals: exit code 2, one line on stderr, store unchanged."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certway.pki.keys import private_key_pem

from conftest import Cli, CliResult, key_pem, store_snapshot, write
from pkitools import Pki
from revocation_servers import DAY, pem

FQDN = "vcs.example.com"


@pytest.fixture(scope="module")
def pki() -> Pki:
    """A CA valid around the real time (the CLI runs on the system clock)."""
    return Pki("Cli", at=dt.datetime.now(dt.UTC).replace(microsecond=0), index=350)


@pytest.fixture
def node_cli(tmp_path: Path, pki: Pki) -> Cli:
    cli = Cli(tmp_path / "data")
    cli.ok("init", "--fqdn", FQDN)
    cli.ok("trust", "add", write(tmp_path / "root.pem", pem(pki.root)))
    return cli


def refused(cli: Cli, *args: str | Path, message: str) -> CliResult:
    before = store_snapshot(cli.data_dir)
    result = cli(*args)
    assert result.exit_code == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and message in lines[0], lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert store_snapshot(cli.data_dir) == before
    return result


def sign(pki: Pki, csr_pem: bytes, tmp_path: Path, name: str = "signed.pem") -> Path:
    csr = x509.load_pem_x509_csr(csr_pem)
    sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    cert = pki.int_issuer.issue(
        csr.public_key(),  # type: ignore[arg-type]
        csr.subject,
        alt_names=list(sans),
        not_before=pki.at - DAY,
        not_after=pki.at + 90 * DAY,
    )
    return write(tmp_path / name, pem(cert, pki.intermediate))


# --------------------------------------------------------------------------- node settings


def test_node_show_and_set(node_cli: Cli) -> None:
    assert json.loads(node_cli.ok("node", "show", "--json").stdout) == {
        "fqdn": FQDN,
        "role": "edge",
        "cluster_fqdn": None,
        "peers": [],
        "publish_url": None,
        "publication_base": f"http://{FQDN}:8080",
    }
    result = node_cli.ok(
        "node", "set", "--role", "core", "--cluster-fqdn", "vcs-cluster.example.com",
        "--peer", "vcs2.example.com", "--peer", "vcs3.example.com",
    )  # fmt: skip
    assert "vcs-cluster.example.com" in result.stdout
    shown = node_cli.ok("node", "show").stdout
    assert "role:        core" in shown
    assert "peers:       vcs2.example.com, vcs3.example.com" in shown
    node_cli.ok("node", "set", "--no-peers", "--cluster-fqdn", "")
    data = json.loads(node_cli.ok("node", "show", "--json").stdout)
    assert data["peers"] == [] and data["cluster_fqdn"] is None and data["role"] == "core"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fqdn", "bad_name.example.com"], "system FQDN"),
        (["--fqdn", "-x.example.com"], "system FQDN"),
        (["--role", "middle"], "role must be 'edge' or 'core', not 'middle'"),
        (["--peer", "not a host"], "peer FQDN"),
    ],
)
def test_node_set_refusals(node_cli: Cli, args: list[str], message: str) -> None:
    refused(node_cli, "node", "set", *args, message=message)


def test_init_twice_keeps_the_state(node_cli: Cli) -> None:
    before = store_snapshot(node_cli.data_dir)
    assert "already initialised" in node_cli.ok("init").stdout
    assert store_snapshot(node_cli.data_dir) == before


# --------------------------------------------------------------------------- server certificate


def test_server_certificate_lifecycle(node_cli: Cli, pki: Pki, tmp_path: Path) -> None:
    shown = node_cli.ok("server-cert", "show")
    assert "server certificate, version 1 (factory)" in shown.stdout
    assert "temporary certificate of the factory CA" in shown.stderr
    assert "Certificate:" in shown.stdout  # the decoded text (SC1)
    factory_pem = node_cli.ok("server-cert", "show", "--pem").stdout_bytes
    assert x509.load_pem_x509_certificates(factory_pem)[0].subject.rfc4514_string() == f"CN={FQDN}"

    assert node_cli.ok("server-cert", "csr", "show").stdout.strip() == "no CSR is pending"
    assert node_cli.ok("server-cert", "csr", "show", "--json").stdout.strip() == "null"
    generated = json.loads(
        node_cli.ok(
            "server-cert",
            "csr",
            "generate",
            "--key-type",
            "ec:p256",
            "--add-san",
            "a.example.com,b.example.com",
            "--org",
            "Acme",
            "--json",
        ).stdout
    )
    assert generated["common_name"] == FQDN
    assert generated["alt_names"] == [
        f"DNS:{FQDN}",
        "DNS:a.example.com",
        "DNS:b.example.com",
    ]
    assert generated["key"] == "ECDSA P-256" and "PRIVATE" not in json.dumps(generated)
    refused(
        node_cli, "server-cert", "csr", "generate", "--key-type", "ec:p256",
        message="a CSR is already pending",
    )  # fmt: skip
    text = node_cli.ok("server-cert", "csr", "show").stdout
    assert f"common name:       {FQDN}" in text
    csr_pem = node_cli.ok("server-cert", "csr", "show", "--pem").stdout_bytes
    signed = sign(pki, csr_pem, tmp_path)
    other_key = write(tmp_path / "other.key", key_pem(pki.leaf_key))
    refused(node_cli, "server-cert", "upload", signed, "--key", other_key, message="CSR is pending")
    elsewhere = write(tmp_path / "elsewhere.pem", pem(pki.leaf(FQDN), pki.intermediate))
    result = refused(
        node_cli, "server-cert", "upload", elsewhere, message="does not match the pending CSR"
    )
    assert "private key does not match" not in result.stderr  # no key was given

    uploaded = json.loads(node_cli.ok("server-cert", "upload", signed, "--json").stdout)
    assert uploaded["version"] == 2 and uploaded["warnings"] == []
    assert uploaded["chain"] == ["CN=Cli Issuing"] and uploaded["temporary"] is False
    shown_json = json.loads(node_cli.ok("server-cert", "show", "--json").stdout)
    assert shown_json["sha256_fingerprint"] == uploaded["sha256_fingerprint"]
    assert shown_json["text"].startswith("Certificate:")
    assert node_cli.ok("server-cert", "csr", "show").stdout.strip() == "no CSR is pending"

    history = json.loads(node_cli.ok("server-cert", "history", "--json").stdout)
    assert [(v["version"], v["active"]) for v in history] == [(1, False), (2, True)]
    table = node_cli.ok("server-cert", "history").stdout
    assert "factory" in table and "upload" in table
    restored = node_cli.ok("server-cert", "restore", "1")
    assert "version 1 restored as version 3" in restored.stdout
    refused(node_cli, "server-cert", "restore", "3", message="version 3 is already active")
    refused(node_cli, "server-cert", "restore", "42", message="has no version 42")


def test_csr_discard(node_cli: Cli) -> None:
    refused(node_cli, "server-cert", "csr", "discard", message="no CSR is pending")
    node_cli.ok("server-cert", "csr", "generate", "--key-type", "ec:p256")
    assert "discarded" in node_cli.ok("server-cert", "csr", "discard").stdout
    assert node_cli.ok("server-cert", "csr", "show").stdout.strip() == "no CSR is pending"


def test_csr_generate_refusals(node_cli: Cli) -> None:
    refused(
        node_cli, "server-cert", "csr", "generate", "--key-type", "ec:p256", "--cn", "cluster",
        message="needs a cluster FQDN",
    )  # fmt: skip
    refused(
        node_cli, "server-cert", "csr", "generate", "--key-type", "ec:p256", "--digest", "sha1",
        message="sha1",
    )  # fmt: skip
    refused(
        node_cli, "server-cert", "csr", "generate", "--key-type", "ec:p256", "--add-san",
        "*.example.com", message="wildcard",
    )  # fmt: skip


def test_upload_with_key_and_passphrase(node_cli: Cli, pki: Pki, tmp_path: Path) -> None:
    cert = write(tmp_path / "c.der", pki.leaf(FQDN).public_bytes(serialization.Encoding.DER))
    chain = write(tmp_path / "chain.pem", pem(pki.intermediate))
    key = write(tmp_path / "k.pem", private_key_pem(pki.leaf_key, b"open sesame"))
    pw = write(tmp_path / "pw", b"open sesame\n")
    result = node_cli.ok(
        "server-cert", "upload", cert, "--chain", chain, "--key", key, "--passphrase-file", pw
    )
    assert "activated version 2: CN=vcs.example.com, issued by CN=Cli Issuing" in result.stdout
    assert result.stderr == ""
    bad_pw = write(tmp_path / "bad", b"wrong\n")
    refused(
        node_cli, "server-cert", "upload", cert, "--key", key, "--passphrase-file", bad_pw,
        message="passphrase",
    )  # fmt: skip


def test_upload_warnings_go_to_stderr(node_cli: Cli, pki: Pki, tmp_path: Path) -> None:
    cert = write(tmp_path / "c.pem", pem(pki.leaf(FQDN)))  # no chain: not leading to the root
    key = write(tmp_path / "k.pem", key_pem(pki.leaf_key))
    result = node_cli.ok("server-cert", "upload", cert, "--key", key)
    assert "activated version 2" in result.stdout
    assert "warning: the chain does not lead to a CA in the trusted CA list" in result.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"garbage", "not a certificate"),
        (b"", "is empty"),
        (None, "does not exist"),
    ],
)
def test_upload_refusals(
    node_cli: Cli, tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "upload.pem"
    if content is not None:
        path.write_bytes(content)
    refused(node_cli, "server-cert", "upload", path, message=message)


def test_upload_expired_refused(node_cli: Cli, pki: Pki, tmp_path: Path) -> None:
    expired = pki.int_issuer.issue(
        pki.leaf_key.public_key(),
        x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, FQDN)]),
        alt_names=[x509.DNSName(FQDN)],
        not_before=pki.at - 20 * DAY,
        not_after=pki.at - 10 * DAY,
    )
    cert = write(tmp_path / "c.pem", pem(expired))
    key = write(tmp_path / "k.pem", key_pem(pki.leaf_key))
    refused(node_cli, "server-cert", "upload", cert, "--key", key, message="certificate expired")


# --------------------------------------------------------------------------- client certificate


def test_client_certificate(node_cli: Cli, pki: Pki, tmp_path: Path) -> None:
    shown = json.loads(node_cli.ok("client-cert", "show", "--json").stdout)
    assert shown["source"] == "server certificate (default)" and shown["kind"] == "client"
    cert = write(tmp_path / "c.pem", pem(pki.leaf("vcs-client.example.com", profile="client")))
    refused(node_cli, "client-cert", "upload", cert, message="no private key")
    key = write(tmp_path / "k.pem", key_pem(pki.leaf_key))
    server_only = write(tmp_path / "s.pem", pem(pki.leaf(FQDN, profile="server")))
    refused(node_cli, "client-cert", "upload", server_only, "--key", key, message="clientAuth")
    result = node_cli.ok("client-cert", "upload", cert, "--key", key)
    assert "activated version 1: CN=vcs-client.example.com" in result.stdout
    assert "vcs-client.example.com" in node_cli.ok("client-cert", "show").stdout
    copied = node_cli.ok("client-cert", "copy-server-cert")
    assert f"copy of the server certificate: CN={FQDN}" in copied.stdout
    shown = json.loads(node_cli.ok("client-cert", "show", "--json").stdout)
    assert shown["source"] == "copy of server certificate" and shown["version"] == 2


# --------------------------------------------------------------------------- domains


def test_domains(node_cli: Cli, pki: Pki, tmp_path: Path) -> None:
    assert "no domain" in node_cli.ok("domain", "list").stdout
    assert node_cli.ok("domain", "list", "--json").stdout.strip() == "[]"
    node_cli.ok("domain", "add", "Example.org")
    refused(node_cli, "domain", "add", "example.org", message="already exists")
    refused(node_cli, "domain", "add", "nodot", message="not a domain")
    refused(node_cli, "domain", "add", "*.example.net", message="domain")
    refused(node_cli, "domain", "show", "example.net", message="no domain 'example.net'")
    # a domain with no certificate yet is shown as such, with what comes next
    shown_text = node_cli.ok("domain", "show", "example.org").stdout
    assert "domain example.org: no certificate yet" in shown_text
    assert "no CSR is pending" in shown_text
    assert json.loads(node_cli.ok("domain", "show", "example.org", "--json").stdout) == {
        "kind": "domain",
        "name": "example.org",
        "has_certificate": False,
        "pending_csr": None,
    }

    pending = json.loads(
        node_cli.ok(
            "domain", "csr", "generate", "example.org", "--key-type", "ec:p256", "--json"
        ).stdout
    )
    assert pending["common_name"] == "example.org"
    assert pending["alt_names"] == ["DNS:example.org", "DNS:vcs.example.org"]
    shown_text = node_cli.ok("domain", "show", "example.org").stdout
    assert "domain example.org: no certificate yet" in shown_text
    assert "pending CSR created" in shown_text and "(ECDSA P-256 key)" in shown_text
    assert "alternative names: DNS:example.org, DNS:vcs.example.org" in shown_text
    shown_json = json.loads(node_cli.ok("domain", "show", "example.org", "--json").stdout)
    assert shown_json == {
        "kind": "domain",
        "name": "example.org",
        "has_certificate": False,
        "pending_csr": pending,
    }
    refused(
        node_cli, "domain", "show", "example.org", "--pem",
        message="the domain example.org has no certificate yet, so there is no PEM to show",
    )  # fmt: skip
    assert json.loads(node_cli.ok("domain", "list", "--json").stdout) == [
        {
            "name": "example.org",
            "has_certificate": False,
            "not_after": None,
            "subject": None,
            "pending_csr": True,
        }
    ]
    csr_pem = node_cli.ok("domain", "csr", "show", "example.org", "--pem").stdout_bytes
    elsewhere = write(tmp_path / "elsewhere.pem", pem(pki.leaf("example.org")))
    refused(
        node_cli, "domain", "upload", "example.org", elsewhere,
        message="the certificate does not match the pending CSR (its public key is not the CSR's)",
    )  # fmt: skip
    signed = sign(pki, csr_pem, tmp_path, "domain.pem")
    result = node_cli.ok("domain", "upload", "EXAMPLE.org.", signed)
    assert "activated version 1: CN=example.org" in result.stdout
    shown = json.loads(node_cli.ok("domain", "show", "Example.ORG.", "--json").stdout)
    assert shown["kind"] == "domain" and shown["name"] == "example.org"
    assert shown["chain"] == ["CN=Cli Issuing"]
    assert shown["has_certificate"] is True and shown["pending_csr"] is None
    listed = node_cli.ok("domain", "list").stdout
    assert "example.org" in listed and "CN=example.org" in listed

    node_cli.ok("domain", "csr", "generate", "example.org", "--key-type", "ec:p256")
    renewal = node_cli.ok("domain", "show", "example.org").stdout
    assert "version 1 (upload)" in renewal and "pending:   a CSR created" in renewal
    node_cli.ok("domain", "csr", "discard", "example.org")
    refused(node_cli, "domain", "csr", "discard", "example.org", message="no CSR is pending")
    node_cli.ok("domain", "remove", "example.org")
    refused(node_cli, "domain", "remove", "example.org", message="no domain 'example.org'")


# --------------------------------------------------------------------------- alarms and audit


def test_alarms(node_cli: Cli, pki: Pki, tmp_path: Path) -> None:
    alarms = json.loads(node_cli.ok("alarms", "--json").stdout)
    assert [a["id"] for a in alarms] == ["temporary-certificate"]
    assert set(alarms[0]) == {"id", "severity", "text", "since"}
    dt.datetime.fromisoformat(alarms[0]["since"])
    text = node_cli.ok("alarms").stdout
    assert text.startswith("warning: the server certificate is the temporary one")
    cert = write(tmp_path / "c.pem", pem(pki.leaf(FQDN), pki.intermediate))
    key = write(tmp_path / "k.pem", key_pem(pki.leaf_key))
    node_cli.ok("server-cert", "upload", cert, "--key", key)
    assert node_cli.ok("alarms").stdout.strip() == "no alarms"
    assert json.loads(node_cli.ok("alarms", "--json").stdout) == []


def test_audit(node_cli: Cli, tmp_path: Path) -> None:
    time.sleep(1.1)  # audit times have second precision: keep init's entries apart
    node_cli.ok("node", "set", "--role", "core")
    node_cli("node", "set", "--role", "middle")
    entries = json.loads(node_cli.ok("audit", "--json").stdout)
    assert entries[-2]["action"] == "node.set" and entries[-2]["outcome"] == "ok"
    assert entries[-1]["outcome"] == "refused" and entries[-1]["via"] == "cli"
    assert "middle" in entries[-1]["detail"]["error"]
    assert {"at", "actor", "via", "address", "action", "target", "outcome", "detail"} == set(
        entries[0]
    )
    table = node_cli.ok("audit").stdout
    assert "node.set" in table and "refused" in table

    future = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).strftime("%Y-%m-%d")
    assert json.loads(node_cli.ok("audit", "--since", future, "--json").stdout) == []
    assert "empty for that period" in node_cli.ok("audit", "--since", future).stdout
    first_change = entries[-2]["at"]  # the two changes may fall in different seconds
    recent = json.loads(node_cli.ok("audit", "--since", first_change, "--json").stdout)
    assert [(e["action"], e["outcome"]) for e in recent] == [
        ("node.set", "ok"),
        ("node.set", "refused"),
    ]
    assert len(json.loads(node_cli.ok("audit", "--limit", "2", "--json").stdout)) == 2
    refused(node_cli, "audit", "--since", "yesterday", message="is not an ISO date")
