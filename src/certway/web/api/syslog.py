"""``/syslog``: remote syslog receivers of the audit log, alarms and TLS refusals, with how
delivery goes; ``/syslog/test`` sends one message to each now."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from certway.outbound.syslog import send_tests
from certway.services.syslog import Destination
from certway.store.syslog_queue import DestinationState
from certway.web.api.common import Out, node_of
from certway.web.api.routing import ApiRoute, Reader, Writer
from certway.web.context import as_principal

__all__ = ["router"]

router = APIRouter(route_class=ApiRoute, tags=["syslog"])


class SyslogBody(BaseModel):
    address: str = Field(description="HOST or HOST:PORT (6514 for tls, 514 otherwise)")
    transport: Literal["tls", "tcp", "udp"] = "tls"
    verify: bool = Field(
        default=True,
        description="tls: the receiver's certificate must be trusted, unrevoked and name HOST",
    )


class SyslogOut(Out):
    address: str
    host: str
    port: int
    transport: str
    verify: str = Field(description="on or off")
    queued: int = Field(description="messages waiting on disk for this receiver")
    sent: int
    dropped: int = Field(description="older messages dropped because the queue was full")
    error: str | None = Field(description="why delivery fails now, if it does")
    error_since: str | None


class SyslogTestOut(Out):
    address: str
    ok: bool
    error: str | None


def _out(destination: Destination, state: DestinationState) -> dict[str, Any]:
    return {
        **destination.as_dict(),
        "queued": state.queued,
        "sent": state.sent,
        "dropped": state.dropped,
        "error": state.error,
        "error_since": state.error_since,
    }


@router.get("/syslog", response_model=list[SyslogOut])
def destinations(request: Request, _who: Reader) -> list[dict[str, Any]]:
    """List the syslog receivers.

    Any account may read it. Each receiver of the audit log, alarms and TLS refusals with
    its transport and verification, and how delivery goes: messages queued, sent and
    dropped, and the current error, if any."""
    return [_out(d, s) for d, s in node_of(request).syslog.status()]


@router.post("/syslog", status_code=201, response_model=SyslogOut)
def add(request: Request, body: SyslogBody, who: Writer) -> dict[str, Any]:
    """Add a syslog receiver.

    Needs a read-write account. From then on the audit log, alarms and TLS refusals are
    sent to it as RFC 5424 messages (TLS by default, its certificate checked against the
    trusted CA list). Answers the receiver and its delivery state (201)."""
    syslog = node_of(request).syslog
    with as_principal(who):
        added = syslog.add(body.address, transport=body.transport, verify=body.verify)
    return _out(added, syslog.queue.state(added.address))


@router.delete("/syslog/{address}", status_code=204)
def remove(request: Request, address: str, who: Writer) -> None:
    """Remove a syslog receiver.

    Needs a read-write account. Nothing more is sent to it and the messages still queued
    for it are discarded. Answers 204 with no body."""
    with as_principal(who):
        node_of(request).syslog.remove(address)


@router.post("/syslog/test", response_model=list[SyslogTestOut])
def test(request: Request, _who: Writer) -> list[dict[str, Any]]:
    """Send a test message to every receiver.

    Needs a read-write account. One test message goes to each receiver now; the answer
    says for each whether it was delivered, or why not."""
    return [
        {"address": destination.address, "ok": error is None, "error": error}
        for destination, error in send_tests(node_of(request))
    ]
