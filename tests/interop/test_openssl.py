"""certway against the real ``openssl`` binary: CSRs, chains, CRLs, PKCS#12 and PKCS#7 both ways.

Every test has openssl either consume what certway produced or produce what certway consumes;
a peer that only round-trips through our own code would prove nothing.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from conftest import Cli, write

pytestmark = pytest.mark.interop

SERVER_AUTH = "TLS Web Server Authentication"
CLIENT_AUTH = "TLS Web Client Authentication"


@dataclass(frozen=True)
class Run:
    """One openssl invocation: exit code and stdout+stderr (openssl splits them arbitrarily)."""

    returncode: int
    output: str


class OpenSSL:
    """The openssl binary, run in the test's directory."""

    def __init__(self, binary: str, cwd: Path) -> None:
        self.binary = binary
        self.cwd = cwd

    def __call__(self, *args: str | Path, ok: bool = True) -> Run:
        proc = subprocess.run(
            [self.binary, *[str(a) for a in args]],
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        run = Run(proc.returncode, proc.stdout + proc.stderr)
        if ok:
            assert run.returncode == 0, f"openssl {' '.join(map(str, args))}:\n{run.output}"
        return run

    def verify(self, leaf: Path, *options: str | Path, ok: bool = True) -> Run:
        run = self("verify", "-x509_strict", *options, leaf, ok=False)
        if ok:
            assert run.returncode == 0 and f"{leaf}: OK" in run.output, run.output
        else:
            assert run.returncode != 0, run.output
        return run

    def csr(self, out: Path, key_type: str, subject: str, san: str) -> Path:
        """An openssl-made CSR; ``key_type`` is ``rsa:2048`` or ``ec`` (P-256)."""
        key = ["-newkey", key_type]
        if key_type == "ec":
            key += ["-pkeyopt", "ec_paramgen_curve:P-256"]
        self("req", "-new", *key, "-nodes", "-keyout", out.with_suffix(".key"),
             "-subj", subject, "-addext", f"subjectAltName={san}", "-out", out)  # fmt: skip
        return out

    def ca(
        self, name: str, subject: str, passphrase: str | None = None, *, key_format: str = "ec"
    ) -> tuple[Path, Path]:
        """A self-signed CA made by openssl: (cert, key); the key encrypted when asked.

        ``key_format`` ``ec``: P-256, PKCS#8; ``rsa-traditional``: RSA 2048 in the old
        ``BEGIN RSA PRIVATE KEY`` form (``Proc-Type: 4,ENCRYPTED`` when encrypted).
        """
        cert, key = self.cwd / f"{name}.pem", self.cwd / f"{name}.key"
        secret = ["-passout", f"pass:{passphrase}"] if passphrase else ["-nodes"]
        ca_exts = ["-addext", "basicConstraints=critical,CA:TRUE",
                   "-addext", "keyUsage=critical,keyCertSign,cRLSign"]  # fmt: skip
        common = ["-out", cert, "-days", "3650", "-subj", subject, *ca_exts]
        if key_format == "ec":
            self("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                 *secret, "-keyout", key, *common)  # fmt: skip
            return cert, key
        plain = self.cwd / f"{name}.plain.key"
        self("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", plain)
        self("req", "-x509", "-key", plain, *common)
        cipher = ["-aes256", "-passout", f"pass:{passphrase}"] if passphrase else []
        self("rsa", "-in", plain, "-traditional", *cipher, "-out", key)
        plain.unlink()
        return cert, key


@dataclass(frozen=True)
class LocalPki:
    """certway's root → intermediate, with both CA certificates written out for openssl."""

    cli: Cli
    dir: Path
    root: Path
    intermediate: Path

    def sign(self, csr: Path, out: Path, *options: str) -> Path:
        self.cli.ok("ca", "sign", "--ca", "int", "--csr", csr, "--out", out, *options)
        return out


@pytest.fixture
def ossl(openssl: str, tmp_path: Path) -> OpenSSL:
    return OpenSSL(openssl, tmp_path)


@pytest.fixture
def pki(cli: Cli, tmp_path: Path) -> LocalPki:
    cli.ok("ca", "create-root", "--name", "root", "--subject", "/O=Acme/CN=Acme Root",
           "--crl-url", "http://pki.example.com/root.crl")  # fmt: skip
    cli.ok("ca", "create-intermediate", "--name", "int", "--parent", "root",
           "--subject", "/O=Acme/CN=Acme Issuing", "--crl-url", "http://pki.example.com/int.crl")  # fmt: skip
    root = tmp_path / "root.pem"
    intermediate = tmp_path / "int.pem"
    cli.ok("ca", "cert", "--name", "root", "--out", root)
    cli.ok("ca", "cert", "--name", "int", "--out", intermediate)
    return LocalPki(cli, tmp_path, root, intermediate)


def certs_in(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def serial_of(path: Path) -> str:
    return f"{certs_in(path)[0].serial_number:X}"


def our_csr(cli: Cli, tmp_path: Path, key_type: str, cn: str, *sans: str) -> tuple[Path, Path]:
    """A key and CSR made by certway: (key, csr)."""
    key, csr = tmp_path / f"{cn}.key", tmp_path / f"{cn}.csr"
    cli.ok("key", "generate", "--type", key_type, "--out", key)
    san_args = [a for san in sans for a in ("--san", san)]
    cli.ok("csr", "create", "--key", key, "--cn", cn, *san_args,
           "--subject", "/C=GB/O=Acme", "--out", csr)  # fmt: skip
    return key, csr


# -- certway CSR → openssl CA ----------------------------------------------------------------


@pytest.mark.parametrize("key_type", ["rsa:2048", "ec:p256"])
def test_our_csr_is_signed_by_an_openssl_ca(
    cli: Cli, ossl: OpenSSL, tmp_path: Path, key_type: str
) -> None:
    _, csr = our_csr(cli, tmp_path, key_type, "edge.example.com",
                     "DNS:alt.example.com", "IP:192.0.2.10")  # fmt: skip
    assert "verify OK" in ossl("req", "-in", csr, "-noout", "-verify").output
    ca_cert, ca_key = ossl.ca("osslca", "/CN=OpenSSL Test CA")
    leaf = tmp_path / "leaf.pem"
    ossl("x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key,
         "-copy_extensions", "copy", "-days", "30", "-out", leaf)  # fmt: skip
    ossl.verify(leaf, "-CAfile", ca_cert)
    ossl.verify(leaf, "-CAfile", ca_cert, "-purpose", "sslserver")
    ossl.verify(leaf, "-CAfile", ca_cert, "-purpose", "sslclient")
    ext = ossl("x509", "-in", leaf, "-noout", "-ext", "subjectAltName,extendedKeyUsage").output
    for expected in ("DNS:edge.example.com", "DNS:alt.example.com", "IP Address:192.0.2.10",
                     SERVER_AUTH, CLIENT_AUTH):  # fmt: skip
        assert expected in ext, ext
    subject = ossl("x509", "-in", leaf, "-noout", "-subject", "-nameopt", "RFC2253").output
    assert "CN=edge.example.com,O=Acme,C=GB" in subject


def test_openssl_rejects_our_csr_when_tampered(cli: Cli, ossl: OpenSSL, tmp_path: Path) -> None:
    """The positive ``req -verify`` above means something: a flipped signature bit fails."""
    _, csr = our_csr(cli, tmp_path, "ec:p256", "edge.example.com")
    der = bytearray(x509.load_pem_x509_csr(csr.read_bytes()).public_bytes(
        serialization.Encoding.DER))  # fmt: skip
    der[-6] ^= 0x41
    bad = write(tmp_path / "bad.csr", bytes(der))
    # openssl 3.0 exits 0 here; the verdict is only in the text
    run = ossl("req", "-in", bad, "-inform", "DER", "-noout", "-verify", ok=False)
    assert "verify failure" in run.output and "verify OK" not in run.output


# -- openssl CSR → certway CA ----------------------------------------------------------------

PROFILES = {
    # profile: (purposes openssl accepts, purposes it refuses)
    "server-client": (["sslserver", "sslclient"], []),
    "server": (["sslserver"], ["sslclient"]),
    "client": (["sslclient"], ["sslserver"]),
}


@pytest.mark.parametrize("key_type", ["rsa:2048", "ec"])
@pytest.mark.parametrize("profile", list(PROFILES))
def test_openssl_csr_signed_by_our_intermediate(
    pki: LocalPki, ossl: OpenSSL, tmp_path: Path, key_type: str, profile: str
) -> None:
    csr = ossl.csr(tmp_path / "peer.csr", key_type, "/C=GB/O=Acme/CN=peer.example.com",
                   "DNS:peer.example.com,DNS:sip.example.com,IP:192.0.2.20")  # fmt: skip
    leaf = pki.sign(csr, tmp_path / "leaf.pem", "--profile", profile)
    chain_args = ["-CAfile", pki.root, "-untrusted", pki.intermediate]
    ossl.verify(leaf, *chain_args)
    accepted, refused = PROFILES[profile]
    for purpose in accepted:
        ossl.verify(leaf, *chain_args, "-purpose", purpose)
    for purpose in refused:
        run = ossl.verify(leaf, *chain_args, "-purpose", purpose, ok=False)
        assert "unsuitable certificate purpose" in run.output
    san = ossl("x509", "-in", leaf, "-noout", "-ext", "subjectAltName").output
    for name in ("DNS:peer.example.com", "DNS:sip.example.com", "IP Address:192.0.2.20"):
        assert name in san, san
    # the root alone does not vouch for the leaf: the intermediate is really needed
    run = ossl.verify(leaf, "-CAfile", pki.root, ok=False)
    assert "unable to get local issuer certificate" in run.output


def test_sign_chain_output_is_what_openssl_needs(
    pki: LocalPki, ossl: OpenSSL, tmp_path: Path
) -> None:
    csr = ossl.csr(tmp_path / "peer.csr", "ec", "/CN=peer.example.com", "DNS:peer.example.com")
    chain = pki.sign(csr, tmp_path / "chain.pem", "--chain")
    leaf = write(tmp_path / "leaf.pem", certs_in(chain)[0].public_bytes(serialization.Encoding.PEM))
    ossl.verify(leaf, "-CAfile", pki.root, "-untrusted", chain, "-purpose", "sslserver")
    full = tmp_path / "int-chain.pem"
    pki.cli.ok("ca", "cert", "--name", "int", "--chain", "--out", full)
    ossl.verify(pki.intermediate, "-CAfile", pki.root)
    assert certs_in(full) == [*certs_in(pki.intermediate), *certs_in(pki.root)]


# -- revocation ------------------------------------------------------------------------------


def _issue(pki: LocalPki, ossl: OpenSSL, count: int) -> list[Path]:
    leaves = []
    for i in range(count):
        csr = ossl.csr(pki.dir / f"peer{i}.csr", "ec", f"/CN=peer{i}.example.com",
                       f"DNS:peer{i}.example.com")  # fmt: skip
        leaves.append(pki.sign(csr, pki.dir / f"peer{i}.pem"))
    return leaves


def test_openssl_honours_our_crls(pki: LocalPki, ossl: OpenSSL, tmp_path: Path) -> None:
    good1, revoked, good2 = _issue(pki, ossl, 3)
    pki.cli.ok("ca", "revoke", "--ca", "int", "--serial", serial_of(revoked),
               "--reason", "keyCompromise")  # fmt: skip
    int_crl, root_crl = tmp_path / "int-crl.pem", tmp_path / "root-crl.pem"
    pki.cli.ok("ca", "crl", "--ca", "int", "--out", int_crl)
    pki.cli.ok("ca", "crl", "--ca", "root", "--out", root_crl)
    chain = ["-CAfile", pki.root, "-untrusted", pki.intermediate]

    leaf_only = [*chain, "-crl_check", "-CRLfile", int_crl]
    run = ossl.verify(revoked, *leaf_only, ok=False)
    assert "certificate revoked" in run.output
    for leaf in (good1, good2):
        ossl.verify(leaf, *leaf_only)

    # -crl_check_all also wants the root's CRL for the intermediate (one -CRLfile: concatenate)
    both = write(tmp_path / "both.pem", int_crl.read_bytes() + root_crl.read_bytes())
    whole_chain = [*chain, "-crl_check_all", "-CRLfile", both]
    run = ossl.verify(revoked, *whole_chain, ok=False)
    assert "certificate revoked" in run.output
    for leaf in (good1, good2):
        ossl.verify(leaf, *whole_chain)
    run = ossl.verify(good1, *chain, "-crl_check_all", "-CRLfile", int_crl, ok=False)
    assert "unable to get certificate CRL" in run.output


def _revoked_intermediate_fails_the_whole_chain(
    pki: LocalPki, ossl: OpenSSL, tmp_path: Path, *revoke_options: str
) -> None:
    (leaf,) = _issue(pki, ossl, 1)
    pki.cli.ok("ca", "revoke", "--ca", "root", "--serial", serial_of(pki.intermediate),
               "--reason", "cACompromise", *revoke_options)  # fmt: skip
    int_crl, root_crl = tmp_path / "int-crl.pem", tmp_path / "root-crl.pem"
    pki.cli.ok("ca", "crl", "--ca", "int", "--out", int_crl)
    pki.cli.ok("ca", "crl", "--ca", "root", "--out", root_crl)
    both = write(tmp_path / "both.pem", int_crl.read_bytes() + root_crl.read_bytes())
    chain = ["-CAfile", pki.root, "-untrusted", pki.intermediate, "-CRLfile", both]
    ossl.verify(leaf, *chain, "-crl_check")  # leaf-only checking does not look at the root CRL
    run = ossl.verify(leaf, *chain, "-crl_check_all", ok=False)
    assert "certificate revoked" in run.output


def test_revoked_intermediate_fails_the_whole_chain(
    pki: LocalPki, ossl: OpenSSL, tmp_path: Path
) -> None:
    _revoked_intermediate_fails_the_whole_chain(pki, ossl, tmp_path, "--allow-unlisted")


def test_intermediate_is_in_its_roots_inventory_and_revocable(
    pki: LocalPki, ossl: OpenSSL, tmp_path: Path
) -> None:
    issued = json.loads(pki.cli.ok("ca", "issued", "--ca", "root", "--json").stdout)
    assert [int(i["serial"], 16) for i in issued] == [certs_in(pki.intermediate)[0].serial_number]
    _revoked_intermediate_fails_the_whole_chain(pki, ossl, tmp_path)


def _crl_text(ossl: OpenSSL, crl: Path, *options: str) -> tuple[int, set[int], str]:
    """(CRL number, revoked serials, text) as openssl reads them."""
    text = ossl("crl", "-in", crl, *options, "-noout", "-text").output
    number = re.search(r"X509v3 CRL Number: *\n\s*(\d+)", text)
    assert number is not None, text
    serials = {int(s, 16) for s in re.findall(r"Serial Number: ([0-9A-F]+)", text)}
    return int(number.group(1)), serials, text


def test_openssl_reads_and_verifies_our_crls(pki: LocalPki, ossl: OpenSSL, tmp_path: Path) -> None:
    kept, revoked = _issue(pki, ossl, 2)
    pki.cli.ok("ca", "revoke", "--ca", "int", "--serial", serial_of(revoked),
               "--reason", "superseded")  # fmt: skip
    pem, der = tmp_path / "crl.pem", tmp_path / "crl.der"
    pki.cli.ok("ca", "crl", "--ca", "int", "--out", pem)
    pki.cli.ok("ca", "crl", "--ca", "int", "--der", "--out", der)
    issued = json.loads(pki.cli.ok("ca", "issued", "--ca", "int", "--json").stdout)
    assert {i["status"] for i in issued} == {"valid", "revoked"}

    number, serials, text = _crl_text(ossl, pem)
    assert (number, serials) == _crl_text(ossl, der, "-inform", "DER")[:2]
    assert serials == {certs_in(revoked)[0].serial_number}
    assert certs_in(kept)[0].serial_number not in serials
    assert "Superseded" in text
    assert number == x509.load_pem_x509_crl(pem.read_bytes()).extensions.get_extension_for_class(
        x509.CRLNumber).value.crl_number  # fmt: skip
    assert "Issuer: O = Acme, CN = Acme Issuing" in text

    assert "verify OK" in ossl("crl", "-in", pem, "-CAfile", pki.intermediate, "-noout").output
    assert "verify OK" in ossl("crl", "-inform", "DER", "-in", der,
                               "-CAfile", pki.intermediate, "-noout").output  # fmt: skip
    # and the signature check is real: the root did not sign the intermediate's CRL
    run = ossl("crl", "-in", pem, "-CAfile", pki.root, "-noout", ok=False)
    assert run.returncode != 0 and "verify OK" not in run.output

    new = tmp_path / "new.pem"
    pki.cli.ok("ca", "crl", "--ca", "int", "--new", "--out", new)
    assert _crl_text(ossl, new)[0] > number


# -- PKCS#12 ---------------------------------------------------------------------------------


def _leaf_with_key(pki: LocalPki, tmp_path: Path, key_type: str = "ec:p256") -> tuple[Path, Path]:
    key, csr = our_csr(pki.cli, tmp_path, key_type, "edge.example.com")
    return pki.sign(csr, tmp_path / "leaf.pem"), key


def _public_key_der(ossl: OpenSSL, key: Path, *options: str) -> str:
    return ossl("pkey", "-in", key, *options, "-pubout").output


@pytest.mark.parametrize("key_type", ["ec:p256", "rsa:2048"])
def test_our_pkcs12_is_read_by_openssl(
    pki: LocalPki, ossl: OpenSSL, tmp_path: Path, key_type: str
) -> None:
    leaf, key = _leaf_with_key(pki, tmp_path, key_type)
    chain = write(tmp_path / "chain.pem", leaf.read_bytes() + pki.intermediate.read_bytes())
    passfile = write(tmp_path / "pass.txt", b"correct horse\n")
    p12 = tmp_path / "x.p12"
    pki.cli.ok("convert", chain, "--to", "p12", "--key", key, "--passphrase-file", passfile,
               "--out", p12)  # fmt: skip
    certs_out, key_out = tmp_path / "certs.pem", tmp_path / "key.pem"
    ossl("pkcs12", "-in", p12, "-passin", "pass:correct horse", "-nokeys", "-out", certs_out)
    ossl("pkcs12", "-in", p12, "-passin", "pass:correct horse", "-nocerts", "-nodes",
         "-out", key_out)  # fmt: skip
    assert set(certs_in(certs_out)) == set(certs_in(chain))
    assert _public_key_der(ossl, key_out) == _public_key_der(ossl, key)
    run = ossl("pkcs12", "-in", p12, "-passin", "pass:wrong", "-nokeys", ok=False)
    assert run.returncode != 0 and "BEGIN CERTIFICATE" not in run.output


P12_ALGORITHMS = {
    "openssl3-default": [],  # PBES2 / AES-256-CBC / HMAC-SHA256
    "legacy-3des": ["-certpbe", "PBE-SHA1-3DES", "-keypbe", "PBE-SHA1-3DES", "-macalg", "sha1"],
}


@pytest.mark.parametrize("algorithms", list(P12_ALGORITHMS))
def test_openssl_pkcs12_is_read_by_us(
    pki: LocalPki, ossl: OpenSSL, tmp_path: Path, algorithms: str
) -> None:
    leaf, key = _leaf_with_key(pki, tmp_path)
    p12 = tmp_path / "o.p12"
    ossl("pkcs12", "-export", "-inkey", key, "-in", leaf, "-certfile", pki.intermediate,
         "-passout", "pass:hunter2", *P12_ALGORITHMS[algorithms], "-out", p12)  # fmt: skip
    passfile = write(tmp_path / "pass.txt", b"hunter2\n")

    decoded = json.loads(pki.cli.ok("decode", p12, "--passphrase-file", passfile, "--json").stdout)
    assert decoded["kind"] == "pkcs12"
    assert decoded["key_matches_certificate"] is True
    assert int(decoded["certificate"]["serial"], 16) == certs_in(leaf)[0].serial_number
    assert [c["subject"] for c in decoded["additional_certificates"]] == ["O=Acme, CN=Acme Issuing"]
    text = pki.cli.ok("decode", p12, "--passphrase-file", passfile).stdout
    assert "edge.example.com" in text and "PRIVATE KEY" not in text

    pem = tmp_path / "o.pem"
    pki.cli.ok("convert", p12, "--to", "pem", "--passphrase-file", passfile, "--out", pem)
    assert set(certs_in(pem)) == {*certs_in(leaf), *certs_in(pki.intermediate)}
    # whatever form the key takes in the PEM output, openssl finds the same key in it
    assert _public_key_der(ossl, pem, "-passin", "pass:hunter2") == _public_key_der(ossl, key)


def test_wrong_pkcs12_passphrase_is_one_line_exit_2(
    pki: LocalPki, ossl: OpenSSL, tmp_path: Path
) -> None:
    leaf, key = _leaf_with_key(pki, tmp_path)
    p12 = tmp_path / "o.p12"
    ossl("pkcs12", "-export", "-inkey", key, "-in", leaf, "-passout", "pass:hunter2", "-out", p12)
    wrong = write(tmp_path / "wrong.txt", b"hunter3\n")
    out = tmp_path / "never.pem"
    for args in (["decode", p12], ["decode", p12, "--json"],
                 ["convert", p12, "--to", "pem", "--out", out]):  # fmt: skip
        result = pki.cli(*args, "--passphrase-file", wrong)
        assert result.exit_code == 2, (args, result)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "passphrase" in result.stderr and "Traceback" not in result.stderr
        assert result.stdout == ""
    assert not out.exists()


# -- PKCS#7 ----------------------------------------------------------------------------------


@pytest.mark.parametrize("outform", ["PEM", "DER"])
def test_openssl_p7b_is_read_by_us(
    pki: LocalPki, ossl: OpenSSL, tmp_path: Path, outform: str
) -> None:
    leaf, _ = _leaf_with_key(pki, tmp_path)
    chain = write(tmp_path / "chain.pem", leaf.read_bytes() + pki.intermediate.read_bytes())
    p7b = tmp_path / "b.p7b"
    ossl("crl2pkcs7", "-nocrl", "-certfile", chain, "-outform", outform, "-out", p7b)
    pem = tmp_path / "b.pem"
    pki.cli.ok("convert", p7b, "--to", "pem", "--out", pem)
    assert certs_in(pem) == certs_in(chain)  # openssl keeps the file order; so do we


def test_our_p7b_is_read_by_openssl(pki: LocalPki, ossl: OpenSSL, tmp_path: Path) -> None:
    leaf, _ = _leaf_with_key(pki, tmp_path)
    chain = write(tmp_path / "chain.pem",
                  leaf.read_bytes() + pki.intermediate.read_bytes() + pki.root.read_bytes())  # fmt: skip
    p7b = tmp_path / "c.p7b"
    pki.cli.ok("convert", chain, "--to", "p7b", "--out", p7b)
    out = tmp_path / "printed.pem"
    ossl("pkcs7", "-in", p7b, "-print_certs", "-out", out)
    # PKCS#7 certificates are a SET OF (DER-sorted), so compare as sets
    assert set(certs_in(out)) == set(certs_in(chain))
    assert len(certs_in(out)) == 3


# -- importing an openssl-made CA ------------------------------------------------------------


KEY_FORMATS = {
    "ec": "BEGIN ENCRYPTED PRIVATE KEY",
    "rsa-traditional": "Proc-Type: 4,ENCRYPTED",
}


@pytest.mark.parametrize("key_format", list(KEY_FORMATS))
def test_import_openssl_ca_with_encrypted_key_then_sign(
    cli: Cli, ossl: OpenSSL, tmp_path: Path, key_format: str
) -> None:
    ca_cert, ca_key = ossl.ca("osslca", "/O=Other/CN=OpenSSL Made CA", passphrase="topsecret",
                              key_format=key_format)  # fmt: skip
    assert KEY_FORMATS[key_format] in ca_key.read_text()
    wrong = write(tmp_path / "wrong.txt", b"bottomsecret\n")
    refused = cli("ca", "import", "--name", "imported", "--cert", ca_cert, "--key", ca_key,
                  "--passphrase-file", wrong)  # fmt: skip
    assert refused.exit_code == 2 and "passphrase" in refused.stderr
    names = [c["name"] for c in json.loads(cli.ok("ca", "list", "--json").stdout)]
    assert names == ["temporary-ca"]  # only the factory CA: nothing was imported

    passfile = write(tmp_path / "pass.txt", b"topsecret\n")
    cli.ok("ca", "import", "--name", "imported", "--cert", ca_cert, "--key", ca_key,
           "--passphrase-file", passfile)  # fmt: skip
    csr = ossl.csr(tmp_path / "peer.csr", "ec", "/CN=peer.example.com", "DNS:peer.example.com")
    leaf = tmp_path / "leaf.pem"
    cli.ok("ca", "sign", "--ca", "imported", "--csr", csr, "--out", leaf)
    ossl.verify(leaf, "-CAfile", ca_cert, "-purpose", "sslserver")
    aki = ossl("x509", "-in", leaf, "-noout", "-ext", "authorityKeyIdentifier").output
    ski = ossl("x509", "-in", ca_cert, "-noout", "-ext", "subjectKeyIdentifier").output
    assert ski.splitlines()[1].strip() in aki

    # the imported CA's CRL is signed with openssl's key too, and openssl honours it
    cli.ok("ca", "revoke", "--ca", "imported", "--serial", serial_of(leaf))
    crl = tmp_path / "crl.pem"
    cli.ok("ca", "crl", "--ca", "imported", "--out", crl)
    assert "verify OK" in ossl("crl", "-in", crl, "-CAfile", ca_cert, "-noout").output
    run = ossl.verify(leaf, "-CAfile", ca_cert, "-crl_check", "-CRLfile", crl, ok=False)
    assert "certificate revoked" in run.output
