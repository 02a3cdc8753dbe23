"""certway.pki.text: one written form for each PKI value."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from certway.errors import PolicyViolation
from certway.pki.text import format_name, parse_serial, serial_hex


@pytest.mark.parametrize(
    ("serial", "text"),
    [
        (0, "00"),
        (0xABC, "0ABC"),  # whole octets: never "ABC"
        (0xABCD, "ABCD"),
        (0x0123456789ABCDEF0123, "0123456789ABCDEF0123"),
        (-0x5, "-05"),
    ],
)
def test_serial_hex_is_upper_case_whole_octets(serial: int, text: str) -> None:
    assert serial_hex(serial) == text


@pytest.mark.parametrize("given", ["abc", "0ABC", "0x0abc", "0a:bc", " 0a bc "])
def test_parse_serial_gives_the_one_form(given: str) -> None:
    assert parse_serial(given) == "0ABC"


def test_parse_serial_refuses_what_is_not_a_serial() -> None:
    with pytest.raises(PolicyViolation, match="not a hexadecimal serial number"):
        parse_serial("0xg1")
    with pytest.raises(PolicyViolation, match="longer than 20 octets"):
        parse_serial("1" + "00" * 20)


def test_format_name_escapes_and_keeps_encoded_order() -> None:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "GB"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme, Inc+Co"),
            x509.NameAttribute(NameOID.COMMON_NAME, "a\\b"),
        ]
    )
    assert format_name(name) == "C=GB, O=Acme\\, Inc\\+Co, CN=a\\\\b"
