"""``certway acme``: the node's certificates signed and renewed by an ACME CA."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from certway.cli.main import (
    JsonOpt,
    _typer,
    app,
    choice,
    cli_hints,
    complete_list_from,
    open_node,
    out,
    print_json,
)
from certway.errors import CertwayError
from certway.services.acme_client import (
    CHALLENGE_TYPES,
    DAYS,
    REVOCATION_REASONS,
    NoAcmeAccount,
)

if TYPE_CHECKING:
    from certway.services.node import Node

__all__ = ["acme_app"]

acme_app = _typer("ACME: the server and domain certificates signed and renewed by an ACME CA.")
account_app = _typer("The ACME account.")
app.add_typer(acme_app, name="acme")
acme_app.add_typer(account_app, name="account")

DomainOpt = Annotated[
    str | None,
    typer.Option("--domain", help="A domain certificate instead of the server certificate."),
]


_ACME_HINTS: dict[str | type[CertwayError], str] = {
    NoAcmeAccount: "(certway acme account create --directory URL --email E --accept-terms)",
    "acme-terms": "(--accept-terms)",
    "acme-no-csr": "(certway server-cert csr generate, or for a domain: certway domain csr "
    "generate)",
    "acme-not-managed": "(certway acme sign)",
}
"""This command line's options, added to the services' errors (see ``cli_hints``)."""


@contextmanager
def _acme_node(ctx: typer.Context) -> Iterator[Node]:
    """``open_node`` whose errors name this command line's options."""
    with cli_hints(_ACME_HINTS), open_node(ctx) as n:
        yield n


def _slot(domain: str | None) -> tuple[str, str]:
    return ("domain", domain) if domain else ("server", "")


def _label(domain: str | None) -> str:
    return f"domain {domain}" if domain else "server certificate"


@account_app.command("create")
def account_create(
    ctx: typer.Context,
    directory: Annotated[str, typer.Option("--directory", help="The ACME directory URL.")],
    email: Annotated[str, typer.Option("--email", help="The administrator's e-mail.")],
    accept_terms: Annotated[
        bool, typer.Option("--accept-terms", help="Accept the CA's terms of service.")
    ] = False,
) -> None:
    """Register an account with the ACME CA (its HTTPS certificate is judged like every
    peer's: trusted CA list, the acme revocation policy, host name); the account key is
    sealed in the store."""
    with cli_hints({"conflict": "(certway acme account deactivate)"}), _acme_node(ctx) as n:
        info = n.acme.create_account(directory, email, accept_terms=accept_terms)
    out.print(f"ACME account created: {info.uri} ({info.email})")


@account_app.command("show")
def account_show(
    ctx: typer.Context,
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Ask the ACME server for the account's status.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """The ACME account."""
    with _acme_node(ctx) as n:
        info = n.acme.refresh_account() if refresh else n.acme.account()
    if as_json:
        print_json(info.as_dict() if info else None)
        return
    if info is None:
        out.print("no ACME account")
        return
    out.print(f"directory: {info.directory}")
    out.print(f"account: {info.uri}")
    out.print(f"e-mail: {info.email}")
    out.print(f"status: {info.status}")
    out.print(f"key: {info.key}")
    out.print(f"created: {info.created_at:%Y-%m-%d %H:%M} UTC")
    if info.terms_of_service:
        out.print(f"terms of service: {info.terms_of_service} (accepted)")


@account_app.command("deactivate")
def account_deactivate(ctx: typer.Context) -> None:
    """Deactivate the ACME account at the CA (it cannot be used again)."""
    with _acme_node(ctx) as n:
        n.acme.deactivate_account()
    out.print("ACME account deactivated")


@acme_app.command("sign")
def acme_sign(
    ctx: typer.Context,
    domain: DomainOpt = None,
    challenge: Annotated[
        str, choice("--challenge", values=CHALLENGE_TYPES, help="How the CA checks the name.")
    ] = "http-01",
) -> None:
    """Have the pending CSR signed by the ACME CA; the certificate becomes the pending ACME
    certificate (deployed at once unless the schedule's auto-deploy is off)."""
    kind, name = _slot(domain)
    with _acme_node(ctx) as n:
        result = n.acme.sign(kind, name, challenge=challenge)
    out.print(f"signed by {result['issuer']}: {result['subject']} (serial {result['serial']})")
    for warning in result["warnings"]:
        out.print(f"warning: {warning}")
    if result["deployed"]:
        out.print(f"the {_label(domain)} is live (no restart needed)")
    else:
        option = f" --domain {domain}" if domain else ""
        out.print(f"pending ACME certificate: deploy it with 'certway acme deploy{option}'")


@acme_app.command("deploy")
def acme_deploy(ctx: typer.Context, domain: DomainOpt = None) -> None:
    """Put the pending ACME certificate live (checked as an upload; no restart)."""
    kind, name = _slot(domain)
    with _acme_node(ctx) as n:
        result = n.acme.deploy(kind, name)
    out.print(f"the {_label(domain)} is live: version {result['version']}")
    for warning in result["warnings"]:
        out.print(f"warning: {warning}")


@acme_app.command("renew-now")
def acme_renew_now(ctx: typer.Context, domain: DomainOpt = None) -> None:
    """Renew now, whatever the schedule (a new key and CSR, the same names)."""
    kind, name = _slot(domain)
    with _acme_node(ctx) as n:
        result = n.acme.renew_now(kind, name)
    state = "live" if result["deployed"] else "pending deployment"
    out.print(f"renewed: serial {result['serial']}, valid until {result['not_after']} ({state})")


@acme_app.command("revoke")
def acme_revoke(
    ctx: typer.Context,
    domain: DomainOpt = None,
    reason: Annotated[
        str,
        choice("--reason", values=REVOCATION_REASONS, metavar="REASON", help="Why it is revoked."),
    ] = "unspecified",
) -> None:
    """Revoke the live certificate at the ACME CA."""
    kind, name = _slot(domain)
    with _acme_node(ctx) as n:
        result = n.acme.revoke(kind, name, reason=reason)
    out.print(f"revoked serial {result['serial']} ({result['reason']})")


@acme_app.command("schedule")
def acme_schedule(
    ctx: typer.Context,
    days: Annotated[
        str | None,
        typer.Option(
            "--days",
            metavar="DAY,...",
            help=f"Days renewals may run, comma separated: {', '.join(DAYS)}.",
            autocompletion=complete_list_from(DAYS),
        ),
    ] = None,
    at: Annotated[
        str | None, typer.Option("--time", help="Time of day (UTC) from which they run, HH:MM.")
    ] = None,
    auto_deploy: Annotated[
        bool | None,
        typer.Option("--auto-deploy/--no-auto-deploy", help="Deploy a new certificate at once."),
    ] = None,
    enabled: Annotated[
        bool | None, typer.Option("--on/--off", help="Automatic renewal on or off.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show or change when automatic renewals run."""
    with _acme_node(ctx) as n:
        if days is None and at is None and auto_deploy is None and enabled is None:
            schedule = n.acme.schedule()
        else:
            schedule = n.acme.set_schedule(
                days=days.split(",") if days is not None else None,
                time_of_day=at,
                auto_deploy=auto_deploy,
                enabled=enabled,
            )
    if as_json:
        print_json(schedule.as_dict())
        return
    state = "on" if schedule.enabled else "off"
    deploy = "deployed at once" if schedule.auto_deploy else "staged for 'certway acme deploy'"
    out.print(
        f"automatic renewal {state}: {','.join(schedule.days)} from {schedule.time} UTC; "
        f"new certificates are {deploy}"
    )


@acme_app.command("status")
def acme_status(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Account, schedule, and each ACME certificate: expiry, next renewal, failures."""
    with _acme_node(ctx) as n:
        status: dict[str, Any] = n.acme.status()
    if as_json:
        print_json(status)
        return
    account = status["account"]
    out.print(f"account: {account['uri']} ({account['status']})" if account else "account: none")
    schedule = status["schedule"]
    out.print(
        f"schedule: {'on' if schedule['enabled'] else 'off'}, {','.join(schedule['days'])} "
        f"from {schedule['time']} UTC, auto-deploy {'on' if schedule['auto_deploy'] else 'off'}"
    )
    table = Table("certificate", "expires", "renewal due", "failures", "last error")
    for entry in status["certificates"]:
        table.add_row(
            entry["slot"],
            entry["not_after"] or "—",
            entry["renewal_due"] or "—",
            str(entry["failures"]),
            entry["last_error"] or "",
        )
    out.print(table)
    for pending in status["pending"]:
        out.print(f"pending ACME certificate for {pending['slot']}: {pending['subject']}")
