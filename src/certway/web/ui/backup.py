"""Backup and restore: download an encrypted backup of this node; restore one into a new
data directory on this machine (the running node is never changed, see
``certway.web.api.backup``)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from certway.errors import CertwayError, PolicyViolation
from certway.web.api.backup import backup_filename, next_step, passphrase_bytes
from certway.web.ui.kit import (
    Form,
    UiRoute,
    View,
    download,
    form_action,
    page_view,
    run,
    submit,
)

__all__ = ["router"]

router = APIRouter(include_in_schema=False, route_class=UiRoute)


def _backup_page(view: View, form: Form | None = None) -> HTMLResponse:
    return view.render(
        "backup.html", title="Backup and restore", data_dir=str(view.node.store.data_dir)
    )


@router.get("/backup")
def backup_page(request: Request) -> Response:
    return _backup_page(page_view(request))


@router.post("/backup")
async def backup_download(request: Request) -> Response:
    """The backup file as a download (read-write accounts; the passphrase is posted)."""
    view, form = await submit(request)

    def work() -> Response:
        try:
            passphrase = form.get("passphrase")
            if passphrase != form.get("passphrase2"):
                raise PolicyViolation("backup-passphrase", "the two passphrases differ")
            data = view.node.backups.create(passphrase_bytes(passphrase))
        except CertwayError as exc:
            view.failed(exc)
            return _backup_page(view)
        name = backup_filename(view.node.settings.get().fqdn, view.node.clock.now())
        return download(data, name, "application/octet-stream")

    return await run(view, work)


@router.post("/backup/restore")
@form_action(_backup_page)
def backup_restore(view: View, form: Form) -> str:
    data = form.file("file", "backup file")
    if data is None:
        raise PolicyViolation("input", "choose the backup file to restore")
    target = Path(form.get("data_dir").strip())
    plan, checks = view.node.backups.restore_new_node(data, form.get("passphrase").encode(), target)
    for check in checks:
        (view.notices if check.ok else view.warnings).append(check.message)
    summary = plan.summary
    return (
        f"restored {summary.node} (backup of {summary.created_at:%Y-%m-%d %H:%M} UTC, "
        f"{summary.rows} rows) into {target} with a new master key; {next_step(target)}"
    )
