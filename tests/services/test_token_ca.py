"""CA keys in a PKCS#11 token: a throwaway SoftHSM2 token per test run (its own
SOFTHSM2_CONF and token directory), CAs created in it through the CLI, and everything they
sign (certificates, CRLs, OCSP responses) checked by openssl."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certway.errors import TokenError
from certway.pki.csr import CsrForm, build_csr
from certway.pki.ocsp_responder import respond
from certway.services.node import Node

from conftest import PIN, Cli, SoftHsm, store_snapshot, test_key, write

pytestmark = pytest.mark.interop


@pytest.fixture
def hsm_cli(cli: Cli, softhsm: SoftHsm, tmp_path: Path) -> Cli:
    pin = write(tmp_path / "pin.txt", PIN.encode() + b"\n")
    cli.ok("token", "add", "hsm", "--module", softhsm.module, "--token-label", softhsm.label,
           "--pin-file", pin)  # fmt: skip
    return cli


def openssl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", *[str(a) for a in args]], capture_output=True, text=True, check=False
    )


def sign_leaf(cli: Cli, ca: str, tmp_path: Path, cn: str = "leaf.example.com") -> Path:
    csr, _ = build_csr(test_key("ec:p256", 3), CsrForm(common_name=cn))
    csr_file = write(tmp_path / f"{cn}.csr", csr.public_bytes(serialization.Encoding.PEM))
    leaf = tmp_path / f"{cn}.pem"
    cli.ok("ca", "sign", "--ca", ca, "--csr", csr_file, "--out", leaf)
    return leaf


def ca_pem(cli: Cli, ca: str, tmp_path: Path) -> Path:
    out = tmp_path / f"{ca}.pem"
    out.write_bytes(cli.ok("ca", "cert", "--name", ca).stdout_bytes)
    return out


def ocsp_response(data_dir: Path, request_der: bytes) -> bytes:
    node = Node.open(data_dir)
    try:
        return respond(request_der, lookup=node.local_ca.ocsp_lookup, at=node.clock.now())
    finally:
        node.close()


@pytest.mark.parametrize("key_type", ["ec:p256", "rsa:2048"])
def test_token_ca_signs_certificates_crls_and_ocsp_that_openssl_verifies(
    hsm_cli: Cli, tmp_path: Path, key_type: str
) -> None:
    cli = hsm_cli
    created = cli.ok("ca", "create-root", "--name", "hroot", "--subject", "/CN=Token Root",
                     "--key-type", key_type, "--token", "hsm", "--json")  # fmt: skip
    assert json.loads(created.stdout)["key"].endswith("in token 'hsm'")
    root = ca_pem(cli, "hroot", tmp_path)

    # the key is a non-extractable object in the token, labelled with the CA's name
    tested = json.loads(cli.ok("token", "test", "hsm", "--json").stdout)
    mine = [k for k in tested["keys"] if k["ca"] == "hroot"]
    assert len(mine) == 1 and mine[0]["label"] == "hroot"
    assert mine[0]["type"] == key_type.split(":")[0]

    leaf = sign_leaf(cli, "hroot", tmp_path)
    verified = openssl("verify", "-CAfile", root, leaf)
    assert verified.returncode == 0 and ": OK" in verified.stdout, verified.stderr

    serial = f"{x509.load_pem_x509_certificate(leaf.read_bytes()).serial_number:x}"
    cli.ok("ca", "revoke", "--ca", "hroot", "--serial", serial, "--reason", "keyCompromise")
    crl = tmp_path / "hroot.crl"
    cli.ok("ca", "crl", "--ca", "hroot", "--out", crl)
    checked = openssl("crl", "-in", crl, "-inform", "PEM" if crl.read_bytes().startswith(b"-----") else "DER",
                      "-CAfile", root, "-noout", "-verify")  # fmt: skip
    assert checked.returncode == 0 and "verify OK" in checked.stderr + checked.stdout, checked
    revoked = openssl("verify", "-crl_check", "-CAfile", root, "-CRLfile", crl, leaf)
    assert revoked.returncode != 0 and "revoked" in revoked.stdout + revoked.stderr

    request = tmp_path / "req.der"
    made = openssl("ocsp", "-issuer", root, "-cert", leaf, "-no_nonce", "-reqout", request)
    assert made.returncode == 0, made.stderr
    response = write(tmp_path / "resp.der", ocsp_response(cli.data_dir, request.read_bytes()))
    answer = openssl("ocsp", "-respin", response, "-issuer", root, "-cert", leaf,
                     "-CAfile", root)  # fmt: skip
    assert answer.returncode == 0, answer.stderr
    assert "Response verify OK" in answer.stderr + answer.stdout
    assert f"{leaf}: revoked" in answer.stdout


def test_intermediate_in_token_under_a_token_root(hsm_cli: Cli, tmp_path: Path) -> None:
    cli = hsm_cli
    cli.ok("ca", "create-root", "--name", "troot", "--subject", "/CN=T Root", "--token", "hsm")
    cli.ok("ca", "create-intermediate", "--name", "tsub", "--parent", "troot",
           "--subject", "/CN=T Issuing", "--key-type", "ec:p384", "--token", "hsm")  # fmt: skip
    root, sub = ca_pem(cli, "troot", tmp_path), ca_pem(cli, "tsub", tmp_path)
    leaf = sign_leaf(cli, "tsub", tmp_path, "sub.example.com")
    verified = openssl("verify", "-CAfile", root, "-untrusted", sub, leaf)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    listed = json.loads(cli.ok("token", "list", "--json").stdout)
    assert listed == [
        {"name": "hsm", "module": listed[0]["module"], "token_label": "certway-test",
         "cas": ["troot", "tsub"]}
    ]  # fmt: skip


def test_pin_is_never_shown_nor_stored_in_clear(hsm_cli: Cli, tmp_path: Path) -> None:
    cli = hsm_cli
    outputs = [
        cli.ok("token", "list").stdout,
        cli.ok("token", "list", "--json").stdout,
        cli.ok("token", "test", "hsm").stdout,
        cli.ok("audit", "--json").stdout,
    ]
    assert "token.add" in outputs[-1]  # the registration is audited, without its PIN
    assert all(PIN not in text for text in outputs)
    assert all(PIN not in line for line in store_snapshot(cli.data_dir))
    assert PIN.encode() not in (cli.data_dir / "certway.db").read_bytes()


def test_wrong_pin_is_refused_and_nothing_is_stored(
    cli: Cli, softhsm: SoftHsm, tmp_path: Path
) -> None:
    before = store_snapshot(cli.data_dir)
    pin = write(tmp_path / "pin.txt", b"not-the-pin\n")
    refused = cli("token", "add", "hsm", "--module", softhsm.module,
                  "--token-label", softhsm.fresh_label, "--pin-file", pin)  # fmt: skip
    assert refused.exit_code == 2
    assert "the token refused the PIN" in refused.stderr
    assert "not-the-pin" not in refused.stderr + refused.stdout
    assert store_snapshot(cli.data_dir) == before
    assert "no token yet" in cli.ok("token", "list").stdout


def test_missing_module_and_unknown_label_are_clear_errors(
    cli: Cli, softhsm: SoftHsm, tmp_path: Path
) -> None:
    before = store_snapshot(cli.data_dir)
    pin = write(tmp_path / "pin.txt", PIN.encode())
    missing = cli("token", "add", "hsm", "--module", tmp_path / "nope.so",
                  "--token-label", softhsm.label, "--pin-file", pin)  # fmt: skip
    assert missing.exit_code == 2
    assert f"the PKCS#11 module {tmp_path / 'nope.so'} does not exist" in missing.stderr
    unknown = cli("token", "add", "hsm", "--module", softhsm.module,
                  "--token-label", "no-such-token", "--pin-file", pin)  # fmt: skip
    assert unknown.exit_code == 2
    assert "has no token labelled 'no-such-token'" in unknown.stderr
    assert store_snapshot(cli.data_dir) == before


def test_ca_in_unknown_token_or_unsupported_key_type_changes_nothing(
    hsm_cli: Cli, tmp_path: Path
) -> None:
    cli = hsm_cli
    before = store_snapshot(cli.data_dir)
    keys_before = json.loads(cli.ok("token", "test", "hsm", "--json").stdout)["keys"]
    unknown = cli("ca", "create-root", "--name", "x", "--subject", "/CN=X", "--token", "other")
    assert unknown.exit_code == 2 and "no token named 'other'" in unknown.stderr
    ed = cli("ca", "create-root", "--name", "x", "--subject", "/CN=X", "--key-type", "ed25519",
             "--token", "hsm")  # fmt: skip
    assert ed.exit_code == 2 and "a token key must be one of" in ed.stderr
    bad_subject = cli("ca", "create-root", "--name", "x", "--subject", "no-slash", "--token", "hsm")
    assert bad_subject.exit_code == 2
    assert store_snapshot(cli.data_dir) == before
    assert json.loads(cli.ok("token", "test", "hsm", "--json").stdout)["keys"] == keys_before


def test_key_deleted_behind_certways_back_fails_signing_clearly(
    hsm_cli: Cli, softhsm: SoftHsm, tmp_path: Path
) -> None:
    from certway.hsm import TokenSession

    cli = hsm_cli
    cli.ok("ca", "create-root", "--name", "gone", "--subject", "/CN=Gone Root", "--token", "hsm")
    tested = json.loads(cli.ok("token", "test", "hsm", "--json").stdout)
    (key_id,) = [k["id"] for k in tested["keys"] if k["ca"] == "gone"]
    session = TokenSession(softhsm.module, softhsm.label, PIN)
    try:
        session.destroy(key_id)
    finally:
        session.close()
    csr, _ = build_csr(test_key("ec:p256", 3), CsrForm(common_name="x.example.com"))
    csr_file = write(tmp_path / "x.csr", csr.public_bytes(serialization.Encoding.PEM))
    before = store_snapshot(cli.data_dir)
    failed = cli("ca", "sign", "--ca", "gone", "--csr", csr_file)
    assert failed.exit_code == 2
    assert f"key {key_id} is no longer in the token" in failed.stderr
    assert failed.stdout == ""
    assert store_snapshot(cli.data_dir) == before


def test_missing_python_pkcs11_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, softhsm: SoftHsm
) -> None:
    from certway.hsm import TokenSession

    monkeypatch.setitem(sys.modules, "pkcs11", None)
    with pytest.raises(TokenError, match=r"python-pkcs11 package: pip install 'certway\[hsm\]'"):
        TokenSession(softhsm.module, softhsm.label, PIN)


def test_token_key_cannot_be_exported(hsm_cli: Cli, softhsm: SoftHsm) -> None:
    from certway.hsm import TokenSession

    hsm_cli.ok("ca", "create-root", "--name", "kept", "--subject", "/CN=Kept", "--token", "hsm")
    tested = json.loads(hsm_cli.ok("token", "test", "hsm", "--json").stdout)
    (key_id,) = [k["id"] for k in tested["keys"] if k["ca"] == "kept"]
    session = TokenSession(softhsm.module, softhsm.label, PIN)
    try:
        key = session.key(key_id)
        with pytest.raises(TokenError, match="cannot be exported"):
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        assert key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    finally:
        session.close()


def test_key_deleted_while_serving_fails_the_signature_not_over_to_another_key(
    softhsm: SoftHsm, tmp_path: Path
) -> None:
    """A node already signing with a token key (issuer cached, session open) whose key object
    is then deleted: the next signature fails with a clear error, nothing is recorded."""
    from certway.hsm import TokenSession

    pin = PIN
    node = Node.init(tmp_path / "d", factory=False)
    try:
        node.tokens.add("hsm", module=softhsm.module, token_label=softhsm.label, pin=pin)
        node.local_ca.create_root("live", "/CN=Live Root", token="hsm")
        csr, _ = build_csr(test_key("ec:p256", 3), CsrForm(common_name="a.example.com"))
        node.local_ca.sign_checked("live", csr)  # signs through the token
        (key_id,) = [k for k, ca in node.tokens.test("hsm").used_by.items() if ca == "live"]
        other = TokenSession(softhsm.module, softhsm.label, pin)
        try:
            other.destroy(key_id)
        finally:
            other.close()
        with pytest.raises(TokenError, match="could not sign"):
            node.local_ca.sign_checked("live", csr)
        assert len(node.local_ca.issued("live")) == 1
    finally:
        node.close()


def test_import_ca_whose_key_is_already_in_the_token(
    hsm_cli: Cli, softhsm: SoftHsm, tmp_path: Path
) -> None:
    import datetime as dt

    from certway.hsm import TokenSession
    from certway.pki.issue import create_root

    cli = hsm_cli
    session = TokenSession(softhsm.module, softhsm.label, PIN)
    try:
        _, key = session.generate("rsa:2048", "existing-ca-key")
        now = dt.datetime.now(dt.UTC)
        name = x509.Name.from_rfc4514_string("CN=Existing Token CA")
        cert = create_root(key, name, not_before=now, not_after=now + dt.timedelta(days=800))
    finally:
        session.close()
    cert_file = write(tmp_path / "existing.pem", cert.public_bytes(serialization.Encoding.PEM))
    other = write(
        tmp_path / "other.pem",
        create_root(test_key("ec:p256", 4), name, not_before=now,
                    not_after=now + dt.timedelta(days=800)).public_bytes(serialization.Encoding.PEM),
    )  # fmt: skip
    before = store_snapshot(cli.data_dir)
    mismatch = cli("ca", "import", "--name", "imp", "--cert", other, "--token", "hsm",
                   "--key-label", "existing-ca-key")  # fmt: skip
    assert mismatch.exit_code == 2 and "does not match the CA certificate" in mismatch.stderr
    missing = cli("ca", "import", "--name", "imp", "--cert", cert_file, "--token", "hsm",
                  "--key-label", "no-such-key")  # fmt: skip
    assert missing.exit_code == 2 and "no private key labelled 'no-such-key'" in missing.stderr
    both = cli("ca", "import", "--name", "imp", "--cert", cert_file, "--key", cert_file,
               "--token", "hsm", "--key-label", "existing-ca-key")  # fmt: skip
    assert both.exit_code == 2 and "give either --key, or --token" in both.stderr
    assert store_snapshot(cli.data_dir) == before

    imported = cli.ok("ca", "import", "--name", "imp", "--cert", cert_file, "--token", "hsm",
                      "--key-label", "existing-ca-key", "--json")  # fmt: skip
    assert json.loads(imported.stdout)["key"] == "RSA 2048 in token 'hsm'"
    leaf = sign_leaf(cli, "imp", tmp_path, "imp.example.com")
    verified = openssl("verify", "-CAfile", cert_file, leaf)
    assert verified.returncode == 0, verified.stdout + verified.stderr
