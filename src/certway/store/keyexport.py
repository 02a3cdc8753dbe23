"""The cluster key, exported for a joining peer: encrypted under a passphrase.

A JSON document: format name and version, the KDF (argon2id, memory-hard) with its
parameters and salt, an AES-256-GCM nonce and the ciphertext+tag. The header is the
associated data, so no parameter can be changed without the decryption failing. The raw key
is never written.
"""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any

from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from certway.errors import PolicyViolation, StoreError

__all__ = ["FORMAT", "MIN_PASSPHRASE", "VERSION", "open_key", "seal_key"]

FORMAT = "certway-cluster-key"
VERSION = 1
MIN_PASSPHRASE = 12
_KDF = {"name": "argon2id", "time_cost": 3, "memory_cost": 65536, "parallelism": 2}
# Bounds on what a file may ask of the KDF (a crafted file must not exhaust memory).
_MAX_MEMORY_KIB = 1024 * 1024
_MAX_TIME = 20


def _derive(passphrase: str, salt: bytes, kdf: dict[str, Any]) -> bytes:
    return hash_secret_raw(
        passphrase.encode(),
        salt,
        time_cost=int(kdf["time_cost"]),
        memory_cost=int(kdf["memory_cost"]),
        parallelism=int(kdf["parallelism"]),
        hash_len=32,
        type=Type.ID,
    )


def _header(kdf: dict[str, Any]) -> bytes:
    return json.dumps({"format": FORMAT, "version": VERSION, "kdf": kdf}, sort_keys=True).encode()


def check_passphrase(passphrase: str) -> str:
    if len(passphrase) < MIN_PASSPHRASE:
        raise PolicyViolation(
            "passphrase",
            f"the passphrase is too short: at least {MIN_PASSPHRASE} characters",
        )
    return passphrase


def seal_key(key: bytes, passphrase: str) -> bytes:
    """The exported key file's content."""
    check_passphrase(passphrase)
    salt = secrets.token_bytes(16)
    kdf: dict[str, Any] = {**_KDF, "salt": base64.b64encode(salt).decode()}
    nonce = secrets.token_bytes(12)
    wrapping = _derive(passphrase, salt, kdf)
    ciphertext = AESGCM(wrapping).encrypt(nonce, key, _header(kdf))
    document = {
        "format": FORMAT,
        "version": VERSION,
        "kdf": kdf,
        "nonce": base64.b64encode(nonce).decode(),
        "ciphertext": base64.b64encode(ciphertext).decode(),
    }
    return (json.dumps(document, indent=1, sort_keys=True) + "\n").encode()


def open_key(data: bytes, passphrase: str) -> bytes:
    """The cluster key from an exported key file; a clear error for anything else."""
    try:
        document = json.loads(data)
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise ValueError
        version = document["version"]
    except (ValueError, KeyError, UnicodeDecodeError):
        raise StoreError("the file is not a certway cluster key export") from None
    if not isinstance(version, int) or version > VERSION:
        raise StoreError(
            f"the cluster key file has format version {version}; this certway reads version "
            f"{VERSION} only: upgrade certway on this node"
        )
    try:
        kdf = document["kdf"]
        if kdf.get("name") != "argon2id" or set(kdf) != {*_KDF, "salt"}:
            raise ValueError
        if not (
            0 < int(kdf["memory_cost"]) <= _MAX_MEMORY_KIB
            and 0 < int(kdf["time_cost"]) <= _MAX_TIME
            and 0 < int(kdf["parallelism"]) <= 16
        ):
            raise ValueError
        salt = base64.b64decode(kdf["salt"], validate=True)
        nonce = base64.b64decode(document["nonce"], validate=True)
        ciphertext = base64.b64decode(document["ciphertext"], validate=True)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise StoreError("the cluster key file is damaged") from None
    try:
        key = AESGCM(_derive(passphrase, salt, kdf)).decrypt(nonce, ciphertext, _header(kdf))
    except (InvalidTag, ValueError):
        raise StoreError(
            "the cluster key file cannot be opened: wrong passphrase, or the file was changed"
        ) from None
    if len(key) != 32:
        raise StoreError("the cluster key file is damaged")
    return key
