"""CRL building: numbers, AKI, reasons, invalidity dates, and a million entries."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from certway.errors import PolicyViolation
from certway.pki.crl import CrlParams, build_crl, extend_crl, parse_reason, revoked_entry
from certway.pki.issue import Issuer, create_root

from conftest import NOW, test_key


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    key = test_key("ec:p256", 1)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CRL Root")])
    root = create_root(key, name, not_before=NOW, not_after=NOW + dt.timedelta(days=365))
    return Issuer(root, key)


PARAMS = CrlParams(42, NOW, NOW + dt.timedelta(days=7))


def test_crl_has_number_aki_and_verifies(issuer: Issuer) -> None:
    crl = build_crl(issuer, [revoked_entry(5, NOW, parse_reason("keyCompromise"))], PARAMS)
    assert crl.is_signature_valid(issuer.certificate.public_key())  # type: ignore[arg-type]
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 42
    crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    entry = crl.get_revoked_certificate_by_serial_number(5)
    assert entry is not None
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason is x509.ReasonFlags.key_compromise
    assert crl.next_update_utc == NOW + dt.timedelta(days=7)


def test_unspecified_reason_is_omitted_and_invalidity_date_kept(issuer: Issuer) -> None:
    entries = [
        revoked_entry(1, NOW, parse_reason("unspecified")),
        revoked_entry(2, NOW, None, NOW - dt.timedelta(days=2)),
    ]
    crl = build_crl(issuer, entries, PARAMS)
    first = crl.get_revoked_certificate_by_serial_number(1)
    assert first is not None and len(first.extensions) == 0
    second = crl.get_revoked_certificate_by_serial_number(2)
    assert second is not None
    inv = second.extensions.get_extension_for_class(x509.InvalidityDate).value
    assert inv.invalidity_date_utc == NOW - dt.timedelta(days=2)


@pytest.mark.parametrize("text", ["KeyCompromise", "key_compromise", "keycompromise", "superseded"])
def test_reason_names(text: str) -> None:
    assert parse_reason(text) is not None


def test_unknown_reason() -> None:
    with pytest.raises(PolicyViolation, match="unknown revocation reason"):
        parse_reason("lost")


def test_next_update_must_follow_this_update(issuer: Issuer) -> None:
    with pytest.raises(PolicyViolation, match="nextUpdate"):
        build_crl(issuer, [], CrlParams(1, NOW, NOW))


@pytest.mark.slow
def test_one_million_entries(issuer: Issuer) -> None:
    entries = [revoked_entry(i + 1, NOW, None) for i in range(1_000_000)]
    crl = build_crl(issuer, entries, PARAMS)
    assert len(crl) == 1_000_000


@given(
    old=st.lists(st.integers(1, 2**159 - 1), max_size=20, unique=True),
    new=st.lists(st.integers(1, 2**159 - 1), max_size=5, unique=True),
    reason=st.sampled_from([None, "keyCompromise", "superseded"]),
)
@settings(max_examples=40, deadline=None)
def test_extend_crl_equals_full_build(
    issuer: Issuer, old: list[int], new: list[int], reason: str | None
) -> None:
    flag = parse_reason(reason)
    old_entries = [revoked_entry(s, NOW, flag) for s in old]
    new_entries = [revoked_entry(s, NOW + dt.timedelta(hours=1), None, NOW) for s in new]
    previous = build_crl(issuer, old_entries, PARAMS).public_bytes(serialization.Encoding.DER)
    params = CrlParams(43, NOW + dt.timedelta(hours=1), NOW + dt.timedelta(days=8))
    extended = x509.load_der_x509_crl(extend_crl(issuer, previous, new_entries, params))
    full = build_crl(issuer, [*old_entries, *new_entries], params)
    assert extended.tbs_certlist_bytes == full.tbs_certlist_bytes
    assert extended.is_signature_valid(issuer.certificate.public_key())  # type: ignore[arg-type]


def test_extend_crl_refuses_another_issuers_crl(issuer: Issuer) -> None:
    other_key = test_key("ec:p256", 2)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Other Root")])
    other = Issuer(
        create_root(other_key, name, not_before=NOW, not_after=NOW + dt.timedelta(days=30)),
        other_key,
    )
    previous = build_crl(other, [revoked_entry(1, NOW)], PARAMS).public_bytes(
        serialization.Encoding.DER
    )
    with pytest.raises(PolicyViolation, match="another name"):
        extend_crl(issuer, previous, [], PARAMS)
