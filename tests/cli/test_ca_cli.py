"""The local CA through the CLI: the happy path and every kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from certway.pki.csr import CsrForm, build_csr

from conftest import Cli, key_pem, store_snapshot, test_key, write

snapshot = store_snapshot


@pytest.fixture
def ca(cli: Cli) -> Cli:
    cli.ok("ca", "create-root", "--name", "root", "--subject", "/O=Acme/CN=Acme Root")
    cli.ok(
        "ca", "create-intermediate", "--name", "issuing", "--parent", "root",
        "--subject", "/CN=Acme Issuing",
    )  # fmt: skip
    return cli


def csr_pem(cn: str = "leaf.example.com", index: int = 5) -> bytes:
    csr, _ = build_csr(test_key("ec:p256", index), CsrForm(common_name=cn))
    return csr.public_bytes(serialization.Encoding.PEM)


def test_sign_then_inventory_and_revoke(ca: Cli, tmp_path: Path) -> None:
    csr = write(tmp_path / "leaf.csr", csr_pem())
    signed = ca.ok("ca", "sign", "--ca", "issuing", "--csr", csr, "--chain")
    certs = x509.load_pem_x509_certificates(signed.stdout_bytes)
    assert len(certs) == 2  # leaf + issuing CA; the root is the trust anchor
    serial = f"{certs[0].serial_number:X}"
    issued = json.loads(ca.ok("ca", "issued", "--ca", "issuing", "--json").stdout)
    assert [(i["serial"], i["status"]) for i in issued] == [(serial, "valid")]
    ca.ok("ca", "revoke", "--ca", "issuing", "--serial", serial, "--reason", "keyCompromise")
    issued = json.loads(ca.ok("ca", "issued", "--ca", "issuing", "--json").stdout)
    assert issued[0]["status"] == "revoked" and issued[0]["reason"] == "keyCompromise"
    crl = x509.load_pem_x509_crl(ca.ok("ca", "crl", "--ca", "issuing").stdout_bytes)
    assert crl.get_revoked_certificate_by_serial_number(certs[0].serial_number) is not None


def test_crl_numbers_are_monotonic(ca: Cli) -> None:
    numbers = []
    for _ in range(3):
        der = ca.ok("ca", "crl", "--ca", "root", "--der", "--new").stdout_bytes
        crl = x509.load_der_x509_crl(der)
        numbers.append(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
    assert numbers == sorted(numbers) and len(set(numbers)) == 3


def test_current_crl_is_reused_while_fresh(ca: Cli) -> None:
    first = ca.ok("ca", "crl", "--ca", "root", "--der").stdout_bytes
    second = ca.ok("ca", "crl", "--ca", "root", "--der").stdout_bytes
    assert first == second


def test_list_json(ca: Cli) -> None:
    cas = json.loads(ca.ok("ca", "list", "--json").stdout)
    assert [(c["name"], c["kind"], c["parent"]) for c in cas] == [
        ("temporary-ca", "root", None),  # the factory CA of `certway init`
        ("root", "root", None),
        ("issuing", "intermediate", "root"),
    ]


def test_tables_print_text_verbatim(ca: Cli) -> None:
    # Fingerprints and names hold ":cd:"-like runs: rich must not turn them into emoji.
    ca.ok("ca", "create-root", "--name", "colons", "--subject", "/CN=x:cd:y:smile:")
    assert "CN=x:cd:y:smile:" in ca.ok("ca", "list").stdout


def test_import_ca_and_sign(cli: Cli, tmp_path: Path) -> None:
    key = test_key("ec:p256", 6)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Imported CA")])
    from certway.pki.issue import create_root

    from conftest import NOW

    cert = create_root(key, name, not_before=NOW, not_after=NOW.replace(year=2036))
    cert_file = write(tmp_path / "ca.pem", cert.public_bytes(serialization.Encoding.PEM))
    pass_file = write(tmp_path / "pass.txt", b"s3cret\n")
    from certway.pki.keys import private_key_pem

    key_file = write(tmp_path / "ca.key", private_key_pem(key, b"s3cret"))
    cli.ok("ca", "import", "--name", "imp", "--cert", cert_file, "--key", key_file,
           "--passphrase-file", pass_file)  # fmt: skip
    csr = write(tmp_path / "leaf.csr", csr_pem())
    out = cli.ok("ca", "sign", "--ca", "imp", "--csr", csr).stdout_bytes
    x509.load_pem_x509_certificate(out).verify_directly_issued_by(cert)


# -- bad input: one clear line, exit code 2, store unchanged -----------------------------------
def _bad_inputs(tmp_path: Path) -> dict[str, tuple[list[str | Path], str]]:
    good = x509.load_pem_x509_csr(csr_pem())
    tampered = bytearray(good.public_bytes(serialization.Encoding.DER))
    tampered[-6] ^= 0x41
    weak_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    weak = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "weak.example.com")]))
        .sign(weak_key, hashes.SHA256())
    )
    pem = csr_pem()
    files = {
        "garbage": write(tmp_path / "garbage.csr", b"\x00\x01garbage\xff" * 10),
        "text": write(tmp_path / "text.csr", b"hello world, this is not a csr at all\n"),
        "truncated-pem": write(tmp_path / "trunc.csr", pem[: len(pem) // 2]),
        "truncated-der": write(
            tmp_path / "trunc.der", good.public_bytes(serialization.Encoding.DER)[:80]
        ),
        "bad-signature": write(tmp_path / "tampered.csr", bytes(tampered)),
        "rsa-1024": write(tmp_path / "weak.csr", weak.public_bytes(serialization.Encoding.PEM)),
        "good": write(tmp_path / "good.csr", pem),
    }
    sign = ["ca", "sign", "--ca", "issuing", "--csr"]
    return {
        "garbage": ([*sign, files["garbage"]], "not"),
        "text": ([*sign, files["text"]], "not a CSR: no PEM BEGIN line, and text is not DER"),
        "truncated-pem": ([*sign, files["truncated-pem"]], "truncated"),
        "truncated-der": ([*sign, files["truncated-der"]], "CSR"),
        "bad-signature": ([*sign, files["bad-signature"]], "signature is invalid"),
        "rsa-1024": ([*sign, files["rsa-1024"]], "1024 bits is too weak"),
        "unknown-ca": (["ca", "sign", "--ca", "nope", "--csr", files["good"]], "no CA named 'nope'"),
        "missing-file": ([*sign, tmp_path / "absent.csr"], "does not exist"),
        "bad-profile": ([*sign, files["good"], "--profile", "email"], "unknown profile"),
        "too-long": ([*sign, files["good"], "--days", "5000"], "outlive its CA"),
        "absurd-days": ([*sign, files["good"], "--days", "99999999"], "between 1 and 36500 days"),
        "bad-serial": (["ca", "revoke", "--ca", "issuing", "--serial", "xyz"], "not a hexadecimal"),
        "unknown-serial": (["ca", "revoke", "--ca", "issuing", "--serial", "ABCDEF"], "no certificate with serial"),
        "bad-reason": (["ca", "revoke", "--ca", "issuing", "--serial", "AB", "--reason", "lost", "--allow-unlisted"], "unknown revocation reason"),
        "duplicate-ca": (["ca", "create-root", "--name", "root", "--subject", "/CN=x"], "already exists"),
        "bad-subject": (["ca", "create-root", "--name", "r2", "--subject", "/XX=y"], "unknown subject attribute"),
        "bad-key-type": (["ca", "create-root", "--name", "r3", "--subject", "/CN=x", "--key-type", "rsa:1024"], "unknown key type"),
        "bad-ca-name": (["ca", "create-root", "--name", "a b", "--subject", "/CN=x"], "CA name"),
        "bad-url": (["ca", "create-root", "--name", "r4", "--subject", "/CN=x", "--crl-url", "ftp://x"], "not an http"),
    }  # fmt: skip


def test_bad_input_is_one_line_exit_2_and_changes_nothing(ca: Cli, tmp_path: Path) -> None:
    for label, (args, message) in _bad_inputs(tmp_path).items():
        before = snapshot(ca.data_dir)
        result = ca(*args)
        assert result.exit_code == 2, (label, result)
        assert message in result.stderr, (label, result.stderr)
        assert "Traceback" not in result.stderr, label
        assert len(result.stderr.strip().splitlines()) == 1, (label, result.stderr)
        assert snapshot(ca.data_dir) == before, label


def test_wrong_passphrase_and_mismatched_key_on_import(cli: Cli, tmp_path: Path) -> None:
    from certway.pki.issue import create_root
    from certway.pki.keys import private_key_pem

    from conftest import NOW

    key = test_key("ec:p256", 7)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Imp")])
    cert = create_root(key, name, not_before=NOW, not_after=NOW.replace(year=2030))
    cert_file = write(tmp_path / "ca.pem", cert.public_bytes(serialization.Encoding.PEM))
    enc_key = write(tmp_path / "enc.key", private_key_pem(key, b"right"))
    wrong = write(tmp_path / "wrong.txt", b"wrong\n")
    other_key = write(tmp_path / "other.key", key_pem(test_key("ec:p256", 8)))
    before = snapshot(cli.data_dir)
    result = cli("ca", "import", "--name", "x", "--cert", cert_file, "--key", enc_key,
                 "--passphrase-file", wrong)  # fmt: skip
    assert result.exit_code == 2 and "wrong passphrase" in result.stderr
    result = cli("ca", "import", "--name", "x", "--cert", cert_file, "--key", other_key)
    assert result.exit_code == 2 and "does not match" in result.stderr
    result = cli("ca", "import", "--name", "x", "--cert", cert_file, "--key", enc_key)
    assert result.exit_code == 2 and "encrypted" in result.stderr
    assert snapshot(cli.data_dir) == before


def test_uninitialised_data_dir(tmp_path: Path) -> None:
    result = Cli(tmp_path / "nothing")("ca", "list")
    assert result.exit_code == 2
    assert "certway --data-dir" in result.stderr and "init" in result.stderr
