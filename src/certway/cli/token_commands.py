"""Commands for PKCS#11 tokens (HSMs) that keep local CAs' keys.

``token_app`` registers itself on the main app, like the other command modules. The PIN is
read from a file (its first line), sealed in the store, and never printed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from certway.cli.main import JsonOpt, _typer, app, open_node, out, print_json, read_passphrase
from certway.errors import PolicyViolation
from certway.pki.text import plural
from certway.services.tokens import TokenInfo

__all__ = ["token_app"]

token_app = _typer("PKCS#11 tokens (HSMs) that keep local CAs' keys.")
app.add_typer(token_app, name="token")


def _as_dict(token: TokenInfo) -> dict[str, object]:
    return {
        "name": token.name,
        "module": token.module,
        "token_label": token.token_label,
        "cas": list(token.cas),
    }


@token_app.command("add")
def token_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Name of the token in certway.")],
    module: Annotated[
        str, typer.Option("--module", help="Path of the PKCS#11 module (a .so library).")
    ],
    token_label: Annotated[str, typer.Option("--token-label", help="Label of the token.")],
    pin_file: Annotated[
        Path, typer.Option("--pin-file", help="File whose first line is the user PIN.")
    ],
    as_json: JsonOpt = False,
) -> None:
    """Register a token: logs in once to check it; the PIN is stored encrypted."""
    raw = read_passphrase(pin_file)
    assert raw is not None
    try:
        pin = raw.decode()
    except UnicodeDecodeError:
        raise PolicyViolation("token-pin", f"the PIN in {pin_file} is not UTF-8 text") from None
    with open_node(ctx) as n:
        info = n.tokens.add(name, module=module, token_label=token_label, pin=pin)
    if as_json:
        print_json(_as_dict(info))
    else:
        out.print(f"added token '{info.name}': label '{info.token_label}' of {info.module}")


@token_app.command("list")
def token_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List the registered tokens and the CAs whose key each keeps."""
    with open_node(ctx) as n:
        tokens = n.tokens.tokens()
    if as_json:
        print_json([_as_dict(t) for t in tokens])
        return
    if not tokens:
        out.print("no token yet: register one with 'certway token add'")
        return
    table = Table("name", "token label", "module", "CAs")
    for t in tokens:
        table.add_row(t.name, t.token_label, t.module, ", ".join(t.cas))
    out.print(table)


@token_app.command("test")
def token_test(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Name of the token.")],
    as_json: JsonOpt = False,
) -> None:
    """Log in to the token and list its private keys (those of certway's CAs marked)."""
    with open_node(ctx) as n:
        result = n.tokens.test(name)
    keys = [
        {
            "label": k.label,
            "id": k.id_hex,
            "type": k.key_type,
            "ca": result.used_by.get(k.id_hex),
        }
        for k in result.keys
    ]
    if as_json:
        print_json({"name": result.name, "ok": True, "keys": keys})
        return
    out.print(f"token '{result.name}': logged in, {plural(len(keys), 'private key')}")
    if keys:
        table = Table("label", "id", "type", "CA")
        for k in keys:
            table.add_row(str(k["label"]), str(k["id"]), str(k["type"]), str(k["ca"] or ""))
        out.print(table)
