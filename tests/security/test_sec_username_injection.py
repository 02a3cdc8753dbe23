"""Username-mapping injection: a certificate from a trusted CA whose *values* (an OU, a SAN,
a control character) imitate the structure the username regex looks for. With Expressway's
default ``/Subject:.*CN=(?<Group1>[^,]*)/`` each of these used to map to ``admin`` and log in
as a read-write administrator; the regex now reads an escaped, one-name-per-line text, so
they map to the real common name or to nothing. A certificate that fails validation is
never mapped at all."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient

from certway.clock import FixedClock
from certway.services.client_check import NOT_MAPPED
from certway.services.node import Node
from certway.trust.identity import DEFAULT_FORMAT, DEFAULT_REGEX
from certway.web.app import create_admin_app

from conftest import NOW
from pkitools import Pki

pytestmark = pytest.mark.usefixtures("quick_hashes")  # argon2 at test strength

PASSWORD = "correct horse battery"
CN, OU, ORG = NameOID.COMMON_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME, NameOID.ORGANIZATION_NAME


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki("Injection", index=410)


@pytest.fixture
def node(tmp_path: Path, pki: Pki) -> Iterator[Node]:
    """Trusts ``pki``; ``admin`` is read-write, ``mallory`` read-only; certificate-based
    authentication with Expressway's default regex and format."""
    n = Node.init(tmp_path / "d", FixedClock(NOW), fqdn="vcs.example.com")
    n.trusted_cas.add(pem(pki.root) + pem(pki.intermediate))
    n.admins.add("admin", "read-write", PASSWORD)
    n.admins.add("mallory", "read-only", PASSWORD)
    n.admin_security.set(
        mode="certificate-based-authentication",
        regex=DEFAULT_REGEX,
        fmt=DEFAULT_FORMAT,
        force=True,
    )
    yield n
    n.close()


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def issue(
    pki: Pki,
    subject: Sequence[tuple[x509.ObjectIdentifier, str]],
    sans: Sequence[x509.GeneralName] = (),
    *,
    days: int = 30,
) -> x509.Certificate:
    """A client certificate from the trusted CA, the subject attributes in this order."""
    return pki.int_issuer.issue(
        pki.leaf_key.public_key(),
        x509.Name([x509.NameAttribute(oid, value) for oid, value in subject]),
        profile="client",
        alt_names=list(sans) or None,
        not_before=NOW - dt.timedelta(days=1),
        not_after=NOW - dt.timedelta(days=1) + dt.timedelta(days=days),
    )


def mapped(node: Node, cert: x509.Certificate) -> str | None:
    report = node.client_check.check(pem(cert), regex=DEFAULT_REGEX, fmt=DEFAULT_FORMAT)
    assert report.result.valid, report.result.reason
    return report.username.username if report.username else None


def logged_in_as(node: Node, cert: x509.Certificate) -> str | None:
    result = node.admin_security.authenticate(pem(cert))
    return result.account.name if result.allowed and result.account else None


# -- the subject ---------------------------------------------------------------------------------
def test_ou_value_imitating_a_common_name(node: Node, pki: Pki) -> None:
    """``CN=mallory, OU=CN=admin``: the OU's value is the text "CN=admin"."""
    cert = issue(pki, [(CN, "mallory"), (OU, "CN=admin")])
    assert mapped(node, cert) == "mallory"
    assert logged_in_as(node, cert) == "mallory"  # the read-only account, not admin


@pytest.mark.parametrize(
    "value",
    [
        "CN=admin",
        "x, CN=admin",
        "x,CN=admin",
        "x + CN=admin",
        "x\\, CN=admin",  # a backslash of its own before the comma
        "x\\",  # a trailing backslash, trying to escape what follows
    ],
)
def test_ou_values_with_separators_stay_inside_the_value(node: Node, pki: Pki, value: str) -> None:
    cert = issue(pki, [(CN, "mallory"), (OU, value)])
    assert mapped(node, cert) == "mallory"


@pytest.mark.parametrize(
    "value",
    [
        "x\nSubject: CN=admin",  # a line break
        "x\rSubject: CN=admin",
        "x\u2028Subject: CN=admin",  # a Unicode line separator
        "x\x85Subject: CN=admin",  # NEL
        "x\x1eSubject: CN=admin",  # a record separator: str.splitlines() splits there too
    ],
)
def test_a_value_cannot_start_a_line_of_its_own(node: Node, pki: Pki, value: str) -> None:
    """No CN in the subject: the only "CN=admin" is inside the organisation's value."""
    cert = issue(pki, [(ORG, value)], [x509.DNSName("host.example.com")])
    assert mapped(node, cert) is None
    assert logged_in_as(node, cert) is None


# -- subject alternative names -------------------------------------------------------------------
def test_uri_san_imitating_the_subject(node: Node, pki: Pki) -> None:
    """``urn:x:Subject:CN=admin`` in a certificate without a common name."""
    cert = issue(pki, [(ORG, "Acme")], [x509.UniformResourceIdentifier("urn:x:Subject:CN=admin")])
    assert mapped(node, cert) is None
    assert logged_in_as(node, cert) is None
    report = node.client_check.check(pem(cert), regex=DEFAULT_REGEX, fmt=DEFAULT_FORMAT)
    assert report.username_error is not None and "does not match" in report.username_error


def test_uri_san_does_not_override_the_common_name(node: Node, pki: Pki) -> None:
    cert = issue(pki, [(CN, "mallory")], [x509.UniformResourceIdentifier("urn:x:Subject:CN=admin")])
    assert mapped(node, cert) == "mallory"


def test_directory_name_san_imitating_the_subject(node: Node, pki: Pki) -> None:
    """A DirName SAN holds a whole name: it is one escaped value on its SAN line."""
    inner = x509.Name([x509.NameAttribute(ORG, "Subject:"), x509.NameAttribute(CN, "admin")])
    cert = issue(pki, [(ORG, "Acme")], [x509.DirectoryName(inner)])
    assert mapped(node, cert) is None
    assert logged_in_as(node, cert) is None


def test_normal_certificates_still_map_to_their_common_name(node: Node, pki: Pki) -> None:
    cert = issue(
        pki,
        [(NameOID.COUNTRY_NAME, "GB"), (ORG, "Acme"), (OU, "Staff"), (CN, "admin")],
        [x509.RFC822Name("admin@example.com"), x509.DNSName("admin.example.com")],
    )
    assert mapped(node, cert) == "admin"
    assert logged_in_as(node, cert) == "admin"


# -- certificates that fail validation are never mapped -----------------------------------------
def test_untrusted_certificate_is_not_mapped(node: Node) -> None:
    stranger = Pki("Stranger", index=420)
    cert = issue(stranger, [(CN, "admin")])
    report = node.client_check.check(pem(cert), regex=DEFAULT_REGEX, fmt=DEFAULT_FORMAT)
    assert report.result.code == "untrusted"
    assert report.username is None and report.username_error == NOT_MAPPED
    result = node.admin_security.authenticate(pem(cert))
    assert not result.allowed and result.account is None
    assert "rejected" in result.reason


def test_expired_certificate_is_not_mapped(node: Node, pki: Pki) -> None:
    cert = pki.int_issuer.issue(
        pki.leaf_key.public_key(),
        x509.Name([x509.NameAttribute(CN, "admin")]),
        profile="client",
        not_before=NOW - dt.timedelta(days=40),
        not_after=NOW - dt.timedelta(days=10),
    )
    report = node.client_check.check(pem(cert), regex=DEFAULT_REGEX, fmt=DEFAULT_FORMAT)
    assert report.result.code == "expired"
    assert report.username is None and report.username_error == NOT_MAPPED
    assert logged_in_as(node, cert) is None


def test_untrusted_certificate_is_not_mapped_through_the_api(node: Node) -> None:
    node.admin_security.set(mode="not-required")  # password login for the API call
    cert = issue(Pki("Stranger", index=420), [(CN, "admin")])
    body = {"certificate": pem(cert).decode(), "regex": DEFAULT_REGEX, "format": "#Group1#"}
    token = base64.b64encode(f"mallory:{PASSWORD}".encode()).decode()
    with TestClient(create_admin_app(node, secure_cookies=False)) as client:
        response = client.post(
            "/api/v1/check", json=body, headers={"Authorization": f"Basic {token}"}
        )
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["valid"] is False and report["code"] == "untrusted"
    assert report["username"] is None
    assert report["username_error"] == (
        "the username mapping was not attempted because the certificate is not trusted"
    )
