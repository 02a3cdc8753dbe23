"""``certway tls``: the TLS profile (Mozilla intermediate or modern) of each service."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from certway.cli.main import JsonOpt, _typer, app, choice, open_node, out, print_json
from certway.tlsconf.policy import TLS_SERVICES, ProfileName

tls_app = _typer("TLS profiles of the listeners and outbound clients.")
app.add_typer(tls_app, name="tls")


@tls_app.command("show")
def tls_show(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """The TLS profile of each service: versions, TLS 1.2 cipher suites, groups."""
    with open_node(ctx) as n:
        policy = n.tls.policy()
    if as_json:
        print_json(policy.as_dict())
        return
    table = Table("service", "profile", "versions", "TLS 1.2 cipher suites", "groups")
    for service in TLS_SERVICES:
        p = policy.profile(service)
        table.add_row(
            service,
            p.name.value,
            ", ".join(p.versions),
            "\n".join(p.tls12_ciphers) if "TLSv1.2" in p.versions else "—",
            ", ".join(p.groups),
        )
    out.print(table)


@tls_app.command("set")
def tls_set(
    ctx: typer.Context,
    service: Annotated[
        str, choice("--service", values=TLS_SERVICES, metavar="SERVICE", help="The service.")
    ],
    profile: Annotated[
        str,
        choice(
            "--profile",
            values=ProfileName,
            help="intermediate (TLS 1.2 with ECDHE and AEAD ciphers, and TLS 1.3; the default) "
            "or modern (TLS 1.3 only).",
        ),
    ],
    as_json: JsonOpt = False,
) -> None:
    """Select the TLS profile of a service; listeners use it from the next connection."""
    with open_node(ctx) as n:
        chosen = n.tls.set(service, profile)
    if as_json:
        print_json({"service": service, **chosen.as_dict()})
        return
    out.print(f"{service}: TLS profile {chosen.name.value} ({', '.join(chosen.versions)})")
