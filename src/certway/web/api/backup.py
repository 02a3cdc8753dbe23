"""``/backup``: download an encrypted backup of this node; restore one into a new node.

Both need a read-write account (a backup holds every key of the node, under its
passphrase). The passphrase travels in the request body, never in a URL or a header, and is
never logged or answered.

Restoring over HTTP never touches the running node: it builds a **new node** in a new or
empty data directory on this machine (an absolute path the administrator gives), with a
new master key; the administrator then stops this server and starts ``certway serve
--data-dir`` on the new directory. Replacing a serving node's state under its listeners
would leave open sessions and token logins pointing at objects that changed meaning.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from certway.errors import DecodeError, PolicyViolation
from certway.web.api.common import Out, file_answer, node_of
from certway.web.api.routing import ApiRoute, Writer
from certway.web.context import as_principal

__all__ = ["BackupBody", "RestoreBody", "RestoreOut", "passphrase_bytes", "router"]

router = APIRouter(route_class=ApiRoute, tags=["backup"])


class BackupBody(BaseModel):
    passphrase: str = Field(description="At least 10 characters; needed to restore.")


class RestoreBody(BaseModel):
    backup: str = Field(description="The backup file, base64.")
    passphrase: str
    data_dir: str = Field(
        description="Absolute path of the new node's data directory (new or empty)."
    )


class RestoredTokenKeyOut(Out):
    ca: str
    token: str
    ok: bool
    message: str


class RestoreOut(Out):
    data_dir: str
    node: str
    created_at: str
    rows: int
    token_keys: list[RestoredTokenKeyOut]
    next_step: str


def passphrase_bytes(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise PolicyViolation("backup-passphrase", "the passphrase is not valid text") from None


def backup_filename(fqdn: str, at: dt.datetime) -> str:
    safe = re.sub(r"[^A-Za-z0-9.-]", "_", fqdn) or "node"
    return f"certway-{safe}-{at.strftime('%Y%m%dT%H%M%SZ')}.bak"


@router.post("/backup", **file_answer("application/octet-stream", "the encrypted backup file"))
def backup_create(request: Request, body: BackupBody, who: Writer) -> Response:
    """Download an encrypted backup of the node.

    The whole state in one file, encrypted under a key derived from the passphrase (argon2id,
    AES-256-GCM); the master key is never in it.
    """
    node = node_of(request)
    with as_principal(who):
        data = node.backups.create(passphrase_bytes(body.passphrase))
    name = backup_filename(node.settings.get().fqdn, node.clock.now())
    return Response(
        data,
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        },
    )


@router.post("/backup/restore", response_model=RestoreOut)
def backup_restore(request: Request, body: RestoreBody, who: Writer) -> dict[str, Any]:
    """Restore a backup into a new data directory.

    The running node is not changed: the backup (base64) becomes a new node in ``data_dir``
    (absolute, new or empty), to be started with ``certway --data-dir PATH serve``.
    """
    try:
        data = base64.b64decode("".join(body.backup.split()), validate=True)
    except (binascii.Error, ValueError):
        raise DecodeError("the backup is not base64") from None
    target = Path(body.data_dir)
    with as_principal(who):
        plan, checks = node_of(request).backups.restore_new_node(
            data, passphrase_bytes(body.passphrase), target
        )
    return restore_answer(
        target, plan.summary.node, plan.summary.created_at, plan.summary.rows, checks
    )


def restore_answer(
    target: Path, node: str, created_at: dt.datetime, rows: int, checks: Any
) -> dict[str, Any]:
    return {
        "data_dir": str(target),
        "node": node,
        "created_at": created_at.isoformat(),
        "rows": rows,
        "token_keys": [
            {"ca": c.ca, "token": c.token, "ok": c.ok, "message": c.message} for c in checks
        ],
        "next_step": next_step(target),
    }


def next_step(target: Path) -> str:
    return (
        f"this node is unchanged; to run the restored node, stop this server and start "
        f"'certway --data-dir {target} serve'"
    )
