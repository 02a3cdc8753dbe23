"""Token faults while serving: a lost session is reopened by itself, a token taken out
raises an alarm and fails only its CA's operations (OCSP answers tryLater), and everything
recovers when the token is back — never with a signature by another key."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from fastapi.testclient import TestClient

from certway.errors import TokenError
from certway.pki.csr import CsrForm, build_csr
from certway.services.alarms import AlarmKind
from certway.services.node import Node
from certway.web.publish import OCSP_REQUEST_TYPE, create_publish_app

from conftest import PIN, SoftHsm, test_key

pytestmark = pytest.mark.interop


@pytest.fixture
def node(softhsm: SoftHsm, tmp_path: Path) -> Iterator[Node]:
    node = Node.init(tmp_path / "d", factory=False)
    try:
        node.tokens.add("hsm", module=softhsm.module, token_label=softhsm.label, pin=PIN)
        node.local_ca.create_root("hsm-root", "/CN=Token Root", token="hsm")
        node.local_ca.create_root("soft-root", "/CN=Software Root")
        yield node
    finally:
        node.close()


def _reset_module(module: str) -> None:
    """What an HSM restart or a module reset does: every session handle becomes invalid."""
    import pkcs11

    pkcs11.lib(module).reinitialize()


@contextmanager
def _token_taken_out(softhsm: SoftHsm) -> Iterator[None]:
    """The tokens are gone from the module (their directory moved away) until the block ends."""
    away = softhsm.tokendir.with_name("tokens-away")
    shutil.move(softhsm.tokendir, away)
    softhsm.tokendir.mkdir()
    try:
        _reset_module(softhsm.module)
        yield
    finally:
        softhsm.tokendir.rmdir()
        shutil.move(away, softhsm.tokendir)


def _sign(node: Node, ca: str, cn: str) -> x509.Certificate:
    csr, _ = build_csr(test_key("ec:p256", 3), CsrForm(common_name=cn))
    return node.local_ca.sign_checked(ca, csr).certificate


def _verifies(cert: x509.Certificate, node: Node, ca: str) -> None:
    public = node.local_ca.certificate(ca).public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert cert.signature_hash_algorithm is not None
    public.verify(
        cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm)
    )


def _token_alarms(node: Node) -> list[str]:
    return [a.text for a in node.alarms.current() if a.id.startswith(f"{AlarmKind.TOKEN}:")]


def test_a_lost_session_is_reopened_and_the_signature_made_by_the_same_key(
    node: Node, softhsm: SoftHsm
) -> None:
    _verifies(_sign(node, "hsm-root", "before.example.com"), node, "hsm-root")
    _reset_module(softhsm.module)  # the open session and its key handles are gone
    after = _sign(node, "hsm-root", "after.example.com")
    _verifies(after, node, "hsm-root")
    assert _token_alarms(node) == []
    assert len(node.local_ca.issued("hsm-root")) == 2


def test_a_token_taken_out_raises_an_alarm_fails_only_its_ca_and_recovers(
    node: Node, softhsm: SoftHsm
) -> None:
    _sign(node, "hsm-root", "before.example.com")
    with _token_taken_out(softhsm):
        with pytest.raises(TokenError, match="no token labelled 'certway-test'") as failed:
            _sign(node, "hsm-root", "during.example.com")
        assert PIN not in str(failed.value)
        (alarm,) = _token_alarms(node)
        assert "token 'hsm'" in alarm and "'hsm-root'" in alarm
        assert PIN not in alarm
        # The rest of the node keeps working: the software CA signs, nothing was recorded
        # for the token CA.
        _verifies(_sign(node, "soft-root", "soft.example.com"), node, "soft-root")
        assert len(node.local_ca.issued("hsm-root")) == 1
    # Back: the alarm check itself logs in again (no signature needed), then signing works.
    assert _token_alarms(node) == []
    _verifies(_sign(node, "hsm-root", "after.example.com"), node, "hsm-root")


def test_ocsp_answers_try_later_while_the_token_is_out(node: Node, softhsm: SoftHsm) -> None:
    leaf = _sign(node, "hsm-root", "leaf.example.com")
    issuer = node.local_ca.certificate("hsm-root")
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(leaf, issuer, hashes.SHA256())
        .build()
        .public_bytes(serialization.Encoding.DER)
    )
    client = TestClient(create_publish_app(node))

    def ask() -> ocsp.OCSPResponse:
        answer = client.post("/ocsp", content=request, headers={"content-type": OCSP_REQUEST_TYPE})
        assert answer.status_code == 200
        return ocsp.load_der_ocsp_response(answer.content)

    with _token_taken_out(softhsm):
        assert ask().response_status is ocsp.OCSPResponseStatus.TRY_LATER
    answer = ask()
    assert answer.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert answer.certificate_status is ocsp.OCSPCertStatus.GOOD


def test_a_different_key_under_the_same_id_is_refused_not_used(
    node: Node, softhsm: SoftHsm
) -> None:
    """Someone replaces the CA's key object by another key with the same object id: after
    the session is reopened the key is found again by id, and refused because its public key
    is not the CA's."""
    import pkcs11
    from pkcs11.util.ec import encode_named_curve_parameters

    _sign(node, "hsm-root", "before.example.com")
    ((key_id, _),) = [
        (k, ca) for k, ca in node.tokens.test("hsm").used_by.items() if ca == "hsm-root"
    ]
    token = pkcs11.lib(softhsm.module).get_token(token_label=softhsm.label)
    with token.open(rw=True) as other:  # this process is logged in already
        for obj in list(other.get_objects({pkcs11.Attribute.ID: bytes.fromhex(key_id)})):
            obj.destroy()
        params = other.create_domain_parameters(
            pkcs11.KeyType.EC,
            {pkcs11.Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
            local=True,
        )
        params.generate_keypair(store=True, label="impostor", id=bytes.fromhex(key_id))
    _reset_module(softhsm.module)
    with pytest.raises(TokenError, match="no longer the CA's key"):
        _sign(node, "hsm-root", "after.example.com")
    assert len(node.local_ca.issued("hsm-root")) == 1
    (alarm,) = _token_alarms(node)
    assert "not the CA's key" in alarm
