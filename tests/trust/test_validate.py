"""validate(): path building, names, EKU, and revocation per policy, with reasons."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509

from certway.errors import CertwayError, FetchError, Revoked
from certway.pki.ocsp import OcspAnswer
from certway.trust.anchors import TrustSnapshot
from certway.trust.policy import Fallback, RevocationPolicy, Scope
from certway.trust.revocation import IndexedCrl, RevocationIndex, index_crl
from certway.trust.validate import Purpose, ValidationOptions, validate

from conftest import NOW
from pkitools import Pki

CRL_ONLY = RevocationPolicy(ocsp=False, cdp=False)


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki()


@pytest.fixture(scope="module")
def trust(pki: Pki) -> TrustSnapshot:
    return TrustSnapshot.of([pki.root])


def _index(pki: Pki, *crls: x509.CertificateRevocationList) -> RevocationIndex:
    indexed = []
    for crl in crls:
        issuer = pki.intermediate if crl.issuer == pki.intermediate.subject else pki.root
        indexed.append(index_crl(crl, issuer, source="http://crl.example/test.crl"))
    return RevocationIndex.of(indexed)


def test_valid_server_chain(pki: Pki, trust: TrustSnapshot) -> None:
    leaf = pki.leaf()
    result = validate(
        leaf,
        [pki.intermediate],
        trust=trust,
        at=NOW,
        options=ValidationOptions(name="peer.example.com"),
    )
    assert result.valid, result.reason
    assert [r.role for r in result.certificates] == ["peer", "intermediate", "anchor"]


@pytest.mark.parametrize(
    ("case", "code", "text"),
    [
        ("untrusted", "untrusted", "whose issuer CN=Other Root is not in the trusted CA list"),
        ("expired", "expired", "expired on"),
        ("not-yet", "expired", "not valid yet"),
        ("name", "name-mismatch", "does not name 'other.example.com'"),
        ("eku", "wrong-eku", "lacks serverAuth"),
        ("no-intermediate", "untrusted", "not in the trusted CA list"),
    ],
)
def test_rejections_explain_themselves(
    pki: Pki, trust: TrustSnapshot, case: str, code: str, text: str
) -> None:
    other = Pki("Other", index=20)
    leaf = {
        "untrusted": other.leaf(),
        "expired": pki.leaf(days=1, not_before=NOW - dt.timedelta(days=5)),
        "not-yet": pki.leaf(not_before=NOW + dt.timedelta(days=2)),
        "name": pki.leaf(),
        "eku": pki.leaf(profile="client"),
        "no-intermediate": pki.leaf(),
    }[case]
    intermediates = [] if case == "no-intermediate" else [pki.intermediate, other.intermediate]
    name = "other.example.com" if case == "name" else "peer.example.com"
    result = validate(
        leaf, intermediates, trust=trust, at=NOW, options=ValidationOptions(name=name)
    )
    assert not result.valid
    assert result.code == code
    assert text in result.reason


def test_client_certificate_without_san_accepted_when_policy_allows(
    pki: Pki, trust: TrustSnapshot
) -> None:
    leaf = pki.cn_only_leaf()
    options = ValidationOptions(purpose=Purpose.CLIENT)
    assert validate(leaf, [pki.intermediate], trust=trust, at=NOW, options=options).valid
    strict = ValidationOptions(purpose=Purpose.CLIENT, allow_cn_only=False)
    result = validate(leaf, [pki.intermediate], trust=trust, at=NOW, options=strict)
    assert not result.valid


def test_cn_only_server_certificate_matches_cn(pki: Pki, trust: TrustSnapshot) -> None:
    leaf = pki.cn_only_leaf("legacy.example.com")
    good = ValidationOptions(name="legacy.example.com")
    assert validate(leaf, [pki.intermediate], trust=trust, at=NOW, options=good).valid
    bad = ValidationOptions(name="x.example.com")
    assert (
        validate(leaf, [pki.intermediate], trust=trust, at=NOW, options=bad).code == "name-mismatch"
    )


def test_eku_check_can_be_turned_off(pki: Pki, trust: TrustSnapshot) -> None:
    leaf = pki.leaf(profile="server")
    on = ValidationOptions(purpose=Purpose.CLIENT)
    off = ValidationOptions(purpose=Purpose.CLIENT, check_eku=False)
    assert validate(leaf, [pki.intermediate], trust=trust, at=NOW, options=on).code == "wrong-eku"
    assert validate(leaf, [pki.intermediate], trust=trust, at=NOW, options=off).valid


def test_revoked_by_crl_with_sentence(pki: Pki, trust: TrustSnapshot) -> None:
    leaf = pki.leaf()
    index = _index(
        pki, pki.crl([(leaf, "keyCompromise")], number=42), pki.crl(issuer=pki.root_issuer)
    )
    result = validate(
        leaf, [pki.intermediate], trust=trust, at=NOW, policy=CRL_ONLY, revocation=index
    )
    assert not result.valid and result.code == "revoked"
    assert "(keyCompromise) by CRL #42 from http://crl.example/test.crl" in result.reason
    with pytest.raises(Revoked):
        result.raise_for_status()


def test_good_with_crls_over_whole_chain(pki: Pki, trust: TrustSnapshot) -> None:
    leaf = pki.leaf()
    index = _index(pki, pki.crl(), pki.crl(issuer=pki.root_issuer))
    result = validate(
        leaf, [pki.intermediate], trust=trust, at=NOW, policy=CRL_ONLY, revocation=index
    )
    assert result.valid
    assert [r.status for r in result.certificates] == ["good", "good", "trust-anchor"]


def test_revoked_intermediate_rejects_in_scope_all_only(pki: Pki, trust: TrustSnapshot) -> None:
    leaf = pki.leaf()
    index = _index(
        pki, pki.crl(), pki.crl([(pki.intermediate, "cACompromise")], issuer=pki.root_issuer)
    )
    result = validate(
        leaf, [pki.intermediate], trust=trust, at=NOW, policy=CRL_ONLY, revocation=index
    )
    assert result.code == "revoked" and result.failed_index == 1
    peer_only = RevocationPolicy(ocsp=False, cdp=False, scope=Scope.PEER)
    assert validate(
        leaf, [pki.intermediate], trust=trust, at=NOW, policy=peer_only, revocation=index
    ).valid


@pytest.mark.parametrize(
    ("fallback", "valid"), [(Fallback.NOT_REVOKED, True), (Fallback.REVOKED, False)]
)
def test_unknown_status_follows_fallback(
    pki: Pki, trust: TrustSnapshot, fallback: Fallback, valid: bool
) -> None:
    policy = RevocationPolicy(ocsp=False, cdp=False, fallback=fallback)
    result = validate(pki.leaf(), [pki.intermediate], trust=trust, at=NOW, policy=policy)
    assert result.valid is valid
    if not valid:
        assert result.code == "revocation-unknown"


def test_stale_crl_counts_as_revoked(pki: Pki, trust: TrustSnapshot) -> None:
    leaf = pki.leaf()
    old = pki.crl(this_update=NOW - dt.timedelta(days=10), days=7)
    index = _index(pki, old)
    policy = RevocationPolicy(ocsp=False, cdp=False, scope=Scope.PEER)
    result = validate(
        leaf, [pki.intermediate], trust=trust, at=NOW, policy=policy, revocation=index
    )
    assert result.code == "revoked"
    assert "expired on" in result.reason and "count as revoked" in result.reason


def test_crl_extra_given_per_call_and_strict_mode(pki: Pki, trust: TrustSnapshot) -> None:
    leaf = pki.leaf()
    strict = RevocationPolicy(ocsp=False, cdp=False, require_crl=True)
    # Only the leaf's issuer CRL given: the intermediate is not covered.
    result = validate(
        leaf, [pki.intermediate], trust=trust, at=NOW, policy=strict, crls=[pki.crl()]
    )
    assert result.code == "revocation-unknown" and result.failed_index == 1
    both = [pki.crl(), pki.crl(issuer=pki.root_issuer)]
    assert validate(leaf, [pki.intermediate], trust=trust, at=NOW, policy=strict, crls=both).valid


def test_crl_with_bad_signature_is_not_used(pki: Pki, trust: TrustSnapshot) -> None:
    other = Pki("Test", index=30)  # same names, different keys
    strict = RevocationPolicy(ocsp=False, cdp=False, require_crl=True, scope=Scope.PEER)
    result = validate(
        pki.leaf(), [pki.intermediate], trust=trust, at=NOW, policy=strict, crls=[other.crl()]
    )
    assert not result.valid
    assert any("bad signature" in c.text for c in result.certificates[0].checks)


def test_lookup_cost_independent_of_size(pki: Pki) -> None:
    """Not a timing test: the index is a set, so membership never scans the CRL."""
    leaf = pki.leaf()
    crl = pki.crl([(leaf, None)])
    indexed = index_crl(crl, pki.intermediate, source="x")
    assert isinstance(indexed.serial_hashes, frozenset)
    assert indexed.lookup(leaf.serial_number) is not None
    assert indexed.lookup(leaf.serial_number + 1) is None


class FakeOnline:
    def __init__(
        self, answer: OcspAnswer | None = None, crls: list[IndexedCrl] | None = None
    ) -> None:
        self.answer = answer
        self.crls = crls
        self.calls: list[str] = []

    def ocsp(self, cert: x509.Certificate, issuer: x509.Certificate, at: dt.datetime) -> OcspAnswer:
        self.calls.append("ocsp")
        if self.answer is None:
            raise FetchError("http://ocsp.example: connection refused")
        return self.answer

    def cdp(
        self, cert: x509.Certificate, issuer: x509.Certificate, at: dt.datetime
    ) -> list[IndexedCrl]:
        self.calls.append("cdp")
        if self.crls is None:
            raise FetchError("http://crl.example/x.crl: timed out after 10 s")
        return self.crls


def _answer(status: str) -> OcspAnswer:
    return OcspAnswer(
        status=status,  # type: ignore[arg-type]
        this_update=NOW,
        next_update=NOW + dt.timedelta(days=1),
        produced_at=NOW,
        revoked_at=NOW - dt.timedelta(days=1) if status == "revoked" else None,
        reason="keyCompromise" if status == "revoked" else None,
        responder="CA itself",
    )


def test_ocsp_good_and_revoked() -> None:
    pki = Pki(
        "Ocsp", index=40, ocsp_url="http://127.0.0.1:1/ocsp", crl_url="http://127.0.0.1:1/c.crl"
    )
    trust = TrustSnapshot.of([pki.root])
    leaf = pki.leaf()
    policy = RevocationPolicy(scope=Scope.PEER)
    good = validate(
        leaf,
        [pki.intermediate],
        trust=trust,
        at=NOW,
        policy=policy,
        online=FakeOnline(_answer("good")),
    )
    assert good.valid
    bad = validate(
        leaf,
        [pki.intermediate],
        trust=trust,
        at=NOW,
        policy=policy,
        online=FakeOnline(_answer("revoked")),
    )
    assert bad.code == "revoked" and "OCSP responder http://127.0.0.1:1/ocsp" in bad.reason


def test_responder_down_falls_back_to_cdp_then_policy() -> None:
    pki = Pki(
        "Down", index=50, ocsp_url="http://127.0.0.1:1/ocsp", crl_url="http://127.0.0.1:1/c.crl"
    )
    trust = TrustSnapshot.of([pki.root])
    leaf = pki.leaf()
    down = FakeOnline()
    lenient = RevocationPolicy(scope=Scope.PEER)
    result = validate(leaf, [pki.intermediate], trust=trust, at=NOW, policy=lenient, online=down)
    assert result.valid and down.calls == ["ocsp", "cdp"]
    strict = RevocationPolicy(scope=Scope.PEER, fallback=Fallback.REVOKED)
    result = validate(leaf, [pki.intermediate], trust=trust, at=NOW, policy=strict, online=down)
    assert result.code == "revocation-unknown"
    texts = " ".join(c.text for c in result.certificates[0].checks)
    assert "connection refused" in texts and "timed out" in texts
    cdp_crl = index_crl(
        pki.crl([(leaf, "superseded")]), pki.intermediate, source="http://127.0.0.1:1/c.crl"
    )
    via_cdp = FakeOnline(crls=[cdp_crl])
    result = validate(leaf, [pki.intermediate], trust=trust, at=NOW, policy=strict, online=via_cdp)
    assert result.code == "revoked" and "superseded" in result.reason


def test_index_refuses_older_crl_number(pki: Pki) -> None:
    newer = index_crl(pki.crl(number=7), pki.intermediate, source="a")
    older = index_crl(pki.crl(number=5), pki.intermediate, source="b")
    index = RevocationIndex().with_crl(newer)
    with pytest.raises(CertwayError, match="never go backwards"):
        index.with_crl(older)


def test_index_crl_refuses_wrong_issuer(pki: Pki) -> None:
    with pytest.raises(CertwayError, match="is issued by"):
        index_crl(pki.crl(), pki.root, source="x")
