"""Shared fixtures: a fixed clock and pre-generated test keys (fast, deterministic suite)."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from certway.clock import FixedClock
from certway.pki.keys import PrivateKey, generate_key

NOW = dt.datetime(2026, 11, 27, 12, 0, 0, tzinfo=dt.UTC)

_KEYS: dict[str, PrivateKey] = {}


def test_key(key_type: str = "ec:p256", index: int = 0) -> PrivateKey:
    """A key generated once per test process (RSA generation is the slow part of a suite)."""
    name = f"{key_type}#{index}"
    if name not in _KEYS:
        _KEYS[name] = generate_key(key_type)
    return _KEYS[name]


test_key.__test__ = False  # type: ignore[attr-defined]


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def openssl() -> str:
    path = shutil.which("openssl")
    if path is None:
        pytest.skip("openssl is not installed (make test installs it)")
    return path


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
