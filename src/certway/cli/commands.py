"""The commands of issue #2: keys, CSRs, local CA, decode, convert."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, get_args

import typer
from cryptography.hazmat.primitives import serialization
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
    app,
    ca_app,
    choice,
    csr_app,
    key_app,
    open_node,
    out,
    parse_when,
    print_json,
    read_input,
    read_passphrase,
    write_output,
)
from certway.errors import DecodeError, PassphraseError, PolicyViolation
from certway.pki import convert as conv
from certway.pki.crl import REASONS
from certway.pki.csr import CsrForm, Role, SubjectFields, build_csr
from certway.pki.decode import detect
from certway.pki.issue import PROFILES
from certway.pki.keys import (
    KEY_TYPES,
    describe_key,
    generate_key,
    load_private_key,
    private_key_pem,
)
from certway.pki.load import load_certificates
from certway.pki.names import SUBJECT_KEYS, parse_subject
from certway.pki.text import plural, serial_hex
from certway.services.local_ca import CaInfo, CaSettings

CONVERT_TARGETS = ("pem", "der", "p12", "p7b")
"""What ``certway convert --to`` writes."""

PassFile = Annotated[
    Path | None,
    typer.Option("--passphrase-file", help="File whose first line is the passphrase."),
]
TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token", help="Generate the CA key inside this PKCS#11 token (see 'certway token')."
    ),
]
OutFile = Annotated[Path | None, typer.Option("--out", "-o", help="Output file (default stdout).")]


# -- key -------------------------------------------------------------------------------------
@key_app.command("generate")
def key_generate(
    key_type: Annotated[
        str, choice("--type", values=KEY_TYPES, metavar="TYPE", help="Type of the key.")
    ] = "ec:p256",
    out_file: OutFile = None,
    passphrase_file: PassFile = None,
) -> None:
    """Generate a private key (PKCS#8 PEM; encrypted when a passphrase file is given)."""
    passphrase = read_passphrase(passphrase_file)
    key = generate_key(key_type)
    write_output(out_file, private_key_pem(key, passphrase), secret=True)
    if out_file is not None:
        protected = "encrypted" if passphrase else "unencrypted, mode 0600"
        # "an": every key's description (RSA, ECDSA, Ed25519) starts with a vowel sound
        out.print(f"wrote an {describe_key(key)} private key to {out_file} ({protected})")


# -- csr -------------------------------------------------------------------------------------
@csr_app.command("create")
def csr_create(
    key_file: Annotated[Path, typer.Option("--key", help="Private key file (PEM or DER).")],
    cn: Annotated[str, typer.Option("--cn", help="Common name (also put in the SAN list).")],
    san: Annotated[
        list[str] | None, typer.Option("--san", help="DNS:name or IP:address (repeatable).")
    ] = None,
    subject: Annotated[
        str, typer.Option("--subject", help='Other subject fields, e.g. "/C=GB/O=Acme".')
    ] = "",
    digest: DigestOpt = "sha256",
    role: Annotated[
        str, choice("--role", values=get_args(Role), help="Role (role-only fields).")
    ] = "edge",
    cluster_fqdn: Annotated[
        str | None, typer.Option("--cluster-fqdn", help="Cluster FQDN (added to SAN).")
    ] = None,
    peer: Annotated[
        list[str] | None, typer.Option("--peer", help="Peer FQDN (added to SAN, repeatable).")
    ] = None,
    ucm_domain: UcmDomainOpt = None,
    ucm_domain_format: UcmFormatOpt = "dns",
    xmpp_domain: XmppDomainOpt = None,
    chat_alias: ChatAliasOpt = None,
    phone_security_profile: PhoneProfileOpt = None,
    passphrase_file: PassFile = None,
    out_file: OutFile = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a CSR. EKU serverAuth+clientAuth; wildcards refused; SANs deduplicated."""
    key = load_private_key(read_input(key_file, "key file"), read_passphrase(passphrase_file))
    extra = parse_subject(subject)
    if any(a.oid == SUBJECT_KEYS["CN"] for a in extra):
        raise PolicyViolation("subject-syntax", "give the common name with --cn, not in --subject")
    form = CsrForm(
        common_name=cn,
        role=role,  # type: ignore[arg-type]
        cluster_fqdn=cluster_fqdn,
        peers=tuple(peer or ()),
        additional_names=tuple(san or ()),
        ucm_domains=tuple(ucm_domain or ()),
        ucm_domain_format=ucm_domain_format,  # type: ignore[arg-type]
        xmpp_domains=tuple(xmpp_domain or ()),
        chat_aliases=tuple(chat_alias or ()),
        phone_security_profiles=tuple(phone_security_profile or ()),
        subject=SubjectFields(extra=tuple(extra)),
    )
    request, plan = build_csr(key, form, digest=digest)
    pem = request.public_bytes(serialization.Encoding.PEM)
    if as_json:
        if out_file is not None:
            write_output(out_file, pem)
        print_json(
            {
                "common_name": plan.common_name,
                "alt_names": plan.preview,
                "pem": pem.decode(),
            }
        )
        return
    write_output(out_file, pem)
    if out_file is not None:
        out.print(f"wrote CSR for {plan.common_name} to {out_file}")
        out.print("alternative names: " + ", ".join(plan.preview))


# -- ca --------------------------------------------------------------------------------------
def _settings(crl_url: list[str] | None, ocsp_url: str | None, no_urls: bool = False) -> CaSettings:
    return CaSettings(crl_urls=tuple(crl_url or ()), ocsp_url=ocsp_url, node_urls=not no_urls)


NoUrlsOpt = Annotated[
    bool,
    typer.Option(
        "--no-urls",
        help="Issue certificates without CRL/OCSP URLs (by default a CA created without "
        "--crl-url/--ocsp-url publishes at the node's publication URL: 'certway node set "
        "--publish-url').",
    ),
]


CrlUrlOpt = Annotated[
    list[str] | None,
    typer.Option("--crl-url", help="CRL distribution point written into issued certificates."),
]
OcspUrlOpt = Annotated[
    str | None, typer.Option("--ocsp-url", help="OCSP URL written into issued certificates.")
]


def _ca_dict(info: CaInfo) -> dict[str, object]:
    return {
        "name": info.name,
        "kind": info.kind,
        "parent": info.parent,
        "subject": info.subject,
        "not_after": info.not_after,
        "key": info.key,
        "sha256_fingerprint": info.fingerprint,
        "crl_urls": info.crl_urls,
        "ocsp_url": info.ocsp_url,
        "issued": info.issued,
        "revoked": info.revoked,
        "crl_number": info.crl_number,
    }


def _print_ca(info: CaInfo, as_json: bool, verb: str) -> None:
    if as_json:
        print_json(_ca_dict(info))
    else:
        out.print(
            f"{verb} CA '{info.name}': {info.subject} ({info.key}), "
            f"valid until {info.not_after:%Y-%m-%d}"
        )


@ca_app.command("create-root")
def ca_create_root(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="Name of the CA in certway.")],
    subject: Annotated[str, typer.Option("--subject", help='e.g. "/CN=Example Root CA".')],
    key_type: KeyTypeOpt = "ec:p256",
    days: Annotated[int, typer.Option("--days")] = 3650,
    crl_url: CrlUrlOpt = None,
    ocsp_url: OcspUrlOpt = None,
    no_urls: NoUrlsOpt = False,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a self-signed root CA."""
    with open_node(ctx) as n:
        info = n.local_ca.create_root(
            name,
            subject,
            key_type=key_type,
            days=days,
            settings=_settings(crl_url, ocsp_url, no_urls),
            token=token,
        )
    _print_ca(info, as_json, "created root")


@ca_app.command("create-intermediate")
def ca_create_intermediate(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name")],
    parent: Annotated[str, typer.Option("--parent", help="Name of the signing CA.")],
    subject: Annotated[str, typer.Option("--subject")],
    key_type: KeyTypeOpt = "ec:p256",
    days: Annotated[int, typer.Option("--days")] = 1825,
    crl_url: CrlUrlOpt = None,
    ocsp_url: OcspUrlOpt = None,
    no_urls: NoUrlsOpt = False,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an intermediate CA signed by another local CA."""
    with open_node(ctx) as n:
        info = n.local_ca.create_intermediate(
            name,
            parent,
            subject,
            key_type=key_type,
            days=days,
            settings=_settings(crl_url, ocsp_url, no_urls),
            token=token,
        )
    _print_ca(info, as_json, "created intermediate")


@ca_app.command("import")
def ca_import(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name")],
    cert: Annotated[Path, typer.Option("--cert", help="CA certificate (PEM or DER).")],
    key: Annotated[Path | None, typer.Option("--key", help="CA private key (PEM or DER).")] = None,
    passphrase_file: PassFile = None,
    crl_url: CrlUrlOpt = None,
    ocsp_url: OcspUrlOpt = None,
    token: Annotated[
        str | None, typer.Option("--token", help="The CA key is in this PKCS#11 token.")
    ] = None,
    key_label: Annotated[
        str | None, typer.Option("--key-label", help="Label of the CA key in the token.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Import an existing CA: certificate + private key (encrypted at rest), or certificate
    + a key already in a PKCS#11 token (--token and --key-label)."""
    if (key is None) == (token is None) or (token is None) != (key_label is None):
        raise PolicyViolation(
            "ca-import", "give either --key, or --token with --key-label (the key in a token)"
        )
    cert_data = read_input(cert, "certificate file")
    settings = _settings(crl_url, ocsp_url)
    if token is not None and key_label is not None:
        with open_node(ctx) as n:
            info = n.local_ca.import_token_ca(
                name, cert_data, token=token, key_label=key_label, settings=settings
            )
        _print_ca(info, as_json, "imported")
        return
    assert key is not None
    key_data = read_input(key, "key file")
    passphrase = read_passphrase(passphrase_file)
    with open_node(ctx) as n:
        info = n.local_ca.import_ca(
            name, cert_data, key_data, passphrase=passphrase, settings=settings
        )
    _print_ca(info, as_json, "imported")


@ca_app.command("list")
def ca_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List the local CAs."""
    with open_node(ctx) as n:
        cas = n.local_ca.cas()
    if as_json:
        print_json([_ca_dict(c) for c in cas])
        return
    if not cas:
        out.print("no CA yet: create one with 'certway ca create-root'")
        return
    table = Table("name", "kind", "parent", "subject", "key", "expires", "issued", "revoked")
    for c in cas:
        table.add_row(
            c.name,
            c.kind,
            c.parent or "",
            c.subject,
            c.key,
            f"{c.not_after:%Y-%m-%d}",
            str(c.issued),
            str(c.revoked),
        )
    out.print(table)


@ca_app.command("cert")
def ca_cert(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name")],
    chain: Annotated[bool, typer.Option("--chain", help="Also the parent CAs.")] = False,
    der: Annotated[bool, typer.Option("--der", help="DER instead of PEM.")] = False,
    out_file: OutFile = None,
) -> None:
    """The CA certificate (PEM)."""
    with open_node(ctx) as n:
        certs = n.local_ca.chain(name) if chain else [n.local_ca.certificate(name)]
    if der:
        if len(certs) > 1:
            raise PolicyViolation("der-chain", "DER holds one certificate: drop --chain")
        write_output(out_file, certs[0].public_bytes(serialization.Encoding.DER))
        return
    write_output(out_file, b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))


@ca_app.command("sign")
def ca_sign(
    ctx: typer.Context,
    ca: Annotated[str, typer.Option("--ca", help="Name of the signing CA.")],
    csr: Annotated[Path, typer.Option("--csr", help="CSR file (PEM or DER).")],
    profile: Annotated[
        str, choice("--profile", values=PROFILES, help="What the certificate may be used for.")
    ] = "server-client",
    days: Annotated[int, typer.Option("--days")] = 365,
    out_file: OutFile = None,
    chain: Annotated[bool, typer.Option("--chain", help="Append the CA chain.")] = False,
    der: Annotated[bool, typer.Option("--der", help="DER output (certificate only).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Sign a CSR with a profile; the certificate goes into the CA's inventory."""
    data = read_input(csr, "CSR file")
    if der and chain:
        raise PolicyViolation("der-chain", "DER holds one certificate: drop --chain")
    with open_node(ctx) as n:
        result = n.local_ca.sign(ca, data, profile=profile, days=days)
    cert = result.certificate
    payload = cert.public_bytes(serialization.Encoding.DER) if der else result.pem(with_chain=chain)
    if as_json:
        if out_file is not None:
            write_output(out_file, payload)
        print_json(
            {
                "serial": serial_hex(cert.serial_number),
                "subject": cert.subject.rfc4514_string(),
                "not_before": cert.not_valid_before_utc,
                "not_after": cert.not_valid_after_utc,
                "pem": result.pem(with_chain=chain).decode(),
            }
        )
        return
    write_output(out_file, payload)
    if out_file is not None:
        out.print(
            f"issued serial {serial_hex(cert.serial_number)} to {cert.subject.rfc4514_string()}, "
            f"valid until {cert.not_valid_after_utc:%Y-%m-%d} -> {out_file}"
        )


@ca_app.command("revoke")
def ca_revoke(
    ctx: typer.Context,
    ca: Annotated[str, typer.Option("--ca")],
    serial: Annotated[str, typer.Option("--serial", help="Serial number in hex.")],
    reason: Annotated[
        str | None,
        choice("--reason", values=REASONS, metavar="REASON", help="Why it is revoked."),
    ] = None,
    date: Annotated[
        str | None, typer.Option("--date", help="Revocation date (ISO 8601, default now).")
    ] = None,
    invalidity_date: Annotated[
        str | None, typer.Option("--invalidity-date", help="When the key was compromised.")
    ] = None,
    allow_unlisted: Annotated[
        bool,
        typer.Option("--allow-unlisted", help="Revoke a serial not in the inventory."),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Revoke a certificate; a new CRL is published at once."""
    when = parse_when(date, "--date")
    invalid = parse_when(invalidity_date, "--invalidity-date")
    with open_node(ctx) as n:
        crl = n.local_ca.revoke(
            ca,
            serial,
            reason=reason,
            revoked_at=when,
            invalidity_date=invalid,
            allow_unlisted=allow_unlisted,
        )
    if as_json:
        print_json({"serial": serial, "crl_number": crl.number, "crl_entries": crl.entries})
    else:
        out.print(
            f"revoked {serial} ({reason or 'no reason given'}); CRL #{crl.number} published "
            f"with {plural(crl.entries, 'entry')}"
        )


@ca_app.command("crl")
def ca_crl(
    ctx: typer.Context,
    ca: Annotated[str, typer.Option("--ca")],
    out_file: OutFile = None,
    der: Annotated[bool, typer.Option("--der", help="DER instead of PEM.")] = False,
    next_update_days: Annotated[
        int | None, typer.Option("--next-update-days", help="CRL validity (default 7).")
    ] = None,
    new: Annotated[bool, typer.Option("--new", help="Always sign a new CRL.")] = False,
) -> None:
    """The CA's current CRL (a new one is signed when needed, with a higher CRL number)."""
    with open_node(ctx) as n:
        if new:
            crl = n.local_ca.publish_crl(ca, next_update_days=next_update_days)
        else:
            crl = n.local_ca.current_crl(ca, next_update_days=next_update_days)
    write_output(out_file, crl.der if der else crl.pem)
    if out_file is not None:
        out.print(
            f"CRL #{crl.number} with {plural(crl.entries, 'entry')}, next update "
            f"{crl.next_update:%Y-%m-%d %H:%M} UTC -> {out_file}"
        )


@ca_app.command("issued")
def ca_issued(
    ctx: typer.Context,
    ca: Annotated[str, typer.Option("--ca")],
    search: Annotated[
        str | None, typer.Option("--search", help="Substring of subject, SAN or serial.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """The inventory of certificates issued by a CA."""
    with open_node(ctx) as n:
        items = n.local_ca.issued(ca, search=search)
    if as_json:
        print_json(
            [
                {
                    "serial": i.serial,
                    "subject": i.subject,
                    "alt_names": i.alt_names,
                    "profile": i.profile,
                    "not_before": i.not_before,
                    "not_after": i.not_after,
                    "status": i.status,
                    "revoked_at": i.revoked_at,
                    "reason": i.reason,
                    "acme_account": i.acme_account,
                }
                for i in items
            ]
        )
        return
    if not items:
        out.print(f"CA '{ca}' has issued no certificate" + (" matching" if search else ""))
        return
    table = Table("serial", "subject", "alt names", "profile", "expires", "status")
    for i in items:
        status = i.status if i.status != "revoked" else f"revoked ({i.reason or 'unspecified'})"
        table.add_row(
            i.serial, i.subject, i.alt_names, i.profile, f"{i.not_after:%Y-%m-%d}", status
        )
    out.print(table)


@ca_app.command("export")
def ca_export(
    ctx: typer.Context,
    ca: Annotated[str, typer.Option("--ca")],
    serial: Annotated[str, typer.Option("--serial")],
    out_file: OutFile = None,
) -> None:
    """One issued certificate from the inventory, PEM."""
    with open_node(ctx) as n:
        cert = n.local_ca.issued_certificate(ca, serial)
    write_output(out_file, cert.public_bytes(serialization.Encoding.PEM))


# -- decode / convert ------------------------------------------------------------------------
@app.command("decode")
def decode_cmd(
    file: Annotated[Path, typer.Argument(help="Any PKI object, PEM or DER ('-' for stdin).")],
    passphrase_file: PassFile = None,
    as_json: JsonOpt = False,
) -> None:
    """Decode a certificate, CSR, CRL, PKCS#7, PKCS#12 or key (never prints key material)."""
    decoded = detect(read_input(file), read_passphrase(passphrase_file))
    if as_json:
        print_json(decoded.to_dict())
    else:
        out.print(decoded.to_text())


@app.command("convert")
def convert_cmd(
    file: Annotated[Path, typer.Argument(help="Input file (PEM, DER, PKCS#7 or PKCS#12).")],
    to: Annotated[str, choice("--to", values=CONVERT_TARGETS, help="Output format.")],
    out_file: Annotated[Path, typer.Option("--out", "-o", help="Output file.")],
    key_file: Annotated[
        Path | None, typer.Option("--key", help="Private key for --to p12.")
    ] = None,
    passphrase_file: PassFile = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Friendly name inside a PKCS#12.")
    ] = None,
) -> None:
    """Convert DER<->PEM, build/read PKCS#12 (passphrase), PKCS#7 bundles <-> PEM."""
    data = read_input(file)
    passphrase = read_passphrase(passphrase_file)
    target = to.lower()
    if target not in CONVERT_TARGETS:
        raise PolicyViolation("convert", f"unknown target '{to}': use {', '.join(CONVERT_TARGETS)}")
    secret = False
    if target == "p12":
        if key_file is None:
            raise PolicyViolation("convert", "--to p12 needs --key (the private key)")
        if passphrase is None:
            raise PassphraseError("--to p12 needs --passphrase-file: a PKCS#12 holds a private key")
        key_data = read_input(key_file, "key file")
        try:
            key = load_private_key(key_data, None)
        except PassphraseError:  # an encrypted key: the same passphrase opens it
            key = load_private_key(key_data, passphrase)
        certs = load_certificates(data)
        result = conv.pkcs12_export(key, certs[0], certs[1:], passphrase, name)
        secret = True
    elif target == "p7b":
        result = conv.pkcs7_bundle(load_certificates(data))
    elif target == "der":
        result = conv.to_der(data)
    else:
        result, secret = _to_pem(data, passphrase)
    write_output(out_file, result, secret=secret)
    out.print(f"wrote {target.upper()} to {out_file}")


def _to_pem(data: bytes, passphrase: bytes | None) -> tuple[bytes, bool]:
    """PEM of anything: PKCS#12 (key re-encrypted with the same passphrase), PKCS#7, DER."""
    decoded = detect(data, passphrase)
    if decoded.kind == "pkcs12":
        key, cert, extra = conv.pkcs12_import(data, passphrase)
        parts = [c.public_bytes(serialization.Encoding.PEM) for c in [cert, *extra] if c]
        if key is not None:
            if not passphrase:
                raise PassphraseError(
                    "give --passphrase-file: the private key is written encrypted with it"
                )
            parts.append(private_key_pem(key, passphrase))
        return b"".join(parts), key is not None
    if decoded.kind == "pkcs7":
        return b"".join(conv.pkcs7_to_pems(data)), False
    if decoded.kind in {"private-key", "public-key"}:
        raise PolicyViolation("convert", "keys are not converted here: use 'certway key' tools")
    try:
        return conv.to_pem(data), False
    except DecodeError:
        raise
    except ValueError as exc:  # pragma: no cover - defensive
        raise DecodeError(str(exc)) from exc
