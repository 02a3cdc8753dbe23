"""The cluster: its peers with their status, the cluster TLS verification, the removal of a
decommissioned peer, and the export of the cluster key a new peer joins with (what the
``cluster`` commands of the CLI do)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from certway.errors import CertwayError, NotFound, PolicyViolation
from certway.services.cluster import MAX_PEERS, STOPPED_AFTER
from certway.services.cluster_tls import Verification
from certway.store.keyexport import MIN_PASSPHRASE
from certway.web.api.cluster import KEY_FILENAME
from certway.web.ui.kit import (
    Form,
    UiRoute,
    View,
    download,
    form_action,
    page_view,
    redirect_after,
    run,
    submit,
)

__all__ = ["router"]

router = APIRouter(include_in_schema=False, route_class=UiRoute)

PAGE = "/cluster"
VERIFICATIONS = {
    Verification.PERMISSIVE.value: "Permissive: report a failing peer (alarm)",
    Verification.ENFORCE.value: "Enforce: also refuse a failing peer",
}


def _cluster_page(view: View, form: Form | None = None) -> HTMLResponse:
    status = view.node.cluster.status()
    return view.render(
        "cluster.html",
        title="Cluster",
        status=status,
        verification=view.node.cluster_tls.verification().value,
        verifications=VERIFICATIONS,
        max_peers=MAX_PEERS,
        stopped_minutes=int(STOPPED_AFTER.total_seconds() // 60),
        min_passphrase=MIN_PASSPHRASE,
    )


@router.get(PAGE)
def cluster_page(request: Request) -> Response:
    return _cluster_page(page_view(request))


def _enforcing(view: View, form: Form) -> str | None:
    chosen = form.get("verification")
    if chosen != Verification.ENFORCE.value or view.node.cluster_tls.verification() == chosen:
        return None
    return (
        "Enforce cluster TLS verification? A peer whose certificate fails is then refused by "
        "the others: check the peers' TLS verification results first."
    )


@router.post(f"{PAGE}/tls-verification")
@form_action(_cluster_page, to=PAGE, confirm=_enforcing)
def verification_set(view: View, form: Form) -> str:
    mode = view.node.cluster_tls.set_verification(form.get("verification"))
    return f"cluster TLS verification: {mode}"


def _removal(view: View, _form: Form, peer: str) -> str:
    try:
        label = view.node.cluster.find(peer).label
    except NotFound:
        label = f"peer {peer}"
    return (
        f"Remove {label} from the cluster, with its server, client and domain certificates, "
        "pending CSRs, settings and alarms? This cannot be undone."
    )


@router.post(PAGE + "/peers/{peer}/remove")
@form_action(_cluster_page, to=PAGE, confirm=_removal)
def peer_remove(view: View, form: Form, peer: str) -> str:
    """``peer``: its node id (or FQDN)."""
    removed = view.node.cluster.remove_peer(peer)
    return f"removed {removed.peer.label} from the cluster with its own state"


@router.post(f"{PAGE}/export-key")
async def export_key(request: Request) -> Response:
    """The cluster key file as a download, encrypted under the posted passphrase (read-write
    accounts); a refusal goes back to the page (post/redirect/get)."""
    view, form = await submit(request)

    def work() -> Response:
        try:
            passphrase = form.raw("passphrase")
            if passphrase != form.raw("passphrase_again"):
                raise PolicyViolation("passphrase", "the two passphrases differ")
            sealed = view.node.cluster.export_key(passphrase)
        except CertwayError as exc:
            view.failed(exc)
            return redirect_after(view, PAGE)
        return download(sealed, KEY_FILENAME, "application/octet-stream")

    return await run(view, work)
