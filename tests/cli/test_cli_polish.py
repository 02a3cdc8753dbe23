"""A CLI that feels finished: --version, readable help, completion, --json everywhere data is
printed (errors too), `ca issue` in one step, publication URLs by default."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certway import __version__
from certway.cli.main import app
from certway.services.node import Node

from conftest import Cli, store_snapshot, write
from pkitools import Pki
from serving import running

TYPE_NAME = re.compile(r"<(bool|str|int|float|path|list\[[a-z]+\])>|\blist\[str\]")


def commands() -> list[tuple[tuple[str, ...], Any]]:
    """(words, click command) of every leaf command of ``certway``."""
    found: list[tuple[tuple[str, ...], Any]] = []

    def walk(command: Any, path: tuple[str, ...]) -> None:
        subs = getattr(command, "commands", None)
        if subs is None:
            found.append((path, command))
            return
        for name, sub in subs.items():
            walk(sub, (*path, name))

    walk(typer.main.get_command(app), ())
    return found


def option_names(command: Any) -> set[str]:
    return {opt for param in command.params for opt in getattr(param, "opts", [])}


# Commands that print no data: they write files, serve, or report one action in a sentence.
NO_DATA = {
    ("init",), ("serve",), ("convert",), ("key", "generate"),
    ("ca", "cert"), ("ca", "crl"), ("ca", "export"),  # PEM/DER output is the data format
    ("server-cert", "restore"), ("server-cert", "csr", "discard"),
    ("client-cert", "copy-server-cert"), ("domain", "add"), ("domain", "remove"),
    ("domain", "csr", "discard"), ("admin", "add"), ("admin", "passwd"), ("admin", "remove"),
    ("admin", "reset-security"), ("sip", "rule", "remove"), ("trust", "remove"),
    ("trust", "reset"), ("crl", "upload"), ("crl", "remove"), ("crl", "schedule"),
    ("crl", "sources", "set"), ("zone", "remove"),
    # merged from other branches; each reports its action in a sentence
    ("acme", "sign"), ("acme", "deploy"), ("acme", "renew-now"), ("acme", "revoke"),
    ("acme", "account", "create"), ("acme", "account", "deactivate"),
    ("cluster", "export-key"), ("syslog", "remove"), ("ca", "acme", "disable"),
    ("ldap", "group", "add"), ("ldap", "group", "remove"),
}  # fmt: skip


def test_version() -> None:
    result = Cli(Path("/nonexistent"))("--version")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == f"certway {__version__}"


@pytest.mark.parametrize("path", [(), *(p for p, _ in commands())], ids=" ".join)
def test_help_shows_no_python_type_names(path: tuple[str, ...], tmp_path: Path) -> None:
    result = Cli(tmp_path)(*path, "--help")
    assert result.exit_code == 0, result.stderr
    assert not TYPE_NAME.search(result.stdout), f"certway {' '.join(path)} --help:\n{result.stdout}"


def test_help_lists_the_key_types(tmp_path: Path) -> None:
    for path in (("key", "generate"), ("ca", "create-root"), ("ca", "issue")):
        text = " ".join(Cli(tmp_path)(*path, "--help").stdout.replace("│", " ").split())
        assert "rsa:2048, rsa:3072, rsa:4096, ec:p256, ec:p384, ec:p521, ed25519" in text


def test_every_data_printing_command_takes_json() -> None:
    missing = [
        " ".join(path)
        for path, command in commands()
        if path not in NO_DATA and "--json" not in option_names(command)
    ]
    assert not missing, f"commands that print data without --json: {missing}"
    assert {path for path, _ in commands()} >= NO_DATA  # the exceptions are real commands


def test_shell_completion(tmp_path: Path) -> None:
    certway = str(Path(sys.executable).parent / "certway")
    env = {**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    script = subprocess.run(
        [certway, "--show-completion", "bash"],
        capture_output=True, text=True, env=env, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert script.returncode == 0, script.stderr
    assert "complete -o default -F _certway_completion certway" in script.stdout
    # what the script asks for: the words that can follow
    for words, cword, expected in (
        ("certway ca cr", "2", ["create-root", "create-intermediate", "crl"]),
        ("certway ca issue --p", "3", ["--profile", "--p12", "--passphrase-file"]),
    ):
        env = {**os.environ, "_CERTWAY_COMPLETE": "complete_bash", "COMP_WORDS": words,
               "COMP_CWORD": cword}  # fmt: skip
        done = subprocess.run(
            [certway], capture_output=True, text=True, env=env, check=False, cwd=tmp_path
        )
        assert done.stdout.split() == expected, done.stdout


def _complete(words: str, cword: int, cwd: Path) -> list[str]:
    """What bash completion offers for the word ``cword`` of ``words`` (``certway`` of this
    environment, in a process of its own, as the shell runs it)."""
    certway = str(Path(sys.executable).parent / "certway")
    env = {**os.environ, "_CERTWAY_COMPLETE": "complete_bash", "COMP_WORDS": words,
           "COMP_CWORD": str(cword)}  # fmt: skip
    done = subprocess.run([certway], capture_output=True, text=True, env=env, check=False, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def _complete_here(words: str, cword: int) -> list[str]:
    """As ``_complete``, in this process (Click's completion entry, which ``certway`` runs
    when the shell asks): a process per case costs ~2.7 s of start-up each."""
    from typer.testing import CliRunner

    from certway.cli.main import app

    env = {"_CERTWAY_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword)}
    done = CliRunner().invoke(app, [], env=env, prog_name="certway")
    assert done.exit_code == 0, done.output
    return done.stdout.split()


def test_the_shell_completes_option_values_in_a_process_of_its_own(tmp_path: Path) -> None:
    assert _complete("certway ca sign --profile ser", 4, tmp_path) == ["server-client", "server"]


@pytest.mark.parametrize(
    ("words", "cword", "expected"),
    [
        ("certway ca sign --profile ser", 4, ["server-client", "server"]),
        ("certway ca issue --profile ", 4, ["server-client", "server", "client"]),
        ("certway ca create-root --key-type ec", 4, ["ec:p256", "ec:p384", "ec:p521"]),
        ("certway domain csr generate d --key-type ed", 6, ["ed25519"]),
        ("certway convert f --to p", 4, ["pem", "p12", "p7b"]),
        ("certway api-token create ci --access read-", 5, ["read-write", "read-only"]),
        ("certway ca revoke --reason key", 4, ["keyCompromise"]),
        ("certway node set --role ", 4, ["edge", "core"]),
        (
            "certway revocation set --service ",
            4,
            ["sip-tls", "admin-https", "syslog", "ldap", "acme"],
        ),
        ("certway cluster tls-verification ", 3, ["permissive", "enforce"]),
        ("certway acme schedule --days mon,t", 4, ["mon,tue", "mon,thu"]),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_shell_completion_of_option_values(words: str, cword: int, expected: list[str]) -> None:
    assert _complete_here(words, cword) == expected


def test_help_lists_the_values_of_choice_options(tmp_path: Path) -> None:
    def help_of(*path: str) -> str:
        return " ".join(Cli(tmp_path)(*path, "--help").stdout.replace("│", " ").split())

    assert "keyCompromise, cACompromise, affiliationChanged, superseded" in help_of("ca", "revoke")
    assert "removeFromCRL" not in help_of("ca", "revoke")  # not a reason to revoke with
    assert "--access read-write|read-only" in help_of("api-token", "create")
    assert "--access read-write|read-only" in help_of("ldap", "group", "add")
    assert "--role edge|core" in help_of("node", "set")
    assert "--to pem|der|p12|p7b" in help_of("convert")
    assert "--profile PROFILE" in help_of("ca", "sign-batch")  # too long a list for a metavar
    assert "One of server-client, server, client, sub-ca." in help_of("ca", "sign-batch")
    assert "One of server-client, server, client." in help_of("ca", "issue")
    assert "--mutual-tls off|request|require" in help_of("sip", "set")
    assert "--purpose server|client" in help_of("check")


def test_number_options_are_refused_in_our_words(cli: Cli) -> None:
    for args, message in (
        (("audit", "--limit", "abc"), "Invalid value for '--limit': 'abc' is not a whole number"),
        (("audit", "--limit", "2.5"), "'2.5' is not a whole number"),
        (("zone", "check", "z", "--timeout", "soon"), "'soon' is not a number"),
        (("zone", "check", "z", "--timeout", "nan"), "'nan' is not a finite number"),
        (("server-cert", "restore", "two"), "'two' is not a whole number"),
    ):
        result = cli(*args)
        assert result.exit_code == 2, (args, result.stderr)
        text = " ".join(result.stderr.replace("│", " ").split())
        assert message in text, (args, text)
        assert "Input should be" not in text and "parse string" not in text
    assert cli.ok("audit", "--limit", " 3 ", "--json").stdout  # a number with spaces is one


def test_json_errors_keep_the_exit_code(cli: Cli, tmp_path: Path) -> None:
    cases = [
        (("ca", "list", "--json", "--bogus"), "usage", "No such option: --bogus"),
        (("ca", "sign", "--json"), "usage", "Missing option '--ca'"),
        (("ca", "sign", "--ca", "x", "--csr", tmp_path / "none", "--json"), "input-file",
         "does not exist"),
        (("ca", "issue", "--ca", "nope", "--cn", "x", "--out-key", tmp_path / "k", "--json"),
         "not-found", "no CA named 'nope'"),
        (("sip", "set", "--json"), "usage", "give --mutual-tls"),
    ]  # fmt: skip
    for args, code, message in cases:
        result = cli(*args)
        assert result.exit_code == 2, (args, result.stderr)
        error = json.loads(result.stderr)["error"]
        assert error["code"] == code and message in error["message"], (args, error)
        assert error["exit_code"] == 2 and result.stdout == ""
    # without --json the same error is a line of text
    plain = cli("ca", "issue", "--ca", "nope", "--cn", "x", "--out-key", tmp_path / "k")
    assert plain.exit_code == 2 and plain.stderr.startswith("error: no CA named 'nope'")


# -- ca issue ----------------------------------------------------------------------------------
def test_ca_issue_key_certificate_and_pkcs12(cli: Cli, tmp_path: Path) -> None:
    cli.ok("ca", "create-root", "--name", "root", "--subject", "/CN=Lab Root", "--no-urls")
    cli.ok("ca", "create-intermediate", "--name", "issuing", "--parent", "root",
           "--subject", "/CN=Lab Issuing", "--no-urls")  # fmt: skip
    passfile = write(tmp_path / "pass", b"p12-pass-61d0\n")
    cert, key, p12 = tmp_path / "vcs.pem", tmp_path / "vcs.key", tmp_path / "vcs.p12"
    before = store_snapshot(cli.data_dir)
    result = cli.ok(
        "ca", "issue", "--ca", "issuing", "--cn", "vcs.example.com", "--san", "IP:192.0.2.10",
        "--profile", "server", "--key-type", "rsa:2048", "--out-cert", cert, "--out-key", key,
        "--p12", p12, "--passphrase-file", passfile, "--json",
    )  # fmt: skip
    info = json.loads(result.stdout)
    assert info["subject"] == "CN=vcs.example.com" and info["files"]["pkcs12"] == str(p12)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and stat.S_IMODE(p12.stat().st_mode) == 0o600
    assert b"ENCRYPTED PRIVATE KEY" in key.read_bytes()
    leaf, _issuing = x509.load_pem_x509_certificates(cert.read_bytes())
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(n.value) for n in sans] == ["vcs.example.com", "192.0.2.10"]
    root = tmp_path / "root.pem"
    root.write_bytes(cli.ok("ca", "cert", "--name", "root").stdout_bytes)
    verify = subprocess.run(
        ["openssl", "verify", "-purpose", "sslserver", "-CAfile", str(root), "-untrusted",
         str(cert), str(cert)], capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr
    opened = subprocess.run(
        ["openssl", "pkcs12", "-in", str(p12), "-passin", f"file:{passfile}", "-nodes"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert opened.returncode == 0, opened.stderr
    assert "BEGIN PRIVATE KEY" in opened.stdout
    in_p12 = x509.load_pem_x509_certificates(opened.stdout.encode())
    assert {c.subject.rfc4514_string() for c in in_p12} == {
        "CN=vcs.example.com",
        "CN=Lab Issuing",
    }
    wrong = subprocess.run(
        ["openssl", "pkcs12", "-in", str(p12), "-passin", "pass:wrong", "-nokeys"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert wrong.returncode != 0
    # the inventory has it; the store holds no new key
    issued = json.loads(cli.ok("ca", "issued", "--ca", "issuing", "--json").stdout)
    assert [i["serial"] for i in issued] == [info["serial"]]
    after = store_snapshot(cli.data_dir)
    assert after != before  # the inventory row
    audit = json.loads(cli.ok("audit", "--json").stdout)
    assert any(e["action"] == "ca.issue-with-key" for e in audit)
    assert "p12-pass-61d0" not in json.dumps(audit)


def test_ca_issue_refuses_to_overwrite_and_checks_first(cli: Cli, tmp_path: Path) -> None:
    cli.ok("ca", "create-root", "--name", "root", "--subject", "/CN=Lab Root")
    existing = write(tmp_path / "old.key", b"keep me")
    before = store_snapshot(cli.data_dir)
    refused = [
        (("--out-key", existing), "exists; give --force"),
        ((), "give --out-key and/or --p12"),
        (("--p12", tmp_path / "x.p12"), "needs --passphrase-file"),
        (("--out-key", tmp_path / "same", "--out-cert", tmp_path / "same"), "different files"),
        (("--out-key", tmp_path / "nodir" / "k"), "is not a directory"),
        (("--out-key", tmp_path / "k", "--key-type", "dsa"), "key type"),
    ]
    for extra, message in refused:
        result = cli("ca", "issue", "--ca", "root", "--cn", "a.example.com", *extra)
        assert result.exit_code == 2, extra
        assert message in result.stderr, (extra, result.stderr)
    assert existing.read_bytes() == b"keep me"
    assert store_snapshot(cli.data_dir) == before
    cli.ok("ca", "issue", "--ca", "root", "--cn", "a.example.com", "--out-key", existing,
           "--out-cert", tmp_path / "a.pem", "--force")  # fmt: skip
    assert b"PRIVATE KEY" in existing.read_bytes()
    assert stat.S_IMODE(existing.stat().st_mode) == 0o600


# -- publication URLs by default ---------------------------------------------------------------
def test_publish_url_setting(cli: Cli) -> None:
    shown = json.loads(cli.ok("node", "show", "--json").stdout)
    assert shown["publish_url"] is None
    assert shown["publication_base"] == f"http://{shown['fqdn']}:8080"
    root = json.loads(cli.ok("ca", "create-root", "--name", "r", "--subject", "/CN=R",
                             "--json").stdout)  # fmt: skip
    assert root["crl_urls"] == [f"http://{shown['fqdn']}:8080/crl/r.crl"]
    assert root["ocsp_url"] == f"http://{shown['fqdn']}:8080/ocsp"
    for bad in ("ftp://ca.example.com", "http://", "http://a b:80", "http://ca:99999"):
        result = cli("node", "set", "--publish-url", bad)
        assert result.exit_code == 2 and "publication URL" in result.stderr, bad
    cli.ok("node", "set", "--publish-url", "http://ca.example.com:8081/")
    other = json.loads(cli.ok("ca", "create-root", "--name", "o", "--subject", "/CN=O",
                              "--json").stdout)  # fmt: skip
    assert other["crl_urls"] == ["http://ca.example.com:8081/crl/o.crl"]
    explicit = json.loads(cli.ok("ca", "create-root", "--name", "e", "--subject", "/CN=E",
                                 "--crl-url", "http://x.example/e.crl", "--json").stdout)  # fmt: skip
    assert explicit["crl_urls"] == ["http://x.example/e.crl"] and explicit["ocsp_url"] is None
    none = json.loads(cli.ok("ca", "create-root", "--name", "n", "--subject", "/CN=N",
                             "--no-urls", "--json").stdout)  # fmt: skip
    assert none["crl_urls"] == [] and none["ocsp_url"] is None
    cli.ok("node", "set", "--publish-url", "")
    assert json.loads(cli.ok("node", "show", "--json").stdout)["publish_url"] is None


def _verify(root: Path, chain: Path, files: Path) -> subprocess.CompletedProcess[str]:
    """openssl checks the whole chain against the CRLs named by each certificate's CRL
    distribution point, fetched from there (the publication listener)."""
    crls = []
    for index, cert in enumerate(x509.load_pem_x509_certificates(chain.read_bytes())):
        cdp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        (url,) = [n.value for p in cdp for n in p.full_name or ()]
        fetched = httpx.get(url)
        assert fetched.status_code == 200, url
        crl = x509.load_der_x509_crl(fetched.content)
        assert crl.issuer == cert.issuer
        crls += ["-CRLfile", str(write(files / f"{index}.crl", fetched.content))]
    return subprocess.run(
        ["openssl", "verify", "-crl_check_all", *crls, "-CAfile", str(root),
         "-untrusted", str(chain), str(chain)], capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_lab_example_yields_revocable_certificates(cli: Cli, tmp_path: Path) -> None:
    node = Node.open(cli.data_dir)
    try:
        with running(node, sip=False) as server:
            base = f"http://127.0.0.1:{server.publish_port}"
            cli.ok("node", "set", "--publish-url", base)
            cli.ok("ca", "create-root", "--name", "root", "--subject", "/O=Acme/CN=Acme Root")
            cli.ok("ca", "create-intermediate", "--name", "issuing", "--parent", "root",
                   "--subject", "/CN=Acme Issuing CA")  # fmt: skip
            chain = tmp_path / "vcs.pem"
            issued = json.loads(cli.ok(
                "ca", "issue", "--ca", "issuing", "--cn", "vcs.example.com",
                "--out-cert", chain, "--out-key", tmp_path / "vcs.key", "--json",
            ).stdout)  # fmt: skip
            leaf = x509.load_pem_x509_certificates(chain.read_bytes())[0]
            cdp = leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
            assert [n.value for p in cdp for n in p.full_name or ()] == [f"{base}/crl/issuing.crl"]
            aia = leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
            assert [d.access_location.value for d in aia] == [f"{base}/ocsp"]
            assert httpx.get(f"{base}/crl/issuing.crl").status_code == 200
            root = tmp_path / "root.pem"
            root.write_bytes(cli.ok("ca", "cert", "--name", "root").stdout_bytes)
            good = _verify(root, chain, tmp_path)
            assert good.returncode == 0, good.stdout + good.stderr
            cli.ok("ca", "revoke", "--ca", "issuing", "--serial", issued["serial"],
                   "--reason", "keyCompromise")  # fmt: skip
            revoked = _verify(root, chain, tmp_path)
            assert revoked.returncode != 0
            assert "certificate revoked" in revoked.stdout + revoked.stderr
            # and the product's own check says the same
            cli.ok("trust", "add", root)
            check = cli("check", chain, "--purpose", "server", "--json")
            assert check.exit_code == 1 and json.loads(check.stdout)["code"] == "revoked"
    finally:
        node.close()


# -- errors about files say what is wrong with the file, never the parser's internals ----------
PARSER_INTERNALS = re.compile(r"ParseError|kind:|ShortData|\{|asn1 value|Details:")


def bad_files(tmp_path: Path, cli: Cli) -> dict[str, Path]:
    cert_pem = cli.ok("ca", "cert", "--name", "temporary-ca").stdout_bytes
    der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    body = base64.encodebytes(der[: len(der) // 2]).decode()
    return {
        "truncated-der": write(tmp_path / "t.der", der[: len(der) // 2]),
        "truncated-pem": write(
            tmp_path / "t.pem",
            f"-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n".encode(),
        ),
        "garbage-der": write(tmp_path / "g.der", b"\x30\x82\x01\x00" + b"\x02\x01\x05" * 30),
        "garbage-pem": write(
            tmp_path / "g.pem", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
        ),
        "cut-pem": write(tmp_path / "c.pem", cert_pem[:200]),
    }


FILE_COMMANDS = [
    ("decode", "{f}"),
    ("trust", "add", "{f}"),
    ("crl", "upload", "{f}"),
    ("server-cert", "upload", "{f}"),
    ("check", "{f}"),
    ("convert", "{f}", "--to", "der", "--out", "{out}"),
    ("ca", "sign", "--ca", "temporary-ca", "--csr", "{f}"),
    ("csr", "create", "--key", "{f}", "--cn", "x.example.com"),
    ("ca", "import", "--name", "imp", "--cert", "{f}", "--key", "{f}"),
]


@pytest.mark.parametrize("command", FILE_COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_bad_files_are_described_not_dumped(
    cli: Cli, tmp_path: Path, command: tuple[str, ...]
) -> None:
    before = store_snapshot(cli.data_dir)
    for label, path in bad_files(tmp_path, cli).items():
        args = [a.format(f=path, out=tmp_path / "out.der") for a in command]
        result = cli(*args)
        assert result.exit_code == 2, (label, result.stderr)
        message = result.stderr.strip()
        assert message.startswith("error: ") and "\n" not in message, (label, message)
        assert not PARSER_INTERNALS.search(message), (label, message)
        if label.startswith("truncated") and command[0] != "csr" and "found" not in message:
            assert "truncated" in message, (label, message)  # (not "found a CERTIFICATE")
    assert store_snapshot(cli.data_dir) == before


def test_error_reason_translates_asn1_parse_errors() -> None:
    from certway.pki.load import error_reason

    whole = Pki("Polish").leaf("a.example.com").public_bytes(serialization.Encoding.DER)
    for data, expected in (
        (b"\x30\x82\x02\x00abc", "the data ends early: the file is truncated (509 more bytes"),
        (whole + b"\x00", "there are extra bytes after the end of the object"),
        (b"\x30\x03\x02\x01\x05\x00", "the data does not have the structure of this kind of "
         "object, in the field tbs_cert"),
        (b"\x31\x00", "the data does not have the structure"),
    ):  # fmt: skip
        with pytest.raises(ValueError) as info:
            x509.load_der_x509_certificate(data)
        assert "ParseError" in str(info.value)  # what cryptography says ...
        reason = error_reason(info.value)  # ... and what certway says
        assert reason.startswith(expected), reason
        assert not PARSER_INTERNALS.search(reason), reason


def test_ed25519_server_csr_comes_with_a_warning(cli: Cli) -> None:
    made = cli.ok("server-cert", "csr", "generate", "--key-type", "ed25519")
    assert "warning: an Ed25519 key: many SIP peers" in made.stderr
    assert "browsers" in made.stderr
    shown = json.loads(cli.ok("server-cert", "csr", "show", "--json").stdout)
    assert shown["key"] == "Ed25519" and "do not accept Ed25519" in shown["warnings"][0]
    cli.ok("server-cert", "csr", "discard")
    ec = cli.ok("server-cert", "csr", "generate", "--key-type", "ec:p256")
    assert "warning" not in ec.stderr
    assert json.loads(cli.ok("server-cert", "csr", "show", "--json").stdout)["warnings"] == []


def test_ed25519_warning_only_when_the_csr_is_generated(cli: Cli) -> None:
    cli.ok("server-cert", "csr", "generate", "--key-type", "ec:p256")
    refused = cli("server-cert", "csr", "generate", "--key-type", "ed25519")
    assert refused.exit_code == 2
    assert refused.stderr.startswith("error: a CSR is already pending"), refused.stderr
    assert "warning" not in refused.stderr and "Ed25519" not in refused.stderr


def test_key_generation_notice_names_the_key_type(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    from certway.cli import node_commands

    cli.ok("domain", "add", "example.com")
    fast = cli.ok("domain", "csr", "generate", "example.com", "--key-type", "ed25519")
    assert "generating" not in fast.stderr  # an Ed25519 key takes no time worth announcing
    cli.ok("domain", "csr", "discard", "example.com")
    # what is said before a slow (RSA 3072/4096) key, shown here with a fast one
    monkeypatch.setattr(node_commands, "SLOW_KEY_TYPES", ("ec:p256",))
    slow = cli.ok("domain", "csr", "generate", "example.com", "--key-type", "ec:p256")
    assert "generating an ECDSA P-256 key (this can take a few seconds)" in slow.stderr


def test_counts_agree_with_their_nouns() -> None:
    from certway.pki.text import plural

    assert plural(1, "entry") == "1 entry" and plural(0, "entry") == "0 entries"
    assert plural(2, "CRL source") == "2 CRL sources" and plural(1, "CA") == "1 CA"
    assert plural(3, "day") == "3 days" and plural(1, "private key") == "1 private key"


def test_no_message_counts_with_a_fixed_plural() -> None:
    """No `{n} entries` or `CRL(s)` left in what certway says."""
    source = Path(__file__).resolve().parents[2] / "src" / "certway"
    pattern = re.compile(r"\{[^}]+\} entries\b|\w\(s\)")
    found = [
        f"{path.relative_to(source)}:{number}: {line.strip()}"
        for path in source.rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line) and 'f"' in line
    ]
    assert not found, found


def test_service_errors_get_the_options_of_the_command_line(cli: Cli, tmp_path: Path) -> None:
    """The services name settings ("StartTLS"); the command line adds its options."""
    missing = cli("ldap", "set", "--url", "ldaps://ldap.example.com")
    assert missing.exit_code == 2
    assert missing.stderr.strip() == (
        "error: a first LDAP configuration needs the base DN, the bind DN and the bind "
        "password (--url, --base-dn, --bind-dn, --bind-password-file)"
    )
    password = write(tmp_path / "bind", b"bind-secret-93f1\n")
    clear = cli(
        "ldap", "set", "--url", "ldap://ldap.example.com", "--base-dn", "dc=example,dc=com",
        "--bind-dn", "cn=svc,dc=example,dc=com", "--bind-password-file", password, "--json",
    )  # fmt: skip
    error = json.loads(clear.stderr)["error"]
    assert (error["code"], clear.exit_code) == ("ldap-tls", 2)
    assert error["message"] == (
        "passwords are never sent in clear: use an ldaps:// URL, or an ldap:// URL with "
        "StartTLS (--starttls)"
    )
    assert "bind-secret" not in clear.stderr
    cli.ok("ca", "create-root", "--name", "acme", "--subject", "/CN=ACME Root")
    port = cli("ca", "acme", "enable", "--ca", "acme", "--http-01-port", "0")
    assert port.exit_code == 2
    assert "the HTTP-01 port must be between 1 and 65535 (--http-01-port" in port.stderr
    source = cli("admin-auth", "set", "--source", "ldap")
    assert source.stderr.strip() == "error: configure the LDAP server first (certway ldap set)"
    # an error without a hint is printed as the service says it
    url = cli(
        "ldap", "set", "--url", "http://ldap.example.com", "--base-dn", "dc=example,dc=com",
        "--bind-dn", "cn=svc,dc=example,dc=com", "--bind-password-file", password,
    )  # fmt: skip
    assert url.exit_code == 2 and "is not an LDAP URL" in url.stderr and "(--" not in url.stderr
