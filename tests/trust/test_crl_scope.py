"""RFC 5280 §6.3 CRL processing (``check_crls``), one test per rule: distribution-point scope,
onlyContains*, onlySomeReasons, indirect CRLs, delta CRLs, separate CRL signers; then NIST
PKITS 4.4 (basic CRL), 4.14 (distribution points) and 4.15 (delta CRLs) through the same
function."""

from __future__ import annotations

import datetime as dt
import importlib.util
from collections.abc import Sequence
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from certway.errors import PolicyViolation
from certway.pki.keys import PrivateKey
from certway.trust import revocation
from certway.trust.anchors import TrustSnapshot
from certway.trust.crl_check import CrlStatus, chained_signer_path, check_crls
from certway.trust.policy import RevocationPolicy, Scope
from certway.trust.revocation import IndexedCrl, RevocationIndex, index_crl, parse_crl
from certway.trust.validate import Purpose, ValidationOptions, validate

from conftest import NOW, test_key

DAY = dt.timedelta(days=1)
KC = x509.ReasonFlags.key_compromise
CAC = x509.ReasonFlags.ca_compromise
OTHER_REASONS = frozenset(
    {
        x509.ReasonFlags.affiliation_changed,
        x509.ReasonFlags.superseded,
        x509.ReasonFlags.cessation_of_operation,
        x509.ReasonFlags.certificate_hold,
        x509.ReasonFlags.privilege_withdrawn,
        x509.ReasonFlags.aa_compromise,
    }
)
URL_A = "http://crl.example/a.crl"
URL_B = "http://crl.example/b.crl"


def name(cn: str, ou: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Scope Test")]
    if ou is not None:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def uri(url: str) -> list[x509.GeneralName]:
    return [x509.UniformResourceIdentifier(url)]


class Ca:
    """A CA (key + certificate) issuing certificates and CRLs with any extension."""

    def __init__(
        self,
        cn: str,
        key_index: int,
        parent: Ca | None = None,
        *,
        subject: x509.Name | None = None,
        usage: x509.KeyUsage | None = None,
    ) -> None:
        self.key: PrivateKey = test_key("ec:p256", key_index)
        self.name = subject or name(cn)
        signer = parent or self
        self.cert = signer.issue(
            self.name,
            self.key,
            ca=True,
            usage=usage or _usage(cert_sign=True, crl_sign=True),
            own_issuer=parent is None,
        )

    def issue(
        self,
        subject: x509.Name,
        key: PrivateKey | None = None,
        *,
        ca: bool = False,
        usage: x509.KeyUsage | None = None,
        points: Sequence[x509.DistributionPoint] = (),
        freshest: Sequence[x509.DistributionPoint] = (),
        serial: int | None = None,
        own_issuer: bool = False,
        not_after: dt.datetime | None = None,
    ) -> x509.Certificate:
        public = (key or test_key("ec:p256", 399)).public_key()
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject if own_issuer else self.name)
            .public_key(public)
            .serial_number(serial if serial is not None else x509.random_serial_number())
            .not_valid_before(NOW - 30 * DAY)
            .not_valid_after(not_after or NOW + 365 * DAY)
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if usage is not None:
            builder = builder.add_extension(usage, critical=True)
        if points:
            builder = builder.add_extension(x509.CRLDistributionPoints(points), critical=False)
        if freshest:
            builder = builder.add_extension(x509.FreshestCRL(freshest), critical=False)
        signing_key = key if own_issuer and key is not None else self.key
        return builder.sign(signing_key, hashes.SHA256())  # type: ignore[arg-type]

    def crl(
        self,
        entries: Sequence[tuple[int, x509.ReasonFlags | None]] = (),
        *,
        number: int = 1,
        idp: x509.IssuingDistributionPoint | None = None,
        delta_base: int | None = None,
        this_update: dt.datetime | None = None,
        days: float = 7,
        key: PrivateKey | None = None,
        issuers: dict[int, x509.Name] | None = None,
        entry_extension: x509.Extension[x509.ExtensionType] | None = None,
    ) -> x509.CertificateRevocationList:
        """A CRL; ``issuers`` maps an entry position to the certificateIssuer it carries."""
        start = this_update or NOW - DAY
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.name)
            .last_update(start)
            .next_update(start + days * DAY)
            .add_extension(x509.CRLNumber(number), critical=False)
        )
        if idp is not None:
            builder = builder.add_extension(idp, critical=True)
        if delta_base is not None:
            builder = builder.add_extension(x509.DeltaCRLIndicator(delta_base), critical=True)
        for position, (serial, reason) in enumerate(entries):
            entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(start)
            if reason is not None:
                entry = entry.add_extension(x509.CRLReason(reason), critical=False)
            if issuers and position in issuers:
                entry = entry.add_extension(
                    x509.CertificateIssuer([x509.DirectoryName(issuers[position])]), critical=True
                )
            if entry_extension is not None:
                entry = entry.add_extension(entry_extension.value, entry_extension.critical)
            builder = builder.add_revoked_certificate(entry.build())
        return builder.sign(key or self.key, hashes.SHA256())  # type: ignore[arg-type]


def _usage(*, cert_sign: bool = False, crl_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def idp(
    *,
    full_name: list[x509.GeneralName] | None = None,
    relative: x509.RelativeDistinguishedName | None = None,
    user: bool = False,
    ca: bool = False,
    attribute: bool = False,
    reasons: frozenset[x509.ReasonFlags] | None = None,
    indirect: bool = False,
) -> x509.IssuingDistributionPoint:
    return x509.IssuingDistributionPoint(
        full_name=full_name,
        relative_name=relative,
        only_contains_user_certs=user,
        only_contains_ca_certs=ca,
        only_some_reasons=reasons,
        indirect_crl=indirect,
        only_contains_attribute_certs=attribute,
    )


def point(
    full_name: list[x509.GeneralName] | None = None,
    *,
    relative: x509.RelativeDistinguishedName | None = None,
    crl_issuer: x509.Name | None = None,
    reasons: frozenset[x509.ReasonFlags] | None = None,
) -> x509.DistributionPoint:
    return x509.DistributionPoint(
        full_name=full_name,
        relative_name=relative,
        reasons=reasons,
        crl_issuer=[x509.DirectoryName(crl_issuer)] if crl_issuer is not None else None,
    )


ROOT = Ca("Root", 300)
ISSUING = Ca("Issuing", 301, ROOT)


def check(
    cert: x509.Certificate,
    *crls: x509.CertificateRevocationList,
    issuer: Ca = ISSUING,
    certificates: Sequence[x509.Certificate] = (),
    at: dt.datetime = NOW,
    held: RevocationIndex | None = None,
    **kwargs: object,
) -> CrlStatus:
    given = [parse_crl(crl, source=f"crl{n}") for n, crl in enumerate(crls, start=1)]
    chain = [cert, issuer.cert] if issuer is ROOT else [cert, issuer.cert, ROOT.cert]
    return check_crls(
        cert,
        issuer.cert,
        at=at,
        held=held,
        given=given,
        chain=chain,
        trusted=[ROOT.cert],
        certificates=certificates,
        **kwargs,  # type: ignore[arg-type]
    )


def texts(result: CrlStatus) -> str:
    return " | ".join(c.text for c in result.checks)


# -- issuing distribution point: names --------------------------------------------------------
def test_idp_full_name_matching_a_distribution_point_is_in_scope() -> None:
    leaf = ISSUING.issue(name("dp leaf"), points=[point(uri(URL_B)), point(uri(URL_A))])
    crl = ISSUING.crl([(leaf.serial_number, KC)], number=12, idp=idp(full_name=uri(URL_A)))
    result = check(leaf, crl)
    assert result.status == "revoked"
    assert "(keyCompromise) by CRL #12 from crl1" in texts(result)


def test_idp_full_name_matching_no_distribution_point_is_out_of_scope() -> None:
    leaf = ISSUING.issue(name("dp leaf"), points=[point(uri(URL_B))])
    crl = ISSUING.crl([(leaf.serial_number, KC)], number=12, idp=idp(full_name=uri(URL_A)))
    result = check(leaf, crl)
    assert result.status == "unknown"
    assert (
        "outside the scope of CRL #12 from crl1 (its distribution point matches none of the "
        "certificate's)" in texts(result)
    )


def test_idp_relative_name_resolves_against_the_crl_issuer() -> None:
    rdn = x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, "Part 1")])
    # The certificate names the same point once as a relative name (resolved against its
    # issuer) and once as the full directory name: both match the IDP's relative name.
    full = x509.Name([*ISSUING.name.rdns, rdn])
    for dp in (point(relative=rdn), point([x509.DirectoryName(full)])):
        leaf = ISSUING.issue(name("relative leaf"), points=[dp])
        crl = ISSUING.crl([(leaf.serial_number, None)], idp=idp(relative=rdn))
        assert check(leaf, crl).status == "revoked"
    other = x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, "Part 2")])
    leaf = ISSUING.issue(name("relative leaf"), points=[point(relative=other)])
    assert check(leaf, ISSUING.crl(idp=idp(relative=rdn))).status == "unknown"


def test_certificate_without_cdp_takes_only_a_crl_without_idp_name() -> None:
    leaf = ISSUING.issue(name("no cdp"))
    assert check(leaf, ISSUING.crl()).status == "good"
    named = check(leaf, ISSUING.crl(idp=idp(full_name=uri(URL_A))))
    assert named.status == "unknown" and "outside the scope" in texts(named)
    # An IDP without a distribution point name (only a flag) still covers it.
    assert check(leaf, ISSUING.crl(idp=idp(user=True))).status == "good"


def test_crl_of_another_issuer_is_not_used_even_with_the_same_serial() -> None:
    other = Ca("Other Issuing", 302, ROOT)
    leaf = ISSUING.issue(name("leaf"), serial=4242)
    result = check(leaf, other.crl([(4242, KC)]))
    assert result.status == "not-applicable"


def test_names_compare_as_rfc5280_says() -> None:
    # The CRL spells the issuer name in another case, with extra spaces: same name.
    spelled = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "scope  TEST"),
            x509.NameAttribute(NameOID.COMMON_NAME, " issuing"),
        ]
    )
    leaf = ISSUING.issue(name("leaf"))
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(spelled)
        .last_update(NOW - DAY)
        .next_update(NOW + DAY)
        .add_extension(x509.CRLNumber(3), critical=False)
        .add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(leaf.serial_number)
            .revocation_date(NOW - DAY)
            .build()
        )
        .sign(ISSUING.key, hashes.SHA256())  # type: ignore[arg-type]
    )
    assert check(leaf, crl).status == "revoked"


# -- onlyContains* -----------------------------------------------------------------------------
def test_only_contains_ca_certs_does_not_cover_an_end_entity() -> None:
    leaf = ISSUING.issue(name("leaf"))
    result = check(leaf, ISSUING.crl(number=12, idp=idp(ca=True)))
    assert result.status == "unknown"
    assert "outside the scope of CRL #12 from crl1 (onlyContainsCACerts" in texts(result)


def test_only_contains_user_certs_does_not_cover_a_ca() -> None:
    # The certificate is a CA by its basicConstraints, wherever it stands in the chain.
    sub = ISSUING.issue(name("Sub CA"), test_key("ec:p256", 303), ca=True)
    result = check(sub, ISSUING.crl(idp=idp(user=True)))
    assert result.status == "unknown" and "(onlyContainsUserCerts" in texts(result)
    assert check(sub, ISSUING.crl(idp=idp(ca=True))).status == "good"


def test_only_contains_attribute_certs_covers_no_public_key_certificate() -> None:
    leaf = ISSUING.issue(name("leaf"))
    result = check(leaf, ISSUING.crl(idp=idp(attribute=True)))
    assert result.status == "unknown" and "(onlyContainsAttributeCerts)" in texts(result)


# -- onlySomeReasons ---------------------------------------------------------------------------
def test_reasons_add_up_over_several_crls() -> None:
    leaf = ISSUING.issue(name("leaf"))
    compromise = ISSUING.crl(number=5, idp=idp(reasons=frozenset({KC, CAC})))
    others = ISSUING.crl(number=6, idp=idp(reasons=OTHER_REASONS))
    one = check(leaf, compromise)
    assert one.status == "unknown"
    assert texts(one).endswith(
        "CRL #5 from crl1 covers only keyCompromise, cACompromise: reasons "
        "affiliationChanged, superseded, cessationOfOperation, certificateHold, "
        "privilegeWithdrawn, aACompromise not covered by any CRL"
    )
    both = check(leaf, compromise, others)
    assert both.status == "good"
    assert "CRL #5 from crl1 (keyCompromise, cACompromise) and CRL #6 from crl2" in texts(both)


def test_revocation_on_a_partial_crl_counts() -> None:
    leaf = ISSUING.issue(name("leaf"))
    crl = ISSUING.crl([(leaf.serial_number, KC)], idp=idp(reasons=frozenset({KC, CAC})))
    assert check(leaf, crl).status == "revoked"


def test_distribution_point_reasons_narrow_what_a_crl_covers() -> None:
    # The certificate says this point only serves compromise reasons: a full CRL reached
    # through it still covers only those (interim mask = IDP reasons ∩ DP reasons).
    leaf = ISSUING.issue(name("leaf"), points=[point(uri(URL_A), reasons=frozenset({KC, CAC}))])
    crl = ISSUING.crl(number=7, idp=idp(full_name=uri(URL_A)))
    result = check(leaf, crl)
    assert result.status == "unknown"
    assert "CRL #7 from crl1 covers only keyCompromise, cACompromise" in texts(result)


# -- indirect CRLs -----------------------------------------------------------------------------
AUTHORITY = Ca("CRL Authority", 304, ROOT)


def _indirect_leaf(ca: Ca = ISSUING, serial: int = 7) -> x509.Certificate:
    return ca.issue(
        name("indirect leaf"),
        points=[point(uri(URL_A), crl_issuer=AUTHORITY.name)],
        serial=serial,
    )


def test_indirect_crl_entries_belong_to_the_issuer_named_last() -> None:
    other = Ca("Other Issuing", 302, ROOT)
    leaf = _indirect_leaf()
    # Entry 0 belongs to the CRL issuer itself; entry 1 names Other Issuing, and entry 2
    # keeps that issuer; entry 3 names Issuing.
    crl = AUTHORITY.crl(
        [(7, KC), (8, KC), (9, KC), (10, KC)],
        number=20,
        idp=idp(full_name=uri(URL_A), indirect=True),
        issuers={1: other.name, 3: ISSUING.name},
    )
    signer = [AUTHORITY.cert]
    assert check(leaf, crl, certificates=signer).status == "good"  # 7 is the authority's
    for serial in (8, 9):
        assert (
            check(_indirect_leaf(other, serial), crl, issuer=other, certificates=signer).status
            == "revoked"
        )
        assert check(_indirect_leaf(ISSUING, serial), crl, certificates=signer).status == "good"
    revoked = check(_indirect_leaf(ISSUING, 10), crl, certificates=signer)
    assert revoked.status == "revoked"
    assert "by CRL #20 from crl1" in texts(revoked)


def test_indirect_crl_needs_the_indirect_flag() -> None:
    leaf = _indirect_leaf()
    crl = AUTHORITY.crl([(7, KC)], idp=idp(full_name=uri(URL_A)))
    result = check(leaf, crl, certificates=[AUTHORITY.cert])
    assert result.status == "unknown"
    assert "names this CRL issuer, but the CRL is not an indirect CRL" in texts(result)


def test_crl_of_the_certificate_issuer_is_the_fallback() -> None:
    # No distribution point leads to the issuer's own CRL, but a CRL of the certificate
    # issuer without a distribution point name covers all its certificates (RFC 5280 §6.3.3).
    leaf = _indirect_leaf()
    assert check(leaf, ISSUING.crl()).status == "good"
    assert check(leaf, ISSUING.crl([(7, KC)])).status == "revoked"
    # A CRL of another CA that is not the named CRL issuer does not (PKITS 4.14.27).
    other = Ca("Other Issuing", 302, ROOT)
    result = check(leaf, other.crl(), certificates=[other.cert])
    assert result.status == "not-applicable"


def test_indirect_crl_signer_must_chain_to_the_anchor() -> None:
    stray = Ca("CRL Authority", 305)  # same name, self-signed, not trusted
    leaf = _indirect_leaf()
    crl = stray.crl([(7, KC)], idp=idp(full_name=uri(URL_A), indirect=True))
    result = check(leaf, crl, certificates=[stray.cert])
    assert result.status == "unknown"
    assert "has no acceptable certification path to the trust anchor" in texts(result)


def test_indirect_crl_lookup_is_indexed_by_issuer_and_serial() -> None:
    crl = AUTHORITY.crl(
        [(n, None) for n in range(1, 200)], idp=idp(indirect=True), issuers={0: ISSUING.name}
    )
    indexed = parse_crl(crl, source="x")
    assert indexed.entries == 199
    assert indexed.lookup(150, revocation.name_key(ISSUING.name)) is not None
    assert indexed.lookup(150, revocation.name_key(AUTHORITY.name)) is None
    assert indexed.lookup(150) is None  # the CRL issuer's own: none after entry 0


# -- delta CRLs --------------------------------------------------------------------------------
def test_delta_is_read_first_and_names_its_base() -> None:
    leaf = ISSUING.issue(name("leaf"))
    base = ISSUING.crl(number=30)
    delta = ISSUING.crl([(leaf.serial_number, KC)], number=31, delta_base=30)
    result = check(leaf, base, delta)
    assert result.status == "revoked"
    assert "revoked on" in texts(result)
    assert "(keyCompromise) by delta CRL #31 on base #30 from crl2" in texts(result)
    good = check(ISSUING.issue(name("other")), base, delta)
    assert good.status == "good"
    assert "not revoked per CRL #30 from crl1" in texts(good) and "delta CRL #31" in texts(good)


@pytest.mark.parametrize(("base_number", "delta_base"), [(30, 31), (31, 30)])
def test_delta_applies_only_when_base_number_le_complete_lt_delta(
    base_number: int, delta_base: int
) -> None:
    leaf = ISSUING.issue(name("leaf"))
    base = ISSUING.crl(number=base_number)
    # (30, 31): the delta needs a newer base; (31, 30): the delta (#31) is not newer.
    delta = ISSUING.crl([(leaf.serial_number, KC)], number=31, delta_base=delta_base)
    assert check(leaf, base, delta).status == "good"


def test_delta_without_its_base_is_not_used() -> None:
    leaf = ISSUING.issue(name("leaf"))
    delta = ISSUING.crl([(leaf.serial_number, KC)], number=31, delta_base=30)
    result = check(leaf, delta)
    assert result.status == "unknown"
    assert "delta CRL #31 from crl1 is not used: no complete CRL it applies to" in texts(result)


def test_delta_of_another_scope_is_not_used() -> None:
    leaf = ISSUING.issue(name("leaf"))
    base = ISSUING.crl(number=30)
    delta = ISSUING.crl([(leaf.serial_number, KC)], number=31, delta_base=30, idp=idp(user=True))
    assert check(leaf, base, delta).status == "good"


def test_delta_signed_with_another_key_is_not_used() -> None:
    leaf = ISSUING.issue(name("leaf"))
    base = ISSUING.crl(number=30)
    forged = ISSUING.crl(
        [(leaf.serial_number, KC)], number=31, delta_base=30, key=test_key("ec:p256", 306)
    )
    assert check(leaf, base, forged).status == "good"


def test_remove_from_crl_in_a_delta_releases_a_hold() -> None:
    leaf = ISSUING.issue(name("leaf"))
    hold = x509.ReasonFlags.certificate_hold
    base = ISSUING.crl([(leaf.serial_number, hold)], number=30)
    assert check(leaf, base).status == "revoked"
    delta = ISSUING.crl(
        [(leaf.serial_number, x509.ReasonFlags.remove_from_crl)], number=31, delta_base=30
    )
    released = check(leaf, base, delta)
    assert released.status == "good"
    assert texts(released) == "released from hold by delta CRL #31 on base #30 from crl2"


def test_expired_base_with_a_current_delta_is_used() -> None:
    leaf = ISSUING.issue(name("leaf"))
    base = ISSUING.crl(number=30, this_update=NOW - 10 * DAY, days=7)
    assert check(leaf, base).status == "stale"
    delta = ISSUING.crl(number=31, delta_base=30)
    assert check(leaf, base, delta).status == "good"
    expired_delta = ISSUING.crl(number=31, delta_base=30, this_update=NOW - 9 * DAY, days=1)
    stale = check(leaf, base, expired_delta)
    assert stale.status == "stale"
    assert "CRL #30 from crl1 expired on" in texts(stale) and "count as revoked" in texts(stale)


def test_newest_complete_crl_of_a_scope_decides() -> None:
    leaf = ISSUING.issue(name("leaf"))
    older = ISSUING.crl([(leaf.serial_number, KC)], number=4)
    newer = ISSUING.crl(number=5)
    result = check(leaf, older, newer)
    assert result.status == "good" and "CRL #5 from crl2" in texts(result)


# -- CRL signers -------------------------------------------------------------------------------
CRL_SIGNER_KEY = 307


def _signer_certificate(usage: x509.KeyUsage) -> x509.Certificate:
    """A second certificate of the name 'Issuing' with its own key, for signing CRLs."""
    return ROOT.issue(ISSUING.name, test_key("ec:p256", CRL_SIGNER_KEY), ca=True, usage=usage)


CRL_SIGNER = _signer_certificate(_usage(crl_sign=True))
NOT_A_CRL_SIGNER = _signer_certificate(_usage())  # digitalSignature only


def _signed_by_crl_key(
    entries: Sequence[tuple[int, x509.ReasonFlags | None]] = (),
) -> x509.CertificateRevocationList:
    return ISSUING.crl(entries, key=test_key("ec:p256", CRL_SIGNER_KEY))


def test_crl_signed_by_a_separate_crl_signing_certificate() -> None:
    leaf = ISSUING.issue(name("leaf"))
    crl = _signed_by_crl_key([(leaf.serial_number, KC)])
    assert check(leaf, crl, certificates=[CRL_SIGNER]).status == "revoked"
    unknown = check(leaf, crl)  # the CRL-signing certificate is not at hand
    assert unknown.status == "unknown"
    assert "it has a bad signature: no certificate of O=Scope Test, CN=Issuing" in texts(unknown)


def test_crl_signer_needs_crl_sign_when_it_has_key_usage() -> None:
    leaf = ISSUING.issue(name("leaf"))
    result = check(leaf, _signed_by_crl_key(), certificates=[NOT_A_CRL_SIGNER])
    assert result.status == "unknown"
    assert "may not sign CRLs (its key usage lacks cRLSign)" in texts(result)


def test_crl_signer_path_is_judged_by_the_caller() -> None:
    leaf = ISSUING.issue(name("leaf"))
    crl = _signed_by_crl_key()
    asked: list[x509.Certificate] = []

    def refuse(signer: x509.Certificate) -> bool:
        asked.append(signer)
        return False

    result = check(leaf, crl, certificates=[CRL_SIGNER], signer_path_ok=refuse)
    assert result.status == "unknown" and asked == [CRL_SIGNER]
    assert "its signer O=Scope Test, CN=Issuing (serial" in texts(result)
    # The usual signer (the certificate's issuer, in the chain) needs no judgement.
    asked.clear()
    assert check(leaf, ISSUING.crl(), signer_path_ok=refuse).status == "good" and not asked


def test_default_signer_path_follows_signatures_to_the_chain_or_trusted_list() -> None:
    signer = CRL_SIGNER
    accept = chained_signer_path([ISSUING.cert, ROOT.cert], [], NOW)
    assert accept(signer)  # issued by the root, which is in the chain
    assert not chained_signer_path([ISSUING.cert], [], NOW)(signer)  # root not at hand
    assert not accept(Ca("Root", 308).cert)  # same name as the root, another key
    late = ROOT.issue(
        ISSUING.name, test_key("ec:p256", CRL_SIGNER_KEY), ca=True, not_after=NOW - DAY
    )
    assert not accept(late)  # outside its validity period


def test_crl_signed_by_a_rolled_over_key() -> None:
    # The CA's new key, certified by its old key (a self-issued certificate), signs the CRL.
    new_key = test_key("ec:p256", 309)
    rollover = ISSUING.issue(
        ISSUING.name, new_key, ca=True, usage=_usage(cert_sign=True, crl_sign=True)
    )
    leaf = ISSUING.issue(name("leaf"))
    crl = ISSUING.crl([(leaf.serial_number, KC)], key=new_key)
    assert check(leaf, crl, certificates=[rollover]).status == "revoked"


def test_signature_checked_once_per_crl_and_key(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    real = revocation._signature_valid

    def counting(*args: object) -> bool:
        calls.append(args)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(revocation, "_signature_valid", counting)
    leaf = ISSUING.issue(name("leaf"))
    held = RevocationIndex.of([parse_crl(_signed_by_crl_key(), source="held")])
    for _ in range(3):
        assert check(leaf, held=held, certificates=[CRL_SIGNER]).status == "good"
    assert len(calls) == 2  # the issuer's key (fails), the CRL-signing key (verifies)


def test_held_crls_are_found_by_issuer_name() -> None:
    signer = CRL_SIGNER
    indexed = index_crl(_signed_by_crl_key(), signer, source="held")
    held = RevocationIndex.of([indexed])
    assert held.for_issuer(ISSUING.cert) == (indexed,)  # another key, the same name
    assert check(ISSUING.issue(name("leaf")), held=held, certificates=[signer]).status == "good"


# -- the index ---------------------------------------------------------------------------------
def test_delta_and_other_scopes_do_not_replace_a_complete_crl() -> None:
    base = index_crl(ISSUING.crl(number=30), ISSUING.cert, source="a")
    delta = index_crl(ISSUING.crl(number=31, delta_base=30), ISSUING.cert, source="a")
    part = index_crl(ISSUING.crl(number=2, idp=idp(ca=True)), ISSUING.cert, source="a")
    index = RevocationIndex().with_crl(base).with_crl(delta).with_crl(part)
    assert set(index.all()) == {base, delta, part}
    newer = index_crl(ISSUING.crl(number=32), ISSUING.cert, source="a")
    assert set(index.with_crl(newer).all()) == {newer, delta, part}
    with pytest.raises(PolicyViolation, match="never go backwards"):
        index.with_crl(index_crl(ISSUING.crl(number=29), ISSUING.cert, source="b"))


def test_unknown_critical_entry_extension_refuses_the_crl() -> None:
    unknown = x509.Extension(
        x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"),
        True,
        x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x05\x00"),
    )
    crl = ISSUING.crl([(5, None), (6, None)], entry_extension=unknown)
    with pytest.raises(PolicyViolation, match=r"entry \(serial 05\) with an unknown critical"):
        parse_crl(crl, source="x")
    relaxed = x509.Extension(unknown.oid, False, unknown.value)
    assert parse_crl(ISSUING.crl([(5, None)], entry_extension=relaxed), source="x").entries == 1


# -- through validate() ------------------------------------------------------------------------
def test_validate_uses_given_delta_crls_and_explains() -> None:
    leaf = ISSUING.issue(name("leaf"), ca=False)
    policy = RevocationPolicy(ocsp=False, cdp=False, scope=Scope.PEER)
    crls = [
        ISSUING.crl(number=30),
        ISSUING.crl([(leaf.serial_number, KC)], number=31, delta_base=30),
    ]
    result = validate(
        leaf,
        [ISSUING.cert],
        trust=TrustSnapshot.of([ROOT.cert]),
        at=NOW,
        options=ValidationOptions(purpose=Purpose.CLIENT),
        policy=policy,
        crls=crls,
    )
    assert result.code == "revoked", result.reason
    assert result.reason.endswith("by delta CRL #31 on base #30 from CRL 2 given")


def test_validate_judges_a_separate_crl_signer_by_its_path_and_revocation() -> None:
    leaf = ISSUING.issue(name("leaf"))
    policy = RevocationPolicy(ocsp=False, cdp=False, require_crl=True)

    def run(root_crl: x509.CertificateRevocationList) -> tuple[bool, str]:
        result = validate(
            leaf,
            [ISSUING.cert, CRL_SIGNER],
            trust=TrustSnapshot.of([ROOT.cert]),
            at=NOW,
            options=ValidationOptions(purpose=Purpose.CLIENT),
            policy=policy,
            crls=[root_crl, _signed_by_crl_key()],
        )
        return result.valid, " | ".join(c.text for c in result.certificates[0].checks)

    valid, _ = run(ROOT.crl())
    assert valid
    valid, text = run(ROOT.crl([(CRL_SIGNER.serial_number, KC)]))
    assert not valid
    assert "has no acceptable certification path to the trust anchor of this chain" in text
    assert "it: revoked on" in text and "(keyCompromise) by CRL #1 from CRL 1 given" in text


# -- NIST PKITS --------------------------------------------------------------------------------
# (test, end entity, intermediate certificates, CRLs besides the trust anchor's, valid?):
# the outcomes of "Public Key Interoperability Test Suite Certification Path Validation"
# (NIST, 2011), sections 4.4, 4.14 and 4.15; ``openssl verify -x509_strict -crl_check_all
# -extended_crl -use_deltas`` agrees on all of them but 4.14.30 (it does not validate a CRL
# signer whose own certificate is on the CRL it signs).
PKITS = [
    ("4.4.1", "InvalidMissingCRLTest1EE", ["NoCRLCACert"], [], False),
    (
        "4.4.2",
        "InvalidRevokedCATest2EE",
        ["RevokedsubCACert", "GoodCACert"],
        ["GoodCACRL", "RevokedsubCACRL"],
        False,
    ),
    ("4.4.3", "InvalidRevokedEETest3EE", ["GoodCACert"], ["GoodCACRL"], False),
    (
        "4.4.4",
        "InvalidBadCRLSignatureTest4EE",
        ["BadCRLSignatureCACert"],
        ["BadCRLSignatureCACRL"],
        False,
    ),
    (
        "4.4.5",
        "InvalidBadCRLIssuerNameTest5EE",
        ["BadCRLIssuerNameCACert"],
        ["BadCRLIssuerNameCACRL"],
        False,
    ),
    ("4.4.6", "InvalidWrongCRLTest6EE", ["WrongCRLCACert"], ["WrongCRLCACRL"], False),
    (
        "4.4.7",
        "ValidTwoCRLsTest7EE",
        ["TwoCRLsCACert"],
        ["TwoCRLsCAGoodCRL", "TwoCRLsCABadCRL"],
        True,
    ),
    (
        "4.4.8",
        "InvalidUnknownCRLEntryExtensionTest8EE",
        ["UnknownCRLEntryExtensionCACert"],
        ["UnknownCRLEntryExtensionCACRL"],
        False,
    ),
    (
        "4.4.9",
        "InvalidUnknownCRLExtensionTest9EE",
        ["UnknownCRLExtensionCACert"],
        ["UnknownCRLExtensionCACRL"],
        False,
    ),
    (
        "4.4.10",
        "InvalidUnknownCRLExtensionTest10EE",
        ["UnknownCRLExtensionCACert"],
        ["UnknownCRLExtensionCACRL"],
        False,
    ),
    (
        "4.4.11",
        "InvalidOldCRLnextUpdateTest11EE",
        ["OldCRLnextUpdateCACert"],
        ["OldCRLnextUpdateCACRL"],
        False,
    ),
    (
        "4.4.12",
        "Invalidpre2000CRLnextUpdateTest12EE",
        ["pre2000CRLnextUpdateCACert"],
        ["pre2000CRLnextUpdateCACRL"],
        False,
    ),
    (
        "4.4.13",
        "ValidGeneralizedTimeCRLnextUpdateTest13EE",
        ["GeneralizedTimeCRLnextUpdateCACert"],
        ["GeneralizedTimeCRLnextUpdateCACRL"],
        True,
    ),
    (
        "4.4.14",
        "ValidNegativeSerialNumberTest14EE",
        ["NegativeSerialNumberCACert"],
        ["NegativeSerialNumberCACRL"],
        True,
    ),
    (
        "4.4.15",
        "InvalidNegativeSerialNumberTest15EE",
        ["NegativeSerialNumberCACert"],
        ["NegativeSerialNumberCACRL"],
        False,
    ),
    (
        "4.4.16",
        "ValidLongSerialNumberTest16EE",
        ["LongSerialNumberCACert"],
        ["LongSerialNumberCACRL"],
        True,
    ),
    (
        "4.4.17",
        "ValidLongSerialNumberTest17EE",
        ["LongSerialNumberCACert"],
        ["LongSerialNumberCACRL"],
        True,
    ),
    (
        "4.4.18",
        "InvalidLongSerialNumberTest18EE",
        ["LongSerialNumberCACert"],
        ["LongSerialNumberCACRL"],
        False,
    ),
    (
        "4.4.19",
        "ValidSeparateCertificateandCRLKeysTest19EE",
        [
            "SeparateCertificateandCRLKeysCertificateSigningCACert",
            "SeparateCertificateandCRLKeysCRLSigningCert",
        ],
        ["SeparateCertificateandCRLKeysCRL"],
        True,
    ),
    (
        "4.4.20",
        "InvalidSeparateCertificateandCRLKeysTest20EE",
        [
            "SeparateCertificateandCRLKeysCertificateSigningCACert",
            "SeparateCertificateandCRLKeysCRLSigningCert",
        ],
        ["SeparateCertificateandCRLKeysCRL"],
        False,
    ),
    (
        "4.4.21",
        "InvalidSeparateCertificateandCRLKeysTest21EE",
        [
            "SeparateCertificateandCRLKeysCA2CertificateSigningCACert",
            "SeparateCertificateandCRLKeysCA2CRLSigningCert",
        ],
        ["SeparateCertificateandCRLKeysCA2CRL"],
        False,
    ),
    (
        "4.14.1",
        "ValiddistributionPointTest1EE",
        ["distributionPoint1CACert"],
        ["distributionPoint1CACRL"],
        True,
    ),
    (
        "4.14.2",
        "InvaliddistributionPointTest2EE",
        ["distributionPoint1CACert"],
        ["distributionPoint1CACRL"],
        False,
    ),
    (
        "4.14.3",
        "InvaliddistributionPointTest3EE",
        ["distributionPoint1CACert"],
        ["distributionPoint1CACRL"],
        False,
    ),
    (
        "4.14.4",
        "ValiddistributionPointTest4EE",
        ["distributionPoint1CACert"],
        ["distributionPoint1CACRL"],
        True,
    ),
    (
        "4.14.5",
        "ValiddistributionPointTest5EE",
        ["distributionPoint2CACert"],
        ["distributionPoint2CACRL"],
        True,
    ),
    (
        "4.14.6",
        "InvaliddistributionPointTest6EE",
        ["distributionPoint2CACert"],
        ["distributionPoint2CACRL"],
        False,
    ),
    (
        "4.14.7",
        "ValiddistributionPointTest7EE",
        ["distributionPoint2CACert"],
        ["distributionPoint2CACRL"],
        True,
    ),
    (
        "4.14.8",
        "InvaliddistributionPointTest8EE",
        ["distributionPoint2CACert"],
        ["distributionPoint2CACRL"],
        False,
    ),
    (
        "4.14.9",
        "InvaliddistributionPointTest9EE",
        ["distributionPoint2CACert"],
        ["distributionPoint2CACRL"],
        False,
    ),
    (
        "4.14.10",
        "ValidNoissuingDistributionPointTest10EE",
        ["NoissuingDistributionPointCACert"],
        ["NoissuingDistributionPointCACRL"],
        True,
    ),
    (
        "4.14.11",
        "InvalidonlyContainsUserCertsTest11EE",
        ["onlyContainsUserCertsCACert"],
        ["onlyContainsUserCertsCACRL"],
        False,
    ),
    (
        "4.14.12",
        "InvalidonlyContainsCACertsTest12EE",
        ["onlyContainsCACertsCACert"],
        ["onlyContainsCACertsCACRL"],
        False,
    ),
    (
        "4.14.13",
        "ValidonlyContainsCACertsTest13EE",
        ["onlyContainsCACertsCACert"],
        ["onlyContainsCACertsCACRL"],
        True,
    ),
    (
        "4.14.14",
        "InvalidonlyContainsAttributeCertsTest14EE",
        ["onlyContainsAttributeCertsCACert"],
        ["onlyContainsAttributeCertsCACRL"],
        False,
    ),
    (
        "4.14.15",
        "InvalidonlySomeReasonsTest15EE",
        ["onlySomeReasonsCA1Cert"],
        ["onlySomeReasonsCA1compromiseCRL", "onlySomeReasonsCA1otherreasonsCRL"],
        False,
    ),
    (
        "4.14.16",
        "InvalidonlySomeReasonsTest16EE",
        ["onlySomeReasonsCA1Cert"],
        ["onlySomeReasonsCA1compromiseCRL", "onlySomeReasonsCA1otherreasonsCRL"],
        False,
    ),
    (
        "4.14.17",
        "InvalidonlySomeReasonsTest17EE",
        ["onlySomeReasonsCA2Cert"],
        ["onlySomeReasonsCA2CRL1", "onlySomeReasonsCA2CRL2"],
        False,
    ),
    (
        "4.14.18",
        "ValidonlySomeReasonsTest18EE",
        ["onlySomeReasonsCA3Cert"],
        ["onlySomeReasonsCA3compromiseCRL", "onlySomeReasonsCA3otherreasonsCRL"],
        True,
    ),
    (
        "4.14.19",
        "ValidonlySomeReasonsTest19EE",
        ["onlySomeReasonsCA4Cert"],
        ["onlySomeReasonsCA4compromiseCRL", "onlySomeReasonsCA4otherreasonsCRL"],
        True,
    ),
    (
        "4.14.20",
        "InvalidonlySomeReasonsTest20EE",
        ["onlySomeReasonsCA4Cert"],
        ["onlySomeReasonsCA4compromiseCRL", "onlySomeReasonsCA4otherreasonsCRL"],
        False,
    ),
    (
        "4.14.21",
        "InvalidonlySomeReasonsTest21EE",
        ["onlySomeReasonsCA4Cert"],
        ["onlySomeReasonsCA4compromiseCRL", "onlySomeReasonsCA4otherreasonsCRL"],
        False,
    ),
    (
        "4.14.22",
        "ValidIDPwithindirectCRLTest22EE",
        ["indirectCRLCA1Cert"],
        ["indirectCRLCA1CRL"],
        True,
    ),
    (
        "4.14.23",
        "InvalidIDPwithindirectCRLTest23EE",
        ["indirectCRLCA1Cert"],
        ["indirectCRLCA1CRL"],
        False,
    ),
    (
        "4.14.24",
        "ValidIDPwithindirectCRLTest24EE",
        ["indirectCRLCA1Cert", "indirectCRLCA2Cert"],
        ["indirectCRLCA1CRL"],
        True,
    ),
    (
        "4.14.25",
        "ValidIDPwithindirectCRLTest25EE",
        ["indirectCRLCA1Cert", "indirectCRLCA2Cert"],
        ["indirectCRLCA1CRL"],
        True,
    ),
    (
        "4.14.26",
        "InvalidIDPwithindirectCRLTest26EE",
        ["indirectCRLCA1Cert", "indirectCRLCA2Cert"],
        ["indirectCRLCA1CRL"],
        False,
    ),
    (
        "4.14.27",
        "InvalidcRLIssuerTest27EE",
        ["GoodCACert", "indirectCRLCA2Cert"],
        ["GoodCACRL"],
        False,
    ),
    (
        "4.14.28",
        "ValidcRLIssuerTest28EE",
        ["indirectCRLCA3Cert", "indirectCRLCA3cRLIssuerCert"],
        ["indirectCRLCA3CRL", "indirectCRLCA3cRLIssuerCRL"],
        True,
    ),
    (
        "4.14.29",
        "ValidcRLIssuerTest29EE",
        ["indirectCRLCA3Cert", "indirectCRLCA3cRLIssuerCert"],
        ["indirectCRLCA3CRL", "indirectCRLCA3cRLIssuerCRL"],
        True,
    ),
    (
        "4.14.30",
        "ValidcRLIssuerTest30EE",
        ["indirectCRLCA4Cert", "indirectCRLCA4cRLIssuerCert"],
        ["indirectCRLCA4cRLIssuerCRL"],
        True,
    ),
    (
        "4.14.31",
        "InvalidcRLIssuerTest31EE",
        ["indirectCRLCA5Cert", "indirectCRLCA6Cert"],
        ["indirectCRLCA5CRL"],
        False,
    ),
    (
        "4.14.32",
        "InvalidcRLIssuerTest32EE",
        ["indirectCRLCA5Cert", "indirectCRLCA6Cert"],
        ["indirectCRLCA5CRL"],
        False,
    ),
    (
        "4.14.33",
        "ValidcRLIssuerTest33EE",
        ["indirectCRLCA5Cert", "indirectCRLCA6Cert"],
        ["indirectCRLCA5CRL"],
        True,
    ),
    ("4.14.34", "InvalidcRLIssuerTest34EE", ["indirectCRLCA5Cert"], ["indirectCRLCA5CRL"], False),
    ("4.14.35", "InvalidcRLIssuerTest35EE", ["indirectCRLCA5Cert"], ["indirectCRLCA5CRL"], False),
    (
        "4.15.1",
        "InvaliddeltaCRLIndicatorNoBaseTest1EE",
        ["deltaCRLIndicatorNoBaseCACert"],
        ["deltaCRLIndicatorNoBaseCACRL"],
        False,
    ),
    (
        "4.15.2",
        "ValiddeltaCRLTest2EE",
        ["deltaCRLCA1Cert"],
        ["deltaCRLCA1CRL", "deltaCRLCA1deltaCRL"],
        True,
    ),
    (
        "4.15.3",
        "InvaliddeltaCRLTest3EE",
        ["deltaCRLCA1Cert"],
        ["deltaCRLCA1CRL", "deltaCRLCA1deltaCRL"],
        False,
    ),
    (
        "4.15.4",
        "InvaliddeltaCRLTest4EE",
        ["deltaCRLCA1Cert"],
        ["deltaCRLCA1CRL", "deltaCRLCA1deltaCRL"],
        False,
    ),
    (
        "4.15.5",
        "ValiddeltaCRLTest5EE",
        ["deltaCRLCA1Cert"],
        ["deltaCRLCA1CRL", "deltaCRLCA1deltaCRL"],
        True,
    ),
    (
        "4.15.6",
        "InvaliddeltaCRLTest6EE",
        ["deltaCRLCA1Cert"],
        ["deltaCRLCA1CRL", "deltaCRLCA1deltaCRL"],
        False,
    ),
    (
        "4.15.7",
        "ValiddeltaCRLTest7EE",
        ["deltaCRLCA1Cert"],
        ["deltaCRLCA1CRL", "deltaCRLCA1deltaCRL"],
        True,
    ),
    (
        "4.15.8",
        "ValiddeltaCRLTest8EE",
        ["deltaCRLCA2Cert"],
        ["deltaCRLCA2CRL", "deltaCRLCA2deltaCRL"],
        True,
    ),
    (
        "4.15.9",
        "InvaliddeltaCRLTest9EE",
        ["deltaCRLCA2Cert"],
        ["deltaCRLCA2CRL", "deltaCRLCA2deltaCRL"],
        False,
    ),
    (
        "4.15.10",
        "InvaliddeltaCRLTest10EE",
        ["deltaCRLCA3Cert"],
        ["deltaCRLCA3CRL", "deltaCRLCA3deltaCRL"],
        False,
    ),
]
PKITS_AT = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)  # PKITS 2011 is valid 2010-2030


def _pkits_dir() -> Path:
    spec = importlib.util.find_spec("cryptography_vectors")
    if spec is None or spec.origin is None:
        pytest.skip("cryptography_vectors is not installed (pip install -e '.[test]')")
    return Path(spec.origin).parent / "x509" / "PKITS_data"


def _issued(cert: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(parent)
    except (ValueError, TypeError, Exception):  # InvalidSignature and friends
        return False
    return True


class PkitsRun:
    """One PKITS test: the chain built by name and signature, every link checked with
    ``check_crls``; a CRL signer outside the chain gets its own path built and checked the
    same way (revocation included), as RFC 5280 §6.3.3 (f) asks."""

    def __init__(self, ee: str, others: list[str], crls: list[str]) -> None:
        data = _pkits_dir()

        def cert(file: str) -> x509.Certificate:
            return x509.load_der_x509_certificate((data / "certs" / f"{file}.crt").read_bytes())

        self.root = cert("TrustAnchorRootCertificate")
        self.others = [cert(f) for f in others]
        self.ee = cert(ee)
        self.crls: list[IndexedCrl] = []
        self.refused: list[str] = []
        for file in ["TrustAnchorRootCRL", *crls]:
            loaded = x509.load_der_x509_crl((data / "crls" / f"{file}.crl").read_bytes())
            try:
                self.crls.append(parse_crl(loaded, source=file))
            except PolicyViolation as exc:
                self.refused.append(str(exc))
        self.checks: list[str] = []

    def chain_of(self, cert: x509.Certificate) -> list[x509.Certificate] | None:
        chain = [cert]
        while chain[-1] != self.root:
            top = chain[-1]
            parent = next(
                (
                    p
                    for p in [*self.others, self.root]
                    if p.subject == top.issuer and p not in chain and _issued(top, p)
                ),
                None,
            )
            if parent is None:
                return None
            chain.append(parent)
        return chain

    def status(
        self, chain: list[x509.Certificate], checking: frozenset[x509.Certificate] = frozenset()
    ) -> str:
        default = chained_signer_path(chain, self.others, PKITS_AT)

        def signer_ok(signer: x509.Certificate) -> bool:
            if signer in checking:  # a CRL signer on the CRL it signs (4.14.30)
                return True
            path = self.chain_of(signer)
            return (
                default(signer)
                and path is not None
                and self.status(path, checking | {signer}) == "good"
            )

        for index in range(len(chain) - 1):
            result = check_crls(
                chain[index],
                chain[index + 1],
                at=PKITS_AT,
                given=self.crls,
                chain=chain,
                trusted=[self.root],
                certificates=self.others,
                signer_path_ok=signer_ok,
            )
            self.checks += [c.text for c in result.checks]
            if result.status != "good":
                return result.status
        return "good"


@pytest.mark.filterwarnings("ignore:Parsed a serial number which wasn't positive")
@pytest.mark.parametrize(
    ("ee", "others", "crls", "valid"),
    [pytest.param(*case[1:], id=case[0]) for case in PKITS],
)
def test_pkits(ee: str, others: list[str], crls: list[str], valid: bool) -> None:
    run = PkitsRun(ee, others, crls)
    chain = run.chain_of(run.ee)
    assert chain is not None, "the PKITS path does not build"
    status = run.status(chain)
    assert (status == "good") is valid, (status, run.refused, run.checks)


def test_pkits_explanations_name_the_crl_and_the_reason() -> None:
    def explain(ee: str, others: list[str], crls: list[str]) -> str:
        run = PkitsRun(ee, others, crls)
        chain = run.chain_of(run.ee)
        assert chain is not None
        run.status(chain)
        return " | ".join([*run.refused, *run.checks])

    cases = {case[0]: case[1:4] for case in PKITS}
    assert (
        "outside the scope of CRL #1 from onlyContainsCACertsCACRL (onlyContainsCACerts"
        in explain(*cases["4.14.12"])
    )
    assert "by delta CRL #5 on base #1 from deltaCRLCA1deltaCRL" in explain(*cases["4.15.4"])
    assert "released from hold by delta CRL #5 on base #1" in explain(*cases["4.15.5"])
    assert (
        "covers only affiliationChanged, superseded; CRL #1 from onlySomeReasonsCA2CRL2 covers only"
        in explain(*cases["4.14.17"])
    )
    assert "with an unknown critical extension" in explain(*cases["4.4.8"])
    assert "has no acceptable certification path" in explain(*cases["4.4.21"])
