"""``certway ca issue``: one step to a certificate (key generated here, certificate, PKCS#12)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from certway.cli.main import (
    InputFileError,
    JsonOpt,
    KeyTypeOpt,
    ca_app,
    choice,
    err,
    open_node,
    out,
    print_json,
    read_passphrase,
    write_output,
)
from certway.pki.issue import PROFILES
from certway.pki.text import serial_hex


@ca_app.command("issue")
def ca_issue(
    ctx: typer.Context,
    ca: Annotated[str, typer.Option("--ca", help="Name of the issuing CA.")],
    cn: Annotated[str, typer.Option("--cn", help="Common name (also put in the SAN list).")],
    san: Annotated[
        list[str] | None,
        typer.Option("--san", help="DNS:name or IP:address (repeatable; a bare name is DNS)."),
    ] = None,
    subject: Annotated[
        str, typer.Option("--subject", help='Other subject fields, e.g. "/C=GB/O=Acme".')
    ] = "",
    profile: Annotated[
        str,
        choice(
            "--profile",
            # a new key is an end entity's: no sub-CA profile here
            values=[name for name, spec in PROFILES.items() if not spec.ca],
            help="What the certificate may be used for.",
        ),
    ] = "server-client",
    key_type: KeyTypeOpt = "ec:p256",
    days: Annotated[int, typer.Option("--days", help="Validity in days.")] = 365,
    out_cert: Annotated[
        Path | None,
        typer.Option(
            "--out-cert", metavar="FILE", help="Certificate + CA chain, PEM (default stdout)."
        ),
    ] = None,
    out_key: Annotated[
        Path | None,
        typer.Option(
            "--out-key",
            metavar="FILE",
            help="Private key, PKCS#8 PEM, mode 0600 (encrypted with --passphrase-file).",
        ),
    ] = None,
    p12: Annotated[
        Path | None,
        typer.Option(
            "--p12", metavar="FILE", help="Key + certificate + chain as PKCS#12, mode 0600."
        ),
    ] = None,
    passphrase_file: Annotated[
        Path | None,
        typer.Option(
            "--passphrase-file",
            metavar="FILE",
            help="First line: the passphrase of the PKCS#12 and of the key file.",
        ),
    ] = None,
    chain: Annotated[
        bool, typer.Option("--chain/--no-chain", help="Append the CA chain to --out-cert.")
    ] = True,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Issue a certificate for a new key in one step (as 'step ca certificate' or easy-rsa
    'build-client-full'): the key is generated here, written to --out-key and/or --p12, and
    never stored."""
    if out_key is None and p12 is None:
        raise InputFileError("give --out-key and/or --p12: the new private key has to go somewhere")
    passphrase = read_passphrase(passphrase_file)
    if p12 is not None and passphrase is None:
        raise InputFileError("a PKCS#12 file needs --passphrase-file (a key never leaves in clear)")
    outputs = [p for p in (out_cert, out_key, p12) if p is not None and str(p) != "-"]
    if len({p.resolve() for p in outputs}) != len(outputs):
        raise InputFileError("--out-cert, --out-key and --p12 must be different files")
    if (out_key is not None and str(out_key) == "-") or (p12 is not None and str(p12) == "-"):
        raise InputFileError("private keys are written to files, not to standard output")
    for path in outputs:
        if path.exists() and not force:
            raise InputFileError(f"{path} exists; give --force to overwrite it")
        if not path.parent.is_dir():
            raise InputFileError(f"cannot write {path}: {path.parent} is not a directory")
    with open_node(ctx) as n:
        issued = n.local_ca.issue_with_key(
            ca,
            cn,
            alt_names=tuple(san or ()),
            subject=subject,
            profile=profile,
            key_type=key_type,
            days=days,
        )
    cert = issued.certificate
    if out_key is not None:
        write_output(out_key, issued.key_pem(passphrase), secret=True)
    if p12 is not None and passphrase is not None:
        write_output(p12, issued.pkcs12(passphrase, friendly_name=cn), secret=True)
    pem = issued.pem(with_chain=chain)
    if out_cert is not None or not as_json:
        write_output(out_cert, pem)
    serial = serial_hex(cert.serial_number)
    if as_json:
        print_json(
            {
                "serial": serial,
                "subject": cert.subject.rfc4514_string(),
                "not_before": cert.not_valid_before_utc,
                "not_after": cert.not_valid_after_utc,
                "pem": pem.decode(),
                "files": {
                    "certificate": str(out_cert) if out_cert else None,
                    "key": str(out_key) if out_key else None,
                    "pkcs12": str(p12) if p12 else None,
                },
            }
        )
        return
    written = ", ".join(str(p) for p in outputs)
    (out if out_cert is not None else err).print(
        f"issued serial {serial} to {cert.subject.rfc4514_string()}, valid until "
        f"{cert.not_valid_after_utc:%Y-%m-%d} -> {written}"
    )
