"""``certway ca acme enable|disable|show|eab create``."""

from __future__ import annotations

import json

from conftest import Cli


def test_enable_show_eab_disable(cli: Cli) -> None:
    cli.ok("ca", "create-root", "--name", "acme", "--subject", "/CN=ACME Root")
    out = cli.ok(
        "ca",
        "acme",
        "enable",
        "--ca",
        "acme",
        "--challenges",
        "http-01,dns-01",
        "--allow",
        r"[a-z0-9-]+\.corp\.example",
        "--days",
        "14",
        "--eab",
        "--dns-server",
        "127.0.0.1:5353",
        "--http-01-port",
        "8080",
    ).stdout
    assert "/acme/acme/directory" in out
    shown = json.loads(cli.ok("ca", "acme", "show", "--ca", "acme", "--json").stdout)
    assert shown["challenges"] == ["http-01", "dns-01"]
    assert (shown["days"], shown["eab"], shown["http01_port"]) == (14, True, 8080)
    assert shown["dns_server"] == "127.0.0.1:5353"
    created = json.loads(cli.ok("ca", "acme", "eab", "create", "--ca", "acme", "--json").stdout)
    shown = json.loads(cli.ok("ca", "acme", "show", "--ca", "acme", "--json").stdout)
    assert [k["key_id"] for k in shown["eab_keys"]] == [created["key_id"]]
    assert created["hmac_key"] not in json.dumps(shown)
    audit = cli.ok("audit", "--json").stdout if cli("audit", "--help").exit_code == 0 else ""
    assert created["hmac_key"] not in audit
    cli.ok("ca", "acme", "disable", "--ca", "acme")
    assert "disabled" in cli.ok("ca", "acme", "show", "--ca", "acme").stdout
    again = cli("ca", "acme", "disable", "--ca", "acme")
    assert again.exit_code == 2 and "not enabled" in again.stderr


def test_bad_settings_are_refused_and_change_nothing(cli: Cli) -> None:
    cli.ok("ca", "create-root", "--name", "acme", "--subject", "/CN=ACME Root")
    for args, fragment in (
        (["--challenges", "http-01,smtp-01"], "unknown challenge type"),
        (["--allow", "(x"], "regex"),
        (["--dns-server", "localhost"], "HOST:PORT"),
        (["--tls-alpn-01-port", "70000"], "--tls-alpn-01-port"),
    ):
        result = cli("ca", "acme", "enable", "--ca", "acme", *args)
        assert result.exit_code == 2, args
        assert fragment in result.stderr, (args, result.stderr)
    missing = cli("ca", "acme", "show", "--ca", "acme")
    assert missing.exit_code == 2 and "never enabled" in missing.stderr
    unknown = cli("ca", "acme", "enable", "--ca", "nope")
    assert unknown.exit_code == 2 and "no CA named 'nope'" in unknown.stderr
