"""Commands for LDAP admin authentication: ``certway ldap ...`` and ``certway admin-auth``.

The bind password is read from a file (its first line), sealed in the store and never printed;
``ldap test`` reads the user's password from a file or a hidden prompt and never prints it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from certway.cli.main import (
    ON_OFF,
    JsonOpt,
    _typer,
    app,
    choice,
    cli_hints,
    on_off,
    open_node,
    out,
    print_json,
    read_passphrase,
)
from certway.directory import Directory
from certway.errors import PolicyViolation
from certway.services.admins import ACCESS_LEVELS
from certway.services.ldap_settings import AuthSource

__all__ = ["admin_auth_app", "ldap_app"]

ldap_app = _typer("LDAP admin authentication: the directory and its groups.")
app.add_typer(ldap_app, name="ldap")
group_app = _typer("LDAP groups and the access level each gives.")
ldap_app.add_typer(group_app, name="group")
admin_auth_app = _typer("Where admin logins are checked: local accounts, LDAP or both.")
app.add_typer(admin_auth_app, name="admin-auth")


def _text(path: Path, what: str) -> str:
    raw = read_passphrase(path)
    assert raw is not None
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise PolicyViolation("ldap-password", f"the {what} in {path} is not UTF-8 text") from None


@ldap_app.command("set")
def ldap_set(
    ctx: typer.Context,
    url: Annotated[
        str | None, typer.Option("--url", help="ldaps://HOST[:636] or ldap://HOST[:389].")
    ] = None,
    starttls: Annotated[
        bool | None,
        typer.Option("--starttls/--no-starttls", help="StartTLS on an ldap:// URL."),
    ] = None,
    base_dn: Annotated[str | None, typer.Option("--base-dn", help="Where users are.")] = None,
    bind_dn: Annotated[
        str | None, typer.Option("--bind-dn", help="The service account that searches.")
    ] = None,
    bind_password_file: Annotated[
        Path | None,
        typer.Option("--bind-password-file", help="File whose first line is its password."),
    ] = None,
    user_filter: Annotated[
        str | None,
        typer.Option("--user-filter", help="Finds a user: {user} is the login name (escaped)."),
    ] = None,
    verify: Annotated[
        str | None,
        choice("--verify", values=ON_OFF, help="Judge the server's certificate (default on)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Set the LDAP server (the first time: URL, base DN, bind DN and password)."""
    password = _text(bind_password_file, "bind password") if bind_password_file else None
    hints = {
        "ldap-missing": "(--url, --base-dn, --bind-dn, --bind-password-file)",
        "ldap-tls": "(--starttls)",
    }
    with cli_hints(hints), open_node(ctx) as n:
        n.ldap.set(
            url=url,
            starttls=starttls,
            base_dn=base_dn,
            bind_dn=bind_dn,
            bind_password=password,
            user_filter=user_filter,
            verify=on_off(verify, "--verify", "verify"),
        )
        view = n.ldap.view()
    if as_json:
        print_json(view)
    else:
        out.print(f"LDAP server {view['url']} set (admin authentication: {view['source']})")


@ldap_app.command("show")
def ldap_show(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Show the LDAP settings and mapped groups (never the bind password)."""
    with open_node(ctx) as n:
        view = n.ldap.view()
    if as_json:
        print_json(view)
        return
    if view["url"] is None:
        out.print(f"no LDAP server (admin authentication: {view['source']})")
        return
    out.print(f"admin authentication: {view['source']}")
    tls = "StartTLS" if view["starttls"] else ("LDAPS" if view["url"].startswith("ldaps") else "")
    out.print(f"url: {view['url']} ({tls}, verify {'on' if view['verify'] else 'off'})")
    out.print(f"base DN: {view['base_dn']}")
    out.print(f"bind DN: {view['bind_dn']} (password stored encrypted)")
    out.print(f"user filter: {view['user_filter']}")
    for group in view["groups"]:
        out.print(f"group: {group['dn']} → {group['access']}")
    if view["last_error"]:
        out.print(f"[red]last error: {view['last_error']}[/red]")


@ldap_app.command("test")
def ldap_test(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(help="The login name to look up.")],
    password_file: Annotated[
        Path | None,
        typer.Option("--password-file", help="File whose first line is the user's password."),
    ] = None,
    no_password: Annotated[
        bool, typer.Option("--no-password", help="Only look the user up; do not bind.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Look a user up, bind as them, and show their groups and access level."""
    if no_password:
        password = None
    elif password_file is not None:
        password = _text(password_file, "password")
    else:
        password = typer.prompt(f"password of {user}", hide_input=True)
    with open_node(ctx) as n:
        directory = Directory(n)
        try:
            result = directory.test(user, password)
        finally:
            directory.close()
    if as_json:
        print_json(result.as_dict())
        return
    if result.dn is None:
        out.print(f"user '{user}': not found (or more than one entry matches)")
        raise typer.Exit(1)
    out.print(f"user '{user}': {result.dn}")
    if password is not None:
        out.print("password: " + ("accepted" if result.authenticated else "refused"))
    for group in result.groups:
        out.print(f"group: {group}")
    out.print(f"access: {result.access or 'none (no mapped group)'}")


@group_app.command("add")
def group_add(
    ctx: typer.Context,
    dn: Annotated[str, typer.Argument(help="The group's DN.")],
    access: Annotated[
        str, choice("--access", values=ACCESS_LEVELS, help="What its members may do.")
    ],
) -> None:
    """Give the members of an LDAP group an access level."""
    with open_node(ctx) as n:
        group = n.ldap.add_group(dn, access=access)
    out.print(f"group {group.dn} → {group.access}")


@group_app.command("list")
def group_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List the mapped groups."""
    with open_node(ctx) as n:
        config = n.ldap.get()
    groups = [g.as_dict() for g in config.groups] if config else []
    if as_json:
        print_json(groups)
        return
    if not groups:
        out.print("no group mapped: add one with 'certway ldap group add'")
        return
    table = Table("group DN", "access")
    for g in groups:
        table.add_row(g["dn"], g["access"])
    out.print(table)


@group_app.command("remove")
def group_remove(
    ctx: typer.Context, dn: Annotated[str, typer.Argument(help="The group's DN.")]
) -> None:
    """Stop mapping a group."""
    with open_node(ctx) as n:
        n.ldap.remove_group(dn)
    out.print(f"group {dn} removed")


@admin_auth_app.command("set")
def admin_auth_set(
    ctx: typer.Context,
    source: Annotated[
        str, choice("--source", values=AuthSource, help="Where admin accounts are checked.")
    ],
    as_json: JsonOpt = False,
) -> None:
    """Choose where admin logins are checked. The local 'admin' account always works."""
    with cli_hints({"ldap-not-configured": "(certway ldap set)"}), open_node(ctx) as n:
        chosen = n.ldap.set_source(source)
    if as_json:
        print_json({"source": chosen.value})
    else:
        out.print(f"admin authentication: {chosen.value}")


@admin_auth_app.command("show")
def admin_auth_show(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Show where admin logins are checked."""
    with open_node(ctx) as n:
        source = n.ldap.source().value
    if as_json:
        print_json({"source": source})
    else:
        out.print(f"admin authentication: {source}")
