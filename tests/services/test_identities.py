"""The node's certificates (SC1-SC6, DC1): every SC4 error refused with its own message and
nothing changed, every warning accepted with its text, upload formats and chains, the one
pending CSR, history and restore, the client certificate, domains and SNI lookup, audit."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certway.clock import FixedClock
from certway.errors import Conflict, DecodeError, NotFound, PassphraseError, PolicyViolation
from certway.pki.csr import SubjectFields
from certway.pki.keys import PrivateKey, private_key_der, private_key_pem
from certway.services.audit import Actor, acting_as
from certway.services.identities import CsrOptions
from certway.services.node import Node
from certway.store.repositories import KeyRepository, SlotRepository

from conftest import NOW, key_pem, store_snapshot, test_key
from pkitools import Pki

DAY = dt.timedelta(days=1)
FQDN = "vcs.example.com"
SERVER = ExtendedKeyUsageOID.SERVER_AUTH
CLIENT = ExtendedKeyUsageOID.CLIENT_AUTH
EC = CsrOptions(key_type="ec:p256")


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki("Ext", index=300)


@pytest.fixture(scope="module")
def other() -> Pki:
    """A CA the node does not trust."""
    return Pki("Stranger", index=310)


@pytest.fixture
def node(tmp_path: Path, clock: FixedClock, pki: Pki, node_database: str | None) -> Iterator[Node]:
    n = Node.init(tmp_path / "data", clock, fqdn=FQDN, database=node_database)
    n.trusted_cas.add(pem(pki.root))
    try:
        yield n
    finally:
        n.close()


def build(
    pki: Pki,
    key: PrivateKey | None = None,
    *,
    cn: str | None = FQDN,
    sans: Sequence[str] | None = (FQDN,),
    not_before: dt.datetime = NOW - DAY,
    not_after: dt.datetime = NOW + 90 * DAY,
    eku: Sequence[x509.ObjectIdentifier] | None = (SERVER, CLIENT),
    extra_subject: Sequence[x509.NameAttribute[str]] = (),
    ca: bool = False,
) -> x509.Certificate:
    """A certificate from the issuing CA of ``pki``, with any of the properties SC4 checks."""
    attributes = [*extra_subject]
    if cn is not None:
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    builder = (
        x509.CertificateBuilder()
        .issuer_name(pki.intermediate.subject)
        .subject_name(x509.Name(attributes))
        .public_key((key or pki.leaf_key).public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(pki.int_issuer.authority_key_identifier, critical=False)
    )
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), critical=False
        )
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    return builder.sign(pki.int_key, hashes.SHA256())


def sha1_signed(pki: Pki) -> x509.Certificate:
    """The same certificate signed with ECDSA-SHA1. cryptography no longer signs certificates
    with SHA-1, so the TBS is re-signed with the low-level API and reassembled with asn1crypto."""
    from asn1crypto import x509 as asn1_x509

    cert = asn1_x509.Certificate.load(build(pki).public_bytes(serialization.Encoding.DER))
    algorithm = asn1_x509.SignedDigestAlgorithm({"algorithm": "sha1_ecdsa"})
    tbs = cert["tbs_certificate"]
    tbs["signature"] = algorithm
    tbs_der = tbs.dump(force=True)
    assert isinstance(pki.int_key, ec.EllipticCurvePrivateKey)
    signature = pki.int_key.sign(tbs_der, ec.ECDSA(hashes.SHA1()))  # noqa: S303
    rebuilt = asn1_x509.Certificate(
        {"tbs_certificate": tbs, "signature_algorithm": algorithm, "signature_value": signature}
    )
    return x509.load_der_x509_certificate(rebuilt.dump(force=True))


def upload(
    node: Node,
    cert: x509.Certificate | bytes,
    pki: Pki | None = None,
    *,
    kind: str = "server",
    name: str = "",
    key: PrivateKey | None = None,
    chain: bytes | None = None,
) -> list[str]:
    data = cert if isinstance(cert, bytes) else pem(cert)
    if chain is None and pki is not None:
        chain = pem(pki.intermediate)
    the_key = key or (pki.leaf_key if pki is not None else None)
    result = node.identities.upload(
        kind,  # type: ignore[arg-type]
        name,
        data,
        chain_data=chain,
        key_data=key_pem(the_key) if the_key is not None else None,
    )
    return result.warnings


def active_fingerprint(node: Node, kind: str = "server", name: str = "") -> str:
    return node.identities.info(kind, name).fingerprint  # type: ignore[arg-type]


# --------------------------------------------------------------------------- SC4 errors


@pytest.fixture(scope="module")
def rsa1024() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 1024)


ERRORS = [
    "wrong-key",
    "expired",
    "wildcard-cn",
    "wildcard-san",
    "sha1",
    "rsa-1024",
    "garbage",
    "ca-certificate",
    "missing-server-auth",
]


@pytest.mark.parametrize("case", ERRORS)
def test_each_error_is_refused_with_its_own_message_and_nothing_changes(
    node: Node, pki: Pki, rsa1024: rsa.RSAPrivateKey, case: str
) -> None:
    key: PrivateKey = pki.leaf_key
    data: bytes
    if case == "wrong-key":
        data, key = pem(build(pki)), test_key("ec:p256", 399)
        error, code, message = PolicyViolation, "key-mismatch", "does not match"
    elif case == "expired":
        data = pem(build(pki, not_before=NOW - 100 * DAY, not_after=NOW - DAY))
        error, code = PolicyViolation, "expired"
        message = f"the certificate expired on {NOW - DAY:%Y-%m-%d %H:%M} UTC"
    elif case == "wildcard-cn":
        data = pem(build(pki, cn="*.example.com"))
        error, code, message = PolicyViolation, "wildcard", "'*.example.com'"
    elif case == "wildcard-san":
        data = pem(build(pki, sans=[FQDN, "*.vcs.example.com"]))
        error, code, message = PolicyViolation, "wildcard", "'*.vcs.example.com'"
    elif case == "sha1":
        data = pem(sha1_signed(pki))
        error, code, message = PolicyViolation, "weak-signature", "signed with SHA1"
    elif case == "rsa-1024":
        data, key = pem(build(pki, rsa1024)), rsa1024
        error, code, message = PolicyViolation, "weak-key", "RSA key of 1024 bits is too weak"
    elif case == "garbage":
        data = b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"
        error, code, message = DecodeError, None, "not a certificate"
    elif case == "ca-certificate":
        data = pem(build(pki, ca=True))
        error, code, message = PolicyViolation, "is-ca", "CA certificate"
    else:
        data = pem(build(pki, eku=[CLIENT]))
        error, code, message = PolicyViolation, "missing-server-auth", "lacks serverAuth"
    before = store_snapshot(node.store.data_dir)
    fp = active_fingerprint(node)
    with pytest.raises(error) as caught:
        node.identities.upload("server", "", data, key_data=key_pem(key))
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    if code is not None:
        assert caught.value.code == code  # type: ignore[attr-defined]
    assert store_snapshot(node.store.data_dir) == before
    assert active_fingerprint(node) == fp
    assert node.identities.info("server").version == 1


def test_every_error_message_is_distinct(pki: Pki) -> None:
    """Guards the 'its own message' promise: no two SC4 errors say the same thing."""
    from certway.pki.checks import check_node_certificate

    key = pki.leaf_key
    messages = set()
    for cert in (
        build(pki, not_before=NOW - 100 * DAY, not_after=NOW - DAY),
        build(pki, cn="*.example.com"),
        sha1_signed(pki),
        build(pki, ca=True),
        build(pki, eku=[CLIENT]),
        build(pki, eku=[SERVER]),
    ):
        with pytest.raises(PolicyViolation) as caught:
            check_node_certificate(cert, key, at=NOW, require_client_auth=True)
        messages.add(caught.value.code)
    assert len(messages) == 6


def test_missing_client_auth_refused_when_clustered(node: Node, pki: Pki) -> None:
    cert = build(pki, eku=[SERVER])
    node.settings.set(cluster_fqdn="vcs-cluster.example.com")
    before = store_snapshot(node.store.data_dir)
    with pytest.raises(PolicyViolation) as caught:
        upload(node, cert, pki)
    assert caught.value.code == "missing-client-auth"
    assert "mutual TLS (SIP TLS, clustering, zones) needs" in str(caught.value)
    assert store_snapshot(node.store.data_dir) == before
    # Without a mutual-TLS feature the same certificate is fine.
    node.settings.set(cluster_fqdn="")
    assert upload(node, cert, pki) == []
    assert node.identities.info("server").version == 2


def test_missing_client_auth_refused_for_the_client_certificate(node: Node, pki: Pki) -> None:
    before = store_snapshot(node.store.data_dir)
    with pytest.raises(PolicyViolation) as caught:
        upload(node, build(pki, eku=[SERVER]), pki, kind="client")
    assert caught.value.code == "missing-client-auth"
    assert store_snapshot(node.store.data_dir) == before
    assert node.identities.info("client").source == "server certificate (default)"


def test_key_upload_refused_while_a_csr_is_pending(node: Node, pki: Pki) -> None:
    node.identities.generate_csr("server", "", EC)
    before = store_snapshot(node.store.data_dir)
    with pytest.raises(PolicyViolation) as caught:
        upload(node, build(pki), pki)
    assert caught.value.code == "csr-pending"
    assert "a CSR is pending" in str(caught.value)
    assert store_snapshot(node.store.data_dir) == before
    assert node.identities.pending_csr("server") is not None


def test_no_key_at_all_is_refused(node: Node, pki: Pki) -> None:
    """The client certificate has no CSR: without a key the refusal asks for the key."""
    with pytest.raises(PolicyViolation) as caught:
        node.identities.upload("client", "", pem(build(pki)))
    assert caught.value.code == "no-key"
    assert str(caught.value) == (
        "no private key was given: upload the certificate with its private key"
    )


def test_wrong_passphrase_and_garbage_chain_refused(node: Node, pki: Pki, tmp_path: Path) -> None:
    before = store_snapshot(node.store.data_dir)
    encrypted = private_key_pem(pki.leaf_key, b"right horse")
    with pytest.raises(PassphraseError):
        node.identities.upload(
            "server", "", pem(build(pki)), key_data=encrypted, passphrase=b"wrong"
        )
    with pytest.raises(DecodeError):
        node.identities.upload(
            "server", "", pem(build(pki)), chain_data=b"junk", key_data=key_pem(pki.leaf_key)
        )
    assert store_snapshot(node.store.data_dir) == before


# --------------------------------------------------------------------------- SC4 warnings


@pytest.fixture(scope="module")
def big_rsa() -> rsa.RSAPrivateKey:
    # Any size over 4096 bits takes the same path; 4608 bits keeps the suite fast
    # (an 8192-bit key takes 5-20 s to generate).
    return rsa.generate_private_key(65537, 4608)


WARNINGS = [
    ("not-yet-valid", "is not valid before"),
    ("no-cn", "the certificate has no common name (CN): some peers need one"),
    ("large-key", "RSA key of 4608 bits: keys over 4096 bits break some SIP peers"),
    ("after-2050", "the certificate expires in 2051, after 2050"),
    ("untrusted-chain", "the chain does not lead to a CA in the trusted CA list"),
    ("unusual-subject", "the subject holds attributes outside the usual set: title"),
]


@pytest.mark.parametrize(("case", "text"), WARNINGS)
def test_each_warning_is_accepted_with_its_text(
    node: Node, pki: Pki, other: Pki, big_rsa: rsa.RSAPrivateKey, case: str, text: str
) -> None:
    issuer = pki
    key: PrivateKey = pki.leaf_key
    if case == "not-yet-valid":
        cert = build(pki, not_before=NOW + 2 * DAY)
    elif case == "no-cn":
        cert = build(pki, cn=None)
    elif case == "large-key":
        cert, key = build(pki, big_rsa), big_rsa
    elif case == "after-2050":
        cert = build(pki, not_after=dt.datetime(2051, 6, 1, tzinfo=dt.UTC))
    elif case == "untrusted-chain":
        issuer = other
        cert, key = build(other), other.leaf_key
    else:
        cert = build(pki, extra_subject=[x509.NameAttribute(NameOID.TITLE, "Edge")])
    warnings = upload(node, cert, issuer, key=key)
    assert any(text in w for w in warnings), warnings
    info = node.identities.info("server")
    assert info.version == 2 and info.fingerprint == active_fingerprint(node)
    assert info.warnings == warnings
    # A clean certificate gives no warning at all (so each one above has its cause).
    assert upload(node, build(pki), pki) == []


# --------------------------------------------------------------------------- formats, chains


@pytest.mark.parametrize("form", ["pem", "der", "pkcs7-der", "pkcs7-pem"])
def test_upload_formats(node: Node, pki: Pki, form: str) -> None:
    cert = build(pki)
    data = {
        "pem": pem(cert),
        "der": cert.public_bytes(serialization.Encoding.DER),
        "pkcs7-der": pkcs7.serialize_certificates([cert], serialization.Encoding.DER),
        "pkcs7-pem": pkcs7.serialize_certificates([cert], serialization.Encoding.PEM),
    }[form]
    assert upload(node, data, pki) == []
    info = node.identities.info("server")
    assert info.version == 2 and info.chain == ["CN=Ext Issuing"]


def test_chain_from_the_bundle_in_any_order(node: Node, pki: Pki) -> None:
    cert = build(pki)
    bundle = pem(pki.intermediate, cert)  # intermediate first: the leaf is found anyway
    node.identities.upload("server", "", bundle, key_data=key_pem(pki.leaf_key))
    assert node.identities.info("server").chain == ["CN=Ext Issuing"]
    p7 = pkcs7.serialize_certificates([pki.intermediate, build(pki)], serialization.Encoding.DER)
    node.identities.upload("server", "", p7)  # the active key matches: no key needed
    info = node.identities.info("server")
    assert info.version == 3 and info.chain == ["CN=Ext Issuing"]


def test_chain_from_a_separate_file_drops_the_root(node: Node, pki: Pki) -> None:
    upload(node, build(pki), pki, chain=pem(pki.intermediate, pki.root))
    info = node.identities.info("server")
    assert info.chain == ["CN=Ext Issuing"]
    served = x509.load_pem_x509_certificates(info.pem.encode())
    assert served[1:] == [pki.intermediate]


def test_chain_completed_from_the_trusted_list(node: Node, pki: Pki) -> None:
    node.trusted_cas.add(pem(pki.intermediate))
    warnings = node.identities.upload(
        "server", "", pem(build(pki)), key_data=key_pem(pki.leaf_key)
    ).warnings
    assert warnings == []
    active = node.identities.active("server")
    assert active is not None and active.chain == (pki.intermediate,)


# --------------------------------------------------------------------------- CSR (SC2, SC3)


def sign_csr(pki: Pki, csr_pem: str, *, days: int = 90) -> x509.Certificate:
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return pki.int_issuer.issue(
        csr.public_key(),  # type: ignore[arg-type]
        csr.subject,
        alt_names=list(sans),
        not_before=NOW - DAY,
        not_after=NOW + days * DAY,
    )


def test_one_pending_csr_then_discard(node: Node) -> None:
    options = CsrOptions(
        key_type="ec:p256",
        add_san=("alt.example.com",),
        subject=SubjectFields(country="GB", organization="Acme"),
    )
    pending = node.identities.generate_csr("server", "", options)
    assert pending.common_name == FQDN
    assert pending.alt_names == [f"DNS:{FQDN}", "DNS:alt.example.com"]
    assert pending.key == "ECDSA P-256"
    csr = x509.load_pem_x509_csr(pending.pem.encode())
    eku = csr.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [SERVER, CLIENT]
    before = store_snapshot(node.store.data_dir)
    with pytest.raises(Conflict, match="a CSR is already pending for the server certificate"):
        node.identities.generate_csr("server", "", EC)
    assert store_snapshot(node.store.data_dir) == before
    # The pending CSR does not disturb the active certificate.
    assert node.identities.info("server").version == 1
    node.identities.discard_csr("server")
    assert node.identities.pending_csr("server") is None
    with pytest.raises(NotFound, match="no CSR is pending"):
        node.identities.discard_csr("server")
    assert node.identities.generate_csr("server", "", EC).common_name == FQDN


def test_csr_refusals(node: Node) -> None:
    with pytest.raises(PolicyViolation, match="client certificate is uploaded"):
        node.identities.generate_csr("client", "", EC)
    with pytest.raises(PolicyViolation, match="needs a cluster FQDN"):
        node.identities.generate_csr("server", "", CsrOptions(cn="cluster", key_type="ec:p256"))
    with pytest.raises(PolicyViolation, match="wildcard"):
        node.identities.generate_csr("server", "", CsrOptions(add_san=("*.example.com",)))
    assert node.identities.pending_csr("server") is None


def test_csr_key_sealed_and_used_by_the_upload(node: Node, pki: Pki) -> None:
    pending = node.identities.generate_csr("server", "", EC)
    store = node.store
    with store.transaction() as session:
        slot = SlotRepository(session).get("server")
        assert slot is not None and slot.pending_key_id is not None
        key_id = slot.pending_key_id
        key = KeyRepository(session, store.vault).get(key_id)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    on_disk = b"".join(p.read_bytes() for p in store.data_dir.glob("certway.db*"))
    scalar = key.private_numbers().private_value.to_bytes(32, "big")
    assert private_key_der(key) not in on_disk and scalar not in on_disk
    assert key_pem(key) not in on_disk
    assert "PRIVATE" not in json.dumps(pending.as_dict())

    signed = pem(sign_csr(pki, pending.pem))
    warnings = node.identities.upload(
        "server", "", signed, chain_data=pem(pki.intermediate)
    ).warnings
    assert warnings == []
    assert node.identities.pending_csr("server") is None
    active = node.identities.active("server")
    assert active is not None and active.key_id == key_id and active.version == 2
    assert node.identities.private_key(active).public_key() == key.public_key()
    assert node.identities.info("server").temporary is False


CSR_MISMATCH = (
    "the certificate does not match the pending CSR (its public key is not the CSR's): upload "
    "the certificate signed from that CSR, or, if the certificate was made elsewhere, discard "
    "the CSR and upload the certificate with its private key"
)


@pytest.mark.parametrize(("kind", "name"), [("server", ""), ("domain", "example.org")])
def test_certificate_not_made_from_the_pending_csr_is_refused_as_such(
    node: Node, pki: Pki, kind: str, name: str
) -> None:
    """No key was given: the refusal speaks of the pending CSR, not of a private key."""
    if kind == "domain":
        node.identities.add_domain(name)
    node.identities.generate_csr(kind, name, EC)  # type: ignore[arg-type]
    before = store_snapshot(node.store.data_dir)
    with pytest.raises(PolicyViolation) as caught:
        node.identities.upload(kind, name, pem(build(pki)))  # type: ignore[arg-type]
    assert (caught.value.code, str(caught.value)) == ("csr-mismatch", CSR_MISMATCH)
    assert store_snapshot(node.store.data_dir) == before
    assert node.identities.pending_csr(kind, name) is not None  # type: ignore[arg-type]
    # the checks before the key's keep their own message: a CA certificate is one
    with pytest.raises(PolicyViolation) as caught:
        node.identities.upload(kind, name, pem(build(pki, ca=True)))  # type: ignore[arg-type]
    assert caught.value.code == "is-ca"


# --------------------------------------------------------------------------- history, restore


def test_history_and_restore(node: Node, pki: Pki, clock: FixedClock) -> None:
    short = build(pki, not_after=NOW + 10 * DAY)
    upload(node, short, pki)
    upload(node, build(pki, sans=[FQDN, "v3.example.com"]), pki)
    history = node.identities.history("server")
    assert [(v.version, v.source, v.active) for v in history] == [
        (1, "factory", False),
        (2, "upload", False),
        (3, "upload", True),
    ]
    restored = node.identities.restore("server", "", 2)
    assert (
        restored.version == 4
        and restored.fingerprint == short.fingerprint(hashes.SHA256()).hex(":").upper()
    )
    assert node.identities.history("server")[-1].source == "restore of version 2"
    with pytest.raises(Conflict, match="already active"):
        node.identities.restore("server", "", 4)
    with pytest.raises(NotFound, match="no version 9"):
        node.identities.restore("server", "", 9)
    clock.advance(dt.timedelta(days=11))
    before = store_snapshot(node.store.data_dir)
    with pytest.raises(PolicyViolation, match=r"version 2 expired on .*: it cannot be restored"):
        node.identities.restore("server", "", 2)
    assert store_snapshot(node.store.data_dir) == before
    assert node.identities.restore("server", "", 3).version == 5


# --------------------------------------------------------------------------- client (SC6)


def test_client_certificate_defaults_copies_and_uploads(node: Node, pki: Pki) -> None:
    server = node.identities.info("server")
    client = node.identities.info("client")
    assert client.fingerprint == server.fingerprint
    assert client.source == "server certificate (default)"
    assert node.identities.history("client") == []
    # A pure client certificate (clientAuth only) is fine for the client slot.
    upload(node, build(pki, eku=[CLIENT], cn="vcs-client.example.com"), pki, kind="client")
    client = node.identities.info("client")
    assert client.version == 1 and client.subject == "CN=vcs-client.example.com"
    assert node.identities.info("server").fingerprint == server.fingerprint
    copied = node.identities.copy_server_to_client()
    assert copied.fingerprint == server.fingerprint and copied.version == 2
    assert copied.source == "copy of server certificate"
    # The server certificate without clientAuth cannot be copied over.
    upload(node, build(pki, eku=[SERVER]), pki)
    with pytest.raises(PolicyViolation) as caught:
        node.identities.copy_server_to_client()
    assert caught.value.code == "missing-client-auth"
    assert node.identities.info("client").fingerprint == server.fingerprint


# --------------------------------------------------------------------------- domains (DC1)


def test_domains_add_list_remove(node: Node) -> None:
    assert node.identities.add_domain("Example.ORG.").name == "example.org"
    node.identities.add_domain("b.example.net")
    assert [d.name for d in node.identities.domains()] == ["b.example.net", "example.org"]
    with pytest.raises(Conflict, match="already exists"):
        node.identities.add_domain("example.org")
    node.identities.remove_domain("EXAMPLE.org")
    assert [d.name for d in node.identities.domains()] == ["b.example.net"]
    with pytest.raises(NotFound):
        node.identities.remove_domain("example.org")
    with pytest.raises(NotFound, match=re.escape("no domain 'example.org'")):
        node.identities.info("domain", "example.org")


@pytest.mark.parametrize(
    "bad", ["localhost", "*.example.com", "exa mple.com", "-x.example.com", ""]
)
def test_bad_domain_names_refused(node: Node, bad: str) -> None:
    before = store_snapshot(node.store.data_dir)
    with pytest.raises(PolicyViolation):
        node.identities.add_domain(bad)
    assert store_snapshot(node.store.data_dir) == before


def test_domain_csr_upload_and_sni(node: Node, pki: Pki, tmp_path: Path) -> None:
    node.identities.add_domain("example.org")
    node.identities.add_domain("example.net")
    pending = node.identities.generate_csr("domain", "example.org", EC)
    assert pending.common_name == "example.org"
    assert pending.alt_names == ["DNS:example.org", "DNS:vcs.example.org"]
    assert [d.pending_csr for d in node.identities.domains()] == [False, True]
    cert = sign_csr(pki, pending.pem)
    node.identities.upload("domain", "example.org", pem(cert, pki.intermediate))
    info = node.identities.info("domain", "example.org")
    assert info.subject == "CN=example.org" and info.chain == ["CN=Ext Issuing"]
    [_, org] = node.identities.domains()
    assert org.has_certificate and org.subject == "CN=example.org" and not org.pending_csr

    server = node.identities.active("server")
    sni = node.identities.certificate_for_sni
    for name in ("example.org", "vcs.example.org", "EXAMPLE.Org", "vcs.example.org."):
        found = sni(name)
        assert found is not None and found.certificate == cert, name
    for name in ("other.example.org", "example.net", "vcs.example.net", "example.com", "", None):
        found = sni(name)
        assert found is not None and found.certificate == server.certificate, name  # type: ignore[union-attr]

    # A second node on the same data directory changes things: the lookup follows.
    second = Node.open(node.store.data_dir, FixedClock(NOW))
    try:
        net = second.identities.generate_csr("domain", "example.net", EC)
        net_cert = sign_csr(pki, net.pem)
        second.identities.upload("domain", "example.net", pem(net_cert))
        found = sni("vcs.example.net")
        assert found is not None and found.certificate == net_cert
        second.identities.remove_domain("example.org")
        found = sni("example.org")
        assert found is not None and found.certificate == server.certificate  # type: ignore[union-attr]
        replacement = build(pki)
        second.identities.upload("server", "", pem(replacement), key_data=key_pem(pki.leaf_key))
        found = sni("unknown.example.com")
        assert found is not None and found.certificate == replacement
    finally:
        second.close()


def test_domain_detail_before_and_after_its_certificate(node: Node, pki: Pki) -> None:
    node.identities.add_domain("example.org")
    fresh = node.identities.domain_detail("Example.ORG.")
    assert (fresh.name, fresh.certificate, fresh.pending_csr) == ("example.org", None, None)
    assert fresh.as_dict() == {
        "kind": "domain", "name": "example.org", "has_certificate": False, "pending_csr": None,
    }  # fmt: skip
    pending = node.identities.generate_csr("domain", "example.org", EC)
    waiting = node.identities.domain_detail("example.org")
    assert not waiting.has_certificate and waiting.pending_csr == pending
    assert waiting.as_dict(with_text=True)["pending_csr"] == pending.as_dict()

    node.identities.upload("domain", "example.org", pem(sign_csr(pki, pending.pem)))
    issued = node.identities.domain_detail("example.org")
    info = node.identities.info("domain", "example.org")
    assert issued.certificate == info and issued.pending_csr is None
    assert issued.as_dict() == {**info.as_dict(), "has_certificate": True, "pending_csr": None}
    assert issued.as_dict(with_text=True)["text"] == info.text

    renewal = node.identities.generate_csr("domain", "example.org", EC)
    renewing = node.identities.domain_detail("example.org")
    assert renewing.certificate == info and renewing.pending_csr == renewal
    node.identities.remove_domain("example.org")
    with pytest.raises(NotFound, match=re.escape("no domain 'example.org': add the domain first")):
        node.identities.domain_detail("example.org")


def test_domain_upload_with_key_and_unknown_domain(node: Node, pki: Pki) -> None:
    with pytest.raises(NotFound, match=re.escape("no domain 'example.org': add the domain first")):
        upload(node, build(pki, cn="example.org", sans=["example.org"]), pki, kind="domain",
               name="example.org")  # fmt: skip
    node.identities.add_domain("example.org")
    cert = build(pki, cn="example.org", sans=["example.org"])
    upload(node, cert, pki, kind="domain", name="example.org")
    assert node.identities.info("domain", "example.org").version == 1
    with pytest.raises(PolicyViolation) as caught:
        upload(node, build(pki, cn="*.example.org"), pki, kind="domain", name="example.org")
    assert caught.value.code == "wildcard"


# --------------------------------------------------------------------------- audit (O2)


def test_audit_entries_for_changes_and_refusals_without_secrets(node: Node, pki: Pki) -> None:
    passphrase = b"correct horse battery"
    encrypted = private_key_pem(pki.leaf_key, passphrase)
    start = len(node.audit.entries())
    with acting_as(Actor("alice", "api", "192.0.2.7")):
        node.identities.upload(
            "server",
            "",
            pem(build(pki), pki.intermediate),
            key_data=encrypted,
            passphrase=passphrase,
        )
        with pytest.raises(PassphraseError):
            node.identities.upload(
                "server", "", pem(build(pki)), key_data=encrypted, passphrase=b"nope"
            )
        with pytest.raises(PolicyViolation):
            node.identities.upload(
                "server", "", pem(build(pki, cn="*.x.com")), key_data=key_pem(pki.leaf_key)
            )
        node.identities.generate_csr("server", "", EC)
        node.identities.discard_csr("server")
        node.identities.add_domain("example.org")
        node.identities.remove_domain("example.org")
        node.identities.copy_server_to_client()
        node.identities.restore("server", "", 1)
        node.settings.set(role="core")
        with pytest.raises(PolicyViolation):
            node.settings.set(role="middle")
    entries = node.audit.entries()[start:]
    assert [(e.action, e.target, e.outcome) for e in entries] == [
        ("certificate.upload", "server certificate", "ok"),
        ("certificate.upload", "server certificate", "refused"),
        ("certificate.upload", "server certificate", "refused"),
        ("csr.generate", "server certificate", "ok"),
        ("csr.discard", "server certificate", "ok"),
        ("domain.add", "example.org", "ok"),
        ("domain.remove", "example.org", "ok"),
        ("client-cert.copy-server", "client certificate", "ok"),
        ("certificate.restore", "server certificate version 1", "ok"),
        ("node.set", "node settings", "ok"),
        ("node.set", "node settings", "refused"),
    ]
    assert all((e.actor, e.via, e.address) == ("alice", "api", "192.0.2.7") for e in entries)
    assert all(e.at == NOW for e in entries)
    assert entries[0].detail["version"] == 2 and entries[0].detail["warnings"] == []
    assert "wildcard" in entries[2].detail["error"]
    dumped = json.dumps([e.as_dict() for e in node.audit.entries()])
    body = b"".join(encrypted.splitlines()[1:-1]).decode()
    for secret in ("PRIVATE KEY", passphrase.decode(), "nope", body[:40], key_pem(pki.leaf_key)
                   .decode().splitlines()[1]):  # fmt: skip
        assert secret not in dumped


def test_upload_without_key_or_pending_csr_says_no_key_was_given(node: Node, pki: Pki) -> None:
    """A certificate for another key, uploaded with no key and no CSR pending: the message is
    about the missing key, not a mismatch."""
    assert node.identities.pending_csr("server") is None
    with pytest.raises(PolicyViolation) as info:
        node.identities.upload("server", "", pem(build(pki)))
    assert info.value.code == "no-key"
    assert "no private key was given and no CSR is pending" in str(info.value)
