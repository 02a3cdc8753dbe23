"""The trust commands through the CLI (real clock): trusted CAs, CRLs, sources, schedule,
revocation policies and ``certway check`` — happy paths, exit codes and every bad input."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from certway.pki.issue import create_root
from certway.trust.identity import DEFAULT_REGEX

from conftest import Cli, store_snapshot, test_key, write
from pkitools import Pki, name
from revocation_servers import DAY, LocalHttpServer, der, pem

snapshot = store_snapshot  # every state row (the audit log records refusals on purpose)


def refused(cli: Cli, *args: str | Path, message: str, input: bytes | None = None) -> str:
    """Run a command that must fail with exit 2, one clear stderr line, no state change."""
    before = snapshot(cli.data_dir)
    result = cli(*args, input=input)
    assert result.exit_code == 2, (args, result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, (args, result.stderr)
    assert lines[0].startswith("error: ") or "Error" in lines[0] or "Usage" in result.stderr
    assert message in result.stderr, (args, result.stderr)
    assert snapshot(cli.data_dir) == before, args
    return lines[0]


@pytest.fixture(scope="module")
def pki() -> Pki:
    """The CLI validates at the real time: certificates and CRLs are built around it."""
    return Pki("Cli", at=dt.datetime.now(dt.UTC).replace(microsecond=0), index=290)


@pytest.fixture(scope="module")
def stranger() -> Pki:
    return Pki("Stranger", at=dt.datetime.now(dt.UTC).replace(microsecond=0), index=294)


@pytest.fixture
def files(tmp_path: Path, pki: Pki, stranger: Pki) -> dict[str, Path]:
    leaf = pki.leaf("alice.example.com")
    folder = tmp_path / "files"
    folder.mkdir()
    made = {
        "bundle": pem(pki.root, pki.intermediate),
        "root": pem(pki.root),
        "leaf": pem(leaf),
        "leaf.der": der(leaf),
        "leaf.txt": base64.encodebytes(der(leaf)),
        "other-leaf": pem(pki.leaf("bob.example.com")),
        "stranger-leaf": pem(stranger.leaf("eve.example.com")),
        "with-leaf": pem(pki.root, pki.intermediate, leaf),
        "revoking.crl": pem(pki.crl([(leaf, "keyCompromise")], number=42)),
        "clean.crl": der(pki.crl(number=43)),
        "forged.crl": pem(pki.forged_crl(test_key("ec:p256", 297), number=50)),
        "stranger.crl": pem(stranger.crl(number=1)),
        "garbage": b"this is not a CRL nor a certificate\n",
        "intermediate": pem(pki.intermediate),
    }
    return {key: write(folder / key, data) for key, data in made.items()}


@pytest.fixture
def trusting(cli: Cli, files: dict[str, Path]) -> Cli:
    cli.ok("trust", "add", files["bundle"])
    return cli


# --------------------------------------------------------------------------- trust


def test_trust_add_list_show_remove_reset(cli: Cli, files: dict[str, Path], pki: Pki) -> None:
    added = cli.ok("trust", "add", files["bundle"])
    lines = added.stdout.splitlines()
    assert [line.split(" (")[0] for line in lines] == ["added CN=Cli Root", "added CN=Cli Issuing"]

    again = cli.ok("trust", "add", files["root"])
    assert again.stdout.startswith("skipped: CN=Cli Root is already trusted")

    listed = json.loads(cli.ok("trust", "list", "--json").stdout)
    factory = [e for e in listed if e["origin"] == "factory"]
    assert len(factory) == 1 and "CN=certway temporary CA " in factory[0]["subject"]
    entries = [e for e in listed if e["origin"] == "user"]
    assert [(e["subject"], e["issuer"], e["origin"]) for e in entries] == [
        ("CN=Cli Root", "CN=Cli Root", "user"),
        ("CN=Cli Issuing", "CN=Cli Root", "user"),
    ]
    table = cli.ok("trust", "list").stdout
    assert "CN=Cli Issuing" in table
    assert entries[0]["fingerprint"] in table

    root_fp = entries[0]["fingerprint"]
    text = cli.ok("trust", "show", root_fp[:11]).stdout
    assert "Subject: CN=Cli Root" in text and "CA:TRUE" in text
    shown = cli.ok("trust", "show", root_fp.replace(":", "")[:16].lower(), "--pem")
    assert x509.load_pem_x509_certificate(shown.stdout_bytes) == pki.root

    refused(cli, "trust", "show", "00000000", message="no trusted CA has fingerprint 00000000")
    refused(cli, "trust", "show", "AB", message="give at least 8 hex digits")
    refused(cli, "trust", "remove", entries[1]["fingerprint"], "FFFFFFFF", message="FFFFFFFF")

    removed = cli.ok("trust", "remove", entries[1]["fingerprint"][:11])
    assert removed.stdout.strip() == "removed CN=Cli Issuing"
    remaining = json.loads(cli.ok("trust", "list", "--json").stdout)
    assert [e["subject"] for e in remaining if e["origin"] == "user"] == ["CN=Cli Root"]

    reset = cli.ok("trust", "reset")
    assert "reset to the factory default (1 entry)" in reset.stdout
    after = json.loads(cli.ok("trust", "list", "--json").stdout)
    assert [e["fingerprint"] for e in after] == [e["fingerprint"] for e in factory]


def test_trust_add_json_warning_and_embedded_crl(
    cli: Cli, files: dict[str, Path], pki: Pki, tmp_path: Path
) -> None:
    with_crl = write(tmp_path / "with-crl.pem", pem(pki.root, pki.intermediate, pki.crl(number=7)))
    report = json.loads(cli.ok("trust", "add", with_crl, "--json").stdout)
    assert [a["subject"] for a in report["added"]] == ["CN=Cli Root", "CN=Cli Issuing"]
    assert report["crls"][0].startswith("CRL #7 of CN=Cli Issuing with 0 entries")
    held = json.loads(cli.ok("crl", "list", "--json").stdout)
    assert [(h["kind"], h["number"], h["status"]) for h in held] == [("embedded", 7, "current")]

    now = dt.datetime.now(dt.UTC)
    twin = create_root(
        test_key("ec:p256", 298), name("Cli Root"), not_before=now - DAY, not_after=now + DAY
    )
    result = cli.ok("trust", "add", write(tmp_path / "twin.pem", pem(twin)))
    assert "added CN=Cli Root" in result.stdout
    assert "warning: another trusted CA has the same common name 'Cli Root'" in result.stderr


def test_trust_add_of_a_leaf_changes_nothing(trusting: Cli, files: dict[str, Path]) -> None:
    line = refused(
        trusting,
        "trust",
        "add",
        files["with-leaf"],
        message="CN=alice.example.com is not a CA certificate",
    )
    assert "nothing was added" in line


@pytest.mark.parametrize(
    ("key", "message"),
    [("garbage", "not a CA certificate file"), ("missing", "missing")],
)
def test_trust_add_bad_files(
    trusting: Cli, files: dict[str, Path], tmp_path: Path, key: str, message: str
) -> None:
    path = files.get(key, tmp_path / "missing")
    refused(trusting, "trust", "add", path, message=message)


# --------------------------------------------------------------------------- check


def test_check_exit_codes_and_output(trusting: Cli, files: dict[str, Path]) -> None:
    ok = trusting("check", files["leaf"])
    assert ok.exit_code == 0, ok.stderr
    lines = ok.stdout.splitlines()
    assert lines[0] == "VALID: the certificate is valid"
    assert lines[1] == "  [0] peer CN=alice.example.com: unknown"
    assert "      path: pass - chains to a trusted CA" in lines
    assert "      revocation: unknown - status unknown: treated as not revoked" in lines

    for form in ("leaf.der", "leaf.txt"):
        assert trusting("check", files[form]).exit_code == 0, form
    pasted = trusting("check", "-", input=files["leaf.txt"].read_bytes())
    assert pasted.exit_code == 0, pasted.stderr

    data = json.loads(trusting.ok("check", files["leaf"], "--json").stdout)
    assert data["valid"] is True and data["code"] is None and data["service"] == "admin-https"
    assert data["certificates"][0]["subject"] == "CN=alice.example.com"
    assert data["certificates"][-1]["role"] == "anchor"

    server = trusting(
        "check", files["leaf"], "--purpose", "server", "--name", "alice.example.com",
        "--service", "sip-tls",
    )  # fmt: skip
    assert server.exit_code == 0, server.stdout

    mismatch = trusting("check", files["leaf"], "--purpose", "server", "--name", "x.example.com")
    assert mismatch.exit_code == 1
    assert mismatch.stdout.startswith("REJECTED: the certificate does not name 'x.example.com'")

    untrusted = trusting("check", files["stranger-leaf"])
    assert untrusted.exit_code == 1
    assert untrusted.stdout.splitlines()[0] == (
        "REJECTED: issuer CN=Stranger Issuing is not in the trusted CA list"
    )
    rejected = json.loads(trusting("check", files["stranger-leaf"], "--json").stdout)
    assert rejected["valid"] is False and rejected["code"] == "untrusted"


def test_check_with_username_mapping(trusting: Cli, files: dict[str, Path]) -> None:
    result = trusting.ok("check", files["leaf"], "--regex", DEFAULT_REGEX, "--format", "#Group1#")
    assert "username: alice.example.com" in result.stdout.splitlines()

    data = json.loads(
        trusting.ok(
            "check", files["leaf"], "--regex", r"CN=(?P<User>[^.]+)\.", "--format",
            "pre-#User#-suf", "--json",
        ).stdout
    )  # fmt: skip
    assert data["username"] == "pre-alice-suf" and data["groups"] == {"User": "alice"}

    no_match = trusting.ok("check", files["leaf"], "--regex", "UID=(?<G>.*)", "--format", "#G#")
    assert "username: none (the regex does not match" in no_match.stdout


def test_check_is_rejected_after_crl_upload(trusting: Cli, files: dict[str, Path]) -> None:
    stored = trusting.ok("crl", "upload", files["revoking.crl"])
    assert stored.stdout.startswith("stored CRL #42 of CN=Cli Issuing with 1 entry")

    revoked = trusting("check", files["leaf"])
    assert revoked.exit_code == 1
    first = revoked.stdout.splitlines()[0]
    assert first.startswith("REJECTED: the certificate is revoked on ")
    assert first.endswith("(keyCompromise) by CRL #42 from the manual CRL upload")
    data = json.loads(trusting("check", files["leaf"], "--json").stdout)
    assert data["code"] == "revoked" and data["failed_index"] == 0
    assert trusting("check", files["other-leaf"]).exit_code == 0

    held = json.loads(trusting.ok("crl", "list", "--json").stdout)
    assert [(h["kind"], h["source"], h["number"], h["entries"]) for h in held] == [
        ("manual", "manual upload", 42, 1)
    ]
    assert "manual" in trusting.ok("crl", "list").stdout

    trusting.ok("crl", "upload", files["clean.crl"])  # DER; replaces the manual CRL
    assert [h["number"] for h in json.loads(trusting.ok("crl", "list", "--json").stdout)] == [43]
    assert trusting("check", files["leaf"]).exit_code == 0

    assert trusting.ok("crl", "remove").stdout.strip() == "removed 1 manual CRL"
    assert trusting.ok("crl", "remove").stdout.strip() == "there was no manual CRL"
    assert trusting.ok("crl", "list").stdout.strip() == "no CRL is held"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{garbage}"], "error: "),
        (["{missing}"], "missing"),
        (["{leaf}", "--regex", "(?<G>[", "--format", "#G#"], "invalid regex"),
        (["{leaf}", "--regex", DEFAULT_REGEX, "--format", "#User#"], "uses #User#"),
        (["{leaf}", "--regex", DEFAULT_REGEX], "give both a regex and a username format"),
        (["{leaf}", "--purpose", "both"], "purpose must be client or server"),
        (["{leaf}", "--service", "smtp"], "unknown service 'smtp'"),
        (["{leaf}", "--chain", "{garbage}"], "error: "),
    ],
    ids=[
        "garbage",
        "missing-file",
        "bad-regex",
        "missing-group",
        "regex-only",
        "purpose",
        "service",
        "bad-chain",
    ],
)
def test_check_bad_input_exits_2(
    trusting: Cli, files: dict[str, Path], tmp_path: Path, args: list[str], message: str
) -> None:
    paths = {**{k: str(v) for k, v in files.items()}, "missing": str(tmp_path / "missing")}
    refused(trusting, "check", *[a.format(**paths) for a in args], message=message)


# --------------------------------------------------------------------------- crl upload


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("garbage", "error: "),
        ("forged.crl", "bad signature"),
        ("stranger.crl", "the CRL issuer CN=Stranger Issuing is not in the trusted CA list"),
        ("leaf", "error: "),
    ],
)
def test_crl_upload_refusals(trusting: Cli, files: dict[str, Path], key: str, message: str) -> None:
    trusting.ok("crl", "upload", files["clean.crl"])
    refused(trusting, "crl", "upload", files[key], message=message)
    assert [h["number"] for h in json.loads(trusting.ok("crl", "list", "--json").stdout)] == [43]


# --------------------------------------------------------------------------- policies


def test_revocation_show_and_set(cli: Cli) -> None:
    policies = json.loads(cli.ok("revocation", "show", "--json").stdout)
    assert policies == {
        "sip-tls": {
            "mode": "on", "ocsp": True, "crl": True, "cdp": True, "scope": "all",
            "fallback": "not-revoked",
            "profile": "rfc5280",
        },
        "admin-https": {
            "mode": "on", "ocsp": False, "crl": True, "cdp": False, "scope": "all",
            "fallback": "not-revoked",
            "profile": "rfc5280",
        },
        "syslog": {
            "mode": "on", "ocsp": True, "crl": True, "cdp": True, "scope": "all",
            "fallback": "not-revoked",
            "profile": "rfc5280",
        },
        "ldap": {
            "mode": "on", "ocsp": True, "crl": True, "cdp": True, "scope": "all",
            "fallback": "not-revoked",
            "profile": "rfc5280",
        },
        "acme": {
            "mode": "on", "ocsp": True, "crl": True, "cdp": True, "scope": "all",
            "fallback": "not-revoked",
            "profile": "rfc5280",
        },
    }  # fmt: skip
    changed = cli.ok(
        "revocation", "set", "--service", "sip-tls", "--ocsp", "off", "--scope", "peer",
        "--fallback", "revoked",
    )  # fmt: skip
    assert changed.stdout.strip() == (
        "sip-tls: profile rfc5280, mode on, OCSP off, CRL on, CDP on, scope peer, fallback treat as revoked"
    )
    cli.ok("revocation", "set", "--service", "admin-https", "--mode", "off")
    policies = json.loads(cli.ok("revocation", "show", "--json").stdout)
    assert policies["sip-tls"]["ocsp"] is False and policies["sip-tls"]["scope"] == "peer"
    assert policies["sip-tls"]["fallback"] == "revoked" and policies["sip-tls"]["cdp"] is True
    assert policies["admin-https"]["mode"] == "off"
    assert "treat as revoked" in cli.ok("revocation", "show").stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--service", "sip-tls", "--scope", "sideways"], "scope must be one of peer, all"),
        (["--service", "sip-tls", "--fallback", "later"], "fallback must be one of"),
        (["--service", "sip-tls", "--ocsp", "maybe"], "--ocsp must be on or off, not 'maybe'"),
        (["--service", "smtp", "--ocsp", "on"], "unknown service 'smtp'"),
    ],
    ids=["scope", "fallback", "on-off", "service"],
)
def test_revocation_set_bad_values_exit_2(cli: Cli, args: list[str], message: str) -> None:
    cli.ok("revocation", "set", "--service", "sip-tls", "--cdp", "off")
    refused(cli, "revocation", "set", *args, message=message)


def test_revocation_set_without_service_is_a_usage_error(cli: Cli) -> None:
    before = snapshot(cli.data_dir)
    result = cli("revocation", "set", "--scope", "peer")
    assert result.exit_code == 2
    assert "Missing option '--service'" in result.stderr
    assert snapshot(cli.data_dir) == before


# --------------------------------------------------------------------------- sources/schedule


def test_crl_schedule(cli: Cli) -> None:
    result = cli.ok("crl", "schedule", "--daily-at", "03:00")
    assert result.stdout.strip() == "automatic CRL updates: on, daily at 03:00 UTC"
    schedule = json.loads(cli.ok("crl", "sources", "list", "--json").stdout)["schedule"]
    assert schedule == {"enabled": True, "daily_at": "03:00", "last_run": None}
    for bad in ("25:00", "3pm", "03:00:00"):
        refused(cli, "crl", "schedule", "--daily-at", bad, message="is not a time of day HH:MM")
    refused(cli, "crl", "schedule", message="give --daily-at HH:MM or --off")
    assert cli.ok("crl", "schedule", "--off").stdout.strip() == "automatic CRL updates: off"
    assert "automatic updates: off" in cli.ok("crl", "sources", "list").stdout


@pytest.fixture
def crl_server(pki: Pki) -> Iterator[LocalHttpServer]:
    with LocalHttpServer({"/issuing.crl": der(pki.crl(number=5))}) as server:
        yield server


def test_crl_sources_and_update_now(trusting: Cli, crl_server: LocalHttpServer) -> None:
    good, missing = f"{crl_server.url}/issuing.crl", f"{crl_server.url}/missing.crl"
    for bad in ("ftp://x", "x", "http://"):
        refused(trusting, "crl", "sources", "set", bad, message="is not an http:// or https:// URL")
    refused(trusting, "crl", "sources", "set", good, "ftp://x", message="'ftp://x'")

    assert "2 CRL sources set" in trusting.ok("crl", "sources", "set", good, missing).stdout
    listed = json.loads(trusting.ok("crl", "sources", "list", "--json").stdout)["sources"]
    assert [(s["url"], s["last_attempt"]) for s in listed] == [(good, None), (missing, None)]

    update = trusting.ok("crl", "update-now")
    assert f"{good}: CRL #5, next update " in update.stdout
    assert f"fetching {good} ..." in update.stderr
    assert f"{missing}: fetching {missing} failed: HTTP 404 Not Found" in update.stderr
    assert crl_server.hits["/issuing.crl"] == 1

    statuses = json.loads(trusting.ok("crl", "update-now", "--json").stdout)
    assert [(s["url"], s["crl_number"], s["error"] is None) for s in statuses] == [
        (good, 5, True),
        (missing, None, False),
    ]
    listed = json.loads(trusting.ok("crl", "sources", "list", "--json").stdout)
    assert listed["schedule"]["last_run"] is not None
    assert listed["sources"][0]["last_success"] is not None
    assert "HTTP 404" in trusting.ok("crl", "sources", "list").stdout
    held = json.loads(trusting.ok("crl", "list", "--json").stdout)
    assert [(h["kind"], h["source"], h["number"]) for h in held] == [("url", good, 5)]


# --------------------------------------------------------------------------- markup


_MARKUP_BUG = (
    "src bug: certway.cli prints user-controlled text (error messages in "
    "main._Group.invoke; subjects in trust_commands trust add/list and check) as Rich "
    "markup, so '[/b]' raises MarkupError (exit 1, internal error) and '[bold]' vanishes"
)


def test_bracketed_text_in_an_error_message_is_printed_as_is(cli: Cli) -> None:
    refused(cli, "crl", "sources", "set", "ftp://[/x]", message="'ftp://[/x]'")


def test_ca_with_brackets_in_its_name_can_be_added_and_listed(cli: Cli, tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    root = create_root(
        test_key("ec:p256", 299), name("Evil [/b] Root"), not_before=now - DAY, not_after=now + DAY
    )
    result = cli("trust", "add", write(tmp_path / "evil.pem", pem(root)))
    assert result.exit_code == 0, result.stderr
    assert "added CN=Evil [/b] Root" in result.stdout
    listed = cli("trust", "list")
    assert listed.exit_code == 0, listed.stderr
    assert "Evil [/b] Root" in listed.stdout


def test_check_of_a_certificate_with_brackets_in_its_name(
    trusting: Cli, pki: Pki, tmp_path: Path
) -> None:
    leaf = pki.leaf("[bold]mallory[/bold]", alt_names=[x509.DNSName("mallory.example.com")])
    result = trusting("check", write(tmp_path / "m.pem", pem(leaf)))
    assert result.exit_code == 0, result.stderr
    assert "  [0] peer CN=[bold]mallory[/bold]: unknown" in result.stdout
