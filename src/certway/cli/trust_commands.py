"""The commands of issue #3: trusted CAs, CRLs, revocation policies, certificate checks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from certway.cli.main import (
    ON_OFF,
    JsonOpt,
    _typer,
    app,
    choice,
    err,
    on_off,
    open_node,
    out,
    print_json,
    read_input,
    styled,
)
from certway.errors import PolicyViolation
from certway.pki.text import plural
from certway.services.revocation import SERVICES
from certway.trust.path import Purpose
from certway.trust.policy import Fallback, Profile, Scope

trust_app = _typer("The trusted CA list.")
crl_app = _typer("CRLs: manual upload, URL sources, schedule.")
sources_app = _typer("Automatic CRL update URLs.")
revocation_app = _typer("Revocation checking policies per service.")
app.add_typer(trust_app, name="trust")
app.add_typer(crl_app, name="crl")
crl_app.add_typer(sources_app, name="sources")
app.add_typer(revocation_app, name="revocation")


# -- trust -----------------------------------------------------------------------------------
@trust_app.command("add")
def trust_add(ctx: typer.Context, file: Path, as_json: JsonOpt = False) -> None:
    """Append CA certificates from a PEM/DER/PKCS#7 file (CRLs inside go to the CRL store)."""
    data = read_input(file, "CA file")
    with open_node(ctx) as n:
        report = n.trusted_cas.add(data)
    if as_json:
        print_json(
            {
                "added": [i.as_dict() for i in report.added],
                "skipped": report.skipped,
                "warnings": report.warnings,
                "crls": report.crls,
            }
        )
        return
    for info in report.added:
        out.print(f"added {info.subject} ({info.fingerprint})")
    for line in report.skipped:
        out.print(f"skipped: {line}")
    for line in report.crls:
        out.print(f"embedded CRL stored: {line}")
    for line in report.warnings:
        err.print(styled("warning:", "yellow", f" {line}"))


@trust_app.command("list")
def trust_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """The trusted CA list."""
    with open_node(ctx) as n:
        entries = n.trusted_cas.entries()
    if as_json:
        print_json([e.as_dict() for e in entries])
        return
    if not entries:
        out.print("the trusted CA list is empty: add CAs with 'certway trust add FILE'")
        return
    table = Table("subject", "issuer", "expires", "origin", "SHA-256 fingerprint")
    for e in entries:
        table.add_row(e.subject, e.issuer, f"{e.not_after:%Y-%m-%d}", e.origin, e.fingerprint)
    out.print(table)


@trust_app.command("show")
def trust_show(
    ctx: typer.Context,
    fingerprint: str,
    pem: Annotated[bool, typer.Option("--pem", help="PEM instead of decoded text.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """One trusted CA, decoded (or PEM)."""
    from cryptography.hazmat.primitives import serialization

    from certway.trust.identity import certificate_text

    with open_node(ctx) as n:
        cert = n.trusted_cas.certificate(fingerprint)
    if as_json:
        from certway.pki.decode import detect

        print_json(detect(cert.public_bytes(serialization.Encoding.DER)).to_dict())
        return
    if pem:
        out.print(cert.public_bytes(serialization.Encoding.PEM).decode(), end="")
    else:
        out.print(certificate_text(cert))


@trust_app.command("remove")
def trust_remove(ctx: typer.Context, fingerprints: list[str]) -> None:
    """Delete trusted CAs by SHA-256 fingerprint (a unique prefix of 8+ hex digits is enough)."""
    with open_node(ctx) as n:
        removed = n.trusted_cas.remove(fingerprints)
    for subject in removed:
        out.print(f"removed {subject}")


@trust_app.command("reset")
def trust_reset(ctx: typer.Context) -> None:
    """Restore the factory trusted CA list."""
    with open_node(ctx) as n:
        entries = n.trusted_cas.reset()
    out.print(f"trusted CA list reset to the factory default ({plural(len(entries), 'entry')})")


# -- crl -------------------------------------------------------------------------------------
@crl_app.command("upload")
def crl_upload(ctx: typer.Context, file: Path) -> None:
    """Upload the manual CRL(s), PEM or DER; replaces the previous manual CRL."""
    data = read_input(file, "CRL file")
    with open_node(ctx) as n:
        accepted = n.revocation.upload_manual(data)
    for item in accepted:
        out.print(f"stored {item.describe()}")


@crl_app.command("remove")
def crl_remove(ctx: typer.Context) -> None:
    """Remove the manual CRL."""
    with open_node(ctx) as n:
        count = n.revocation.remove_manual()
    out.print(f"removed {plural(count, 'manual CRL')}" if count else "there was no manual CRL")


@crl_app.command("list")
def crl_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """CRLs held: manual, embedded in CA files, downloaded from URL sources."""
    with open_node(ctx) as n:
        held = n.revocation.held()
    if as_json:
        print_json([h.as_dict() for h in held])
        return
    if not held:
        out.print("no CRL is held")
        return
    table = Table("kind", "issuer", "number", "entries", "next update", "status", "source")
    for h in held:
        table.add_row(
            h.kind,
            h.issuer,
            "" if h.number is None else str(h.number),
            str(h.entries),
            f"{h.next_update:%Y-%m-%d %H:%M}" if h.next_update else "",
            h.status,
            h.source,
        )
    out.print(table)


@sources_app.command("set")
def sources_set(ctx: typer.Context, urls: list[str]) -> None:
    """Replace the list of CRL URLs (HTTP or HTTPS)."""
    with open_node(ctx) as n:
        sources = n.revocation.set_sources(urls)
    out.print(
        f"{plural(len(sources), 'CRL source')} set; run 'certway crl update-now' to fetch them"
    )


@sources_app.command("list")
def sources_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """The CRL URLs with their last attempt, last success and error."""
    with open_node(ctx) as n:
        sources = n.revocation.sources()
        schedule = n.revocation.schedule()
    if as_json:
        print_json({"schedule": schedule.as_dict(), "sources": [s.as_dict() for s in sources]})
        return
    state = f"daily at {schedule.daily_at} UTC" if schedule.enabled else "off"
    out.print(f"automatic updates: {state}")
    if not sources:
        out.print("no CRL source: add them with 'certway crl sources set URL...'")
        return
    table = Table("url", "last attempt", "last success", "CRL #", "next update", "error")
    for s in sources:
        table.add_row(
            s.url,
            f"{s.last_attempt:%Y-%m-%d %H:%M}" if s.last_attempt else "never",
            f"{s.last_success:%Y-%m-%d %H:%M}" if s.last_success else "never",
            "" if s.crl_number is None else str(s.crl_number),
            f"{s.next_update:%Y-%m-%d %H:%M}" if s.next_update else "",
            s.error or "",
        )
    out.print(table)


@crl_app.command("update-now")
def crl_update_now(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Fetch every CRL source now (a failed fetch keeps the last good CRL)."""
    with open_node(ctx) as n:
        sources = n.revocation.update_now(
            progress=None if as_json else (lambda url: err.print(f"fetching {url} ..."))
        )
    if as_json:
        print_json([s.as_dict() for s in sources])
        return
    for s in sources:
        if s.error:
            err.print(styled(f"{s.url}:", "red", f" {s.error}"))
        else:
            out.print(f"{s.url}: CRL #{s.crl_number}, next update {s.next_update:%Y-%m-%d %H:%M}")


@crl_app.command("schedule")
def crl_schedule(
    ctx: typer.Context,
    daily_at: Annotated[
        str | None, typer.Option("--daily-at", help="Daily update time HH:MM (UTC).")
    ] = None,
    off: Annotated[bool, typer.Option("--off", help="Turn automatic updates off.")] = False,
) -> None:
    """Turn automatic daily CRL updates on (at a UTC time) or off."""
    if daily_at is None and not off:
        raise PolicyViolation("schedule", "give --daily-at HH:MM or --off")
    with open_node(ctx) as n:
        schedule = n.revocation.set_schedule(daily_at=daily_at, enabled=not off)
    state = f"on, daily at {schedule.daily_at} UTC" if schedule.enabled else "off"
    out.print(f"automatic CRL updates: {state}")


# -- revocation policies ---------------------------------------------------------------------
@revocation_app.command("show")
def revocation_show(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """The validation profile and revocation policy of each service (sip-tls, admin-https,
    syslog, ldap, acme)."""
    with open_node(ctx) as n:
        policies = {name: n.revocation.policy(name).as_dict() for name in SERVICES}
    if as_json:
        print_json(policies)
        return
    table = Table("service", "profile", "mode", "OCSP", "CRL", "CDP download", "scope", "fallback")
    for name, p in policies.items():
        table.add_row(
            name,
            str(p["profile"]),
            str(p["mode"]),
            "on" if p["ocsp"] else "off",
            "on" if p["crl"] else "off",
            "on" if p["cdp"] else "off",
            str(p["scope"]),
            f"treat as {p['fallback']}",
        )
    out.print(table)


@revocation_app.command("set")
def revocation_set(
    ctx: typer.Context,
    service: Annotated[
        str, choice("--service", values=SERVICES, help="The service whose policy changes.")
    ],
    mode: Annotated[
        str | None, choice("--mode", values=ON_OFF, help="Revocation checking.")
    ] = None,
    ocsp: Annotated[
        str | None, choice("--ocsp", values=ON_OFF, help="Ask OCSP responders.")
    ] = None,
    crl: Annotated[str | None, choice("--crl", values=ON_OFF, help="Use CRLs.")] = None,
    cdp: Annotated[
        str | None,
        choice("--cdp", values=ON_OFF, help="Download CRLs from distribution points."),
    ] = None,
    scope: Annotated[
        str | None,
        choice("--scope", values=Scope, help="peer: the presented certificate; all: the chain."),
    ] = None,
    fallback: Annotated[
        str | None,
        choice(
            "--fallback", values=Fallback, help="How a certificate of unknown status is treated."
        ),
    ] = None,
    profile: Annotated[
        str | None,
        choice(
            "--profile",
            values=Profile,
            help="How certificate paths are judged: rfc5280 (enterprise and UC PKIs, the "
            "default) or webpki (the strict web PKI rules).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a service's validation profile and revocation policy."""
    changes = {
        "enabled": on_off(mode, "--mode", "policy"),
        "ocsp": on_off(ocsp, "--ocsp", "policy"),
        "crl": on_off(crl, "--crl", "policy"),
        "cdp": on_off(cdp, "--cdp", "policy"),
        "scope": scope,
        "fallback": fallback,
        "profile": profile,
    }
    with open_node(ctx) as n:
        policy = n.revocation.set_policy(service, **changes)
    p = policy.as_dict()
    if as_json:
        print_json({"service": service, **p})
        return
    out.print(
        f"{service}: profile {p['profile']}, mode {p['mode']}, "
        f"OCSP {'on' if p['ocsp'] else 'off'}, CRL {'on' if p['crl'] else 'off'}, "
        f"CDP {'on' if p['cdp'] else 'off'}, scope {p['scope']}, "
        f"fallback treat as {p['fallback']}"
    )


# -- check -----------------------------------------------------------------------------------
@app.command("check")
def check_cmd(
    ctx: typer.Context,
    cert: Annotated[Path, typer.Argument(help="Certificate: PEM, DER or pasted text ('-').")],
    purpose: Annotated[
        str, choice("--purpose", values=Purpose, help="What the certificate is checked for.")
    ] = "client",
    name: Annotated[
        str | None, typer.Option("--name", help="DNS name / IP the certificate must carry.")
    ] = None,
    service: Annotated[
        str, choice("--service", values=SERVICES, help="Whose policy to apply.")
    ] = "admin-https",
    chain: Annotated[
        Path | None, typer.Option("--chain", help="Intermediate CA certificates.")
    ] = None,
    regex: Annotated[
        str | None, typer.Option("--regex", help="Username regex with named groups.")
    ] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="Username format, e.g. '#Group1#'.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Test a certificate against the trusted CAs and revocation data (exit 0 valid, 1 not)."""
    data = read_input(cert, "certificate")
    chain_data = read_input(chain, "chain file") if chain else None
    with open_node(ctx) as n:
        report = n.client_check.check(
            data,
            purpose=purpose,
            name=name,
            service=service,
            chain=chain_data,
            regex=regex,
            fmt=fmt,
        )
    result = report.result
    if as_json:
        print_json(report.as_dict())
    else:
        verdict = styled("VALID", "green") if result.valid else styled("REJECTED", "red")
        out.print(Text.assemble(verdict, f": {result.reason}"))
        for index, cert_report in enumerate(result.certificates):
            out.print(f"  [{index}] {cert_report.role} {cert_report.subject}: {cert_report.status}")
            for check in cert_report.checks:
                out.print(f"      {check.name}: {check.outcome} - {check.text}")
        if report.username is not None:
            out.print(f"username: {report.username.username}")
        if report.username_error is not None:
            out.print(f"username: none ({report.username_error})")
    if not result.valid:
        raise typer.Exit(1)
