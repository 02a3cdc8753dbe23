"""A lost master key: certway says what is missing and how to restore it, and never writes a
new key over a database whose private keys are sealed with the old one.

Before the fix the error said "run init", and init (or the first-start path of ``serve``)
wrote a new master key, which made every sealed private key unreadable for good."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from certway.errors import StoreError
from certway.services.node import Node

from conftest import Cli, store_snapshot


@pytest.fixture
def lost(cli: Cli, tmp_path: Path) -> tuple[Cli, Path, Path]:
    """An initialised data directory whose master.key was moved away (to a backup)."""
    key = cli.data_dir / "master.key"
    backup = tmp_path / "backup-master.key"
    shutil.move(key, backup)
    return cli, key, backup


def assert_explains_the_loss(message: str, key: Path) -> None:
    assert str(key) in message  # what is missing, by path
    assert "holds 2 private keys sealed with it" in message  # the server and temporary CA keys
    assert "backup" in message and f"chmod 600 {key}" in message  # how to restore it
    assert "run" not in message.replace("unreadable", "")  # no "run init" advice


def test_a_command_names_the_missing_key_and_how_to_restore_it(
    lost: tuple[Cli, Path, Path],
) -> None:
    cli, key, _backup = lost
    result = cli("trust", "list")
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert_explains_the_loss(line, key)
    assert not key.exists()


def test_init_refuses_to_create_a_key_over_the_database(lost: tuple[Cli, Path, Path]) -> None:
    cli, key, _backup = lost
    before = store_snapshot(cli.data_dir)
    result = cli("init")
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert_explains_the_loss(line, key)
    assert "will not create a new master key" in line
    assert not key.exists()
    assert store_snapshot(cli.data_dir) == before


def test_serve_first_start_path_refuses_too(
    lost: tuple[Cli, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cli, key, _backup = lost
    served: list[bool] = []
    monkeypatch.setattr("certway.serve.NodeServer.serve_forever", lambda self: served.append(True))
    result = cli("serve", "--admin-listen", "127.0.0.1:0", "--publish-listen", "127.0.0.1:0")
    assert result.exit_code == 2
    assert_explains_the_loss(result.stderr, key)
    assert not key.exists() and served == []
    with pytest.raises(StoreError):  # the composition root refuses as well
        Node.init(cli.data_dir)
    assert not key.exists()


def test_putting_the_backup_back_restores_every_sealed_key(lost: tuple[Cli, Path, Path]) -> None:
    cli, key, backup = lost
    assert cli("init").exit_code == 2  # refused: it must not have spoilt anything
    assert not key.exists()
    shutil.copy(backup, key)
    key.chmod(0o600)
    node = Node.open(cli.data_dir)
    try:
        server = node.identities.active("server")
        assert server is not None
        key_of_server = node.identities.private_key(server)  # opens the sealed key
        assert key_of_server.public_key() == server.certificate.public_key()
    finally:
        node.close()
