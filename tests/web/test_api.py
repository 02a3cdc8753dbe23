"""REST API ``/api/v1`` in process (TestClient): authorisation of every route, the main
flows checked against the services, problem+json errors, size limits, no secrets echoed."""

from __future__ import annotations

import base64
import json
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import BaseModel

from certway.clock import FixedClock
from certway.errors import CertwayError
from certway.pki.keys import PrivateKey
from certway.pki.text import serial_hex
from certway.services.node import Node
from certway.trust.identity import DEFAULT_REGEX
from certway.web.api.routing import CHANGING_METHODS, ApiRoute, Reader, is_reads_only, writer
from certway.web.app import create_admin_app
from certway.web.context import MAX_UPLOAD, WebContext

from conftest import NOW, store_snapshot, test_key
from pkitools import Pki

pytestmark = pytest.mark.usefixtures("quick_hashes")  # argon2 at test strength

PASSWORD = "correct horse battery"
FQDN = "vcs.example.com"
PROBLEM = "application/problem+json"
API = "/api/v1"
DESCRIPTION = {f"{API}/openapi.json", f"{API}/docs"}
"""The API's own description: served like any other route, to accounts only."""
READS_ONLY = {
    ("POST", f"{API}/check"),
    ("POST", f"{API}/server-cert/csr/preview"),
    ("POST", f"{API}/tokens/{{name}}/test"),
}
"""POST routes that compute an answer and change nothing: open to read-only accounts."""


# -- fixtures and helpers ---------------------------------------------------------------------
@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node.init(tmp_path / "d", FixedClock(NOW), fqdn=FQDN)
    n.admins.add("alice", "read-write", PASSWORD)
    n.admins.add("bob", "read-only", PASSWORD)
    yield n
    n.close()


@pytest.fixture
def app(node: Node) -> FastAPI:
    return create_admin_app(node, secure_cookies=False)


class Api:
    """A TestClient logged in as one account; keeps every response body it saw."""

    def __init__(self, client: TestClient, user: str | None, password: str = PASSWORD) -> None:
        self.client = client
        self.headers = {"Authorization": basic(user, password)} if user else {}
        self.seen: list[str] = []

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        response = self.client.request(method, API + path, headers=headers, **kwargs)
        self.seen.append(response.text)
        return response

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)

    def assert_never_echoed(self, *secrets: str) -> None:
        for body in self.seen:
            assert "PRIVATE KEY" not in body
            for secret in secrets:
                assert secret not in body


def basic(user: str, password: str = PASSWORD) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


@pytest.fixture
def alice(client: TestClient) -> Api:
    return Api(client, "alice")


@pytest.fixture
def bob(client: TestClient) -> Api:
    return Api(client, "bob")


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def problem(response: httpx.Response, status: int) -> str:
    """The detail of a problem+json answer with ``status``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status
    assert body["title"]
    detail: str = body["detail"]
    return detail


def service_message(call: typing.Callable[[], object]) -> str:
    """What the CLI prints for the same input: the message of the service's error."""
    with pytest.raises(CertwayError) as caught:
        call()
    return str(caught.value)


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def cn(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def csr_pem(key: PrivateKey, common_name: str) -> str:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(cn(common_name))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
        .sign(key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


# -- route enumeration ------------------------------------------------------------------------
def served_routes(app: FastAPI) -> list[tuple[str, Any]]:
    """(path, route) of every route the app serves, however deeply routers are included.

    FastAPI ≥ 0.137 keeps an included router as one opaque entry of ``app.routes``; its
    ``iter_route_contexts`` resolves the prefixed paths (what the OpenAPI generator uses)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI flattened included routes into app.routes
        return [(r.path, r) for r in app.routes if hasattr(r, "path")]
    found = []
    for context in iter_route_contexts(app.routes):
        if context.path is not None:
            found.append((context.path, context))
    return found


def api_operations(app: FastAPI) -> list[tuple[str, str, APIRoute]]:
    """(method, path, route) of every API operation under /api/v1."""
    found = []
    for path, route in served_routes(app):
        original = getattr(route, "original_route", route)
        if path.startswith(API + "/") and isinstance(original, APIRoute):
            found.extend((method, path, original) for method in sorted(original.methods))
    assert found, "no API route found: the enumeration itself is broken"
    return found


def changing_operations(app: FastAPI) -> list[tuple[str, str, APIRoute]]:
    return [op for op in api_operations(app) if op[0] in CHANGING_METHODS]


def depends_on(route: APIRoute, call: object) -> bool:
    stack = list(route.dependant.dependencies)
    while stack:
        dependency = stack.pop()
        if dependency.call is call:
            return True
        stack.extend(dependency.dependencies)
    return False


def plausible(annotation: Any) -> Any:
    """A small valid value for a body field type (required fields only)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return args[0]
    if origin in (typing.Union, types.UnionType):
        return plausible(next(a for a in args if a is not type(None)))
    if origin is list:
        return []
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return {
            name: plausible(field.annotation)
            for name, field in annotation.model_fields.items()
            if field.is_required()
        }
    return {str: "x", int: 1, bool: False, float: 1.0}[annotation]


def body_model(route: APIRoute) -> type[BaseModel] | None:
    for param in route.dependant.body_params:
        annotation = param.field_info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return annotation
    return None


PATH_VALUES = {
    "/domains/{name}": "conf.example.com",
    "/local-ca/{name}": "lab",
    "/admins/{name}": "alice",
    "/trusted-cas/{fingerprint}": "",  # filled in with a real fingerprint
    "/server-cert/restore/{version}": "1",
    "/revocation/{service}": "sip-tls",
    "/tls/{service}": "zones",
    "/zones/{name}": "core",
    "/sip/rules/{id}": "1",
    "/tokens/{name}": "hsm",
    "/syslog/{address}": "127.0.0.1:6514",
    "/api-tokens/{name}": "ci",
    "/cluster/peers/{id}": "2",
}


def concrete(path: str, fingerprint: str) -> str:
    for pattern, value in PATH_VALUES.items():
        prefix, _, rest = pattern.partition("{")
        param = "{" + rest.split("}")[0] + "}"
        if path.startswith(API + prefix) and param in path:
            path = path.replace(param, value or fingerprint)
    assert "{" not in path, f"no test value for a parameter of {path}: add it to PATH_VALUES"
    return path.removeprefix(API)


# -- authorisation ----------------------------------------------------------------------------
def test_every_api_route_needs_an_account(client: TestClient, app: FastAPI) -> None:
    anonymous = Api(client, None)
    operations = api_operations(app)
    for method, path, _route in operations:
        response = anonymous.request(method, concrete(path, "00"), json={})
        assert problem(response, 401) == "log in first", (method, path)
        assert response.headers["www-authenticate"] == 'Basic realm="certway"'
    # a wrong password or a malformed header is no better
    for header in (basic("alice", "wrong password"), basic("nobody"), "Basic !!!"):
        response = anonymous.get("/status", headers={"Authorization": header})
        assert problem(response, 401) in (
            "wrong user name or password",
            "malformed Authorization header",
        )
        assert "www-authenticate" in response.headers
    # nothing under /api/v1 escapes the enumeration above, the API's description included
    public = {p for p, r in served_routes(app) if p.startswith(API)} - {p for _, p, _ in operations}
    assert public == set()
    assert {p for _, p, _ in operations} >= DESCRIPTION


def test_authentication_comes_before_the_body_is_read(client: TestClient) -> None:
    for body in (b"{not json", b'{"data": 1}'):
        response = client.post(
            f"{API}/trusted-cas", content=body, headers={"Content-Type": "application/json"}
        )
        problem(response, 401)


def test_every_changing_route_needs_a_read_write_account(
    node: Node, app: FastAPI, alice: Api, bob: Api
) -> None:
    # state for the routes to act on, so a missing check would really change something
    ok(alice.post("/domains", json={"name": "conf.example.com"}), 201)
    ok(alice.post("/local-ca/roots", json={"name": "lab", "subject": "CN=Lab Root"}), 201)
    external = Pki(root_cn="External Root", index=500)
    fingerprint = ok(alice.post("/trusted-cas", json={"data": pem(external.root)}))["added"][0][
        "fingerprint"
    ]
    ok(alice.post("/zones", json={"name": "core", "peers": ["127.0.0.1"], "port": 9}), 201)
    rule = {"priority": 1, "type": "exact", "pattern": "a", "action": "allow"}
    ok(alice.post("/sip/rules", json=rule), 201)
    ok(alice.post("/api-tokens", json={"name": "ci", "access": "read-only"}), 201)
    before = store_snapshot(node.store.data_dir)

    operations = changing_operations(app)
    assert len(operations) >= 25  # the enumeration sees the whole API, not a part of it
    marked = set()
    for method, path, route in operations:
        url = concrete(path, fingerprint)
        model = body_model(route)
        body = plausible(model) if model is not None else None
        if model is not None:
            model.model_validate(body)  # a valid body: only authorisation can refuse it
        if is_reads_only(route.endpoint):
            marked.add((method, path))
            assert not depends_on(route, writer), (method, path)
            assert bob.request(method, url, json=body).status_code != 403
            continue
        assert depends_on(route, writer), f"{method} {path} has no Writer dependency"
        for attempt in (
            {"json": body},
            {"json": {}},
            {"content": b"{broken", "headers": {"Content-Type": "application/json"}},
        ):
            response = bob.request(method, url, **attempt)  # type: ignore[arg-type]
            assert problem(response, 403) == "account 'bob' is read-only", (method, path)
    assert marked == READS_ONLY
    assert store_snapshot(node.store.data_dir) == before


def test_a_changing_route_without_writer_is_still_closed_to_read_only(node: Node) -> None:
    """The route class is the safety net: a POST route that forgot its ``Writer``."""
    called = []
    router = APIRouter(route_class=ApiRoute)

    @router.post("/forgot")
    def forgot(_who: Reader) -> dict[str, str]:
        called.append(True)
        return {}

    app = FastAPI()
    app.state.web = WebContext(node)
    app.include_router(router)
    with TestClient(app) as c:
        response = c.post("/forgot", headers={"Authorization": basic("bob")})
        assert response.status_code == 403
        assert called == []
        assert c.post("/forgot", headers={"Authorization": basic("alice")}).status_code == 200
        assert called == [True]


def test_read_only_account_reads(bob: Api) -> None:
    status = ok(bob.get("/status"))
    assert status["you"] == {"name": "bob", "access": "read-only"}
    accounts = {a["name"]: a["access"] for a in ok(bob.get("/admins"))}
    assert accounts == {"alice": "read-write", "bob": "read-only"}


# -- flows ------------------------------------------------------------------------------------
def test_server_certificate_from_csr_signed_by_an_external_ca(node: Node, alice: Api) -> None:
    alarms = {a["id"] for a in ok(alice.get("/status"))["alarms"]}
    assert "temporary-certificate" in alarms
    assert ok(alice.get("/server-cert"))["temporary"] is True

    generated = ok(alice.post("/server-cert/csr", json={"key_type": "ec:p256"}))
    assert generated["pem"].startswith("-----BEGIN CERTIFICATE REQUEST-----")
    assert "DNS:vcs.example.com" in generated["alt_names"]
    pending = ok(alice.get("/server-cert/csr"))
    assert pending["pem"] == generated["pem"]
    service_pending = node.identities.pending_csr("server")
    assert service_pending is not None and service_pending.pem == generated["pem"]

    external = Pki(root_cn="Acme Issuing CA", index=503)
    ok(alice.post("/trusted-cas", json={"data": pem(external.root)}))
    signed = external.sign_csr(pending["pem"], issuer=external.root_issuer)
    # made elsewhere (not from the CSR), no key: refused as the CLI refuses it
    elsewhere = pem(external.leaf(FQDN, issuer=external.root_issuer))
    refused = alice.post("/server-cert", json={"certificate": elsewhere})
    assert problem(refused, 422) == service_message(
        lambda: node.identities.upload("server", "", elsewhere.encode())
    )
    assert refused.json()["code"] == "csr-mismatch"
    assert "does not match the pending CSR" in refused.json()["detail"]
    uploaded = ok(alice.post("/server-cert", json={"certificate": pem(signed)}))
    assert uploaded["issuer"] == "CN=Acme Issuing CA"
    assert uploaded["warnings"] == []

    shown = ok(alice.get("/server-cert"))
    assert shown["issuer"] == "CN=Acme Issuing CA" == node.identities.info("server").issuer
    assert shown["temporary"] is False
    assert shown["serial"] == node.identities.info("server").serial
    assert "text" in shown
    assert ok(alice.get("/server-cert/csr")) is None  # the CSR was consumed
    status = ok(alice.get("/status"))
    assert "temporary-certificate" not in {a["id"] for a in status["alarms"]}
    assert status["server_certificate"]["temporary"] is False
    served = alice.get("/server-cert/pem")
    assert served.status_code == 200
    assert x509.load_pem_x509_certificate(served.content) == signed
    history = ok(alice.get("/server-cert/history"))
    assert [v["active"] for v in history].count(True) == 1
    alice.assert_never_echoed(PASSWORD)


def test_a_domain_is_shown_before_its_certificate(app: FastAPI, node: Node, alice: Api) -> None:
    """A domain made with the CSR flow (added, CSR generated, the signed certificate not yet
    uploaded) is shown, not 404: no certificate yet and its pending CSR, the body of
    ``certway domain show --json``; its certificate once uploaded, and a renewal CSR beside
    it. Every answer is as the API's description says; only an unknown domain is 404."""
    import schemathesis
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    schema = schemathesis.openapi.from_asgi(
        f"{API}/openapi.json", app, headers={"Authorization": basic("bob")}
    )

    def shown(name: str) -> Any:
        """GET /domains/{name} as bob (read-only), checked against the description."""
        case = schema[f"{API}/domains/{{name}}"]["GET"].Case(
            path_parameters={"name": name}, headers={"Authorization": basic("bob")}
        )
        response = case.call()
        case.validate_response(
            response,
            checks=[status_code_conformance, content_type_conformance, response_schema_conformance],
        )
        assert response.status_code == 200, response.text
        return response.json()

    def service(name: str) -> dict[str, Any]:
        return node.identities.domain_detail(name).as_dict(with_text=True)

    ok(alice.post("/domains", json={"name": "conf.example.com"}), 201)
    fresh = {"kind": "domain", "name": "conf.example.com", "has_certificate": False}
    assert shown("conf.example.com") == {**fresh, "pending_csr": None}

    csr = ok(alice.post("/domains/conf.example.com/csr", json={"key_type": "ec:p256"}))
    waiting = shown("Conf.Example.COM.")  # found however it is typed, as the CLI finds it
    assert waiting == {**fresh, "pending_csr": csr} == service("conf.example.com")
    assert waiting["pending_csr"] == ok(alice.get("/domains/conf.example.com/csr"))
    assert ok(alice.get("/domains")) == [
        {
            "name": "conf.example.com",
            "has_certificate": False,
            "not_after": None,
            "subject": None,
            "pending_csr": True,
        }
    ]

    external = Pki(root_cn="Domain Issuing CA", index=521)
    ok(alice.post("/trusted-cas", json={"data": pem(external.root)}))
    signed = external.sign_csr(csr["pem"], issuer=external.root_issuer)
    uploaded = ok(
        alice.post("/domains/conf.example.com/certificate", json={"certificate": pem(signed)})
    )
    issued = shown("conf.example.com")
    assert issued == service("conf.example.com")
    assert issued["has_certificate"] is True and issued["pending_csr"] is None
    assert issued["serial"] == uploaded["serial"] == serial_hex(signed.serial_number)
    assert issued["issuer"] == "CN=Domain Issuing CA" and "text" in issued
    [listed] = ok(alice.get("/domains"))
    assert listed == {
        "name": "conf.example.com",
        "has_certificate": True,
        "not_after": issued["not_after"],
        "subject": issued["subject"],
        "pending_csr": False,
    }

    renewal = ok(alice.post("/domains/conf.example.com/csr", json={"key_type": "ec:p256"}))
    renewing = shown("conf.example.com")
    assert renewing == {**issued, "pending_csr": renewal} == service("conf.example.com")
    assert ok(alice.get("/domains"))[0]["pending_csr"] is True

    # only a domain that does not exist is not found: never added, or removed
    detail = problem(alice.get("/domains/unknown.example.com"), 404)
    assert detail == service_message(lambda: node.identities.domain_detail("unknown.example.com"))
    assert detail == "no domain 'unknown.example.com': add the domain first"
    ok(alice.delete("/domains/conf.example.com"), 204)
    assert "no domain 'conf.example.com'" in problem(alice.get("/domains/conf.example.com"), 404)


def test_trusted_cas_add_refuse_leaf_and_delete(node: Node, alice: Api) -> None:
    external = Pki(root_cn="Partner Root", index=506)
    added = ok(alice.post("/trusted-cas", json={"data": pem(external.root)}))["added"]
    assert [a["subject"] for a in added] == ["CN=Partner Root"]
    fingerprint = added[0]["fingerprint"]
    listed = {e["fingerprint"] for e in ok(alice.get("/trusted-cas"))}
    assert fingerprint in listed
    assert fingerprint in {str(e.as_dict()["fingerprint"]) for e in node.trusted_cas.entries()}
    shown = ok(alice.get(f"/trusted-cas/{fingerprint}"))
    assert x509.load_pem_x509_certificate(shown["pem"].encode()) == external.root

    # a leaf is refused with the CLI's message, and nothing changes
    leaf = external.leaf(
        "leaf.example.com",
        sans=[],
        public_key=test_key("ec:p256", 40).public_key(),
        issuer=external.root_issuer,
        days=365,
    )
    before = store_snapshot(node.store.data_dir)
    detail = problem(alice.post("/trusted-cas", json={"data": pem(leaf)}), 422)
    assert "not a CA certificate" in detail
    assert detail == service_message(lambda: node.trusted_cas.add(pem(leaf).encode()))
    assert store_snapshot(node.store.data_dir) == before

    # base64 of DER is accepted too; garbage is a 400 with the service's words
    der = base64.b64encode(external.root.public_bytes(serialization.Encoding.DER)).decode()
    assert ok(alice.post("/trusted-cas", json={"data": der}))["added"] == []
    assert "neither PEM nor base64" in problem(alice.post("/trusted-cas", json={"data": "%%"}), 400)

    assert ok(alice.delete(f"/trusted-cas/{fingerprint}")) == {"removed": ["CN=Partner Root"]}
    assert fingerprint not in {e["fingerprint"] for e in ok(alice.get("/trusted-cas"))}
    assert fingerprint not in {str(e.as_dict()["fingerprint"]) for e in node.trusted_cas.entries()}
    problem(alice.get(f"/trusted-cas/{fingerprint}"), 404)


def test_manual_crl_upload_and_remove(node: Node, alice: Api) -> None:
    external = Pki(root_cn="CRL Root", index=509)
    ok(alice.post("/trusted-cas", json={"data": pem(external.root)}))
    victim = external.leaf(
        "gone.example.com",
        sans=[],
        public_key=test_key("ec:p256", 41).public_key(),
        issuer=external.root_issuer,
        days=365,
    )
    crl = external.crl([(victim, None)], issuer=external.root_issuer)
    accepted = ok(
        alice.post(
            "/crls/manual",
            json={"data": crl.public_bytes(serialization.Encoding.PEM).decode()},
        )
    )
    assert len(accepted) == 1 and "CRL Root" in accepted[0]
    held = [h for h in ok(alice.get("/crls")) if h["kind"] == "manual"]
    assert [(h["issuer"], h["number"], h["entries"]) for h in held] == [("CN=CRL Root", 1, 1)]
    assert [h.as_dict() for h in node.revocation.held() if h.kind == "manual"] == held

    # the revoked certificate now fails the client certificate test (CRL checking on)
    ok(alice.put("/revocation/admin-https", json={"mode": "on", "crl": True, "ocsp": False}))
    report = ok(alice.post("/check", json={"certificate": pem(victim)}))
    assert report["valid"] is False

    # base64 DER of a newer CRL replaces it; an older number is refused with the reason
    newer = base64.b64encode(
        external.crl(issuer=external.root_issuer, number=2).public_bytes(serialization.Encoding.DER)
    )
    ok(alice.post("/crls/manual", json={"data": newer.decode()}))
    older = crl.public_bytes(serialization.Encoding.PEM).decode()
    before = store_snapshot(node.store.data_dir)
    detail = problem(alice.post("/crls/manual", json={"data": older}), 422)
    assert detail == service_message(lambda: node.revocation.upload_manual(older.encode()))
    assert "CRL numbers never go backwards" in detail
    assert store_snapshot(node.store.data_dir) == before

    assert ok(alice.delete("/crls/manual")) == {"removed": 1}
    assert [h for h in ok(alice.get("/crls")) if h["kind"] == "manual"] == []
    assert [h for h in node.revocation.held() if h.kind == "manual"] == []


def test_revocation_policy_put_and_get(node: Node, alice: Api) -> None:
    changed = ok(
        alice.put(
            "/revocation/sip-tls",
            json={"mode": "on", "ocsp": False, "crl": True, "cdp": True, "fallback": "revoked"},
        )
    )
    assert changed == node.revocation.policy("sip-tls").as_dict()
    assert changed["mode"] == "on" and changed["fallback"] == "revoked" and changed["ocsp"] is False
    both = ok(alice.get("/revocation"))
    assert both["sip-tls"] == changed
    assert both["admin-https"] == node.revocation.policy("admin-https").as_dict()
    problem(alice.put("/revocation/nope", json={}), 422)
    problem(alice.put("/revocation/sip-tls", json={"scope": "everything"}), 422)


def test_client_certificate_check_maps_a_username(alice: Api, bob: Api) -> None:
    external = Pki(root_cn="People CA", index=512)
    ok(alice.post("/trusted-cas", json={"data": pem(external.root)}))
    person = external.leaf(
        "carol",
        sans=[],
        public_key=test_key("ec:p256", 42).public_key(),
        issuer=external.root_issuer,
        days=365,
    )
    body = {"certificate": pem(person), "regex": DEFAULT_REGEX, "format": "#Group1#@example.com"}
    for who in (alice, bob):  # a test changes nothing: read-only accounts may run it
        report = ok(who.post("/check", json=body))
        assert report["valid"] is True
        assert report["username"] == "carol@example.com"
    detail = problem(alice.post("/check", json={**body, "format": None}), 422)
    assert detail == "give both a regex and a username format, or neither"
    unknown = Pki(root_cn="Unknown CA", index=515)
    stranger = unknown.leaf(
        "eve",
        sans=[],
        public_key=test_key("ec:p256", 43).public_key(),
        issuer=unknown.root_issuer,
        days=365,
    )
    assert ok(alice.post("/check", json={"certificate": pem(stranger)}))["valid"] is False


def test_local_ca_root_sign_revoke_crl(node: Node, alice: Api) -> None:
    root = ok(
        alice.post(
            "/local-ca/roots",
            json={
                "name": "lab",
                "subject": "CN=Lab Root,O=Example",
                "crl_urls": ["http://vcs.example.com:8080/crl/lab.crl"],
            },
        ),
        201,
    )
    assert root["name"] == "lab" and root["kind"] == "root"
    assert [c["name"] for c in ok(alice.get("/local-ca"))] == [c.name for c in node.local_ca.cas()]
    problem(alice.post("/local-ca/roots", json={"name": "lab", "subject": "CN=Again"}), 409)

    signed = ok(
        alice.post(
            "/local-ca/lab/sign",
            json={"csr": csr_pem(test_key("ec:p256", 44), "phone.example.com"), "days": 30},
        )
    )
    cert = x509.load_pem_x509_certificate(signed["pem"].encode())
    assert cert.issuer.rfc4514_string() == "O=Example,CN=Lab Root"
    assert serial_hex(cert.serial_number) == signed["serial"]
    issued = ok(alice.get("/local-ca/lab/issued"))
    assert [(i["serial"], i["status"]) for i in issued] == [(signed["serial"], "valid")]

    revoked = ok(
        alice.post(
            "/local-ca/lab/revoke", json={"serial": signed["serial"], "reason": "keyCompromise"}
        )
    )
    assert revoked["entries"] == 1
    issued = ok(alice.get("/local-ca/lab/issued"))
    assert [(i["status"], i["reason"]) for i in issued] == [("revoked", "keyCompromise")]
    problem(alice.post("/local-ca/lab/revoke", json={"serial": "zz-not-hex"}), 422)

    response = alice.get("/local-ca/lab/crl")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pkix-crl"
    crl = x509.load_der_x509_crl(response.content)
    entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    assert entry is not None
    assert crl.is_signature_valid(node.local_ca.chain("lab")[0].public_key())  # type: ignore[arg-type]
    chain = alice.get("/local-ca/lab/certificate")
    assert x509.load_pem_x509_certificates(chain.content)[0] == node.local_ca.chain("lab")[0]
    problem(alice.get("/local-ca/nope/crl"), 404)
    # absurd numbers are refused as bad input, not a server error
    big_csr = csr_pem(test_key("ec:p256", 45), "long.example.com")
    problem(alice.post("/local-ca/lab/sign", json={"csr": big_csr, "days": 10**20}), 422)
    problem(
        alice.post("/local-ca/roots", json={"name": "x", "subject": "CN=X", "days": 10**7}), 422
    )
    problem(alice.post(f"/server-cert/restore/{10**20}"), 422)
    alice.assert_never_echoed(PASSWORD)


def test_admin_accounts(node: Node, alice: Api, client: TestClient) -> None:
    carol_password = "tr0ub4dor&3 is long"
    added = ok(
        alice.post(
            "/admins", json={"name": "carol", "access": "read-write", "password": carol_password}
        ),
        201,
    )
    assert added == {"name": "carol", "access": "read-write"}
    assert node.admins.get("carol") is not None
    carol = Api(client, "carol", carol_password)
    assert ok(carol.get("/status"))["you"]["name"] == "carol"

    detail = problem(
        alice.post("/admins", json={"name": "dave", "access": "read-only", "password": "short"}),
        422,
    )
    assert detail == service_message(lambda: node.admins.add("dave", "read-only", "short"))
    assert node.admins.get("dave") is None

    new_password = "an even longer passphrase"
    ok(alice.put("/admins/carol/password", json={"password": new_password}), 204)
    problem(carol.get("/status"), 401)
    assert ok(Api(client, "carol", new_password).get("/status"))["you"]["name"] == "carol"

    ok(alice.delete("/admins/carol"), 204)
    assert node.admins.get("carol") is None
    problem(alice.delete("/admins/carol"), 404)
    # alice is now the only read-write account (bob is read-only): she cannot be removed
    detail = problem(alice.delete("/admins/alice"), 409)
    assert "last read-write account" in detail
    assert node.admins.get("alice") is not None
    alice.assert_never_echoed(PASSWORD, carol_password, new_password)


def test_certificate_based_authentication_needs_a_mapped_client_certificate(
    node: Node, alice: Api
) -> None:

    before = store_snapshot(node.store.data_dir)
    response = alice.put("/admin-security", json={"mode": "certificate-based-authentication"})
    detail = problem(response, 422)
    assert "certificate-based authentication turns password login off" in detail
    assert response.json()["code"] == "lockout"
    assert store_snapshot(node.store.data_dir) == before
    assert ok(alice.get("/admin-security"))["mode"] == "not-required"
    changed = ok(alice.put("/admin-security", json={"regex": DEFAULT_REGEX, "format": "#Group1#"}))
    assert changed == node.admin_security.get().as_dict()
    problem(alice.put("/admin-security", json={"regex": "/Subject:(unclosed/"}), 422)


def test_client_certificate_upload_never_echoes_key_or_passphrase(node: Node, alice: Api) -> None:
    external = Pki(root_cn="Client CA", index=518)
    ok(alice.post("/trusted-cas", json={"data": pem(external.root)}))
    key = ec.generate_private_key(ec.SECP256R1())
    passphrase = "s3cret passphrase 42"
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase.encode()),
    ).decode()
    cert = external.leaf(FQDN, public_key=key.public_key(), issuer=external.root_issuer, days=365)
    before = store_snapshot(node.store.data_dir)
    body = {"certificate": pem(cert), "key": key_pem, "passphrase": "guess Zq81x"}
    problem(alice.post("/client-cert", json=body), 400)
    assert store_snapshot(node.store.data_dir) == before
    uploaded = ok(alice.post("/client-cert", json={**body, "passphrase": passphrase}))
    assert uploaded["issuer"] == "CN=Client CA"
    assert node.identities.info("client").serial == uploaded["serial"]
    alice.assert_never_echoed(passphrase, "guess Zq81x", *key_pem.splitlines()[1:-1])
    assert passphrase not in json.dumps([e.as_dict() for e in node.audit.entries(limit=1000)])


# -- errors and limits ------------------------------------------------------------------------
def test_errors_are_problems_with_the_services_message(node: Node, alice: Api) -> None:
    detail = problem(alice.get("/domains/nowhere.example.com"), 404)
    assert detail == service_message(lambda: node.identities.domain_detail("nowhere.example.com"))
    detail = problem(alice.post("/domains", json={"name": "not a domain"}), 422)
    assert detail == service_message(lambda: node.identities.add_domain("not a domain"))
    ok(alice.post("/domains", json={"name": "conf.example.com"}), 201)
    assert "already exists" in problem(
        alice.post("/domains", json={"name": "conf.example.com"}), 409
    )
    problem(alice.post("/server-cert", json={"certificate": "bm90IGEgY2VydA=="}), 400)
    # request validation is problem+json too, and does not echo the input
    response = alice.post(
        "/admins", json={"name": "x", "access": "root", "password": "hunter2hunter2"}
    )
    detail = problem(response, 422)
    assert detail.startswith("body.access")
    assert "hunter2hunter2" not in response.text
    response = alice.get("/status")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    problem(alice.get("/no-such-route"), 404)
    problem(alice.request("PATCH", "/status"), 405)


def test_oversized_bodies_are_refused(node: Node, alice: Api) -> None:
    before = store_snapshot(node.store.data_dir)
    big = json.dumps({"data": "A" * MAX_UPLOAD}).encode()
    headers = {"Content-Type": "application/json"}
    detail = problem(alice.post("/trusted-cas", content=big, headers=headers), 413)
    assert str(MAX_UPLOAD) in detail

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies while reading
        for start in range(0, len(big), 1 << 20):
            yield big[start : start + (1 << 20)]

    problem(alice.post("/trusted-cas", content=chunks(), headers=headers), 413)
    assert store_snapshot(node.store.data_dir) == before


def test_openapi_document_lists_every_route(app: FastAPI, bob: Api) -> None:
    response = bob.get("/openapi.json")
    assert response.status_code == 200
    document = json.loads(response.content)
    assert document["openapi"].startswith("3.")
    listed = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method.upper() in {"GET", "POST", "PUT", "PATCH", "DELETE"}
    }
    served = {(m, p) for m, p, r in api_operations(app) if m != "HEAD" and r.include_in_schema}
    assert listed == served
    assert not {(m, p) for m, p in listed if p.startswith(f"{API}/docs")}
    for probe in (("POST", f"{API}/server-cert/csr"), ("GET", f"{API}/local-ca/{{name}}/crl")):
        assert probe in listed


def test_openapi_describes_what_every_route_answers(bob: Api) -> None:
    """Every JSON answer is a named model (or a list of them, or of strings), never a bare
    ``object``; every model names all its keys (``additionalProperties: false``)."""
    document = json.loads(bob.get("/openapi.json").content)
    components = document["components"]["schemas"]

    def described(schema: dict[str, Any]) -> bool:
        if "$ref" in schema:
            return True
        if "anyOf" in schema:  # "T or null" (a pending CSR)
            return all(described(s) for s in schema["anyOf"] if s.get("type") != "null")
        if schema.get("type") == "array":
            return described(schema["items"]) or schema["items"] == {"type": "string"}
        return False

    untyped = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status, answer in operation["responses"].items():
                content = answer.get("content", {}).get("application/json")
                wrong = content is not None and not described(content["schema"])
                if status.startswith("2") and wrong:
                    untyped.append((method.upper(), path, content["schema"]))
    assert untyped == []
    models = {name for name in components if name.endswith("Out") or name.endswith("Shown")}
    assert len(models) > 20
    assert {n for n in models if components[n].get("additionalProperties") is not False} == set()
    zone = components["ZoneOut"]["properties"]
    assert zone["status"] == {"$ref": "#/components/schemas/ZoneStatusOut"}
    assert components["TrustedCaOut"]["properties"]["not_after"]["format"] == "date-time"


def test_schema_names_are_model_names_not_module_paths(bob: Api) -> None:
    """Two models of one name in two modules get names like certway__web__api__x__Y."""
    components = json.loads(bob.get("/openapi.json").content)["components"]["schemas"]
    assert [name for name in components if "__" in name] == []


def test_every_operation_has_a_description_beyond_its_summary(bob: Api) -> None:
    document = json.loads(bob.get("/openapi.json").content)
    bare = [
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if operation.get("description", "").strip() in ("", operation.get("summary", "").strip())
    ]
    assert bare == []


def test_every_operation_describes_its_errors_as_problems(bob: Api) -> None:
    """Errors are problem+json in the shape the app sends (never FastAPI's validation
    error as application/json): 401 and 403 everywhere, 422 for every change, the rest
    under ``default``."""
    document = json.loads(bob.get("/openapi.json").content)
    components = document["components"]["schemas"]
    assert "HTTPValidationError" not in components and "ValidationError" not in components
    assert components["Problem"]["required"] == ["type", "title", "status", "detail"]
    problem_only = {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    wrong = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            errors = {s: a for s, a in operation["responses"].items() if not s.startswith("2")}
            needed = {"401", "403", "default"} | ({"422"} if method != "get" else set())
            if not needed <= set(errors) or any(
                a["content"] != problem_only or not a["description"] for a in errors.values()
            ):
                wrong.append((method.upper(), path, sorted(errors)))
    assert wrong == []


REAL_ERRORS = [
    # who, method, path, path parameters, body, status
    (None, "GET", "/status", {}, None, 401),
    ("bob", "POST", "/domains", {}, {"name": "example.org"}, 403),
    ("alice", "GET", "/domains/{name}", {"name": "unknown.example.org"}, None, 404),
    ("alice", "POST", "/domains", {}, {"name": "conf.example.com"}, 409),
    ("alice", "POST", "/domains", {}, {"nam": "example.org"}, 422),  # invalid request
    ("alice", "POST", "/domains", {}, {"name": "nodot"}, 422),  # refused by a rule
    ("alice", "POST", "/trusted-cas", {}, {"data": "garbage"}, 400),
]


@pytest.mark.parametrize(("who", "method", "path", "parameters", "body", "status"), REAL_ERRORS)
def test_real_error_answers_match_the_description(
    app: FastAPI,
    node: Node,
    who: str | None,
    method: str,
    path: str,
    parameters: dict[str, str],
    body: dict[str, str] | None,
    status: int,
) -> None:
    """The description is checked against what the server answers (schemathesis: status,
    media type and body against the documented schema)."""
    import schemathesis
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    node.identities.add_domain("conf.example.com")
    schema = schemathesis.openapi.from_asgi(
        f"{API}/openapi.json", app, headers={"Authorization": basic("bob")}
    )
    headers = {"Authorization": basic(who)} if who else {}
    extra: dict[str, Any] = {"body": body} if body is not None else {}
    case = schema[API + path][method].Case(path_parameters=parameters, headers=headers, **extra)
    response = case.call()
    assert response.status_code == status, response.text
    documented = schema.raw_schema["paths"][API + path][method.lower()]["responses"]
    assert list(documented[str(status)]["content"]) == [PROBLEM]
    assert response.headers["content-type"] == [PROBLEM]
    case.validate_response(
        response,
        checks=[status_code_conformance, content_type_conformance, response_schema_conformance],
    )
    problem_schema = schema.raw_schema["components"]["schemas"]["Problem"]
    answer = response.json()
    assert set(problem_schema["required"]) <= set(answer) <= set(problem_schema["properties"])
    assert answer["status"] == status


def test_domains_node_crl_sources_intermediates_and_audit(node: Node, alice: Api, bob: Api) -> None:
    ok(alice.post("/domains", json={"name": "conf.example.com"}), 201)
    assert [d["name"] for d in ok(alice.get("/domains"))] == ["conf.example.com"]
    csr = ok(alice.post("/domains/conf.example.com/csr", json={"key_type": "ec:p256"}))
    assert "DNS:conf.example.com" in csr["alt_names"]
    assert ok(alice.get("/domains/conf.example.com/csr"))["pem"] == csr["pem"]
    ok(alice.delete("/domains/conf.example.com/csr"), 204)
    assert node.identities.pending_csr("domain", "conf.example.com") is None
    ok(alice.delete("/domains/conf.example.com"), 204)
    assert node.identities.domains() == []

    changed = ok(alice.put("/node", json={"cluster_fqdn": "cluster.example.com"}))
    assert changed == node.settings.get().as_dict() == ok(alice.get("/node"))
    assert changed["fqdn"] == FQDN and changed["cluster_fqdn"] == "cluster.example.com"

    url = "http://crl.example.com/issuing.crl"
    assert [s["url"] for s in ok(alice.put("/crl-sources", json={"urls": [url]}))] == [url]
    detail = problem(alice.put("/crl-sources", json={"urls": ["ftp://x"]}), 422)
    assert detail == service_message(lambda: node.revocation.set_sources(["ftp://x"]))
    schedule = ok(alice.put("/crl-schedule", json={"daily_at": "03:30", "enabled": True}))
    assert schedule == node.revocation.schedule().as_dict()
    listed = ok(alice.get("/crl-sources"))
    assert listed["schedule"]["daily_at"] == "03:30"
    assert [s["url"] for s in listed["sources"]] == [url]

    ok(alice.post("/local-ca/roots", json={"name": "root", "subject": "CN=Root"}), 201)
    issuing = ok(
        alice.post(
            "/local-ca/intermediates",
            json={"name": "issuing", "parent": "root", "subject": "CN=Issuing"},
        ),
        201,
    )
    assert (issuing["kind"], issuing["parent"]) == ("intermediate", "root")
    chain = x509.load_pem_x509_certificates(alice.get("/local-ca/issuing/certificate").content)
    assert [c.subject.rfc4514_string() for c in chain] == ["CN=Issuing", "CN=Root"]

    # every change above is in the audit log under alice's name, via the API
    entries = ok(bob.get("/audit", params={"limit": 50}))
    mine = [e for e in entries if e["actor"] == "alice"]
    assert mine and all(e["via"] == "api" for e in mine)
    actions = {e["action"] for e in mine}
    assert {"domain.add", "domain.remove", "csr.discard", "ca.create-intermediate"} <= actions


# -- TLS profiles ------------------------------------------------------------------------------
def test_tls_profiles_are_shown_and_set(alice: Api, bob: Api, node: Node) -> None:
    shown = ok(bob.get("/tls"))
    assert set(shown) == {"admin-https", "sip-tls", "zones", "outbound", "syslog", "ldap"}
    assert shown["admin-https"]["profile"] == "intermediate"
    assert shown["admin-https"]["versions"] == ["TLSv1.2", "TLSv1.3"]
    assert "ECDHE-RSA-AES128-GCM-SHA256" in shown["admin-https"]["tls12_ciphers"]
    assert problem(bob.put("/tls/sip-tls", json={"profile": "modern"}), 403)
    chosen = ok(alice.put("/tls/sip-tls", json={"profile": "modern"}))
    assert chosen == node.tls.profile("sip-tls").as_dict()
    assert chosen["versions"] == ["TLSv1.3"]
    assert ok(bob.get("/tls"))["sip-tls"]["profile"] == "modern"


def test_bad_tls_profile_changes_nothing(alice: Api, node: Node) -> None:
    before = node.tls.policy()
    assert alice.put("/tls/sip-tls", json={"profile": "old"}).status_code == 422
    assert alice.put("/tls/sip", json={"profile": "modern"}).status_code == 422
    assert node.tls.policy() == before


# -- local CA: a new key and certificate as PKCS#12 -------------------------------------------
def test_issue_returns_a_pkcs12_for_a_new_key(alice: Api, bob: Api, node: Node) -> None:
    from cryptography.hazmat.primitives.serialization import pkcs12

    ok(alice.post("/local-ca/roots", json={"name": "lab", "subject": "/CN=Lab"}), 201)
    body = {"common_name": "carol", "profile": "client", "passphrase": "p12-secret-4a2"}
    issued = ok(alice.post("/local-ca/lab/issue", json=body))
    bundle = pkcs12.load_pkcs12(base64.b64decode(issued["pkcs12"]), b"p12-secret-4a2")
    assert bundle.key is not None and bundle.cert is not None
    assert bundle.cert.certificate.subject.rfc4514_string() == "CN=carol" == issued["subject"]
    assert f"{bundle.cert.certificate.serial_number:X}" == issued["serial"]
    assert [i.serial for i in node.local_ca.issued("lab")] == [issued["serial"]]
    # refusals change nothing and never echo the passphrase
    short = {**body, "passphrase": "short"}
    assert "at least 8 characters" in problem(alice.post("/local-ca/lab/issue", json=short), 422)
    assert "no CA named" in problem(alice.post("/local-ca/nope/issue", json=body), 404)
    problem(bob.post("/local-ca/lab/issue", json=body), 403)
    assert len(node.local_ca.issued("lab")) == 1
    for response_body in alice.seen[1:]:
        assert "p12-secret-4a2" not in response_body and "short" not in response_body
