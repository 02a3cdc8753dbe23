"""``certway ca acme ...``: the ACME server (RFC 8555) of a local CA.

The service answers on the admin listener at ``https://<admin listener>/acme/<CA>/directory``;
these commands change its settings (applied to the next request of a running server).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from certway.cli.main import (
    JsonOpt,
    _typer,
    ca_app,
    choice,
    cli_hints,
    complete_list_from,
    open_node,
    out,
    print_json,
)
from certway.pki.text import plural
from certway.services.acme_server import (
    ACME_PROFILES,
    CHALLENGE_TYPES,
    AcmeServiceInfo,
    AcmeSettings,
)

__all__ = ["acme_server_app"]

acme_server_app = _typer("The ACME server (RFC 8555) of a local CA, on the admin listener.")
ca_app.add_typer(acme_server_app, name="acme")

CaOpt = Annotated[str, typer.Option("--ca", help="Name of the local CA.")]


@acme_server_app.command("enable")
def acme_enable(
    ctx: typer.Context,
    ca: CaOpt,
    challenges: Annotated[
        str,
        typer.Option(
            "--challenges",
            metavar="TYPE,...",
            help=f"Challenge types offered, comma separated: {', '.join(CHALLENGE_TYPES)}.",
            autocompletion=complete_list_from(CHALLENGE_TYPES),
        ),
    ] = ",".join(CHALLENGE_TYPES),
    allow: Annotated[
        str,
        typer.Option(
            "--allow", help="Regex (RE2) an identifier must match entirely; default: any name."
        ),
    ] = ".*",
    allow_ip: Annotated[
        bool, typer.Option("--allow-ip", help="Also issue for IP addresses (HTTP-01 only).")
    ] = False,
    days: Annotated[int, typer.Option("--days", help="Validity of issued certificates.")] = 90,
    profile: Annotated[
        str, choice("--profile", values=ACME_PROFILES, help="Profile of issued certificates.")
    ] = "server",
    eab: Annotated[
        bool,
        typer.Option("--eab", help="Require an external account binding for new accounts."),
    ] = False,
    dns_server: Annotated[
        str | None,
        typer.Option(
            "--dns-server", help="IP:PORT of the DNS server for validation (default: system)."
        ),
    ] = None,
    http01_port: Annotated[
        int, typer.Option("--http-01-port", help="Port HTTP-01 validation connects to.")
    ] = 80,
    tls_alpn01_port: Annotated[
        int, typer.Option("--tls-alpn-01-port", help="Port TLS-ALPN-01 validation connects to.")
    ] = 443,
    order_minutes: Annotated[
        int, typer.Option("--order-minutes", help="Deadline of an order, in minutes.")
    ] = 60,
    orders_per_hour: Annotated[
        int, typer.Option("--orders-per-hour", help="New orders an account may create per hour.")
    ] = 300,
    as_json: JsonOpt = False,
) -> None:
    """Serve ACME for a local CA at https://<admin listener>/acme/<CA>/directory."""
    settings = AcmeSettings(
        challenges=tuple(c.strip() for c in challenges.split(",") if c.strip()),
        allow=allow,
        allow_ip=allow_ip,
        days=days,
        profile=profile,
        eab=eab,
        dns_server=dns_server,
        http01_port=http01_port,
        tls_alpn01_port=tls_alpn01_port,
        order_minutes=order_minutes,
        orders_per_hour=orders_per_hour,
    )
    hints = {
        "port": "(--http-01-port, --tls-alpn-01-port)",
        "dns-server": "(--dns-server)",
        "order-minutes": "(--order-minutes)",
        "rate-limit": "(--orders-per-hour)",
    }
    with cli_hints(hints), open_node(ctx) as n:
        n.acme_server.enable(ca, settings)
    if as_json:
        print_json({"ca": ca, "directory": f"/acme/{ca}/directory", **settings.to_json()})
        return
    out.print(f"ACME enabled for CA '{ca}': directory https://<admin listener>/acme/{ca}/directory")


@acme_server_app.command("disable")
def acme_disable(ctx: typer.Context, ca: CaOpt) -> None:
    """Stop serving ACME for a CA (accounts and issued certificates are kept)."""
    with open_node(ctx) as n:
        n.acme_server.disable(ca)
    out.print(f"ACME disabled for CA '{ca}'")


def _as_dict(info: AcmeServiceInfo) -> dict[str, object]:
    return {
        "ca": info.ca,
        "directory": info.directory_path,
        **info.settings.to_json(),
        "accounts": [
            {
                "id": a.id,
                "status": a.status,
                "contact": list(a.contact),
                "thumbprint": a.thumbprint,
                "eab_key_id": a.eab_key_id,
                "created_at": a.created_at,
                "issued": a.issued,
            }
            for a in info.accounts
        ],
        "eab_keys": [
            {"key_id": k.key_id, "created_at": k.created_at, "account": k.account}
            for k in info.eab_keys
        ],
    }


@acme_server_app.command("show")
def acme_show(ctx: typer.Context, ca: CaOpt, as_json: JsonOpt = False) -> None:
    """The ACME service of a CA: settings, accounts, external account binding keys."""
    with open_node(ctx) as n:
        info = n.acme_server.show(ca)
    if as_json:
        print_json(_as_dict(info))
        return
    s = info.settings
    out.print(f"ACME for CA '{info.ca}': {'enabled' if s.enabled else 'disabled'}")
    out.print(f"directory:    https://<admin listener>{info.directory_path}")
    out.print(f"challenges:   {', '.join(s.challenges)}")
    out.print(f"allow:        {s.allow}" + (" (and IP addresses)" if s.allow_ip else ""))
    out.print(f"certificates: {plural(s.days, 'day')}, profile {s.profile}")
    out.print(f"external account binding: {'required' if s.eab else 'not required'}")
    out.print(
        f"validation:   DNS {s.dns_server or 'system resolver'}, HTTP-01 port {s.http01_port}, "
        f"TLS-ALPN-01 port {s.tls_alpn01_port}"
    )
    out.print(f"orders:       deadline {s.order_minutes} min, {s.orders_per_hour} per account/hour")
    if info.accounts:
        table = Table("account", "status", "contact", "issued", "created")
        for a in info.accounts:
            table.add_row(
                str(a.id), a.status, ", ".join(a.contact), str(a.issued), f"{a.created_at:%Y-%m-%d}"
            )
        out.print(table)
    else:
        out.print("no accounts yet")


eab_app = _typer("External account binding keys of a CA's ACME service.")
acme_server_app.add_typer(eab_app, name="eab")


@eab_app.command("create")
def acme_eab_create(ctx: typer.Context, ca: CaOpt, as_json: JsonOpt = False) -> None:
    """A new external account binding key (used once). The HMAC key is shown only now."""
    with open_node(ctx) as n:
        key_id, hmac_key = n.acme_server.create_eab_key(ca)
    if as_json:
        print_json({"key_id": key_id, "hmac_key": hmac_key})
        return
    out.print(f"key id:   {key_id}")
    out.print(f"HMAC key: {hmac_key}")
    out.print("give both to the ACME client (e.g. certbot --eab-kid/--eab-hmac-key); shown once")
