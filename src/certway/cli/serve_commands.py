"""The commands of issue #5: ``certway serve`` and admin accounts."""

from __future__ import annotations

import getpass
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from certway.cli.main import (
    JsonOpt,
    _typer,
    app,
    choice,
    err,
    open_node,
    out,
    print_json,
    read_passphrase,
)
from certway.errors import PolicyViolation
from certway.services.admins import ACCESS_LEVELS
from certway.services.node_settings import DEFAULT_PUBLISH_PORT

admin_app = _typer("Administrator accounts and admin client-certificate security.")
app.add_typer(admin_app, name="admin")


@app.command("serve")
def serve_cmd(
    ctx: typer.Context,
    admin_listen: Annotated[
        str, typer.Option("--admin-listen", help="HTTPS admin UI + API, HOST:PORT.")
    ] = "127.0.0.1:8443",
    publish_listen: Annotated[
        str,
        typer.Option("--publish-listen", help="Plain HTTP CRL/OCSP publication, HOST:PORT."),
    ] = "127.0.0.1:8080",
    sip_listen: Annotated[
        str, typer.Option("--sip-listen", help="SIP over TLS listener, HOST:PORT.")
    ] = "127.0.0.1:5061",
    fqdn: Annotated[
        str | None, typer.Option("--fqdn", help="System FQDN for a new data directory.")
    ] = None,
    acme_http_listen: Annotated[
        str | None,
        typer.Option(
            "--acme-http-listen",
            help="Answer ACME HTTP-01 challenges (/.well-known/acme-challenge/ only), HOST:PORT.",
        ),
    ] = None,
    poll_only: Annotated[
        bool,
        typer.Option(
            "--poll-only",
            help="Cluster: pick up other peers' changes by polling only (no LISTEN/NOTIFY).",
        ),
    ] = False,
    peer_check_interval: Annotated[
        float,
        typer.Option(
            "--peer-check-interval",
            help="Cluster: seconds between the checks of the other peers' certificates.",
        ),
    ] = 15.0,
) -> None:
    """Run the node: HTTPS admin, CRL/OCSP publication, SIP TLS, scheduler, hot reload."""
    from certway.serve import (
        NodeServer,
        ServeOptions,
        check_listeners,
        parse_listen,
        publication_note,
    )
    from certway.services.node import Node

    options = ServeOptions(
        admin=parse_listen(admin_listen, 8443),
        publish=parse_listen(publish_listen, DEFAULT_PUBLISH_PORT),
        sip=parse_listen(sip_listen, 5061),
        acme_http=parse_listen(acme_http_listen, 80) if acme_http_listen else None,
        notify=not poll_only,
        peer_check_interval=peer_check_interval,
    )
    check_listeners(options)
    _configure_logging()
    data_dir: Path = ctx.obj
    new = not (data_dir / "master.key").exists()
    n = Node.init(data_dir, fqdn=fqdn if new else None)
    try:
        password = n.admins.ensure_initial()
        server = NodeServer(n, options)
        host, port = options.admin
        fqdn_now = n.settings.get().fqdn
        if password is not None:
            _print_password(password)
        out.print(f"certway admin: https://{host}:{port}/ (server certificate for {fqdn_now})")
        if options.publish:
            out.print(f"CRL/OCSP publication: http://{options.publish[0]}:{options.publish[1]}/")
        note = publication_note(n.settings.get(), options.publish)
        if note is not None:
            reason, url = note
            err.print(
                f"note: {reason}; set it with 'certway node set --publish-url {url}' (or the "
                "URL where relying parties reach this listener)"
            )
        if options.sip:
            out.print(f"SIP over TLS: {options.sip[0]}:{options.sip[1]}")
        if options.acme_http:
            out.print(f"ACME HTTP-01: http://{options.acme_http[0]}:{options.acme_http[1]}/")
        server.serve_forever()
    finally:
        n.close()
    err.print("certway stopped")


class _OneLineFormatter(logging.Formatter):
    """Every record on one line, ``time level=… logger=… message``: messages from libraries
    (alembic's migration docstrings, tracebacks) have their line breaks folded."""

    def format(self, record: logging.LogRecord) -> str:
        return " | ".join(line for line in super().format(record).splitlines() if line.strip())


def _configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        _OneLineFormatter("%(asctime)s level=%(levelname)s logger=%(name)s %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # schema steps: not for operators
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):  # through the root handler only
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


def _print_password(password: str) -> None:
    """The one-time password on standard output, set apart from the log lines (stderr)."""
    rule = "  " + "=" * 70
    out.print(rule)
    out.print("  first start: an account 'admin' was created; its password, shown once:")
    out.print()
    out.print(f"      {password}")
    out.print()
    out.print("  change it with: certway admin passwd admin")
    out.print(rule)


def _password(path: Path | None, prompt: str) -> str:
    if path is not None:
        data = read_passphrase(path)
        assert data is not None
        return data.decode("utf-8")
    if not sys.stdin.isatty():
        raise PolicyViolation("password", "give --password-file (no terminal to ask on)")
    first = getpass.getpass(prompt)
    if getpass.getpass("again: ") != first:
        raise PolicyViolation("password", "the two passwords differ")
    return first


PasswordFile = Annotated[
    Path | None, typer.Option("--password-file", help="File whose first line is the password.")
]


@admin_app.command("add")
def admin_add(
    ctx: typer.Context,
    name: str,
    access: Annotated[
        str, choice("--access", values=ACCESS_LEVELS, help="What the administrator may do.")
    ],
    password_file: PasswordFile = None,
) -> None:
    """Add an administrator account."""
    password = _password(password_file, f"password for {name}: ")
    with open_node(ctx) as n:
        info = n.admins.add(name, access, password)
    out.print(f"added {info.name} ({info.access})")


@admin_app.command("passwd")
def admin_passwd(ctx: typer.Context, name: str, password_file: PasswordFile = None) -> None:
    """Change an account's password."""
    password = _password(password_file, f"new password for {name}: ")
    with open_node(ctx) as n:
        n.admins.set_password(name, password)
    out.print(f"password of {name} changed")


@admin_app.command("list")
def admin_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """The administrator accounts."""
    with open_node(ctx) as n:
        accounts = n.admins.accounts()
        security = n.admin_security.get()
    if as_json:
        print_json({"accounts": [a.as_dict() for a in accounts], "security": security.as_dict()})
        return
    table = Table("account", "access")
    for a in accounts:
        table.add_row(a.name, a.access)
    out.print(table)
    out.print(f"client certificate security: {security.mode.value}")


@admin_app.command("remove")
def admin_remove(ctx: typer.Context, name: str) -> None:
    """Remove an account (not the last read-write one)."""
    with open_node(ctx) as n:
        n.admins.remove(name)
    out.print(f"removed {name}")


@admin_app.command("reset-security")
def admin_reset_security(ctx: typer.Context) -> None:
    """Recovery: client certificates not required; password login works again."""
    with open_node(ctx) as n:
        n.admin_security.reset()
    out.print("client certificate security reset to 'not required'")
