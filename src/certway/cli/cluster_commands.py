"""Cluster commands: peers, the exported cluster key, and moving an embedded node to
PostgreSQL (``db migrate``).

``cluster_app`` and ``db_app`` register themselves on the main app, like the other command
modules. The cluster key is only ever written encrypted under a passphrase.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.table import Table

from certway.cli.main import (
    InputFileError,
    JsonOpt,
    _typer,
    app,
    choice_argument,
    err,
    node,
    open_node,
    out,
    print_json,
    read_passphrase,
    write_output,
)
from certway.pki.text import plural
from certway.services.cluster_tls import Verification

__all__ = ["cluster_app", "db_app"]

cluster_app = _typer("The cluster: peers sharing one PostgreSQL database, the cluster key.")
db_app = _typer("The node's database.")
app.add_typer(cluster_app, name="cluster")
app.add_typer(db_app, name="db")


def _when(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value is not None else "never"


@cluster_app.command("status")
def cluster_status(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """The peers: id, FQDN, last seen, server certificate expiry, TLS verification result."""
    with open_node(ctx) as n:
        status = n.cluster.status()
        verification = n.cluster_tls.verification()
    if as_json:
        print_json({**status.as_dict(), "verification": str(verification)})
        return
    if not status.clustered:
        out.print("embedded node (SQLite): a cluster of one; see 'certway db migrate --to URL'")
    table = Table("id", "FQDN", "last seen", "server certificate expires", "TLS verification")
    for peer in status.peers:
        table.add_row(
            f"{peer.id}{' (this node)' if peer.this_node else ''}",
            peer.fqdn or "-",
            _when(peer.last_seen),
            _when(peer.server_cert_not_after) if peer.server_cert_not_after else "-",
            peer.tls_status,
        )
    out.print(table)
    out.print(f"cluster TLS verification: {verification}")


@cluster_app.command("remove-peer")
def cluster_remove_peer(
    ctx: typer.Context,
    peer: Annotated[
        str, typer.Argument(metavar="NODE", help="The peer's id or FQDN, as 'status' shows.")
    ],
    as_json: JsonOpt = False,
) -> None:
    """Remove a decommissioned peer (stopped for good) and its own state: its server, client
    and domain certificates, pending CSRs, settings and alarms. Refused for this node and for
    a peer seen in the last minutes (still running)."""
    with open_node(ctx) as n:
        removed = n.cluster.remove_peer(peer)
    if as_json:
        print_json(removed.as_dict())
        return
    out.print(
        f"removed {removed.peer.label} from the cluster with its own state "
        f"({plural(sum(removed.rows.values()), 'row')})"
    )


@cluster_app.command("tls-verification")
def cluster_tls_verification(
    ctx: typer.Context,
    mode: Annotated[
        str | None,
        choice_argument(
            values=Verification,
            metavar="MODE",
            help="permissive: check and alarm; enforce: also refuse; none: show the mode.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """How peers judge each other's server certificates (mutual-TLS health checks)."""
    with open_node(ctx) as n:
        current = n.cluster_tls.set_verification(mode) if mode else n.cluster_tls.verification()
    if as_json:
        print_json({"verification": str(current)})
    else:
        out.print(f"cluster TLS verification: {current}")


@cluster_app.command("export-key")
def cluster_export_key(
    ctx: typer.Context,
    out_file: Annotated[Path, typer.Option("--out", help="File to write (mode 0600).")],
    passphrase_file: Annotated[
        Path,
        typer.Option(
            "--passphrase-file", help="File whose first line is the passphrase (12+ characters)."
        ),
    ],
) -> None:
    """Write the cluster key encrypted under a passphrase, for 'init --join' on a new peer."""
    passphrase = read_passphrase(passphrase_file) or b""
    try:
        text = passphrase.decode()
    except UnicodeDecodeError:
        raise InputFileError(f"passphrase file {passphrase_file} is not UTF-8 text") from None
    with open_node(ctx) as n:
        sealed = n.cluster.export_key(text)
    write_output(out_file, sealed, secret=True)
    out.print(
        f"wrote the cluster key, encrypted under the passphrase, to {out_file} (mode 0600); "
        "a new peer joins with 'certway --data-dir DIR init --database URL --join "
        f"{out_file} --passphrase-file FILE --fqdn PEER-FQDN'"
    )


@db_app.command("migrate")
def db_migrate(
    ctx: typer.Context,
    to: Annotated[
        str, typer.Option("--to", help="An empty PostgreSQL database (postgresql://user@host/db).")
    ],
    as_json: JsonOpt = False,
) -> None:
    """Copy this embedded node into an empty PostgreSQL database (verified), then use it: the
    node becomes peer 1 of a cluster. Stop 'certway serve' on this node first."""
    from certway.store.transfer import MIGRATED_SUFFIX, migrate_to_postgresql

    n = node(ctx)
    try:
        with Progress(
            TextColumn("{task.description:<22}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            console=err,
            disable=as_json or not err.is_terminal,
        ) as bar:
            tasks: dict[str, TaskID] = {}

            def progress(table: str, done: int, total: int) -> None:
                if table not in tasks:
                    tasks[table] = bar.add_task(table, total=total or 1)
                bar.update(tasks[table], completed=done if total else 1)

            counts = migrate_to_postgresql(n.store, to, progress)
    finally:
        n.close()
    if as_json:
        print_json({"copied": counts})
        return
    rows = plural(sum(counts.values()), "row")
    out.print(
        f"copied {rows} of {plural(len(counts), 'table')} into PostgreSQL and verified them (row "
        "counts, CRL bytes); this node now uses the PostgreSQL database as peer 1 of a cluster "
        f"(the SQLite file is kept as certway.db{MIGRATED_SUFFIX})"
    )
