"""Commands for remote syslog: where the audit log, alarms and TLS refusals are sent.

``syslog_app`` registers itself on the main app, like the other command modules. Delivery
itself is done by ``certway serve``; ``syslog test`` sends one message now.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from certway.cli.main import (
    ON_OFF,
    JsonOpt,
    _typer,
    app,
    choice,
    err,
    open_node,
    out,
    print_json,
    styled,
)
from certway.outbound.syslog import send_tests
from certway.services.syslog import Destination, Transport
from certway.store.syslog_queue import DestinationState

__all__ = ["syslog_app"]

syslog_app = _typer("Remote syslog: audit events, alarms and TLS refusals sent to receivers.")
app.add_typer(syslog_app, name="syslog")


def _as_dict(destination: Destination, state: DestinationState | None = None) -> dict[str, object]:
    shown: dict[str, object] = destination.as_dict()
    if state is not None:
        shown.update(
            queued=state.queued,
            sent=state.sent,
            dropped=state.dropped,
            error=state.error,
            error_since=state.error_since,
        )
    return shown


@syslog_app.command("add")
def syslog_add(
    ctx: typer.Context,
    address: Annotated[
        str, typer.Argument(help="HOST:PORT of the receiver (port 6514 for tls, 514 otherwise).")
    ],
    transport: Annotated[
        Transport, typer.Option("--transport", help="tls (RFC 5425), tcp or udp.")
    ] = Transport.TLS,
    verify: Annotated[
        str,
        choice(
            "--verify",
            values=ON_OFF,
            help="on: the receiver's certificate must be trusted, unrevoked and name HOST.",
        ),
    ] = "on",
    as_json: JsonOpt = False,
) -> None:
    """Send the audit log, alarms and TLS refusals to a syslog receiver."""
    if verify not in ON_OFF:
        raise typer.BadParameter("use on or off", param_hint="--verify")
    with open_node(ctx) as n:
        added = n.syslog.add(address, transport=transport.value, verify=verify == "on")
    if as_json:
        print_json(_as_dict(added))
        return
    note = "" if added.transport is Transport.TLS else " (not encrypted)"
    out.print(f"added syslog destination {added.address} over {added.transport.value}{note}")


@syslog_app.command("list")
def syslog_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """The destinations and how delivery goes (queued, sent, last error)."""
    with open_node(ctx) as n:
        status = n.syslog.status()
    if as_json:
        print_json([_as_dict(d, s) for d, s in status])
        return
    if not status:
        out.print("no syslog destination: add one with 'certway syslog add HOST:PORT'")
        return
    table = Table("address", "transport", "verify", "queued", "sent", "status")
    for d, s in status:
        state = f"failing since {s.error_since}: {s.error}" if s.error else "ok"
        table.add_row(
            d.address,
            d.transport.value,
            "on" if d.verify else "off",
            str(s.queued),
            str(s.sent),
            state,
        )
    out.print(table)


@syslog_app.command("remove")
def syslog_remove(
    ctx: typer.Context,
    address: Annotated[str, typer.Argument(help="HOST:PORT as 'syslog list' shows it.")],
) -> None:
    """Stop sending to a destination (its queued messages are discarded)."""
    with open_node(ctx) as n:
        gone = n.syslog.remove(address)
    out.print(f"removed syslog destination {gone.address}")


@syslog_app.command("test")
def syslog_test(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Send one test message to every destination now; exit code 1 if one cannot take it."""
    with open_node(ctx) as n:
        results = send_tests(n)
    if as_json:
        print_json([{**_as_dict(d), "ok": e is None, "error": e} for d, e in results])
    elif not results:
        out.print("no syslog destination: add one with 'certway syslog add HOST:PORT'")
    for destination, error in results:
        if not as_json:
            if error is None:
                out.print(f"{destination.address}: test message sent")
            else:
                err.print(styled(f"{destination.address}:", "red", f" {error}"))
    if any(error is not None for _, error in results):
        raise typer.Exit(1)
