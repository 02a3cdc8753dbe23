"""The commands of issue #4: node settings, server/client/domain certificates, alarms, audit."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, get_args

import typer
from rich.table import Table

from certway.cli.main import (
    ChatAliasOpt,
    DigestOpt,
    JsonOpt,
    KeyTypeOpt,
    PhoneProfileOpt,
    UcmDomainOpt,
    UcmFormatOpt,
    XmppDomainOpt,
    _typer,
    app,
    choice,
    err,
    open_node,
    out,
    parse_when,
    print_json,
    read_input,
    read_passphrase,
    styled,
)
from certway.errors import PolicyViolation
from certway.pki.csr import Role, SubjectFields
from certway.pki.keys import key_type_label
from certway.services.identities import (
    CSR_ALT_NAMES,
    CSR_COMMON_NAMES,
    CsrOptions,
    IdentityInfo,
    IdentityKind,
    PendingCsrInfo,
)

node_app = _typer("Node settings: system FQDN, role, cluster.")
server_app = _typer("The server certificate: view, CSR, upload, chain.")
server_csr_app = _typer("The server certificate's pending CSR.")
client_app = _typer("The client certificate for outbound TLS.")
domain_app = _typer("Domain certificates served by SNI.")
domain_csr_app = _typer("A domain's pending CSR.")
app.add_typer(node_app, name="node")
app.add_typer(server_app, name="server-cert")
server_app.add_typer(server_csr_app, name="csr")
app.add_typer(client_app, name="client-cert")
app.add_typer(domain_app, name="domain")
domain_app.add_typer(domain_csr_app, name="csr")

SLOW_KEY_TYPES = ("rsa:3072", "rsa:4096")
"""Key types whose generation takes long enough to say so first."""

PassFile = Annotated[
    Path | None,
    typer.Option("--passphrase-file", help="File whose first line is the key's passphrase."),
]


# -- node ------------------------------------------------------------------------------------
@node_app.command("show")
def node_show(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """The node settings."""
    with open_node(ctx) as n:
        config = n.settings.get()
    if as_json:
        print_json(config.as_dict())
        return
    out.print(f"system FQDN: {config.fqdn}")
    out.print(f"role:        {config.role}")
    out.print(f"cluster:     {config.cluster_fqdn or '(none)'}")
    out.print(f"peers:       {', '.join(config.peers) or '(none)'}")
    default = "" if config.publish_url else " (default)"
    out.print(f"publication: {config.publication_base}{default}")


@node_app.command("set")
def node_set(
    ctx: typer.Context,
    fqdn: Annotated[str | None, typer.Option("--fqdn", help="System FQDN.")] = None,
    role: Annotated[
        str | None, choice("--role", values=get_args(Role), help="The node's role.")
    ] = None,
    cluster_fqdn: Annotated[
        str | None, typer.Option("--cluster-fqdn", help="Cluster FQDN ('' clears it).")
    ] = None,
    peer: Annotated[
        list[str] | None, typer.Option("--peer", help="Peer FQDN (repeatable; replaces the list).")
    ] = None,
    no_peers: Annotated[bool, typer.Option("--no-peers", help="Clear the peer list.")] = False,
    publish_url: Annotated[
        str | None,
        typer.Option(
            "--publish-url",
            metavar="URL",
            help="http://HOST:PORT where relying parties reach the CRLs and OCSP responder of "
            "local CAs created from now on without URLs of their own (default: the system "
            "FQDN and port 8080; '' restores the default).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Change node settings."""
    with open_node(ctx) as n:
        config = n.settings.set(
            fqdn=fqdn,
            role=role,
            cluster_fqdn=cluster_fqdn,
            peers=[] if no_peers else peer,
            publish_url=publish_url,
        )
    if as_json:
        print_json(config.as_dict())
        return
    out.print(
        f"node: {config.fqdn} ({config.role}); cluster {config.cluster_fqdn or 'none'}; "
        f"peers {', '.join(config.peers) or 'none'}; publication {config.publication_base}"
    )


# -- shared printing -------------------------------------------------------------------------
def _print_identity(
    info: IdentityInfo, *, pem: bool, as_json: bool, pending: PendingCsrInfo | None = None
) -> None:
    if as_json:
        print_json(info.as_dict(with_text=True))
        return
    if pem:
        out.print(info.pem, end="")
        return
    label = f"domain {info.name}" if info.kind == "domain" else f"{info.kind} certificate"
    out.print(f"{label}, version {info.version} ({info.source})")
    out.print(f"  subject:   {info.subject}")
    out.print(f"  issuer:    {info.issuer}")
    out.print(f"  names:     {', '.join(info.alt_names) or '(no alternative names)'}")
    out.print(f"  expires:   {info.not_after:%Y-%m-%d %H:%M} UTC")
    out.print(f"  SHA-256:   {info.fingerprint}")
    if info.chain:
        out.print(f"  chain:     {' -> '.join(info.chain)}")
    if pending is not None:
        command = (
            f"domain csr show {info.name}" if info.kind == "domain" else "server-cert csr show"
        )
        out.print(
            f"  pending:   a CSR created {pending.created_at:%Y-%m-%d %H:%M} UTC "
            f"('certway {command}')"
        )
    if info.temporary:
        err.print(
            styled("warning:", "yellow", " this is the temporary certificate of the factory CA")
        )
    for warning in info.warnings:
        err.print(styled("warning:", "yellow", f" {warning}"))
    out.print("")
    out.print(info.text)


def _print_pending(pending: PendingCsrInfo | None, *, pem: bool, as_json: bool) -> None:
    if pending is None:
        if as_json:
            print_json(None)
        else:
            out.print("no CSR is pending")
        return
    if as_json:
        print_json(pending.as_dict())
        return
    if pem:
        out.print(pending.pem, end="")
        return
    for warning in pending.warnings:
        err.print(styled("warning:", "yellow", f" {warning}"))
    out.print(f"pending CSR created {pending.created_at:%Y-%m-%d %H:%M} UTC ({pending.key} key)")
    out.print(f"  common name:       {pending.common_name}")
    out.print(f"  alternative names: {', '.join(pending.alt_names)}")
    out.print("")
    out.print(pending.text)


def _csr_options(
    cn: str,
    alt_names: str,
    add_san: list[str] | None,
    ucm_domain: list[str] | None,
    ucm_domain_format: str,
    xmpp_domain: list[str] | None,
    chat_alias: list[str] | None,
    phone_security_profile: list[str] | None,
    key_type: str,
    digest: str,
    subject: SubjectFields,
) -> CsrOptions:
    def split(values: list[str] | None) -> tuple[str, ...]:
        # "comma separated" as in the Expressway form, or repeated options
        return tuple(v.strip() for item in values or () for v in item.split(",") if v.strip())

    return CsrOptions(
        cn=cn,
        alt_names=alt_names,
        add_san=split(add_san),
        ucm_domains=split(ucm_domain),
        ucm_domain_format=ucm_domain_format,
        xmpp_domains=split(xmpp_domain),
        chat_aliases=split(chat_alias),
        phone_security_profiles=split(phone_security_profile),
        key_type=key_type,
        digest=digest,
        subject=subject,
    )


def _generate(
    ctx: typer.Context, kind: IdentityKind, name: str, options: CsrOptions, pem: bool, as_json: bool
) -> None:
    with open_node(ctx) as n:
        if options.key_type in SLOW_KEY_TYPES:
            # "an": every key type's label (RSA, ECDSA, Ed25519) starts with a vowel sound
            label = key_type_label(options.key_type)
            err.print(f"generating an {label} key (this can take a few seconds) ...")
        pending = n.identities.generate_csr(kind, name, options)
    if as_json or pem:
        _print_pending(pending, pem=pem, as_json=as_json)
        return
    for warning in pending.warnings:
        err.print(styled("warning:", "yellow", f" {warning}"))
    out.print(f"CSR generated for {pending.common_name} ({pending.key} key, sealed in the store)")
    out.print(f"alternative names: {', '.join(pending.alt_names)}")
    out.print("download it with 'csr show --pem', have it signed, then upload the certificate")


@server_csr_app.command("generate")
def server_csr_generate(
    ctx: typer.Context,
    cn: Annotated[
        str,
        choice(
            "--cn",
            values=CSR_COMMON_NAMES,
            help="node: the system FQDN; cluster: the cluster FQDN.",
        ),
    ] = "node",
    alt_names: Annotated[
        str,
        choice("--alt-names", values=CSR_ALT_NAMES, help="cluster: the cluster FQDN and peers."),
    ] = "none",
    add_san: Annotated[
        list[str] | None,
        typer.Option("--add-san", help="Additional DNS name / IP (repeat or a,b)."),
    ] = None,
    ucm_domain: UcmDomainOpt = None,
    ucm_domain_format: UcmFormatOpt = "dns",
    xmpp_domain: XmppDomainOpt = None,
    chat_alias: ChatAliasOpt = None,
    phone_security_profile: PhoneProfileOpt = None,
    key_type: KeyTypeOpt = "rsa:4096",
    digest: DigestOpt = "sha256",
    country: Annotated[str | None, typer.Option("--country")] = None,
    state: Annotated[str | None, typer.Option("--state")] = None,
    locality: Annotated[str | None, typer.Option("--locality")] = None,
    org: Annotated[str | None, typer.Option("--org")] = None,
    org_unit: Annotated[str | None, typer.Option("--org-unit")] = None,
    email: Annotated[str | None, typer.Option("--email")] = None,
    pem: Annotated[bool, typer.Option("--pem", help="Print the CSR PEM.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Generate the server certificate's CSR (one pending at a time; key never leaves)."""
    subject = SubjectFields(country, state, locality, org, org_unit, email)
    options = _csr_options(
        cn, alt_names, add_san, ucm_domain, ucm_domain_format, xmpp_domain, chat_alias,
        phone_security_profile, key_type, digest, subject,
    )  # fmt: skip
    _generate(ctx, "server", "", options, pem, as_json)


@server_csr_app.command("show")
def server_csr_show(
    ctx: typer.Context,
    pem: Annotated[bool, typer.Option("--pem", help="Only the PEM (to send to a CA).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """The pending CSR, decoded (or PEM)."""
    with open_node(ctx) as n:
        pending = n.identities.pending_csr("server")
    _print_pending(pending, pem=pem, as_json=as_json)


@server_csr_app.command("discard")
def server_csr_discard(ctx: typer.Context) -> None:
    """Discard the pending CSR and its key."""
    with open_node(ctx) as n:
        n.identities.discard_csr("server")
    out.print("pending CSR discarded")


@server_app.command("show")
def server_show(
    ctx: typer.Context,
    pem: Annotated[bool, typer.Option("--pem", help="Certificate + chain, PEM.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """The active server certificate: decoded, expiry, chain."""
    with open_node(ctx) as n:
        info = n.identities.info("server")
    _print_identity(info, pem=pem, as_json=as_json)


def _upload(
    ctx: typer.Context,
    kind: IdentityKind,
    name: str,
    cert: Path,
    chain: Path | None,
    key: Path | None,
    passphrase_file: Path | None,
    as_json: bool,
) -> None:
    cert_data = read_input(cert, "certificate file")
    chain_data = read_input(chain, "chain file") if chain else None
    key_data = read_input(key, "key file") if key else None
    passphrase = read_passphrase(passphrase_file)
    with open_node(ctx) as n:
        result = n.identities.upload(
            kind,
            name,
            cert_data,
            chain_data=chain_data,
            key_data=key_data,
            passphrase=passphrase,
        )
    if as_json:
        print_json({**result.info.as_dict(), "warnings": result.warnings})
        return
    info = result.info
    out.print(
        f"activated version {info.version}: {info.subject}, issued by {info.issuer}, "
        f"valid until {info.not_after:%Y-%m-%d}"
    )
    for warning in result.warnings:
        err.print(styled("warning:", "yellow", f" {warning}"))


@server_app.command("upload")
def server_upload(
    ctx: typer.Context,
    cert: Annotated[Path, typer.Argument(help="Certificate: PEM, DER or PKCS#7.")],
    chain: Annotated[Path | None, typer.Option("--chain", help="Intermediate CAs.")] = None,
    key: Annotated[
        Path | None, typer.Option("--key", help="Private key (only without a pending CSR).")
    ] = None,
    passphrase_file: PassFile = None,
    as_json: JsonOpt = False,
) -> None:
    """Check and activate a server certificate (live at once, no restart)."""
    _upload(ctx, "server", "", cert, chain, key, passphrase_file, as_json)


def _history(ctx: typer.Context, kind: IdentityKind, name: str, as_json: bool) -> None:
    with open_node(ctx) as n:
        versions = n.identities.history(kind, name)
    if as_json:
        print_json([v.as_dict() for v in versions])
        return
    table = Table("version", "subject", "expires", "source", "activated", "active")
    for v in versions:
        table.add_row(
            str(v.version),
            v.subject,
            f"{v.not_after:%Y-%m-%d}",
            v.source,
            f"{v.created_at:%Y-%m-%d %H:%M}",
            "*" if v.active else "",
        )
    out.print(table)


@server_app.command("history")
def server_history(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Every server certificate this node had."""
    _history(ctx, "server", "", as_json)


@server_app.command("restore")
def server_restore(ctx: typer.Context, version: int) -> None:
    """Make an earlier server certificate active again."""
    with open_node(ctx) as n:
        info = n.identities.restore("server", "", version)
    out.print(f"version {version} restored as version {info.version}: {info.subject}")


# -- client certificate ----------------------------------------------------------------------
@client_app.command("show")
def client_show(
    ctx: typer.Context,
    pem: Annotated[bool, typer.Option("--pem")] = False,
    as_json: JsonOpt = False,
) -> None:
    """The client certificate (the server certificate unless one was set)."""
    with open_node(ctx) as n:
        info = n.identities.info("client")
    _print_identity(info, pem=pem, as_json=as_json)


@client_app.command("upload")
def client_upload(
    ctx: typer.Context,
    cert: Annotated[Path, typer.Argument(help="Certificate: PEM, DER or PKCS#7.")],
    key: Annotated[Path | None, typer.Option("--key", help="Its private key.")] = None,
    chain: Annotated[Path | None, typer.Option("--chain", help="Intermediate CAs.")] = None,
    passphrase_file: PassFile = None,
    as_json: JsonOpt = False,
) -> None:
    """Upload a client certificate (must carry clientAuth)."""
    _upload(ctx, "client", "", cert, chain, key, passphrase_file, as_json)


@client_app.command("copy-server-cert")
def client_copy(ctx: typer.Context) -> None:
    """Use the server certificate as the client certificate."""
    with open_node(ctx) as n:
        info = n.identities.copy_server_to_client()
    out.print(f"client certificate is now a copy of the server certificate: {info.subject}")


# -- domains ---------------------------------------------------------------------------------
@domain_app.command("add")
def domain_add(ctx: typer.Context, name: str) -> None:
    """Add a domain (served by SNI once it has a certificate)."""
    with open_node(ctx) as n:
        info = n.identities.add_domain(name)
    out.print(f"added domain {info.name}; generate its CSR with 'certway domain csr generate'")


@domain_app.command("remove")
def domain_remove(ctx: typer.Context, name: str) -> None:
    """Remove a domain and its certificates."""
    with open_node(ctx) as n:
        n.identities.remove_domain(name)
    out.print(f"removed domain {name}")


@domain_app.command("list")
def domain_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """The domains and their certificates."""
    with open_node(ctx) as n:
        domains = n.identities.domains()
    if as_json:
        print_json([d.as_dict() for d in domains])
        return
    if not domains:
        out.print("no domain: add one with 'certway domain add NAME'")
        return
    table = Table("domain", "certificate", "expires", "pending CSR")
    for d in domains:
        table.add_row(
            d.name,
            d.subject or "(none: the server certificate is served)",
            f"{d.not_after:%Y-%m-%d}" if d.not_after else "",
            "yes" if d.pending_csr else "",
        )
    out.print(table)


@domain_app.command("show")
def domain_show(
    ctx: typer.Context,
    name: str,
    pem: Annotated[bool, typer.Option("--pem")] = False,
    as_json: JsonOpt = False,
) -> None:
    """A domain: its certificate, or that it has none yet, and its pending CSR if any."""
    with open_node(ctx) as n:
        domain = n.identities.domain_detail(name)  # an unknown domain: the one error
    info, pending = domain.certificate, domain.pending_csr
    if as_json:
        # the certificate's fields when it has one (as server-cert show), and always
        # has_certificate and pending_csr: the body of GET /api/v1/domains/{name}
        print_json(domain.as_dict(with_text=True))
        return
    if pem and info is None:
        raise PolicyViolation(
            "no-certificate",
            f"the domain {domain.name} has no certificate yet, so there is no PEM to show"
            + (
                f": its pending CSR is shown by 'certway domain csr show {domain.name} --pem'"
                if pending
                else ""
            ),
        )
    if info is not None:
        _print_identity(info, pem=pem, as_json=False, pending=pending)
        return
    out.print(f"domain {domain.name}: no certificate yet (the server certificate is served for it)")
    if pending is None:
        out.print(
            f"no CSR is pending: generate one with 'certway domain csr generate {domain.name}'"
        )
        return
    out.print(
        f"pending CSR created {pending.created_at:%Y-%m-%d %H:%M} UTC ({pending.key} key): have "
        f"it signed, then 'certway domain upload {domain.name} CERT'"
    )
    out.print(f"  common name:       {pending.common_name}")
    out.print(f"  alternative names: {', '.join(pending.alt_names)}")
    out.print(f"  the CSR:           'certway domain csr show {domain.name} --pem'")


@domain_app.command("upload")
def domain_upload(
    ctx: typer.Context,
    name: str,
    cert: Annotated[Path, typer.Argument(help="Certificate: PEM, DER or PKCS#7.")],
    chain: Annotated[Path | None, typer.Option("--chain")] = None,
    key: Annotated[Path | None, typer.Option("--key")] = None,
    passphrase_file: PassFile = None,
    as_json: JsonOpt = False,
) -> None:
    """Check and activate a domain's certificate."""
    _upload(ctx, "domain", name, cert, chain, key, passphrase_file, as_json)


@domain_csr_app.command("generate")
def domain_csr_generate(
    ctx: typer.Context,
    name: str,
    add_san: Annotated[list[str] | None, typer.Option("--add-san")] = None,
    chat_alias: ChatAliasOpt = None,
    key_type: KeyTypeOpt = "rsa:4096",
    digest: DigestOpt = "sha256",
    country: Annotated[str | None, typer.Option("--country")] = None,
    state: Annotated[str | None, typer.Option("--state")] = None,
    locality: Annotated[str | None, typer.Option("--locality")] = None,
    org: Annotated[str | None, typer.Option("--org")] = None,
    org_unit: Annotated[str | None, typer.Option("--org-unit")] = None,
    email: Annotated[str | None, typer.Option("--email")] = None,
    pem: Annotated[bool, typer.Option("--pem")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Generate a domain's CSR (CN = the domain; SAN adds <host label>.<domain>)."""
    subject = SubjectFields(country, state, locality, org, org_unit, email)
    options = _csr_options(
        "node", "none", add_san, None, "dns", None, chat_alias, None, key_type, digest, subject
    )
    _generate(ctx, "domain", name, options, pem, as_json)


@domain_csr_app.command("show")
def domain_csr_show(
    ctx: typer.Context,
    name: str,
    pem: Annotated[bool, typer.Option("--pem")] = False,
    as_json: JsonOpt = False,
) -> None:
    """A domain's pending CSR."""
    with open_node(ctx) as n:
        pending = n.identities.pending_csr("domain", name)
    _print_pending(pending, pem=pem, as_json=as_json)


@domain_csr_app.command("discard")
def domain_csr_discard(ctx: typer.Context, name: str) -> None:
    """Discard a domain's pending CSR."""
    with open_node(ctx) as n:
        n.identities.discard_csr("domain", name)
    out.print(f"pending CSR of {name} discarded")


# -- alarms and audit ------------------------------------------------------------------------
@app.command("alarms")
def alarms_cmd(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Current alarms (exit 0 either way)."""
    with open_node(ctx) as n:
        alarms = n.alarms.current()
    if as_json:
        print_json([a.as_dict() for a in alarms])
        return
    if not alarms:
        out.print("no alarms")
        return
    for alarm in alarms:
        colour = "red" if alarm.severity == "critical" else "yellow"
        out.print(
            styled(
                f"{alarm.severity}:",
                colour,
                f" {alarm.text} (since {alarm.since:%Y-%m-%d %H:%M} UTC) [{alarm.id}]",
            )
        )


@app.command("audit")
def audit_cmd(
    ctx: typer.Context,
    since: Annotated[
        str | None, typer.Option("--since", help="ISO date/time, e.g. 2026-11-01.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many entries.")] = 200,
    as_json: JsonOpt = False,
) -> None:
    """The audit log: who changed what, when, from where, with what outcome."""
    when = parse_when(since, "--since")
    with open_node(ctx) as n:
        entries = n.audit.entries(since=when, limit=max(1, limit))
    if as_json:
        print_json([e.as_dict() for e in entries])
        return
    if not entries:
        out.print("the audit log is empty" + (" for that period" if when else ""))
        return
    table = Table("when (UTC)", "who", "via", "action", "target", "outcome", "detail")
    for e in entries:
        detail = "; ".join(f"{k}={v}" for k, v in e.detail.items())
        who = e.actor + (f"@{e.address}" if e.address else "")
        table.add_row(
            f"{e.at:%Y-%m-%d %H:%M:%S}", who, e.via, e.action, e.target, e.outcome, detail
        )
    out.print(table)
