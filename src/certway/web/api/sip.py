"""``/sip``: SIP TLS settings (mutual TLS, client EKU checking) and the certificate access
rules."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from certway.services.sip_rules import MAX_PRIORITY
from certway.web.api.common import Out, node_of
from certway.web.api.routing import ApiRoute, Reader, Writer
from certway.web.context import as_principal

__all__ = ["RuleOut", "SipOut", "router"]

router = APIRouter(route_class=ApiRoute, tags=["SIP TLS"])

RuleId = Annotated[int, PathParam(ge=0, le=2**31 - 1)]


class SipBody(BaseModel):
    mutual_tls: str | None = Field(
        default=None, description="off, request or require", examples=["request"]
    )
    eku_check: bool | Literal["on", "off"] | None = Field(
        default=None, description="client EKU checking: the peer certificate must allow clientAuth"
    )


class RuleBody(BaseModel):
    priority: int = Field(ge=0, le=MAX_PRIORITY, description="lower numbers are applied first")
    type: str = Field(description="exact, prefix, suffix or regex", examples=["suffix"])
    pattern: str = Field(description="matched against the CN and every SAN of the certificate")
    action: str = Field(description="allow or deny", examples=["allow"])


class RuleOut(Out):
    id: int
    priority: int
    type: str = Field(description="exact, prefix, suffix or regex")
    pattern: str
    action: str = Field(description="allow or deny")


class UnreadableRuleOut(Out):
    id: int | None
    stored: Any = Field(description="the stored rule as it is")
    reason: str


class SipOut(Out):
    mutual_tls: str = Field(description="off, request or require")
    eku_check: str = Field(description="on or off")
    rules: list[RuleOut] = Field(description="in the order they are applied")
    unreadable_rules: list[UnreadableRuleOut] | None = Field(
        default=None,
        description="only when stored rules cannot be used: every SIP peer is refused then",
    )


@router.get("/sip", response_model=SipOut)
def sip_get(request: Request, _who: Reader) -> dict[str, Any]:
    """Show the SIP TLS settings.

    Mutual TLS mode, client EKU checking and the certificate access rules."""
    return node_of(request).sip.get().as_dict()


@router.put("/sip", response_model=SipOut)
def sip_set(request: Request, body: SipBody, who: Writer) -> dict[str, Any]:
    """Change the SIP TLS settings.

    Mutual TLS mode (off, request, require) and client EKU checking; the listener
    applies them from the next connection."""
    with as_principal(who):
        config = node_of(request).sip.set(mutual_tls=body.mutual_tls, eku_check=body.eku_check)
    return config.as_dict()


@router.get("/sip/rules", response_model=list[RuleOut])
def sip_rules(request: Request, _who: Reader) -> list[dict[str, object]]:
    """List the SIP access rules.

    The certificate access rules in the order they are applied (priority, then id)."""
    return [r.as_dict() for r in node_of(request).sip.rules()]


@router.post("/sip/rules", status_code=201, response_model=RuleOut)
def sip_rule_add(request: Request, body: RuleBody, who: Writer) -> dict[str, object]:
    """Add a SIP access rule.

    A rule matching the certificate's CN or any SAN (exact, prefix, suffix or regex)
    that allows or denies; first match by priority wins."""
    with as_principal(who):
        rule = node_of(request).sip.add_rule(
            priority=body.priority, type=body.type, pattern=body.pattern, action=body.action
        )
    return rule.as_dict()


@router.delete("/sip/rules/{id}", status_code=204)
def sip_rule_remove(request: Request, id: RuleId, who: Writer) -> None:
    """Remove a SIP access rule.

    Removes the rule with this id, also one this version cannot read."""
    with as_principal(who):
        node_of(request).sip.remove_rule(id)
