"""What certway issues, linted by pkilint's RFC 5280 linters (``lint_pkix_cert``, ``lint_crl``,
``lint_pkix_signer_signee_cert_chain``): no ERROR or FATAL finding is allowed.

One PKI is built per module (the linters only read files), then each certificate, CRL and
issuer/subject pair is one test, so a finding names the object that has it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import Cli

pytestmark = pytest.mark.interop

BLOCKING = {"ERROR", "FATAL"}


@dataclass(frozen=True)
class Finding:
    severity: str
    code: str
    node: str
    message: str | None

    def __str__(self) -> str:
        text = f"{self.severity} {self.code} @ {self.node}"
        return f"{text}: {self.message}" if self.message else text


def pkilint(tool: str, *args: str | Path) -> list[Finding]:
    """Run one pkilint console tool (as ``python -m`` in this venv); every finding >= INFO."""
    command = [sys.executable, "-m", f"pkilint.bin.{tool}", "lint", "--format", "JSON"]
    proc = subprocess.run(
        [*command, "--severity", "INFO", *[str(a) for a in args]],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # the exit code counts findings (INFO ones too); a document it cannot load gives no JSON
    assert proc.stdout.strip(), f"{tool} could not lint {args}: {proc.stderr}"
    return [
        Finding(d["severity"], d["code"], result["node_path"], d["message"])
        for result in json.loads(proc.stdout)["results"]
        for d in result["finding_descriptions"]
    ]


def assert_no_blocking(findings: list[Finding]) -> None:
    blocking = [str(f) for f in findings if f.severity in BLOCKING]
    assert not blocking, "\n".join(blocking)


REASONS = [
    "unspecified",
    "keyCompromise",
    "cACompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
    "certificateHold",
    "privilegeWithdrawn",
    "aACompromise",
]

# name: (issuing CA, leaf key type, profile)
LEAVES = {
    "leaf-server-client": ("int", "ec:p256", "server-client"),
    "leaf-server": ("int", "ec:p256", "server"),
    "leaf-client": ("int", "ec:p256", "client"),
    "sub-ca": ("ec-root", "ec:p384", "sub-ca"),  # int has pathLen 0
    "leaf-rsa-server-client": ("rsa-root", "rsa:2048", "server-client"),
    "leaf-rsa-server": ("rsa-root", "rsa:2048", "server"),
    "leaf-rsa-client": ("rsa-root", "rsa:2048", "client"),
    "leaf-rsa-sub-ca": ("rsa-root", "rsa:2048", "sub-ca"),
    "leaf-ed25519": ("int", "ed25519", "server-client"),
}
CERTS = ["ec-root", "rsa-root", "int", *LEAVES]
CRLS = [
    "int-empty",
    "int-empty-der",
    "rsa-root-reasons",
    "rsa-root-reasons-der",
    "ec-root-revoked-sub-ca",
]
PAIRS = [("ec-root", "int"), *[(issuer, name) for name, (issuer, _, _) in LEAVES.items()]]


@pytest.fixture(scope="module")
def issued(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every certificate and CRL of one certway PKI, by name."""
    out = tmp_path_factory.mktemp("pkilint")
    cli = Cli(out / "data")
    cli.ok("init")
    cli.ok("ca", "create-root", "--name", "ec-root", "--subject", "/C=GB/O=Acme/CN=Acme EC Root",
           "--crl-url", "http://pki.example.com/ec-root.crl",
           "--ocsp-url", "http://ocsp.example.com/ec-root")  # fmt: skip
    cli.ok("ca", "create-root", "--name", "rsa-root", "--key-type", "rsa:2048",
           "--subject", "/O=Acme/CN=Acme RSA Root",
           "--crl-url", "http://pki.example.com/rsa-root.crl")  # fmt: skip
    cli.ok("ca", "create-intermediate", "--name", "int", "--parent", "ec-root",
           "--key-type", "ec:p384", "--subject", "/O=Acme/OU=Edge/CN=Acme Issuing",
           "--crl-url", "http://pki.example.com/int.crl",
           "--ocsp-url", "http://ocsp.example.com/int")  # fmt: skip
    paths = {}
    for ca in ("ec-root", "rsa-root", "int"):
        paths[ca] = out / f"{ca}.pem"
        cli.ok("ca", "cert", "--name", ca, "--out", paths[ca])

    serials: dict[str, list[str]] = {}
    for name, (ca, key_type, profile) in LEAVES.items():
        key, csr = out / f"{name}.key", out / f"{name}.csr"
        cli.ok("key", "generate", "--type", key_type, "--out", key)
        cli.ok("csr", "create", "--key", key, "--cn", f"{name}.example.com",
               "--san", "DNS:alt.example.com", "--san", "IP:192.0.2.1",
               "--subject", "/C=GB/O=Acme", "--out", csr)  # fmt: skip
        paths[name] = out / f"{name}.pem"
        signed = cli.ok("ca", "sign", "--ca", ca, "--csr", csr, "--profile", profile,
                        "--out", paths[name], "--json")  # fmt: skip
        serials.setdefault(ca, []).append(json.loads(signed.stdout)["serial"])

    def crl(name: str, ca: str, *options: str) -> None:
        paths[name] = out / f"{name}.crl"
        cli.ok("ca", "crl", "--ca", ca, "--out", paths[name], *options)

    crl("int-empty", "int")
    crl("int-empty-der", "int", "--der")

    # one revocation per reason code (more certificates than leaves: sign the same CSR again)
    csr = out / "leaf-rsa-server-client.csr"
    while len(serials["rsa-root"]) < len(REASONS):
        signed = cli.ok("ca", "sign", "--ca", "rsa-root", "--csr", csr, "--json")
        serials["rsa-root"].append(json.loads(signed.stdout)["serial"])
    for serial, reason in zip(serials["rsa-root"], REASONS, strict=False):
        extra = ["--invalidity-date", "2026-01-01T00:00:00Z"] if reason == "keyCompromise" else []
        cli.ok("ca", "revoke", "--ca", "rsa-root", "--serial", serial, "--reason", reason, *extra)
    crl("rsa-root-reasons", "rsa-root")
    crl("rsa-root-reasons-der", "rsa-root", "--der")

    # a root CRL revoking the sub-CA it signed
    cli.ok("ca", "revoke", "--ca", "ec-root", "--serial", serials["ec-root"][0],
           "--reason", "cACompromise")  # fmt: skip
    crl("ec-root-revoked-sub-ca", "ec-root")
    return paths


@pytest.mark.parametrize("name", CERTS)
def test_certificate_has_no_rfc5280_errors(issued: dict[str, Path], name: str) -> None:
    assert_no_blocking(pkilint("lint_pkix_cert", issued[name]))


@pytest.mark.parametrize("name", CRLS)
def test_crl_has_no_rfc5280_errors(issued: dict[str, Path], name: str) -> None:
    assert_no_blocking(pkilint("lint_crl", "--type", "CRL", "--profile", "PKIX", issued[name]))


@pytest.mark.parametrize(("issuer", "subject"), PAIRS, ids=[f"{i}>{s}" for i, s in PAIRS])
def test_issuer_subject_pair_has_no_rfc5280_errors(
    issued: dict[str, Path], issuer: str, subject: str
) -> None:
    assert_no_blocking(
        pkilint("lint_pkix_signer_signee_cert_chain", issued[issuer], issued[subject])
    )


def test_linting_is_real(issued: dict[str, Path]) -> None:
    """A wrong pair does produce ERRORs, so the clean results above mean something."""
    findings = pkilint("lint_pkix_signer_signee_cert_chain", issued["rsa-root"], issued["int"])
    codes = {f.code for f in findings if f.severity in BLOCKING}
    assert "pkix.signature_verification_failed" in codes
