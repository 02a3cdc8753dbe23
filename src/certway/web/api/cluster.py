"""``/cluster``: the peers (what ``certway cluster status`` shows), the removal of a
decommissioned peer, and the cluster key export a new peer joins with.

The export needs a read-write account; the passphrase travels in the body, never in a URL or
a header, and is never logged or answered; the key itself is only ever answered encrypted.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request, Response
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from certway.services.cluster import MAX_PEERS, STOPPED_AFTER
from certway.store.keyexport import MIN_PASSPHRASE
from certway.web.api.common import Out, Timestamp, file_answer, node_of
from certway.web.api.routing import ApiRoute, Reader, Writer
from certway.web.context import as_principal

__all__ = ["ClusterOut", "ExportKeyBody", "PeerOut", "RemovedPeerOut", "router"]

router = APIRouter(route_class=ApiRoute, tags=["cluster"])

KEY_FILENAME = "certway-cluster.key"
PeerId = Annotated[int, PathParam(ge=1, le=2**31 - 1, description="The peer's node id.")]


class PeerOut(Out):
    id: int = Field(description="The peer's node id.")
    fqdn: str
    this_node: bool
    joined_at: Timestamp
    last_seen: Timestamp | None = Field(description="Its last heartbeat (null: never).")
    server_cert_not_after: Timestamp | None
    tls_result: str | None = Field(
        description="The other peers' last check of its server certificate, as JSON text "
        "(null: not checked yet)."
    )
    tls_status: str = Field(
        description="That check in words: verified, FAILED: reason, or not checked."
    )
    tls_checked_at: Timestamp | None


class ClusterOut(Out):
    clustered: bool = Field(description="false: an embedded (SQLite) node, a cluster of one.")
    node_id: int = Field(description="This node's id among the peers.")
    database: str = Field(description="The database URL, without password.")
    max_peers: int = Field(description=f"The most peers a cluster has ({MAX_PEERS}).")
    verification: Literal["permissive", "enforce"] = Field(description="Cluster TLS verification.")
    peers: list[PeerOut]


class RemovedPeerOut(Out):
    peer: PeerOut
    rows: dict[str, int] = Field(description="Rows deleted, per table.")


class ExportKeyBody(BaseModel):
    passphrase: str = Field(
        description=f"At least {MIN_PASSPHRASE} characters; the new peer needs it to join."
    )


@router.get("/cluster", response_model=ClusterOut)
def cluster_status(request: Request, _who: Reader) -> dict[str, Any]:
    """Show the cluster and its peers.

    Any account may read it; the same as ``certway cluster status --json``: whether the node
    is clustered, its node id, each peer (id, FQDN, last heartbeat, server certificate expiry,
    last TLS check by the other peers) and the cluster TLS verification."""
    node = node_of(request)
    return {
        **node.cluster.status().as_dict(),
        "verification": node.cluster_tls.verification().value,
    }


@router.delete(
    "/cluster/peers/{id}",
    response_model=RemovedPeerOut,
    description="Needs a read-write account. Deletes the peer and its own state (server, "
    "client and domain certificates, pending CSRs and their keys, its settings and alarms) in "
    "one transaction. Refused, changing nothing: this node itself (409), a peer seen less than "
    f"{int(STOPPED_AFTER.total_seconds() // 60)} minutes ago, still running: stop it first "
    "(409), an unknown peer (404), an embedded node, which has no peers (422).",
)
def cluster_remove_peer(request: Request, id: PeerId, who: Writer) -> dict[str, Any]:
    """Remove a decommissioned peer."""
    with as_principal(who):
        return node_of(request).cluster.remove_peer(id).as_dict()


@router.post(
    "/cluster/export-key",
    **file_answer(
        "application/octet-stream", "the cluster key file (JSON), encrypted under the passphrase"
    ),
)
def cluster_export_key(request: Request, body: ExportKeyBody, who: Writer) -> Response:
    """Download the cluster key, encrypted.

    Needs a read-write account. The file ``certway cluster export-key`` writes (argon2id,
    AES-256-GCM under the passphrase; never the key in clear): a new peer joins the cluster
    with it and the passphrase."""
    with as_principal(who):
        sealed = node_of(request).cluster.export_key(body.passphrase)
    return Response(
        sealed,
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="{KEY_FILENAME}"',
            "Cache-Control": "no-store",
        },
    )
