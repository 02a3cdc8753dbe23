"""index_crl: the signature is checked over the DER as received, for every key type."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from certway.errors import PolicyViolation
from certway.pki.crl import CrlParams, build_crl, revoked_entry
from certway.pki.issue import Issuer, create_root
from certway.trust.revocation import index_crl

from conftest import NOW, test_key


@pytest.mark.parametrize("key_type", ["ec:p256", "ec:p384", "rsa:2048", "ed25519"])
def test_signature_checked_on_the_received_bytes(key_type: str) -> None:
    key = test_key(key_type, 70)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"CRL signer {key_type}")])
    root = create_root(key, name, not_before=NOW, not_after=NOW + dt.timedelta(days=30))
    crl = build_crl(
        Issuer(root, key),
        [revoked_entry(7, NOW)],
        CrlParams(3, NOW, NOW + dt.timedelta(days=1)),
    )
    der = crl.public_bytes(serialization.Encoding.DER)
    indexed = index_crl(x509.load_der_x509_crl(der), root, source="t", der=der)
    assert indexed.lookup(7) is not None and indexed.number == 3
    # Alter one signed byte (the revocation date of the entry): the signature must fail.
    position = der.rindex(b"\x02\x01\x07") + 5
    tampered = bytearray(der)
    tampered[position] ^= 0x01
    forged = x509.load_der_x509_crl(bytes(tampered))
    with pytest.raises(PolicyViolation, match="bad signature"):
        index_crl(forged, root, source="t", der=bytes(tampered))
    with pytest.raises(PolicyViolation, match="bad signature"):
        index_crl(forged, root, source="t")
