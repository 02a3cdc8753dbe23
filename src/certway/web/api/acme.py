"""``/acme``: the node's certificates signed and renewed by an ACME CA (the account, signing,
the pending ACME certificate, renewal schedule and status, revocation)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from certway.errors import NotFound
from certway.web.api.common import Out, Timestamp, node_of
from certway.web.api.routing import ApiRoute, Reader, Writer
from certway.web.context import as_principal

__all__ = ["router"]

router = APIRouter(route_class=ApiRoute, tags=["acme"])

Challenge = Literal["http-01", "tls-alpn-01"]
Reason = Literal[
    "unspecified", "keyCompromise", "affiliationChanged", "superseded", "cessationOfOperation"
]
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class AccountRequest(BaseModel):
    directory: str = Field(max_length=2000, description="the ACME directory URL (https://)")
    email: str = Field(max_length=320)
    accept_terms: bool = Field(False, description="accept the CA's terms of service")


class SlotRequest(BaseModel):
    domain: str | None = Field(
        None, max_length=253, description="a domain certificate; none: the server certificate"
    )


class SignRequest(SlotRequest):
    challenge: Challenge = "http-01"


class RevokeRequest(SlotRequest):
    reason: Reason = "unspecified"


class ScheduleRequest(BaseModel):
    days: list[Day] | None = Field(None, max_length=7)
    time: str | None = Field(None, max_length=5, description="HH:MM, UTC")
    auto_deploy: bool | None = None
    enabled: bool | None = None


class AccountOut(Out):
    directory: str
    email: str
    uri: str
    status: str
    created_at: Timestamp
    key: str = Field(description="the key's type (the key itself never leaves the store)")
    terms_of_service: str | None


class AcmeScheduleOut(Out):
    days: list[str]
    time: str
    auto_deploy: bool
    enabled: bool


class SignOut(Out):
    slot: str
    subject: str
    issuer: str
    serial: str
    fingerprint: str
    not_after: Timestamp
    warnings: list[str]
    deployed: bool


class DeployOut(Out):
    slot: str
    version: int
    warnings: list[str]


class RevokeOut(Out):
    slot: str
    serial: str
    reason: str


class AcmeCertificateOut(Out):
    slot: str
    challenge: str
    subject: str | None
    not_after: Timestamp | None
    renewal_due: Timestamp | None
    renewal_info: Timestamp | None = Field(
        description="start of the renewal window the CA suggested, if it publishes one"
    )
    failures: int
    last_error: str | None
    last_attempt: Timestamp | None
    last_success: Timestamp | None
    next_attempt: Timestamp | None
    pending: bool


class PendingAcmeOut(Out):
    slot: str
    subject: str | None
    not_after: Timestamp | None
    obtained_at: Timestamp | None
    warnings: list[str]


class AcmeStatusOut(Out):
    account: AccountOut | None
    schedule: AcmeScheduleOut
    certificates: list[AcmeCertificateOut]
    pending: list[PendingAcmeOut]


def _slot(body: SlotRequest) -> tuple[str, str]:
    return ("domain", body.domain) if body.domain else ("server", "")


@router.get("/acme", response_model=AcmeStatusOut)
def acme_status(request: Request, _who: Reader) -> dict[str, Any]:
    """Show the ACME client's status.

    Any account may read it. The account (null when none is registered), the renewal
    schedule, each certificate signed by the ACME CA with its expiry, renewal due date,
    failures and next attempt, and the certificates obtained but not yet deployed."""
    return node_of(request).acme.status()


@router.get("/acme/account", response_model=AccountOut)
def acme_account(request: Request, _who: Reader) -> dict[str, Any]:
    """The node's ACME account.

    Directory, account URL, e-mail, status and key type, as last recorded (never the key).
    """
    info = node_of(request).acme.account()
    if info is None:
        raise NotFound("no ACME account")
    return info.as_dict()


@router.post("/acme/account", response_model=AccountOut, status_code=201)
def acme_account_create(request: Request, body: AccountRequest, who: Writer) -> dict[str, Any]:
    """Register an account with the ACME CA (its HTTPS certificate is judged like every
    peer's: trusted CA list, the acme revocation policy, host name); the account key is
    sealed in the store."""
    with as_principal(who):
        return (
            node_of(request)
            .acme.create_account(body.directory, body.email, accept_terms=body.accept_terms)
            .as_dict()
        )


@router.post("/acme/account/deactivate", response_model=AccountOut)
def acme_account_deactivate(request: Request, who: Writer) -> dict[str, Any]:
    """Deactivate the ACME account.

    The ACME CA is asked to deactivate it for good; renewals stop until a new account is
    created.
    """
    with as_principal(who):
        return node_of(request).acme.deactivate_account().as_dict()


@router.post("/acme/sign", response_model=SignOut)
def acme_sign(request: Request, body: SignRequest, who: Writer) -> dict[str, Any]:
    """Have the pending CSR signed by the ACME CA.

    Needs a read-write account and a registered account. The server's (or the domain's)
    pending CSR is sent to the ACME CA, which validates the names by the challenge chosen;
    the certificate is deployed at once when the schedule deploys automatically, else kept
    pending for the deploy operation. Answers the certificate obtained."""
    kind, name = _slot(body)
    with as_principal(who):
        return node_of(request).acme.sign(kind, name, challenge=body.challenge)


@router.post("/acme/deploy", response_model=DeployOut)
def acme_deploy(request: Request, body: SlotRequest, who: Writer) -> dict[str, Any]:
    """Deploy the pending ACME certificate.

    Needs a read-write account. The certificate obtained from the ACME CA goes through the
    checks of an upload and becomes the slot's active certificate at once, without a
    restart. Answers the new version and any warnings."""
    kind, name = _slot(body)
    with as_principal(who):
        return node_of(request).acme.deploy(kind, name)


@router.post("/acme/renew", response_model=SignOut)
def acme_renew(request: Request, body: SlotRequest, who: Writer) -> dict[str, Any]:
    """Renew an ACME certificate now.

    Needs a read-write account. The slot's certificate is renewed at once, whatever the
    schedule (a new CSR is made when none is pending). Answers the certificate obtained,
    deployed or kept pending as the schedule says."""
    kind, name = _slot(body)
    with as_principal(who):
        return node_of(request).acme.renew_now(kind, name)


@router.post("/acme/revoke", response_model=RevokeOut)
def acme_revoke(request: Request, body: RevokeRequest, who: Writer) -> dict[str, Any]:
    """Revoke the slot's ACME certificate.

    The ACME CA revokes the certificate the slot got from it, with the reason given.
    """
    kind, name = _slot(body)
    with as_principal(who):
        return node_of(request).acme.revoke(kind, name, reason=body.reason)


@router.get("/acme/schedule", response_model=AcmeScheduleOut)
def acme_schedule(request: Request, _who: Reader) -> dict[str, Any]:
    """The renewal schedule.

    The days and time of day (UTC) automatic renewals run, and whether they deploy at once.
    """
    return node_of(request).acme.schedule().as_dict()


@router.put("/acme/schedule", response_model=AcmeScheduleOut)
def acme_schedule_set(request: Request, body: ScheduleRequest, who: Writer) -> dict[str, Any]:
    """Set the renewal schedule.

    Needs a read-write account. The days and time of day (UTC) automatic renewals run,
    whether they deploy at once and whether they run at all; fields left out keep their
    value. Answers the schedule as stored."""
    with as_principal(who):
        return (
            node_of(request)
            .acme.set_schedule(
                days=body.days,
                time_of_day=body.time,
                auto_deploy=body.auto_deploy,
                enabled=body.enabled,
            )
            .as_dict()
        )
