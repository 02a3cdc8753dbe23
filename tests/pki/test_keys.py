"""certway.pki.keys: what a key type is called before its key exists."""

from __future__ import annotations

import pytest

from certway.errors import PolicyViolation
from certway.pki.keys import KEY_TYPES, describe_key, generate_key, key_type_label

LABELS = {
    "rsa:2048": "RSA 2048",
    "rsa:3072": "RSA 3072",
    "rsa:4096": "RSA 4096",
    "ec:p256": "ECDSA P-256",
    "ec:p384": "ECDSA P-384",
    "ec:p521": "ECDSA P-521",
    "ed25519": "Ed25519",
}


def test_every_key_type_has_a_label() -> None:
    assert {key_type: key_type_label(key_type) for key_type in KEY_TYPES} == LABELS


@pytest.mark.parametrize("key_type", ["ec:p256", "ec:p521", "ed25519"])
def test_the_label_is_what_the_generated_key_is_called(key_type: str) -> None:
    assert key_type_label(key_type) == describe_key(generate_key(key_type))


def test_an_unknown_key_type_is_refused() -> None:
    with pytest.raises(PolicyViolation, match="unknown key type 'rsa:1024'"):
        key_type_label("rsa:1024")
