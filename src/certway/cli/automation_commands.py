"""Commands for automation: API tokens (``certway api-token``) and batch signing
(``certway ca sign-batch``).

The token is printed once, by ``create``, on stdout alone (so ``$(certway api-token create
…)`` captures it); the store keeps only its hash.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from certway.cli.main import (
    InputFileError,
    JsonOpt,
    _typer,
    app,
    ca_app,
    choice,
    err,
    open_node,
    out,
    print_json,
    read_input,
    styled,
    write_output,
)
from certway.errors import PolicyViolation
from certway.pki.issue import PROFILES
from certway.pki.text import plural, serial_hex
from certway.services.admins import ACCESS_LEVELS
from certway.services.api_tokens import ApiTokenInfo
from certway.services.local_ca import MAX_BATCH

__all__ = ["api_token_app"]

api_token_app = _typer("API tokens for automation (Authorization: Bearer).")
app.add_typer(api_token_app, name="api-token")


def _when(info: ApiTokenInfo) -> str:
    return f"{info.expires_at:%Y-%m-%d %H:%M} UTC" if info.expires_at else "never"


@api_token_app.command("create")
def api_token_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Name of the token (1-64 letters, digits, . _ @ -).")],
    access: Annotated[
        str,
        choice("--access", values=ACCESS_LEVELS, help="What the token may do.", show_default=False),
    ],
    expires: Annotated[
        int | None,
        typer.Option("--expires", help="Days until the token expires (default: never)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a token and print it once: it cannot be shown again (only its hash is kept)."""
    with open_node(ctx) as n:
        created = n.api_tokens.create(name, access, days=expires)
    if as_json:
        print_json({**created.info.as_dict(), "token": created.token})
        return
    sys.stdout.write(created.token + "\n")
    sys.stdout.flush()
    err.print(
        f"created API token '{created.info.name}' ({created.info.access}, expires "
        f"{_when(created.info)}): it is shown this once; send it as "
        "'Authorization: Bearer <token>'"
    )


@api_token_app.command("list")
def api_token_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List the tokens: access, creator, expiry and status (never the token itself)."""
    with open_node(ctx) as n:
        tokens = n.api_tokens.tokens()
    if as_json:
        print_json([t.as_dict() for t in tokens])
        return
    if not tokens:
        out.print("no API token yet: create one with 'certway api-token create'")
        return
    table = Table("name", "access", "status", "expires", "created", "created by")
    for t in tokens:
        table.add_row(
            t.name, t.access, t.status, _when(t), f"{t.created_at:%Y-%m-%d %H:%M}", t.created_by
        )
    out.print(table)


@api_token_app.command("revoke")
def api_token_revoke(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Name of the token.")],
    as_json: JsonOpt = False,
) -> None:
    """Revoke a token: it is refused from the next request on."""
    with open_node(ctx) as n:
        info = n.api_tokens.revoke(name)
    if as_json:
        print_json(info.as_dict())
        return
    out.print(f"revoked API token '{info.name}'")


def _check_targets(targets: list[Path], *, force: bool) -> None:
    """Refuse, before anything is signed, to write over files (without ``force``) or
    directories (ever)."""
    for target in targets:
        if target.is_dir():
            raise InputFileError(f"cannot write {target}: it is a directory")
    existing = [target for target in targets if target.exists()]
    if not existing or force:
        return
    if len(existing) == 1:
        raise InputFileError(f"{existing[0]} exists; give --force to overwrite it")
    raise InputFileError(
        f"{plural(len(existing), 'file')} exist: {', '.join(str(p) for p in existing)}; "
        "give --force to overwrite them"
    )


@ca_app.command("sign-batch")
def ca_sign_batch(
    ctx: typer.Context,
    csrs: Annotated[list[Path], typer.Argument(help="CSR files (PEM or DER).")],
    ca: Annotated[str, typer.Option("--ca", help="Name of the signing CA.")],
    out_dir: Annotated[
        Path, typer.Option("--out-dir", help="Directory for the certificates (NAME.pem).")
    ],
    profile: Annotated[
        str, choice("--profile", values=PROFILES, help="What the certificates may be used for.")
    ] = "server-client",
    days: Annotated[int, typer.Option("--days", help="Validity in days.")] = 365,
    chain: Annotated[bool, typer.Option("--chain", help="Append the CA chain.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite certificates already in OUT_DIR.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Sign many CSRs in one transaction; each certificate goes to OUT_DIR/<CSR name>.pem
    (existing files are not overwritten without --force). A CSR that cannot be signed is
    reported and the others are signed (exit code 1)."""
    if len(csrs) > MAX_BATCH:
        raise PolicyViolation(
            "batch-size", f"a batch holds at most {MAX_BATCH} CSRs, not {len(csrs)}"
        )
    targets: dict[str, Path] = {}
    for path in csrs:
        if path.stem in targets:
            raise PolicyViolation(
                "batch-names",
                f"{targets[path.stem]} and {path} would both be written to {path.stem}.pem: "
                "rename one",
            )
        targets[path.stem] = path
    data = [read_input(path, "CSR file") for path in csrs]
    if out_dir.exists() and not out_dir.is_dir():
        raise PolicyViolation("out-dir", f"{out_dir} is not a directory")
    _check_targets([out_dir / f"{stem}.pem" for stem in targets], force=force)
    with (
        open_node(ctx) as n,
        Progress(
            TextColumn("signing"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
            disable=as_json,
        ) as bar,
    ):
        task = bar.add_task("sign", total=len(data))
        items = n.local_ca.sign_batch(
            ca,
            data,
            profile=profile,
            days=days,
            progress=lambda done: bar.update(task, completed=done),
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, object]] = []
    for path, item in zip(csrs, items, strict=True):
        if item.result is None:
            results.append({"csr": str(path), "error": item.error})
            if not as_json:
                err.print(styled("refused:", "red", f" {path}: {item.error}"))
            continue
        target = out_dir / f"{path.stem}.pem"
        write_output(target, item.result.pem(with_chain=chain))
        cert = item.result.certificate
        results.append(
            {
                "csr": str(path),
                "certificate": str(target),
                "serial": serial_hex(cert.serial_number),
                "not_after": cert.not_valid_after_utc,
            }
        )
    signed = sum(1 for item in items if item.result is not None)
    if as_json:
        print_json(results)
    else:
        out.print(f"signed {signed} of {plural(len(items), 'CSR')} with CA '{ca}' -> {out_dir}")
    if signed < len(items):
        raise typer.Exit(1)
