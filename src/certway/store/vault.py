"""Encryption at rest for private keys: AES-256-GCM under the node's master key.

The master key is 32 random bytes in ``<data-dir>/master.key``, created with mode 0600 and
never logged, printed or exported. Each sealed blob is ``version || nonce || ciphertext+tag``;
the associated data binds a blob to the row it belongs to, so blobs cannot be swapped.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from certway.errors import StoreError

__all__ = [
    "MASTER_KEY_FILE",
    "KeyVault",
    "create_master_key",
    "load_master_key",
    "write_master_key",
]

MASTER_KEY_FILE = "master.key"
_VERSION = b"\x01"
_NONCE = 12


def create_master_key(data_dir: Path) -> Path:
    """Create the master key file (0600) if it does not exist; return its path."""
    path = data_dir / MASTER_KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path
    try:
        os.write(fd, secrets.token_bytes(32))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(path, 0o600)  # in case the umask interfered
    return path


def write_master_key(data_dir: Path, key: bytes) -> Path:
    """Write a given key (a cluster's, when a node joins) as the master key file (0600);
    refuses to replace an existing one."""
    if len(key) != 32:
        raise ValueError("a master key is 32 bytes")
    path = data_dir / MASTER_KEY_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(path, 0o600)
    return path


def load_master_key(data_dir: Path) -> bytes:
    path = data_dir / MASTER_KEY_FILE
    try:
        st = path.stat()
        key = path.read_bytes()
    except FileNotFoundError:
        raise StoreError(
            f"the master key {path} is missing: put back the master.key of this data "
            f"directory from your backup (mode 0600: chmod 600 {path})"
        ) from None
    except OSError as exc:
        raise StoreError(f"cannot read the master key {path}: {exc.strerror}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise StoreError(
            f"the master key {path} is readable by other users: run 'chmod 600 {path}'"
        )
    if len(key) != 32:
        raise StoreError(f"the master key {path} is damaged (expected 32 bytes)")
    return key


class KeyVault:
    """Seals and opens secrets with AES-256-GCM. Holds the key; never shows it."""

    __slots__ = ("_aead",)

    def __init__(self, master_key: bytes) -> None:
        self._aead = AESGCM(master_key)

    def __repr__(self) -> str:
        return "KeyVault(<sealed>)"

    def seal(self, plaintext: bytes, associated: bytes) -> bytes:
        nonce = secrets.token_bytes(_NONCE)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, associated)

    def open(self, blob: bytes, associated: bytes) -> bytes:
        if len(blob) < 1 + _NONCE + 16 or blob[:1] != _VERSION:
            raise StoreError("a sealed key in the store is damaged")
        nonce = blob[1 : 1 + _NONCE]
        try:
            return self._aead.decrypt(nonce, blob[1 + _NONCE :], associated)
        except InvalidTag:
            raise StoreError(
                "a sealed key cannot be opened: wrong master key or damaged store"
            ) from None
