"""Commands for the SIP TLS settings and certificate access rules.

``sip_app`` registers itself on the main app, like the other command modules.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from certway.cli.main import (
    ON_OFF,
    JsonOpt,
    _typer,
    app,
    choice,
    fail,
    open_node,
    out,
    print_json,
    styled,
)
from certway.errors import PolicyViolation
from certway.services.sip_rules import AccessRule, RuleAction, RuleType
from certway.services.sip_settings import MutualTls, SipConfig

__all__ = ["sip_app"]

sip_app = _typer("SIP over TLS: mutual TLS, client EKU checking, certificate access rules.")
app.add_typer(sip_app, name="sip")
rule_app = _typer("Certificate access rules: first match by priority wins; default allow.")
sip_app.add_typer(rule_app, name="rule")


def _print_rules(rules: tuple[AccessRule, ...] | list[AccessRule]) -> None:
    if not rules:
        out.print("no access rules: every peer with a valid certificate is allowed")
        return
    table = Table("id", "priority", "type", "pattern", "action")
    for rule in rules:
        table.add_row(
            str(rule.id), str(rule.priority), rule.type.value, rule.pattern, rule.action.value
        )
    out.print(table)


def _print_config(config: SipConfig) -> None:
    out.print(f"mutual TLS:   {config.mutual_tls.value}")
    out.print(f"EKU checking: {'on' if config.eku_check else 'off'}")
    out.print("revocation:   per the 'sip-tls' policy (certway revocation show)")
    out.print(f"access rules: {len(config.rules)}")
    if config.rules:
        _print_rules(config.rules)
    for broken in config.unreadable_rules:
        out.print(
            styled(
                "unreadable access rule:",
                "red",
                f" {broken.describe()} — every peer is refused until it is removed or fixed",
            )
        )


@sip_app.command("show")
def sip_show(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """The SIP TLS settings and access rules."""
    with open_node(ctx) as n:
        config = n.sip.get()
    if as_json:
        print_json(config.as_dict())
        return
    _print_config(config)


@sip_app.command("set")
def sip_set(
    ctx: typer.Context,
    mutual_tls: Annotated[
        str | None,
        choice(
            "--mutual-tls",
            values=MutualTls,
            help="request: ask peers for a certificate; require: refuse peers without one.",
        ),
    ] = None,
    eku_check: Annotated[
        str | None,
        choice("--eku-check", values=ON_OFF, help="on: peer certificates need clientAuth."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Change the mutual TLS mode and/or client EKU checking."""
    if mutual_tls is None and eku_check is None:
        fail(PolicyViolation("usage", "give --mutual-tls and/or --eku-check"))
    with open_node(ctx) as n:
        config = n.sip.set(mutual_tls=mutual_tls, eku_check=eku_check)
    if as_json:
        print_json(config.as_dict())
        return
    out.print(
        f"SIP TLS: mutual TLS {config.mutual_tls.value}, "
        f"EKU checking {'on' if config.eku_check else 'off'}"
    )


@rule_app.command("add")
def rule_add(
    ctx: typer.Context,
    priority: Annotated[int, typer.Option("--priority", help="Lower numbers are tried first.")],
    rule_type: Annotated[
        str,
        choice("--type", values=RuleType, help="How the pattern matches (whole name, any case)."),
    ],
    pattern: Annotated[str, typer.Option("--pattern", help="Matched against the CN and SANs.")],
    action: Annotated[
        str, choice("--action", values=RuleAction, help="What a match does with the peer.")
    ],
    as_json: JsonOpt = False,
) -> None:
    """Add a certificate access rule."""
    with open_node(ctx) as n:
        rule = n.sip.add_rule(priority=priority, type=rule_type, pattern=pattern, action=action)
    if as_json:
        print_json(rule.as_dict())
        return
    out.print(
        f"added rule {rule.id}: priority {rule.priority}, {rule.action.value} "
        f"{rule.type.value} '{rule.pattern}'"
    )


@rule_app.command("list")
def rule_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """The access rules in the order they are applied."""
    with open_node(ctx) as n:
        rules = n.sip.rules()
    if as_json:
        print_json([r.as_dict() for r in rules])
        return
    _print_rules(rules)


@rule_app.command("remove")
def rule_remove(
    ctx: typer.Context, rule_id: Annotated[int, typer.Argument(help="The rule's id.")]
) -> None:
    """Remove an access rule by id."""
    with open_node(ctx) as n:
        rule = n.sip.remove_rule(rule_id)
    out.print(f"removed {rule.describe()}")
