"""Username mapping rules (S2): regex dialects, formats, errors."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from certway.errors import PolicyViolation
from certway.trust.identity import (
    DEFAULT_FORMAT,
    DEFAULT_REGEX,
    compile_regex,
    escape_value,
    map_username,
    mapping_text,
)

from conftest import NOW
from pkitools import Pki


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki("Id", index=60)


def test_default_expressway_regex_takes_the_cn(pki: Pki) -> None:
    cert = pki.leaf("alice.example.com")
    assert map_username(cert, DEFAULT_REGEX, DEFAULT_FORMAT).username == "alice.example.com"


@pytest.mark.parametrize(
    "pattern",
    [
        r"Subject:.*CN=(?<Group1>[^.,]*)",
        r"Subject:.*CN=(?P<Group1>[^.,]*)",
        r"/Subject:.*CN=(?<Group1>[^.,]*)/",
    ],
)
def test_both_group_syntaxes_and_delimiters(pki: Pki, pattern: str) -> None:
    cert = pki.leaf("bob.example.com")
    assert map_username(cert, pattern, "pre-#Group1#-suf").username == "pre-bob-suf"


def test_named_groups_are_found_in_both_syntaxes() -> None:
    regex = compile_regex(r"/(?<User>\w+)@(?P<Domain>[a-z.]+)/")
    assert regex.group_names == ("User", "Domain")


@pytest.mark.parametrize(
    ("pattern", "groups"),
    [
        (r"[(?<x>a)](?<y>b)", ("y",)),  # inside a class: not a group
        (r"\(?<x>a\)", ()),  # an escaped parenthesis
        (r"\\(?<x>a)", ("x",)),  # an escaped backslash, then a group
        (r"[]](?<y>b)", ("y",)),  # ] first in a class is a member
        (r"[[:alpha:]](?<z>c)", ("z",)),
    ],
)
def test_dotnet_group_rewriting_reads_escapes_and_classes(
    pattern: str, groups: tuple[str, ...]
) -> None:
    assert compile_regex(pattern).group_names == groups


def test_lookbehind_is_refused_not_mistaken_for_a_group() -> None:
    with pytest.raises(PolicyViolation, match="lookbehind assertions") as info:
        compile_regex(r"(?<=CN=)(?<User>\w+)")
    assert info.value.code == "regex"


@pytest.mark.parametrize(
    ("pattern", "fmt", "message"),
    [
        ("Subject:(?<Group1>[", "#Group1#", "invalid regex"),
        ("", "#Group1#", "empty"),
        ("CN=(?<Group1>.*)", "#User#", "no group of that name"),
        ("CN=(?<Group1>.*)", "plain", "names no group"),
        ("x" * 2000, "#Group1#", "longer than"),
        (r"CN=(?<Group1>\w+),CN=\1", "#Group1#", "backreferences such as \\1"),
        (r"CN=(?<Group1>(?!admin)\w+)", "#Group1#", "lookahead assertions"),
        (r"CN=(?<Group1>\pL{1000})", "#Group1#", "too large to run"),
    ],
)
def test_bad_regex_or_format(pki: Pki, pattern: str, fmt: str, message: str) -> None:
    with pytest.raises(PolicyViolation, match=re.escape(message)):
        map_username(pki.leaf(), pattern, fmt)


def test_no_match_is_reported(pki: Pki) -> None:
    with pytest.raises(PolicyViolation, match="does not match") as info:
        map_username(pki.leaf(), r"Subject:.*UID=(?<Group1>\w+)", "#Group1#")
    assert info.value.code == "regex-no-match"


# -- the mapping text (documented in the module docstring and the README) ----------------------
def test_mapping_text_is_one_escaped_line_per_name(pki: Pki) -> None:
    subject = x509.Name(
        [
            x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COUNTRY_NAME, "GB")]),
            x509.RelativeDistinguishedName(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme, Inc."),
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "CN=admin"),
                ]
            ),
            x509.RelativeDistinguishedName(
                [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ' #a+b;"<c>"\\ ')]
            ),
            x509.RelativeDistinguishedName(
                [x509.NameAttribute(NameOID.EMAIL_ADDRESS, "m@example.com")]
            ),
            x509.RelativeDistinguishedName(
                [x509.NameAttribute(NameOID.COMMON_NAME, "mallory\nSubject: CN=admin\u2028")]
            ),
        ]
    )
    upn = x509.OtherName(x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3"), b"\x0c\x05m@x,y")
    odd = x509.OtherName(x509.ObjectIdentifier("1.2.3.4"), b"\x02\x01\x05")
    sans: list[x509.GeneralName] = [
        x509.DNSName("mallory.example.com"),
        x509.IPAddress(ipaddress.ip_address("192.0.2.7")),
        x509.RFC822Name("mallory@example.com"),
        x509.UniformResourceIdentifier("urn:x:Subject:CN=admin"),
        x509.DirectoryName(x509.Name.from_rfc4514_string("CN=a\\,b,O=Subject:")),
        x509.RegisteredID(x509.ObjectIdentifier("1.2.3.4.5")),
        upn,
        odd,
    ]
    cert = pki.int_issuer.issue(
        pki.leaf_key.public_key(),
        subject,
        profile="client",
        alt_names=sans,
        not_before=NOW,
        not_after=NOW + dt.timedelta(days=10),
    )
    assert mapping_text(cert) == [
        # a multi-valued RDN is a SET: its attributes come in DER order
        'Subject: C=GB, OU=CN\\=admin + O=Acme\\, Inc., OU=\\ #a\\+b\\;\\"\\<c\\>\\"\\\\\\ , '
        "emailAddress=m@example.com, CN=mallory\\0ASubject: CN\\=admin\\E2\\80\\A8",
        "X509v3 Subject Alternative Name: DNS:mallory.example.com",
        "X509v3 Subject Alternative Name: IP Address:192.0.2.7",
        "X509v3 Subject Alternative Name: email:mallory@example.com",
        "X509v3 Subject Alternative Name: URI:urn:x:Subject:CN\\=admin",
        "X509v3 Subject Alternative Name: DirName:O\\=Subject:\\, CN\\=a\\\\\\,b",
        "X509v3 Subject Alternative Name: Registered ID:1.2.3.4.5",
        "X509v3 Subject Alternative Name: othername:UPN:m@x\\,y",
        "X509v3 Subject Alternative Name: othername:1.2.3.4:#020105",
    ]


def test_mapping_text_of_an_empty_subject(pki: Pki) -> None:
    cert = pki.int_issuer.issue(
        pki.leaf_key.public_key(),
        x509.Name([]),
        profile="client",
        alt_names=[x509.DNSName("only.example.com")],
        not_before=NOW,
        not_after=NOW + dt.timedelta(days=10),
    )
    assert mapping_text(cert) == [
        "Subject:",
        "X509v3 Subject Alternative Name: DNS:only.example.com",
    ]


@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        ("plain", "plain"),
        ("#lead", "\\#lead"),
        ("mid#dle", "mid#dle"),
        (" both ", "\\ both\\ "),
        ("a=b,c+d", "a\\=b\\,c\\+d"),
        ("tab\there", "tab\\09here"),
        ("nul\x00", "nul\\00"),
        ("caf\u00e9", "caf\u00e9"),  # printable non-ASCII stays as it is
        ("zero\u200bwidth", "zero\\E2\\80\\8Bwidth"),
    ],
)
def test_escape_value(value: str, escaped: str) -> None:
    assert escape_value(value) == escaped


def test_default_regex_takes_the_last_common_name_of_the_subject(pki: Pki) -> None:
    subject = x509.Name.from_rfc4514_string("CN=olivia,OU=Staff,O=Acme,C=GB")
    cert = pki.int_issuer.issue(
        pki.leaf_key.public_key(),
        subject,
        profile="client",
        not_before=NOW,
        not_after=NOW + dt.timedelta(days=10),
    )
    assert mapping_text(cert) == ["Subject: C=GB, O=Acme, OU=Staff, CN=olivia"]
    assert map_username(cert, DEFAULT_REGEX, DEFAULT_FORMAT).username == "olivia"
