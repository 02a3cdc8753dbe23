"""``certway backup create|restore`` through the CLI, and token-backed CAs (SoftHSM2): the
backup holds a reference to the token key; a node restored without the token says so per CA
while the rest of it is restored."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from certway.pki.csr import CsrForm, build_csr
from certway.services import backup as backups

from conftest import PIN, Cli, SoftHsm, store_snapshot, test_key, write

PASSPHRASE = b"backup passphrase 7c41d0"


@pytest.fixture(autouse=True)
def fast_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        backups, "DEFAULT_KDF", backups.KdfParams(memory_kib=8192, time_cost=1, parallelism=1)
    )


@pytest.fixture
def passphrase(tmp_path: Path) -> Path:
    return write(tmp_path / "pass.txt", PASSPHRASE + b"\n")


def sign(cli: Cli, ca: str, tmp_path: Path, cn: str) -> subprocess.CompletedProcess[bytes]:
    csr, _ = build_csr(test_key("ec:p256", 5), CsrForm(common_name=cn))
    csr_file = write(tmp_path / f"{cn}.csr", csr.public_bytes(serialization.Encoding.PEM))
    result = cli("ca", "sign", "--ca", ca, "--csr", csr_file)
    return subprocess.CompletedProcess([], result.exit_code, result.stdout_bytes, result.stderr)  # type: ignore[arg-type]


def test_create_and_restore(cli: Cli, tmp_path: Path, passphrase: Path) -> None:
    cli.ok("ca", "create-root", "--name", "lab", "--subject", "/CN=Lab Root")
    backup = tmp_path / "node.bak"
    made = cli.ok("backup", "create", "--out", backup, "--passphrase-file", passphrase, "--json")
    assert json.loads(made.stdout)["bytes"] == backup.stat().st_size
    assert backup.stat().st_mode & 0o777 == 0o600
    restored = Cli(tmp_path / "restored")
    result = restored.ok("backup", "restore", backup, "--passphrase-file", passphrase)
    assert "with a new master key" in result.stdout
    assert (
        restored.ok("ca", "cert", "--name", "lab").stdout
        == cli.ok("ca", "cert", "--name", "lab").stdout
    )
    assert sign(restored, "lab", tmp_path, "a.example.com").returncode == 0
    assert PASSPHRASE.decode() not in result.stdout + result.stderr


def test_refusals_write_nothing(cli: Cli, tmp_path: Path, passphrase: Path) -> None:
    backup = tmp_path / "node.bak"
    cli.ok("backup", "create", "--out", backup, "--passphrase-file", passphrase)
    data = backup.read_bytes()
    wrong = write(tmp_path / "wrong.txt", b"another passphrase\n")
    cases = {
        "wrong passphrase": (data, wrong),
        "truncated": (data[:-40], passphrase),
        "damaged or was altered": (data[:-1] + bytes([data[-1] ^ 1]), passphrase),
        "newer certway": (data.replace(b"CERTWAY-BACKUP 1", b"CERTWAY-BACKUP 9", 1), passphrase),
    }
    target = Cli(tmp_path / "target")
    for message, (content, pass_file) in cases.items():
        bad = write(tmp_path / "bad.bak", content)
        result = target("backup", "restore", bad, "--passphrase-file", pass_file)
        assert result.exit_code == 2, message
        assert message in result.stderr, (message, result.stderr)
        assert not target.data_dir.exists(), message
    # over an existing node: refused, the node unchanged
    before = store_snapshot(cli.data_dir)
    over = cli("backup", "restore", backup, "--passphrase-file", passphrase)
    assert over.exit_code == 2 and "is not empty" in over.stderr
    assert store_snapshot(cli.data_dir) == before
    short = write(tmp_path / "short.txt", b"short\n")
    refused = cli("backup", "create", "--out", tmp_path / "x.bak", "--passphrase-file", short)
    assert refused.exit_code == 2 and "at least 10 characters" in refused.stderr
    assert not (tmp_path / "x.bak").exists()


# -- token-backed CAs (SoftHSM2) ---------------------------------------------------------------
def new_token(softhsm: SoftHsm) -> str:
    """A token of its own in the test run's SoftHSM token directory (deleted by tests).
    SoftHSM finds the tokens when its module is loaded: use it through ``module_copy``."""
    label = f"bk-{secrets.token_hex(4)}"
    util = shutil.which("softhsm2-util")
    assert util is not None
    subprocess.run(
        [util, "--init-token", "--free", "--label", label, "--pin", PIN, "--so-pin", "so-9d2c"],
        check=True,
        capture_output=True,
    )
    return label


def module_copy(softhsm: SoftHsm, tmp_path: Path) -> Path:
    """The SoftHSM module under a path of this test's own: loaded afresh, it sees the tokens
    created since the run's first load."""
    module = tmp_path / "lib" / "libsofthsm2-copy.so"
    module.parent.mkdir()
    shutil.copy(softhsm.module, module)
    return module


def token_node(cli: Cli, module: str, label: str, tmp_path: Path) -> None:
    pin = write(tmp_path / "pin.txt", PIN.encode() + b"\n")
    cli.ok("token", "add", "hsm", "--module", module, "--token-label", label, "--pin-file", pin)
    cli.ok("ca", "create-root", "--name", "vault", "--subject", "/CN=Vault Root", "--token", "hsm")
    cli.ok("ca", "create-root", "--name", "lab", "--subject", "/CN=Lab Root")


@pytest.mark.interop
def test_token_ca_is_restored_as_a_reference(
    cli: Cli, softhsm: SoftHsm, tmp_path: Path, passphrase: Path
) -> None:
    label = new_token(softhsm)
    token_node(cli, str(module_copy(softhsm, tmp_path)), label, tmp_path)
    backup = tmp_path / "node.bak"
    cli.ok("backup", "create", "--out", backup, "--passphrase-file", passphrase)
    restored = Cli(tmp_path / "restored")
    result = restored.ok("backup", "restore", backup, "--passphrase-file", passphrase, "--json")
    checks = json.loads(result.stdout)["token_keys"]
    assert [(c["ca"], c["token"], c["ok"]) for c in checks] == [("vault", "hsm", True)]
    # the restored node signs with the same token key
    assert sign(restored, "vault", tmp_path, "t.example.com").returncode == 0
    listed = json.loads(restored.ok("token", "test", "hsm", "--json").stdout)
    assert PIN not in json.dumps(listed)


@pytest.mark.interop
def test_restore_without_the_token_module(
    cli: Cli, softhsm: SoftHsm, tmp_path: Path, passphrase: Path
) -> None:
    module = module_copy(softhsm, tmp_path)
    token_node(cli, str(module), new_token(softhsm), tmp_path)
    backup = tmp_path / "node.bak"
    cli.ok("backup", "create", "--out", backup, "--passphrase-file", passphrase)
    module.unlink()  # the node is restored on a machine without the module
    restored = Cli(tmp_path / "restored")
    result = restored.ok("backup", "restore", backup, "--passphrase-file", passphrase)
    assert "warning: CA 'vault': its key is in token 'hsm'" in result.stderr
    assert f"the PKCS#11 module {module} does not exist" in result.stderr
    assert "cannot sign until that token is reachable here" in result.stderr
    # the rest of the node is there and works
    assert sign(restored, "lab", tmp_path, "l.example.com").returncode == 0
    refused = sign(restored, "vault", tmp_path, "v.example.com")
    assert refused.returncode == 2 and "does not exist" in str(refused.stderr)


@pytest.mark.interop
def test_restore_without_the_token(
    cli: Cli, softhsm: SoftHsm, tmp_path: Path, passphrase: Path
) -> None:
    label = new_token(softhsm)
    token_node(cli, str(module_copy(softhsm, tmp_path)), label, tmp_path)
    backup = tmp_path / "node.bak"
    cli.ok("backup", "create", "--out", backup, "--passphrase-file", passphrase)
    util = shutil.which("softhsm2-util")
    assert util is not None
    subprocess.run([util, "--delete-token", "--token", label], check=True, capture_output=True)
    restored = Cli(tmp_path / "restored")
    result = restored.ok("backup", "restore", backup, "--passphrase-file", passphrase, "--json")
    checks = json.loads(result.stdout)["token_keys"]
    assert [(c["ca"], c["ok"]) for c in checks] == [("vault", False)]
    assert f"token '{label}'" in checks[0]["message"]
    assert PIN not in result.stdout + result.stderr
    assert sign(restored, "lab", tmp_path, "l.example.com").returncode == 0


def test_restore_a_cluster_into_postgresql(
    cli: Cli, tmp_path: Path, passphrase: Path, pg_url: str
) -> None:
    cli.ok("ca", "create-root", "--name", "lab", "--subject", "/CN=Lab Root")
    backup = tmp_path / "node.bak"
    cli.ok("backup", "create", "--out", backup, "--passphrase-file", passphrase)
    peer = Cli(tmp_path / "peer")
    peer.ok("backup", "restore", backup, "--passphrase-file", passphrase, "--database", pg_url)
    assert (peer.data_dir / "cluster.json").exists()
    assert (
        peer.ok("ca", "cert", "--name", "lab").stdout
        == cli.ok("ca", "cert", "--name", "lab").stdout
    )
    again = Cli(tmp_path / "again")
    refused = again(
        "backup", "restore", backup, "--passphrase-file", passphrase, "--database", pg_url
    )
    assert refused.exit_code == 2 and "is not empty" in refused.stderr
    assert not again.data_dir.exists()
