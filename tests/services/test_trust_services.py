"""Trusted CA list (TC1-TC4), manual CRL (RV1, RV6), policies (RV5) and client-certificate
testing with username mapping (S2, S3), through the services of a real node."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs7

from certway.clock import FixedClock
from certway.errors import DecodeError, NotFound, PolicyViolation
from certway.pki.issue import create_root
from certway.services.client_check import NOT_MAPPED
from certway.services.node import Node
from certway.trust.identity import DEFAULT_FORMAT, DEFAULT_REGEX
from certway.trust.policy import ADMIN_HTTPS_DEFAULT, Fallback, Scope

from conftest import NOW, store_snapshot, test_key
from pkitools import Pki, name
from revocation_servers import DAY, DER, PEM, der, pem


def dump(node: Node) -> list[str]:
    """Every state row (not the audit log): compared before and after a refused change."""
    return store_snapshot(node.store.data_dir)


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki("Acme", at=NOW, index=200)


@pytest.fixture(scope="module")
def other() -> Pki:
    return Pki("Other", at=NOW, index=210)


@pytest.fixture
def node(tmp_path: Path, clock: FixedClock, node_database: str | None) -> Iterator[Node]:
    n = Node.init(tmp_path / "data", clock, factory=False, database=node_database)
    try:
        yield n
    finally:
        n.close()


@pytest.fixture
def trusting(node: Node, pki: Pki) -> Node:
    node.trusted_cas.add(pem(pki.root, pki.intermediate))
    return node


def subjects(node: Node) -> list[str]:
    return [e.subject for e in node.trusted_cas.entries()]


# --------------------------------------------------------------------------- TC1 append


def test_pem_bundle_of_two_cas_then_readding_skips_both(node: Node, pki: Pki) -> None:
    report = node.trusted_cas.add(pem(pki.root, pki.intermediate))
    assert [i.subject for i in report.added] == ["CN=Acme Root", "CN=Acme Issuing"]
    assert report.skipped == [] and report.warnings == [] and report.crls == []
    assert report.added[1].issuer == "CN=Acme Root"
    assert report.added[0].origin == "user"

    again = node.trusted_cas.add(pem(pki.intermediate, pki.root))
    assert again.added == []
    assert len(again.skipped) == 2
    assert all("already trusted" in line for line in again.skipped)
    assert subjects(node) == ["CN=Acme Root", "CN=Acme Issuing"]


@pytest.mark.parametrize(
    "encode",
    [
        lambda certs: der(certs[0]),
        lambda certs: pkcs7.serialize_certificates(certs, DER),
        lambda certs: pkcs7.serialize_certificates(certs, PEM),
    ],
    ids=["der", "pkcs7-der", "pkcs7-pem"],
)
def test_der_and_pkcs7_files(node: Node, pki: Pki, encode: object) -> None:
    data = encode([pki.root, pki.intermediate])  # type: ignore[operator]
    report = node.trusted_cas.add(data)
    assert report.added[0].subject == "CN=Acme Root"
    assert set(subjects(node)) <= {"CN=Acme Root", "CN=Acme Issuing"}
    assert node.trusted_cas.snapshot().certificates[0] == pki.root


def test_bundle_with_a_leaf_is_refused_and_nothing_is_added(
    node: Node, pki: Pki, other: Pki
) -> None:
    node.trusted_cas.add(pem(other.root))
    before = dump(node)
    with pytest.raises(PolicyViolation) as info:
        node.trusted_cas.add(pem(pki.root, pki.intermediate, pki.leaf("www.example.com")))
    assert info.value.code == "not-a-ca"
    assert str(info.value).startswith("CN=www.example.com is not a CA certificate")
    assert "nothing was added" in str(info.value)
    assert subjects(node) == ["CN=Other Root"]
    assert dump(node) == before


def test_bundle_whose_crl_is_refused_adds_no_certificate(node: Node, pki: Pki, other: Pki) -> None:
    """The CRL of an untrusted issuer inside a CA file: the whole file is refused."""
    before = dump(node)
    with pytest.raises(PolicyViolation, match="not in the trusted CA list") as info:
        node.trusted_cas.add(pem(pki.root, pki.intermediate, other.crl()))
    assert info.value.code == "crl-issuer"
    assert subjects(node) == []
    assert node.revocation.held() == []
    assert dump(node) == before


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"hello, not a certificate", "not a CA certificate file"),
        (b"", "not a CA certificate file"),
        (
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "holds a PRIVATE KEY block",
        ),
    ],
    ids=["garbage", "empty", "key"],
)
def test_unreadable_ca_files_are_refused(node: Node, data: bytes, message: str) -> None:
    before = dump(node)
    with pytest.raises(DecodeError, match=message):
        node.trusted_cas.add(data)
    assert dump(node) == before


def test_two_cas_with_the_same_cn_give_a_warning(node: Node, pki: Pki) -> None:
    node.trusted_cas.add(pem(pki.root))
    twin = create_root(
        test_key("ec:p256", 220),
        name("Acme Root"),
        not_before=NOW - 30 * DAY,
        not_after=NOW + 365 * DAY,
    )
    report = node.trusted_cas.add(pem(twin))
    assert len(report.added) == 1
    assert report.warnings == [
        "another trusted CA has the same common name 'Acme Root': check that both are wanted"
    ]
    assert subjects(node) == ["CN=Acme Root", "CN=Acme Root"]


# --------------------------------------------------------------------------- TC4 embedded CRLs


def test_crl_inside_a_ca_file_goes_to_the_crl_store(node: Node, pki: Pki) -> None:
    leaf = pki.leaf("bob.example.com")
    crl = pki.crl([(leaf, "keyCompromise")], number=7)
    report = node.trusted_cas.add(pem(pki.root, pki.intermediate, crl))
    assert len(report.added) == 2
    assert report.crls == [
        f"CRL #7 of CN=Acme Issuing with 1 entry, next update "
        f"{crl.next_update_utc:%Y-%m-%d %H:%M} UTC"
    ]
    [held] = node.revocation.held()
    assert (held.kind, held.source, held.issuer, held.number, held.entries, held.status) == (
        "embedded",
        "CA file",
        "CN=Acme Issuing",
        7,
        1,
        "current",
    )
    result = node.client_check.check(pem(leaf)).result
    assert not result.valid and result.code == "revoked"
    assert "(keyCompromise) by CRL #7 from a CA file" in result.reason


# --------------------------------------------------------------------------- TC2 view/delete


def test_list_show_and_remove_by_fingerprint_prefix(node: Node, pki: Pki, other: Pki) -> None:
    node.trusted_cas.add(pem(pki.root, pki.intermediate, other.root))
    entries = node.trusted_cas.entries()
    root = entries[0]
    assert root.subject == root.issuer == "CN=Acme Root"
    assert root.not_after == pki.root.not_valid_after_utc
    assert set(root.as_dict()) == {
        "fingerprint",
        "subject",
        "issuer",
        "not_before",
        "not_after",
        "origin",
    }
    # Colon form, bare lowercase hex, any unique prefix of 8+ digits.
    assert node.trusted_cas.certificate(root.fingerprint) == pki.root
    assert node.trusted_cas.certificate(root.fingerprint[:11]) == pki.root
    assert node.trusted_cas.certificate(root.fingerprint.replace(":", "")[:8].lower()) == pki.root

    with pytest.raises(PolicyViolation, match="at least 8 hex digits"):
        node.trusted_cas.certificate(root.fingerprint[:5])
    missing = "00:00:00:00:00" if not root.fingerprint.startswith("00") else "FF:FF:FF:FF:FF"
    with pytest.raises(NotFound, match="no trusted CA has fingerprint"):
        node.trusted_cas.certificate(missing)

    before = dump(node)
    with pytest.raises(NotFound):  # all or nothing: the good one stays too
        node.trusted_cas.remove([entries[1].fingerprint[:11], missing])
    assert dump(node) == before

    removed = node.trusted_cas.remove([entries[1].fingerprint[:11], entries[2].fingerprint])
    assert removed == ["CN=Acme Issuing", "CN=Other Root"]
    assert subjects(node) == ["CN=Acme Root"]


# --------------------------------------------------------------------------- TC3 reset


def test_reset_restores_the_factory_list(node: Node, pki: Pki, other: Pki) -> None:
    node.trusted_cas.add_factory(other.root)
    assert [(e.subject, e.origin) for e in node.trusted_cas.entries()] == [
        ("CN=Other Root", "factory")
    ]
    node.trusted_cas.add(pem(pki.root, pki.intermediate))
    node.trusted_cas.remove([node.trusted_cas.entries()[0].fingerprint])
    assert subjects(node) == ["CN=Acme Root", "CN=Acme Issuing"]

    restored = node.trusted_cas.reset()
    assert [(e.subject, e.origin) for e in restored] == [("CN=Other Root", "factory")]
    assert [(e.subject, e.origin) for e in node.trusted_cas.entries()] == [
        ("CN=Other Root", "factory")
    ]
    assert node.trusted_cas.snapshot().certificates == (other.root,)


def test_reset_of_a_node_without_factory_cas_empties_the_list(node: Node, pki: Pki) -> None:
    node.trusted_cas.add(pem(pki.root))
    assert node.trusted_cas.reset() == []
    assert len(node.trusted_cas.snapshot()) == 0


# --------------------------------------------------------------------------- snapshot


def test_snapshot_follows_changes_made_by_another_node(
    node: Node, pki: Pki, clock: FixedClock
) -> None:
    leaf = pem(pki.leaf("carol.example.com"))
    first = node.trusted_cas.snapshot()
    assert node.trusted_cas.snapshot() is first  # cached while nothing changes
    assert node.client_check.check(leaf).result.code == "untrusted"

    # The CLI while the server runs: a second node object on the same data directory.
    cli = Node.open(node.store.data_dir, clock)
    try:
        cli.trusted_cas.add(pem(pki.root, pki.intermediate))
        second = node.trusted_cas.snapshot()
        assert second is not first
        assert set(second.certificates) == {pki.root, pki.intermediate}
        assert node.client_check.check(leaf).result.valid

        cli.trusted_cas.remove([cli.trusted_cas.entries()[0].fingerprint])
        assert node.trusted_cas.snapshot().certificates == (pki.intermediate,)
    finally:
        cli.close()


# --------------------------------------------------------------------------- RV1 manual CRL


def test_manual_crl_pem_then_der_replaces_then_remove(trusting: Node, pki: Pki) -> None:
    accepted = trusting.revocation.upload_manual(pem(pki.crl(number=1)))
    assert [(a.issuer, a.number, a.entries) for a in accepted] == [("CN=Acme Issuing", 1, 0)]
    assert [(h.kind, h.number) for h in trusting.revocation.held()] == [("manual", 1)]

    revoked = pki.leaf("dave.example.com")
    accepted = trusting.revocation.upload_manual(der(pki.crl([(revoked, None)], number=2)))
    assert [(a.number, a.entries) for a in accepted] == [(2, 1)]
    held = trusting.revocation.held()
    assert [(h.kind, h.source, h.number, h.entries) for h in held] == [
        ("manual", "manual upload", 2, 1)
    ]

    # A manual CRL of another issuer replaces it too: there is one manual upload.
    root_crl = pki.crl(issuer=pki.root_issuer, number=9)
    trusting.revocation.upload_manual(pem(root_crl))
    assert [(h.issuer, h.number) for h in trusting.revocation.held()] == [("CN=Acme Root", 9)]

    assert trusting.revocation.remove_manual() == 1
    assert trusting.revocation.held() == []
    assert trusting.revocation.remove_manual() == 0


def test_pem_with_two_manual_crls_keeps_both(trusting: Node, pki: Pki) -> None:
    both = pem(pki.crl(number=3), pki.crl(issuer=pki.root_issuer, number=4))
    trusting.revocation.upload_manual(both)
    assert sorted((h.issuer, h.number) for h in trusting.revocation.held()) == [
        ("CN=Acme Issuing", 3),
        ("CN=Acme Root", 4),
    ]


@pytest.fixture
def with_crls(trusting: Node, pki: Pki) -> Node:
    """An embedded CRL #4 and a manual CRL #4 of the issuing CA are held."""
    trusting.trusted_cas.add(pem(pki.intermediate, pki.crl(number=4)))
    trusting.revocation.upload_manual(pem(pki.crl(number=4)))
    return trusting


@pytest.mark.parametrize(
    ("make", "error", "code", "message"),
    [
        (
            lambda p, o: pem(p.forged_crl(test_key("ec:p256", 221), number=5)),
            PolicyViolation,
            "crl-signature",
            "has a bad signature: it was not signed by CN=Acme Issuing",
        ),
        (
            lambda p, o: pem(o.crl(number=5)),
            PolicyViolation,
            "crl-issuer",
            "the CRL issuer CN=Other Issuing is not in the trusted CA list",
        ),
        (
            lambda p, o: pem(p.crl(number=5, this_update=NOW - 10 * DAY, days=7)),
            PolicyViolation,
            "crl-expired",
            "expired on 2026-11-24 12:00 UTC: an expired CRL is not used",
        ),
        (
            lambda p, o: der(p.crl(number=3)),
            PolicyViolation,
            "crl-number",
            "is older than CRL #4 already held for CN=Acme Issuing",
        ),
        (lambda p, o: b"\x00garbage\xff" * 10, DecodeError, None, ""),
        (lambda p, o: pem(p.root), DecodeError, None, ""),
        (
            lambda p, o: pem(p.crl(number=6), p.forged_crl(test_key("ec:p256", 221), number=7)),
            PolicyViolation,
            "crl-signature",
            "bad signature",
        ),
    ],
    ids=[
        "bad-signature",
        "issuer-not-trusted",
        "expired",
        "number-backwards",
        "garbage",
        "certificate-not-crl",
        "one-bad-of-two",
    ],
)
def test_refused_manual_crl_changes_nothing(
    with_crls: Node,
    pki: Pki,
    other: Pki,
    make: object,
    error: type[Exception],
    code: str | None,
    message: str,
) -> None:
    data = make(pki, other)  # type: ignore[operator]
    before = dump(with_crls)
    held = with_crls.revocation.held()
    with pytest.raises(error) as info:
        with_crls.revocation.upload_manual(data)
    if code is not None:
        assert getattr(info.value, "code", None) == code
    assert message in str(info.value)
    assert str(info.value)  # a clear one-line message, never empty
    assert "\n" not in str(info.value)
    assert with_crls.revocation.held() == held
    assert dump(with_crls) == before


def test_manual_crl_number_never_goes_backwards(trusting: Node, pki: Pki) -> None:
    """Replacing the manual CRL must not let its number go backwards (RV6)."""
    trusting.revocation.upload_manual(pem(pki.crl(number=5)))
    with pytest.raises(PolicyViolation) as info:
        trusting.revocation.upload_manual(pem(pki.crl(number=3)))
    assert info.value.code == "crl-number"
    assert [h.number for h in trusting.revocation.held()] == [5]


def test_validation_flips_to_revoked_after_crl_upload(
    trusting: Node, pki: Pki, clock: FixedClock
) -> None:
    leaf = pki.leaf("erin.example.com")
    before = trusting.client_check.check(pem(leaf))
    assert before.result.valid and before.service == "admin-https"
    peer = before.result.certificates[0]
    assert peer.status == "unknown"
    assert ("revocation", "unknown", "status unknown: treated as not revoked") in [
        (c.name, c.outcome, c.text) for c in peer.checks
    ]

    revoked_at = NOW - dt.timedelta(hours=1)
    trusting.revocation.upload_manual(pem(pki.crl([(leaf, "keyCompromise")], number=42)))
    after = trusting.client_check.check(pem(leaf)).result
    assert not after.valid
    assert after.code == "revoked" and after.failed_index == 0
    assert after.reason == (
        f"the certificate is revoked on {revoked_at:%Y-%m-%d} (keyCompromise) by CRL #42 "
        "from the manual CRL upload"
    )
    assert after.certificates[0].status == "revoked"
    assert after.as_dict()["code"] == "revoked"

    # Another certificate of the same CA is good per that CRL.
    other_leaf = pki.leaf("frank.example.com")
    good = trusting.client_check.check(pem(other_leaf)).result
    assert good.valid and good.certificates[0].status == "good"
    assert (
        "not revoked per CRL #42 from the manual CRL upload"
        in [c.text for c in good.certificates[0].checks][-1]
    )

    # Expressway rule: once the only CRL is past its nextUpdate, every certificate of
    # that CA counts as revoked.
    clock.advance(8 * DAY)
    assert [h.status for h in trusting.revocation.held()] == ["expired"]
    stale = trusting.client_check.check(pem(other_leaf)).result
    assert not stale.valid and stale.code == "revoked"
    assert "certificates of this CA count as revoked" in stale.reason

    trusting.revocation.remove_manual()
    assert trusting.client_check.check(pem(other_leaf)).result.valid


# --------------------------------------------------------------------------- RV5 policies


def test_policies_have_the_spec_defaults(node: Node) -> None:
    sip = node.revocation.policy("sip-tls")
    assert (sip.enabled, sip.ocsp, sip.crl, sip.cdp, sip.scope, sip.fallback) == (
        True,
        True,
        True,
        True,
        Scope.ALL,
        Fallback.NOT_REVOKED,
    )
    assert node.revocation.policy("admin-https") == ADMIN_HTTPS_DEFAULT
    assert ADMIN_HTTPS_DEFAULT.scope is Scope.ALL and ADMIN_HTTPS_DEFAULT.crl


def test_policy_change_is_persisted(node: Node, clock: FixedClock) -> None:
    updated = node.revocation.set_policy("sip-tls", ocsp=False, scope="peer", fallback="revoked")
    assert (updated.ocsp, updated.scope, updated.fallback) == (False, Scope.PEER, Fallback.REVOKED)
    reopened = Node.open(node.store.data_dir, clock)
    try:
        assert reopened.revocation.policy("sip-tls") == updated
        assert reopened.revocation.policy("admin-https") == ADMIN_HTTPS_DEFAULT
        # A later change keeps the earlier ones.
        again = reopened.revocation.set_policy("sip-tls", cdp=False)
        assert (again.ocsp, again.cdp, again.scope) == (False, False, Scope.PEER)
    finally:
        reopened.close()
    assert node.revocation.policy("sip-tls").as_dict() == {
        "mode": "on",
        "ocsp": False,
        "crl": True,
        "cdp": False,
        "scope": "peer",
        "fallback": "revoked",
        "profile": "rfc5280",
    }


@pytest.mark.parametrize(
    ("service", "changes", "message"),
    [
        ("sip-tls", {"scope": "sideways"}, "scope must be one of peer, all, not 'sideways'"),
        ("sip-tls", {"fallback": "maybe"}, "fallback must be one of not-revoked, revoked"),
        ("admin-https", {"ocsp": "yes"}, "ocsp must be on or off"),
        ("admin-https", {"colour": True}, "unknown revocation setting 'colour'"),
        (
            "smtp",
            {"ocsp": True},
            "unknown service 'smtp': use sip-tls or admin-https or syslog or ldap or acme",
        ),
    ],
)
def test_invalid_policy_values_are_refused(
    node: Node, service: str, changes: dict[str, object], message: str
) -> None:
    node.revocation.set_policy("sip-tls", ocsp=False)
    before = dump(node)
    with pytest.raises(PolicyViolation) as info:
        node.revocation.set_policy(service, **changes)
    assert str(info.value) == message or message in str(info.value)
    assert dump(node) == before


def test_mode_off_skips_revocation(trusting: Node, pki: Pki) -> None:
    leaf = pki.leaf("gina.example.com")
    trusting.revocation.upload_manual(pem(pki.crl([(leaf, "superseded")], number=2)))
    assert trusting.client_check.check(pem(leaf)).result.code == "revoked"
    trusting.revocation.set_policy("admin-https", enabled=False)
    result = trusting.client_check.check(pem(leaf)).result
    assert result.valid
    assert [c.name for c in result.certificates[0].checks] == ["path"]
    # The other service's policy is its own.
    assert trusting.client_check.check(pem(leaf), service="sip-tls").result.code == "revoked"


def test_scope_peer_ignores_a_revoked_intermediate(node: Node, pki: Pki) -> None:
    """Only the root is trusted: the issuing CA is checked too under scope ``all``."""
    trusting = node
    leaf = pki.leaf("hank.example.com")
    root_crl = pki.crl([(pki.intermediate, "cACompromise")], issuer=pki.root_issuer, number=1)
    trusting.trusted_cas.add(pem(pki.root, root_crl))
    result = trusting.client_check.check(pem(leaf), chain=pem(pki.intermediate)).result
    assert result.code == "revoked" and result.failed_index == 1
    assert result.reason.startswith("CA certificate CN=Acme Issuing is revoked on")
    trusting.revocation.set_policy("admin-https", scope="peer")
    assert trusting.client_check.check(pem(leaf), chain=pem(pki.intermediate)).result.valid


# --------------------------------------------------------------------------- S3 input forms


@pytest.mark.parametrize(
    "encode",
    [
        lambda c: pem(c),
        lambda c: der(c),
        lambda c: base64.b64encode(der(c)),
        lambda c: base64.encodebytes(der(c)),  # pasted with line breaks
        lambda c: b"\n  " + base64.b64encode(der(c)) + b"  \n",
        lambda c: b"pasted from the browser:\n" + pem(c) + b"\nthanks\n",
    ],
    ids=["pem", "der", "base64", "base64-lines", "base64-spaces", "pem-in-text"],
)
def test_certificate_as_pem_der_or_pasted_text(trusting: Node, pki: Pki, encode: object) -> None:
    leaf = pki.leaf("ivy.example.com")
    report = trusting.client_check.check(encode(leaf))  # type: ignore[operator]
    assert report.result.valid, report.result.reason
    assert report.result.certificates[0].subject == "CN=ivy.example.com"
    assert report.result.chain[0] == leaf


@pytest.mark.parametrize(
    "data",
    [b"not a certificate at all!", b"QUJDREVG", b"-----BEGIN CERTIFICATE-----\nZZZ\n"],
    ids=["text", "base64-not-der", "broken-pem"],
)
def test_unreadable_certificate_is_a_decode_error(trusting: Node, data: bytes) -> None:
    with pytest.raises(DecodeError):
        trusting.client_check.check(data)


def test_chain_given_separately_and_bad_purpose(trusting: Node, pki: Pki) -> None:
    trusting.trusted_cas.remove([trusting.trusted_cas.entries()[1].fingerprint])  # issuing CA
    leaf = pki.leaf("jack.example.com")
    assert trusting.client_check.check(pem(leaf)).result.code == "untrusted"
    with_chain = trusting.client_check.check(pem(leaf), chain=pem(pki.intermediate)).result
    assert with_chain.valid and len(with_chain.chain) == 3
    bundled = trusting.client_check.check(pem(leaf, pki.intermediate)).result
    assert bundled.valid
    server = trusting.client_check.check(
        pem(leaf), purpose="server", name="jack.example.com", chain=pem(pki.intermediate)
    )
    assert server.result.valid
    wrong = trusting.client_check.check(
        pem(leaf), purpose="server", name="other.example.com", chain=pem(pki.intermediate)
    )
    assert wrong.result.code == "name-mismatch"
    with pytest.raises(PolicyViolation, match="purpose must be client or server, not 'both'"):
        trusting.client_check.check(pem(leaf), purpose="both")


# --------------------------------------------------------------------------- S2 username mapping


@pytest.mark.parametrize(
    ("regex", "fmt", "username"),
    [
        (DEFAULT_REGEX, DEFAULT_FORMAT, "kate.example.com"),
        (DEFAULT_REGEX, "pre-#Group1#-suf", "pre-kate.example.com-suf"),
        (r"/Subject:.*CN=(?<Group1>[^.,]*)/", "#Group1#", "kate"),
        (r"Subject:.*CN=(?<Group1>[^.,]*)", "#Group1#", "kate"),
        (r"/Subject:.*CN=(?P<Group1>[^.,]*)/", "#Group1#", "kate"),
        (r"Subject:.*CN=(?P<Group1>[^.,]*)", "#Group1#", "kate"),
        (
            r"/CN=(?<User>[^.]+)\.(?<Domain>[^,\s]+)/",
            r"#Domain#\#User#",
            r"example.com\kate",
        ),
        (r"DNS:(?<Group1>[^,\s]+)", "#Group1#@sip", "kate.example.com@sip"),
    ],
    ids=[
        "expressway-default",
        "prefix-suffix",
        "dotnet-delimited",
        "dotnet-bare",
        "python-delimited",
        "python-bare",
        "two-groups",
        "san",
    ],
)
def test_username_mapping(trusting: Node, pki: Pki, regex: str, fmt: str, username: str) -> None:
    leaf = pki.leaf("kate.example.com")
    report = trusting.client_check.check(pem(leaf), regex=regex, fmt=fmt)
    assert report.result.valid
    assert report.username is not None and report.username.username == username
    assert report.username_error is None
    data = report.as_dict()
    assert data["username"] == username and data["valid"] is True


def test_untrusted_certificate_is_not_mapped(node: Node, pki: Pki) -> None:
    report = node.client_check.check(
        pem(pki.leaf("liam.example.com")), regex=DEFAULT_REGEX, fmt=DEFAULT_FORMAT
    )
    assert report.result.code == "untrusted"
    assert report.username is None
    assert report.username_error == NOT_MAPPED
    data = report.as_dict()
    assert data["username"] is None and data["username_error"] == (
        "the username mapping was not attempted because the certificate is not trusted"
    )


def test_bad_format_is_refused_for_an_untrusted_certificate_too(node: Node, pki: Pki) -> None:
    with pytest.raises(PolicyViolation, match="uses #User# but the regex has no group"):
        node.client_check.check(
            pem(pki.leaf("liam.example.com")), regex=DEFAULT_REGEX, fmt="#User#"
        )


@pytest.mark.parametrize(
    ("regex", "fmt", "code", "message"),
    [
        ("/Subject:.*CN=(?<Group1>[^,]*/", "#Group1#", "regex", "invalid regex: "),
        ("Subject:(?<Group1>[", "#Group1#", "regex", "invalid regex: "),
        ("//", "#Group1#", "regex", "the regex is empty"),
        (DEFAULT_REGEX, "#User#", "username-format", "uses #User# but the regex has no group"),
        (DEFAULT_REGEX, "plain", "username-format", "names no group"),
        (DEFAULT_REGEX, None, "username-format", "give both a regex and a username format"),
        (None, "#Group1#", "username-format", "give both a regex and a username format"),
    ],
    ids=[
        "unbalanced",
        "open-class",
        "empty",
        "missing-group",
        "no-group",
        "regex-only",
        "format-only",
    ],
)
def test_bad_regex_or_format_is_a_clear_error(
    trusting: Node, pki: Pki, regex: str | None, fmt: str | None, code: str, message: str
) -> None:
    with pytest.raises(PolicyViolation) as info:
        trusting.client_check.check(pem(pki.leaf("mia.example.com")), regex=regex, fmt=fmt)
    assert info.value.code == code
    assert message in str(info.value)


def test_regex_that_does_not_match_is_reported_not_raised(trusting: Node, pki: Pki) -> None:
    report = trusting.client_check.check(
        pem(pki.leaf("noah.example.com")), regex=r"Subject:.*UID=(?<Group1>\w+)", fmt="#Group1#"
    )
    assert report.result.valid
    assert report.username is None
    assert report.username_error == (
        "the regex does not match the certificate's subject or subject alternative names: "
        "no username"
    )
    data = report.as_dict()
    assert data["username"] is None and data["username_error"] == report.username_error


def test_subject_with_several_attributes(trusting: Node, pki: Pki) -> None:
    subject = x509.Name.from_rfc4514_string("CN=olivia,OU=Staff,O=Acme,C=GB")
    leaf = pki.int_issuer.issue(
        pki.leaf_key.public_key(),
        subject,
        profile="client",
        not_before=NOW - DAY,
        not_after=NOW + 30 * DAY,
    )
    report = trusting.client_check.check(pem(leaf), regex=DEFAULT_REGEX, fmt="#Group1#")
    assert report.result.valid, report.result.reason  # a client certificate without SAN
    assert report.username is not None and report.username.username == "olivia"
