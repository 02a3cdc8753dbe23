"""The ACME server of a local CA (RFC 8555) on a real ``certway serve``, driven by the certbot
project's ``acme`` client library and by hand-made (but josepy-signed) requests for what a
well-behaved client never sends: bad signatures, replayed nonces, wrong keys, CSRs for names
not authorised. Challenges are answered by a small HTTP-01 responder; the names are
``localhost`` (system resolver)."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import dns.message
import dns.rdatatype
import dns.rrset
import httpx
import josepy as jose
import pytest
from acme import challenges, client, errors, messages
from acme import crypto_util as acme_crypto
from acme import jws as acme_jws
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from certway.errors import PolicyViolation
from certway.services.acme_server import AcmeSettings
from certway.services.audit import VIA
from certway.services.node import Node

from serving import running


class Responder:
    """An HTTP-01 responder on 127.0.0.1: answers the key authorizations it was given."""

    def __init__(self) -> None:
        answers: dict[str, bytes] = {}
        self.answers = answers

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = answers.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Dns:
    """A small DNS server on 127.0.0.1 (UDP), built on dnspython: every name has the A record
    127.0.0.1; TXT records are those put in ``txt``."""

    def __init__(self) -> None:
        self.txt: dict[str, list[str]] = {}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            query = dns.message.from_wire(data)
            response = dns.message.make_response(query)
            question = query.question[0]
            name = question.name.to_text().rstrip(".").lower()
            if question.rdtype == dns.rdatatype.A:
                response.answer.append(
                    dns.rrset.from_text(question.name, 60, "IN", "A", "127.0.0.1")
                )
            elif question.rdtype == dns.rdatatype.TXT and name in self.txt:
                response.answer.append(
                    dns.rrset.from_text_list(
                        question.name, 60, "IN", "TXT", [f'"{t}"' for t in self.txt[name]]
                    )
                )
            self.sock.sendto(response.to_wire(), peer)

    def close(self) -> None:
        self.sock.close()


@dataclass
class Served:
    node: Node
    port: int
    responder: Responder
    bundle: Path
    dns: Dns


@dataclass
class Setup:
    node: Node
    ca: str
    directory: str
    responder: Responder
    bundle: Path
    dns: Dns


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One node and server for the module; each test gets a CA of its own."""
    tmp_path = tmp_path_factory.mktemp("acme")
    node = Node.init(tmp_path / "d", fqdn="vcs.example.com")
    bundle = tmp_path / "admin-ca.pem"
    bundle.write_bytes(
        b"".join(
            c.public_bytes(serialization.Encoding.PEM)
            for c in node.trusted_cas.snapshot().certificates
        )
    )
    responder = Responder()
    dns_server = Dns()
    try:
        with running(node, publish=False, sip=False) as server:
            yield Served(node, server.admin_port, responder, bundle, dns_server)
    finally:
        dns_server.close()
        responder.close()
        node.close()


@pytest.fixture
def setup(served: Served, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Setup:
    ca = "ca-" + request.node.name.removeprefix("test_")[:40].replace("_", "-")
    node = served.node
    node.local_ca.create_root(ca, f"/CN=ACME Test Root {ca}")
    node.acme_server.enable(
        ca,
        AcmeSettings(
            challenges=("http-01", "dns-01"),
            allow=r"localhost|[a-z0-9-]+\.example\.net",
            http01_port=served.responder.port,
            dns_server=f"127.0.0.1:{served.dns.port}",
            days=30,
        ),
    )
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(served.bundle))
    return Setup(
        node,
        ca,
        f"https://localhost:{served.port}/acme/{ca}/directory",
        served.responder,
        served.bundle,
        served.dns,
    )


def new_key() -> jose.JWKEC:
    return jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))


def acme_client(setup: Setup, key: jose.JWK | None = None) -> client.ClientV2:
    net = client.ClientNetwork(key or new_key(), alg=jose.ES256, user_agent="certway-tests")
    directory = client.ClientV2.get_directory(setup.directory, net)
    acme = client.ClientV2(directory, net)
    regr = acme.new_account(
        messages.NewRegistration.from_data(email="ops@example.net", terms_of_service_agreed=True)
    )
    net.account = regr
    return acme


def csr_for(*names: str) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, acme_crypto.make_csr(key_pem, list(names))


def solve(setup: Setup, acme: client.ClientV2, order: messages.OrderResource) -> None:
    for authz in order.authorizations:
        challb = next(c for c in authz.body.challenges if isinstance(c.chall, challenges.HTTP01))
        response, validation = challb.response_and_validation(acme.net.key)
        setup.responder.answers[challb.chall.path] = validation.encode()
        acme.answer_challenge(challb, response)


def issue(setup: Setup, acme: client.ClientV2, *names: str) -> tuple[bytes, x509.Certificate]:
    key_pem, csr_pem = csr_for(*names)
    order = acme.new_order(csr_pem)
    solve(setup, acme, order)
    deadline = dt.datetime.now() + dt.timedelta(seconds=30)
    done = acme.poll_and_finalize(order, deadline)
    return key_pem, x509.load_pem_x509_certificates(done.fullchain_pem.encode())[0]


# -- the whole flow ------------------------------------------------------------------------------
def test_order_is_issued_into_the_inventory_with_its_account(setup: Setup) -> None:
    acme = acme_client(setup)
    _, cert = issue(setup, acme, "localhost", "www.example.net")
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(sans.get_values_for_type(x509.DNSName)) == ["localhost", "www.example.net"]
    assert cert.issuer == setup.node.local_ca.certificate(setup.ca).subject
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days in (29, 30)
    issued = setup.node.local_ca.issued(setup.ca)
    assert len(issued) == 1
    info = setup.node.acme_server.show(setup.ca)
    assert issued[0].acme_account == info.accounts[0].id
    assert info.accounts[0].issued == 1
    assert issued[0].profile == "server"
    # the audit log: the account and the issuance, both from the ACME server
    rows = [e for e in setup.node.audit.entries() if e.actor.startswith("acme-")]
    assert {e.action for e in rows} >= {"acme.account.create", "acme.issue"}, rows
    assert {e.via for e in rows} == {"acme"} and "acme" in VIA


def test_revocation_by_account_is_the_ca_record_and_in_the_crl(setup: Setup) -> None:
    acme = acme_client(setup)
    _, cert = issue(setup, acme, "localhost")
    acme.revoke(cert, 4)
    serial = f"{cert.serial_number:X}"
    [item] = setup.node.local_ca.issued(setup.ca)
    assert (item.status, item.reason) == ("revoked", "superseded")
    crl = x509.load_der_x509_crl(setup.node.local_ca.current_crl(setup.ca).der)
    assert crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None
    # the same record: certway ca revoke now finds it revoked
    with pytest.raises(Exception, match="already revoked"):
        setup.node.local_ca.revoke(setup.ca, serial)
    with pytest.raises(messages.Error) as info:
        acme.revoke(cert, 1)
    assert info.value.typ == "urn:ietf:params:acme:error:alreadyRevoked"


def test_revocation_by_certificate_key(setup: Setup) -> None:
    acme = acme_client(setup)
    key_pem, cert = issue(setup, acme, "localhost")
    cert_key = jose.JWK.load(key_pem)
    net = client.ClientNetwork(cert_key, alg=jose.ES256)
    other = client.ClientV2(client.ClientV2.get_directory(setup.directory, net), net)
    other.revoke(cert, 1)
    [item] = setup.node.local_ca.issued(setup.ca)
    assert (item.status, item.reason) == ("revoked", "keyCompromise")


def test_revocation_by_another_account_is_refused(setup: Setup) -> None:
    acme = acme_client(setup)
    _, cert = issue(setup, acme, "localhost")
    intruder = acme_client(setup)
    with pytest.raises(messages.Error) as info:
        intruder.revoke(cert, 1)
    assert info.value.typ == "urn:ietf:params:acme:error:unauthorized"
    assert setup.node.local_ca.issued(setup.ca)[0].status == "valid"


def test_existing_account_is_found_by_its_key(setup: Setup) -> None:
    key = new_key()
    first = acme_client(setup, key)
    with pytest.raises(errors.ConflictError) as info:
        acme_client(setup, key)  # the acme client reports 200 (existing) as a conflict
    assert info.value.location == first.net.account.uri
    assert len(setup.node.acme_server.show(setup.ca).accounts) == 1


def test_dns01_through_the_configured_dns_server(setup: Setup) -> None:
    acme = acme_client(setup)
    _, csr_pem = csr_for("dns01.example.net")
    order = acme.new_order(csr_pem)
    [authz] = order.authorizations
    challb = next(c for c in authz.body.challenges if isinstance(c.chall, challenges.DNS01))
    response, validation = challb.response_and_validation(acme.net.key)
    setup.dns.txt["_acme-challenge.dns01.example.net"] = [validation]
    acme.answer_challenge(challb, response)
    deadline = dt.datetime.now() + dt.timedelta(seconds=30)
    done = acme.poll_and_finalize(order, deadline)
    cert = x509.load_pem_x509_certificates(done.fullchain_pem.encode())[0]
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["dns01.example.net"]


# -- hand-made requests ----------------------------------------------------------------------------
class Raw:
    """Signed requests built with the acme package's JWS, sent as they are."""

    def __init__(self, setup: Setup) -> None:
        self.http = httpx.Client(verify=ssl.create_default_context(cafile=str(setup.bundle)))
        self.directory = self.http.get(setup.directory).json()

    def nonce(self) -> str:
        return self.http.head(self.directory["newNonce"]).headers["Replay-Nonce"]

    def jws(
        self,
        url: str,
        payload: Any,
        key: jose.JWK,
        *,
        kid: str | None = None,
        nonce: str | None = None,
    ) -> bytes:
        data = b"" if payload is None else json.dumps(payload).encode()
        signed = acme_jws.JWS.sign(
            data,
            key=key,
            alg=jose.ES256,
            nonce=jose.b64decode(nonce or self.nonce()),
            url=url,
            kid=kid,
        )
        return signed.json_dumps().encode()

    def post(self, url: str, body: bytes) -> httpx.Response:
        return self.http.post(url, content=body, headers={"Content-Type": "application/jose+json"})

    def account(self, key: jose.JWK) -> str:
        url = self.directory["newAccount"]
        response = self.post(url, self.jws(url, {"termsOfServiceAgreed": True}, key))
        assert response.status_code in (200, 201), response.text
        return response.headers["Location"]


def problem_type(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/problem+json")
    return str(response.json()["type"]).removeprefix("urn:ietf:params:acme:error:")


@pytest.fixture
def raw(setup: Setup) -> Iterator[Raw]:
    r = Raw(setup)
    yield r
    r.http.close()


def test_bad_signature_is_refused_and_creates_nothing(setup: Setup, raw: Raw) -> None:
    url = raw.directory["newAccount"]
    body = json.loads(raw.jws(url, {"termsOfServiceAgreed": True}, new_key()))
    signature = bytearray(jose.b64decode(body["signature"]))
    signature[5] ^= 0x01
    body["signature"] = jose.b64encode(bytes(signature)).decode()
    response = raw.post(url, json.dumps(body).encode())
    assert response.status_code == 400
    assert problem_type(response) == "malformed"
    assert "signature" in response.json()["detail"]
    assert setup.node.acme_server.show(setup.ca).accounts == ()


def test_replayed_nonce_is_refused(setup: Setup, raw: Raw) -> None:
    key = new_key()
    kid = raw.account(key)
    url = raw.directory["newOrder"]
    body = raw.jws(url, {"identifiers": [{"type": "dns", "value": "localhost"}]}, key, kid=kid)
    assert raw.post(url, body).status_code == 201
    again = raw.post(url, body)
    assert again.status_code == 400
    assert problem_type(again) == "badNonce"
    assert again.headers["Replay-Nonce"]  # a fresh one to retry with


def test_unknown_nonce_and_wrong_url_are_refused(raw: Raw) -> None:
    key = new_key()
    url = raw.directory["newAccount"]
    forged = raw.jws(url, {}, key, nonce=jose.b64encode(b"0" * 16).decode())
    assert problem_type(raw.post(url, forged)) == "badNonce"
    elsewhere = raw.jws(raw.directory["newOrder"], {}, key)
    response = raw.post(url, elsewhere)
    assert (response.status_code, problem_type(response)) == (401, "unauthorized")


def test_wrong_account_key_is_refused(setup: Setup, raw: Raw) -> None:
    owner = new_key()
    kid = raw.account(owner)
    url = raw.directory["newOrder"]
    body = raw.jws(
        url, {"identifiers": [{"type": "dns", "value": "localhost"}]}, new_key(), kid=kid
    )
    response = raw.post(url, body)
    assert (response.status_code, problem_type(response)) == (400, "malformed")
    assert "signature" in response.json()["detail"]
    unknown = raw.jws(url, {}, owner, kid=kid.rsplit("/", 1)[0] + "/999")
    assert problem_type(raw.post(url, unknown)) == "accountDoesNotExist"


def test_hmac_signed_request_is_refused(raw: Raw) -> None:
    url = raw.directory["newAccount"]
    signed = acme_jws.JWS.sign(
        b"{}",
        key=jose.JWKOct(key=b"k" * 32),
        alg=jose.HS256,
        nonce=jose.b64decode(raw.nonce()),
        url=url,
    )
    response = raw.post(url, signed.json_dumps().encode())
    assert problem_type(response) == "badSignatureAlgorithm"


def test_identifier_policy(setup: Setup, raw: Raw) -> None:
    key = new_key()
    kid = raw.account(key)
    url = raw.directory["newOrder"]
    for ident, kind in (
        ({"type": "dns", "value": "evil.example.org"}, "rejectedIdentifier"),
        ({"type": "dns", "value": "*.example.net"}, "rejectedIdentifier"),
        ({"type": "ip", "value": "127.0.0.1"}, "rejectedIdentifier"),
        ({"type": "email", "value": "a@example.net"}, "unsupportedIdentifier"),
    ):
        response = raw.post(url, raw.jws(url, {"identifiers": [ident]}, key, kid=kid))
        assert problem_type(response) == kind, ident
        assert response.json()["identifier"]["value"] == ident["value"]


def test_csr_for_a_name_not_authorised_issues_nothing(setup: Setup) -> None:
    acme = acme_client(setup)
    _, csr_pem = csr_for("localhost")
    order = acme.new_order(csr_pem)
    solve(setup, acme, order)
    deadline = dt.datetime.now() + dt.timedelta(seconds=30)
    order = acme.poll_authorizations(order, deadline)
    _, other_csr = csr_for("localhost", "www.example.net")
    with pytest.raises(messages.Error) as info:
        acme.finalize_order(order.update(csr_pem=other_csr), deadline)
    assert info.value.typ == "urn:ietf:params:acme:error:badCSR"
    assert "www.example.net" in str(info.value.detail)
    assert setup.node.local_ca.issued(setup.ca) == []


def test_finalize_before_validation_is_order_not_ready(setup: Setup) -> None:
    acme = acme_client(setup)
    _, csr_pem = csr_for("localhost")
    order = acme.new_order(csr_pem)
    with pytest.raises(messages.Error) as info:
        acme.begin_finalization(order)
    assert info.value.typ == "urn:ietf:params:acme:error:orderNotReady"
    assert setup.node.local_ca.issued(setup.ca) == []


def test_failed_challenge_invalidates_the_order(setup: Setup) -> None:
    acme = acme_client(setup)
    _, csr_pem = csr_for("localhost")
    order = acme.new_order(csr_pem)
    challb = next(
        c for c in order.authorizations[0].body.challenges if isinstance(c.chall, challenges.HTTP01)
    )
    setup.responder.answers[challb.chall.path] = b"not the key authorization"
    acme.answer_challenge(challb, challb.response(acme.net.key))
    deadline = dt.datetime.now() + dt.timedelta(seconds=30)
    with pytest.raises(errors.ValidationError) as info:
        acme.poll_authorizations(order, deadline)
    [failed] = info.value.failed_authzrs
    error = failed.body.challenges[0].error
    assert error.typ == "urn:ietf:params:acme:error:incorrectResponse"
    assert setup.node.local_ca.issued(setup.ca) == []


def test_key_rollover(setup: Setup, raw: Raw) -> None:
    old, new = new_key(), new_key()
    kid = raw.account(old)
    url = raw.directory["keyChange"]
    inner = acme_jws.JWS.sign(
        json.dumps({"account": kid, "oldKey": old.public_key().to_partial_json()}).encode(),
        key=new,
        alg=jose.ES256,
        nonce=None,
        url=url,
    )
    response = raw.post(url, raw.jws(url, inner.to_partial_json(), old, kid=kid))
    assert response.status_code == 200, response.text
    # the new key now is the account's; the old one is not
    assert raw.account(new) == kid
    order_url = raw.directory["newOrder"]
    payload = {"identifiers": [{"type": "dns", "value": "localhost"}]}
    assert raw.post(order_url, raw.jws(order_url, payload, new, kid=kid)).status_code == 201
    refused = raw.post(order_url, raw.jws(order_url, payload, old, kid=kid))
    assert problem_type(refused) == "malformed"


def test_external_account_binding(setup: Setup, raw: Raw) -> None:
    settings = setup.node.acme_server.show(setup.ca).settings
    setup.node.acme_server.enable(setup.ca, AcmeSettings(**{**settings.to_json(), "eab": True}))
    url = raw.directory["newAccount"]
    key = new_key()
    response = raw.post(url, raw.jws(url, {"termsOfServiceAgreed": True}, key))
    assert problem_type(response) == "externalAccountRequired"
    key_id, hmac_key = setup.node.acme_server.create_eab_key(setup.ca)
    eab = messages.ExternalAccountBinding.from_data(
        account_public_key=key.public_key(),
        kid=key_id,
        hmac_key=hmac_key,
        directory=messages.Directory.from_json(raw.directory),
    )
    payload = {"termsOfServiceAgreed": True, "externalAccountBinding": eab}
    response = raw.post(url, raw.jws(url, payload, key))
    assert response.status_code == 201, response.text
    # the key binds once
    again = raw.post(url, raw.jws(url, payload, new_key()))
    assert problem_type(again) in ("unauthorized", "malformed")
    info = setup.node.acme_server.show(setup.ca)
    assert [a.eab_key_id for a in info.accounts] == [key_id]
    assert hmac_key not in json.dumps([asdict(e) for e in setup.node.audit.entries()], default=str)


def test_disabled_service_answers_404(setup: Setup, raw: Raw) -> None:
    setup.node.acme_server.disable(setup.ca)
    response = raw.http.get(raw.directory["newNonce"].replace("new-nonce", "directory"))
    assert response.status_code == 404


def test_rate_limit_per_account(setup: Setup, raw: Raw) -> None:
    settings = setup.node.acme_server.show(setup.ca).settings
    setup.node.acme_server.enable(
        setup.ca, AcmeSettings(**{**settings.to_json(), "orders_per_hour": 2})
    )
    key = new_key()
    kid = raw.account(key)
    url = raw.directory["newOrder"]
    payload = {"identifiers": [{"type": "dns", "value": "localhost"}]}
    codes = [raw.post(url, raw.jws(url, payload, key, kid=kid)).status_code for _ in range(3)]
    assert codes == [201, 201, 429]
    other = new_key()
    other_kid = raw.account(other)
    assert raw.post(url, raw.jws(url, payload, other, kid=other_kid)).status_code == 201


def test_settings_are_checked(tmp_path: Path) -> None:
    node = Node.init(tmp_path / "d", factory=False)
    try:
        node.local_ca.create_root("c", "/CN=Root")
        for bad, fragment in (
            (AcmeSettings(challenges=("http-02",)), "unknown challenge type"),
            (AcmeSettings(allow="(a"), "regex"),
            (AcmeSettings(allow="(?=a)"), "lookahead"),
            (AcmeSettings(days=0), "validity"),
            (AcmeSettings(dns_server="dns.example:53"), "IP address"),
            (AcmeSettings(http01_port=0), "the HTTP-01 port"),
        ):
            with pytest.raises(PolicyViolation, match=fragment):
                node.acme_server.enable("c", bad)
        with pytest.raises(Exception, match="never enabled"):
            node.acme_server.show("c")
    finally:
        node.close()


def test_oversized_body_and_wrong_content_type(raw: Raw) -> None:
    url = raw.directory["newAccount"]
    big = raw.post(url, b"x" * (70 * 1024))
    assert big.status_code == 413
    plain = raw.http.post(url, content=raw.jws(url, {}, new_key()))
    assert (plain.status_code, problem_type(plain)) == (415, "malformed")
    assert plain.headers["X-Content-Type-Options"] == "nosniff"
    assert plain.headers["Cache-Control"] == "no-store"
    assert raw.http.get(url).status_code == 405
