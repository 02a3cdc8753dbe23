"""Commands for neighbour zones and their status.

``zone_app`` registers itself on the main app, like the other command modules.
``zone check`` pings the zone from this process and records the status, exactly as the pinger
of ``certway serve`` does.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from certway.cli.main import (
    ON_OFF,
    JsonOpt,
    _typer,
    app,
    choice,
    err,
    on_off,
    open_node,
    out,
    print_json,
    styled,
)
from certway.services.zones import DEFAULT_INTERVAL, DEFAULT_PORT, Zone, ZoneStatus
from certway.sip.zones import DEFAULT_TIMEOUT, check_zone_now

__all__ = ["zone_app"]

zone_app = _typer("Neighbour zones: SIP OPTIONS over TLS to peers, status Active/Failed.")
app.add_typer(zone_app, name="zone")


def _state(status: ZoneStatus) -> Text:
    style = {"Active": "green", "Failed": "red"}.get(status.state, "yellow")
    return styled(status.state, style)


def _when(status: ZoneStatus) -> str:
    return f"{status.checked_at:%Y-%m-%d %H:%M:%S} UTC" if status.checked_at else "never"


def _print_zone(zone: Zone, status: ZoneStatus) -> None:
    out.print(f"zone:            {zone.name}")
    out.print(f"peers:           {', '.join(zone.peers)}")
    out.print(f"port:            {zone.port}")
    out.print(f"TLS verify mode: {'on' if zone.tls_verify else 'off'}")
    if zone.verify_subject:
        out.print(f"verify subject:  {zone.verify_subject}")
    out.print(f"interval:        {zone.interval} s")
    out.print(Text.assemble("status:          ", _state(status)))
    if status.reason:
        out.print(f"reason:          {status.reason}")
    out.print(f"detail:          {status.detail}")
    out.print(f"last check:      {_when(status)}")
    if len(status.peers) > 1 or (status.peers and status.active):
        table = Table("peer", "state", "reason", "answer", "certificate", "detail")
        for peer in status.peers:
            table.add_row(
                peer.address,
                peer.state,
                peer.reason or "",
                peer.response or "",
                peer.certificate or "",
                peer.detail,
            )
        out.print(table)


def _as_json(zone: Zone, status: ZoneStatus) -> dict[str, object]:
    return {**zone.as_dict(), "status": status.as_dict()}


@zone_app.command("add")
def zone_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Zone name.")],
    peer: Annotated[
        list[str], typer.Option("--peer", help="Peer address: DNS name or IP (repeatable).")
    ],
    port: Annotated[int, typer.Option("--port", help="Peer SIP/TLS port.")] = DEFAULT_PORT,
    tls_verify: Annotated[
        str,
        choice(
            "--tls-verify",
            values=ON_OFF,
            help="on: the peer certificate must chain to the trusted CA list, be unrevoked "
            "and name the peer address (or the verify subject name); off: not checked.",
        ),
    ] = "on",
    verify_subject: Annotated[
        str | None,
        typer.Option(
            "--verify-subject",
            help="TLS verify subject name: the name the peer certificate must carry instead "
            "of the peer address.",
        ),
    ] = None,
    interval: Annotated[
        int, typer.Option("--interval", help="Seconds between OPTIONS pings.")
    ] = DEFAULT_INTERVAL,
    as_json: JsonOpt = False,
) -> None:
    """Define a neighbour zone; certway serve starts pinging it within a second."""
    verify = on_off(tls_verify, "--tls-verify", "zone-verify")
    with open_node(ctx) as n:
        zone = n.zones.add(
            name,
            peers=peer,
            port=port,
            tls_verify=verify,
            verify_subject=verify_subject,
            interval=interval,
        )
    if as_json:
        print_json(zone.as_dict())
        return
    out.print(
        f"added zone {zone.name}: {', '.join(zone.peers)} port {zone.port}, TLS verify "
        f"{'on' if zone.tls_verify else 'off'}, every {zone.interval} s"
    )


@zone_app.command("list")
def zone_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Every zone with its status."""
    with open_node(ctx) as n:
        service = n.zones
        zones = service.entries()
        statuses = service.statuses()
    if as_json:
        print_json([_as_json(z, statuses[z.name]) for z in zones])
        return
    if not zones:
        out.print("no zones defined (certway zone add NAME --peer ADDRESS)")
        return
    table = Table("zone", "peers", "port", "TLS verify", "status", "reason", "last check")
    for zone in zones:
        status = statuses[zone.name]
        table.add_row(
            zone.name,
            ", ".join(zone.peers),
            str(zone.port),
            "on" if zone.tls_verify else "off",
            _state(status),
            status.reason or "",
            _when(status),
        )
    out.print(table)


@zone_app.command("show")
def zone_show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Zone name.")],
    as_json: JsonOpt = False,
) -> None:
    """A zone's definition and status: Active/Failed, the reason and the last check."""
    with open_node(ctx) as n:
        service = n.zones
        zone = service.get(name)
        status = service.status(name)
    if as_json:
        print_json(_as_json(zone, status))
        return
    _print_zone(zone, status)


@zone_app.command("remove")
def zone_remove(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help="Zone name.")]
) -> None:
    """Delete a zone (its status and alarm go with it)."""
    with open_node(ctx) as n:
        n.zones.remove(name)
    out.print(f"removed zone {name}")


@zone_app.command("check")
def zone_check(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Zone name.")],
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds allowed per peer.")
    ] = DEFAULT_TIMEOUT,
    as_json: JsonOpt = False,
) -> None:
    """Ping a zone now and record its status; exit code 1 when it is Failed."""
    with open_node(ctx) as n:
        zone = n.zones.get(name)
        status = check_zone_now(n, name, timeout=timeout)
    if as_json:
        print_json(_as_json(zone, status))
    else:
        _print_zone(zone, status)
    if not status.active:
        if not as_json:
            err.print(styled("zone failed:", "red", f" {status.reason}: {status.detail}"))
        raise typer.Exit(1)
