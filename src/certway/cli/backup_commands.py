"""``certway backup create|restore``: the whole state of a node in one encrypted file.

The passphrase is read from a file (its first line) and never printed; progress goes to
stderr so that ``--json`` output stays clean.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from certway.cli.main import (
    InputFileError,
    JsonOpt,
    _typer,
    app,
    cli_hints,
    err,
    open_node,
    out,
    print_json,
    read_passphrase,
    write_output,
)
from certway.pki.text import plural
from certway.services import backup as backups

__all__ = ["backup_app"]

backup_app = _typer("Encrypted backups of the whole node, and restoring a node from one.")
app.add_typer(backup_app, name="backup")

PassphraseOpt = Annotated[
    Path,
    typer.Option("--passphrase-file", help="File whose first line is the backup passphrase."),
]
BACKUP_LIMIT = 4 * 1024 * 1024 * 1024


@contextmanager
def _progress(quiet: bool) -> Iterator[backups.Progress | None]:
    """A progress bar per step on stderr (none when quiet or not a terminal)."""
    if quiet or not err.is_terminal:
        yield None
        return
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=err
    ) as bar:
        tasks: dict[str, object] = {}

        def report(step: str, done: int, total: int) -> None:
            task = tasks.get(step)
            if task is None:
                task = tasks[step] = bar.add_task(step, total=max(total, 1))
            bar.update(task, completed=done, total=max(total, 1))  # type: ignore[arg-type]

        yield report


def _read_backup(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > BACKUP_LIMIT:
            raise InputFileError(f"backup file {path} is too large ({size} bytes)")
        return path.read_bytes()
    except FileNotFoundError:
        raise InputFileError(f"backup file {path} does not exist") from None
    except IsADirectoryError:
        raise InputFileError(f"backup file {path} is a directory") from None
    except PermissionError:
        raise InputFileError(f"backup file {path} cannot be read (permission denied)") from None


def _passphrase(path: Path) -> bytes:
    passphrase = read_passphrase(path)
    assert passphrase is not None  # read_passphrase refuses an empty one
    return passphrase


@backup_app.command("create")
def backup_create(
    ctx: typer.Context,
    out_path: Annotated[Path, typer.Option("--out", help="The backup file to write (0600).")],
    passphrase_file: PassphraseOpt,
    as_json: JsonOpt = False,
) -> None:
    """Write the whole state of the node (database, keys re-encrypted under the passphrase
    with argon2id + AES-256-GCM; token-backed CA keys as references) to one file."""
    passphrase = _passphrase(passphrase_file)
    with open_node(ctx) as n, _progress(as_json) as progress:
        data = n.backups.create(passphrase, progress=progress)
        fqdn = n.settings.get().fqdn
    write_output(out_path, data, secret=True)
    if as_json:
        print_json({"file": str(out_path), "bytes": len(data), "node": fqdn})
    else:
        out.print(f"backup of {fqdn} written to {out_path} ({len(data)} bytes)")


@backup_app.command("restore")
def backup_restore(
    ctx: typer.Context,
    backup_file: Annotated[Path, typer.Argument(help="The backup file.")],
    passphrase_file: PassphraseOpt,
    database: Annotated[
        str | None,
        typer.Option(
            "--database",
            help="An empty PostgreSQL database (postgresql://…) to restore a cluster into.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Rebuild a node from a backup into the new or empty --data-dir (a new master key is
    generated and every key sealed under it); with --database, a cluster in that empty
    PostgreSQL database, this node being the peer the backup was made on. Nothing is
    written unless the whole file checks out."""
    from certway.clock import SystemClock
    from certway.store.backup import check_new_data_dir

    data_dir: Path = ctx.obj
    check_new_data_dir(data_dir)  # before the slow part
    data = _read_backup(backup_file)
    passphrase = _passphrase(passphrase_file)
    with cli_hints({"backup-target": "(--database URL)"}), _progress(as_json) as progress:
        plan = backups.open_backup(data, passphrase, progress)
        checks = plan.restore_into(
            data_dir, SystemClock(), database=database, source=str(backup_file), progress=progress
        )
    summary = plan.summary
    if as_json:
        print_json(
            {
                "data_dir": str(data_dir),
                "node": summary.node,
                "created_at": summary.created_at,
                "schema": summary.schema,
                "rows": summary.rows,
                "token_keys": [
                    {"ca": c.ca, "token": c.token, "ok": c.ok, "message": c.message} for c in checks
                ],
            }
        )
        return
    out.print(
        f"restored {summary.node} (backup of {summary.created_at.isoformat()}, "
        f"{plural(summary.rows, 'row')}) into {data_dir} with a new master key"
    )
    for check in checks:
        if check.ok:
            out.print(check.message)
        else:
            err.print(f"warning: {check.message}")
