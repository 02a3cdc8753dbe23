"""The publication endpoint over real HTTP: openssl ocsp and openssl verify -crl_check."""

from __future__ import annotations

import base64
import datetime as dt
import socket
import subprocess
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from certway.clock import FixedClock
from certway.pki.csr import CsrForm, build_csr
from certway.pki.ocsp import OcspRequestData, build_request, check_response
from certway.pki.ocsp_responder import OcspQuery, issuer_hashes
from certway.services.local_ca import CaSettings
from certway.services.node import Node
from certway.web.publish import MAX_OCSP_REQUEST, create_publish_app

from conftest import NOW, test_key
from pkitools import Pki

SHA1 = hashes.SHA1()  # noqa: S303 - openssl ocsp's default CertID hash
PEM = serialization.Encoding.PEM


def _csr(index: int) -> bytes:
    csr, _ = build_csr(test_key("ec:p256", index), CsrForm(common_name=f"h{index}.example.com"))
    return csr.public_bytes(PEM)


def _pem(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(PEM))
    return path


@dataclass
class Site:
    """A node with root → int CAs, published by a real uvicorn server on 127.0.0.1."""

    node: Node
    data_dir: Path
    base: str
    files: Path
    root: x509.Certificate
    int: x509.Certificate
    good: x509.Certificate
    revoked: x509.Certificate

    def path(self, name: str) -> Path:
        return self.files / name


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("publish")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"

    def settings(ca: str) -> CaSettings:
        return CaSettings(crl_urls=(f"{base}/crl/{ca}.crl",), ocsp_url=f"{base}/ocsp")

    node = Node.init(tmp / "d", factory=False)  # the real clock: openssl checks real time
    ca = node.local_ca
    ca.create_root("root", "/CN=Publish Root", settings=settings("root"))
    ca.create_intermediate("int", "root", "/CN=Publish Issuing", settings=settings("int"))
    good = ca.sign("int", _csr(70)).certificate
    revoked = ca.sign("int", _csr(71)).certificate
    ca.revoke("int", f"{revoked.serial_number:X}", reason="keyCompromise")
    files = tmp / "files"
    files.mkdir()
    site = Site(
        node,
        tmp / "d",
        base,
        files,
        ca.certificate("root"),
        ca.certificate("int"),
        good,
        revoked,
    )
    for label, cert in (
        ("root", site.root),
        ("int", site.int),
        ("good", good),
        ("revoked", revoked),
    ):
        _pem(site.path(f"{label}.pem"), cert)

    config = uvicorn.Config(create_publish_app(node), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started or not thread.is_alive():
            break
        threading.Event().wait(0.01)
    assert server.started, "the publication server did not start"
    try:
        yield site
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        node.close()


# --------------------------------------------------------------------------- openssl ocsp


def _openssl_ocsp(openssl: str, site: Site, *args: str | Path) -> str:
    result = subprocess.run(
        [
            openssl,
            "ocsp",
            "-url",
            f"{site.base}/ocsp",
            "-CAfile",
            site.path("root.pem"),
            "-resp_text",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return result.stdout + result.stderr


@pytest.mark.interop
def test_openssl_ocsp_good_with_nonce(openssl: str, site: Site) -> None:
    out = _openssl_ocsp(
        openssl, site, "-issuer", site.path("int.pem"), "-cert", site.path("good.pem")
    )
    assert "Response verify OK" in out
    assert f"{site.path('good.pem')}: good" in out
    assert "OCSP Nonce" in out  # echoed; openssl would warn "WARNING: no nonce in response"
    assert "WARNING" not in out
    assert "Next Update" in out


@pytest.mark.interop
def test_openssl_ocsp_revoked_with_reason(openssl: str, site: Site) -> None:
    out = _openssl_ocsp(
        openssl, site, "-issuer", site.path("int.pem"), "-cert", site.path("revoked.pem")
    )
    assert "Response verify OK" in out
    assert f"{site.path('revoked.pem')}: revoked" in out
    assert "Reason: keyCompromise" in out
    assert "Revocation Time" in out


@pytest.mark.interop
def test_openssl_ocsp_unknown_serial(openssl: str, site: Site) -> None:
    out = _openssl_ocsp(openssl, site, "-issuer", site.path("int.pem"), "-serial", "0x1234")
    assert "Response verify OK" in out
    assert "0x1234: unknown" in out


@pytest.mark.interop
def test_openssl_ocsp_without_nonce_and_with_sha256(openssl: str, site: Site) -> None:
    out = _openssl_ocsp(
        openssl,
        site,
        "-no_nonce",
        "-sha256",
        "-issuer",
        site.path("int.pem"),
        "-cert",
        site.path("good.pem"),
    )
    assert "Response verify OK" in out
    assert f"{site.path('good.pem')}: good" in out
    assert "OCSP Nonce" not in out


@pytest.mark.interop
def test_openssl_ocsp_intermediate_checked_against_the_root(openssl: str, site: Site) -> None:
    out = _openssl_ocsp(
        openssl, site, "-issuer", site.path("root.pem"), "-cert", site.path("int.pem")
    )
    assert "Response verify OK" in out
    assert f"{site.path('int.pem')}: good" in out


@pytest.mark.interop
def test_openssl_ocsp_for_a_ca_not_ours_is_unauthorized(openssl: str, site: Site) -> None:
    other = Pki("Stranger", index=75)
    _pem(site.path("stranger.pem"), other.intermediate)
    out = _openssl_ocsp(openssl, site, "-issuer", site.path("stranger.pem"), "-serial", "0x01")
    assert "Responder Error: unauthorized" in out


@pytest.mark.interop
def test_revocation_made_by_another_process_is_answered_at_once(openssl: str, site: Site) -> None:
    late = site.node.local_ca.sign("int", _csr(72)).certificate
    _pem(site.path("late.pem"), late)
    args = ("-issuer", site.path("int.pem"), "-cert", site.path("late.pem"))
    assert f"{site.path('late.pem')}: good" in _openssl_ocsp(openssl, site, *args)
    cli = Node.open(site.data_dir)  # the CLI on the same data directory
    try:
        cli.local_ca.revoke("int", f"{late.serial_number:X}", reason="superseded")
    finally:
        cli.close()
    out = _openssl_ocsp(openssl, site, *args)
    assert f"{site.path('late.pem')}: revoked" in out
    assert "Reason: superseded" in out


# --------------------------------------------------------------------------- GET, errors


def _sha1_request(cert: x509.Certificate, issuer: x509.Certificate) -> OcspRequestData:
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, SHA1).build()
    return OcspRequestData(
        request.public_bytes(serialization.Encoding.DER),
        None,
        request.serial_number,
        request.issuer_name_hash,
        request.issuer_key_hash,
        "sha1",
    )


@pytest.mark.parametrize("alphabet", ["standard", "url-safe"])
def test_ocsp_get_rfc5019(site: Site, alphabet: str) -> None:
    request = _sha1_request(site.revoked, site.int)
    if alphabet == "standard":
        encoded = urllib.parse.quote(base64.b64encode(request.der).decode(), safe="")
    else:
        encoded = base64.urlsafe_b64encode(request.der).decode().rstrip("=")
    response = httpx.get(f"{site.base}/ocsp/{encoded}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/ocsp-response"
    assert "max-age=3600" in response.headers["cache-control"]
    assert "expires" in response.headers
    answer = check_response(response.content, request, site.int, at=dt.datetime.now(dt.UTC))
    assert answer.status == "revoked"
    assert answer.reason == "keyCompromise"


def test_ocsp_post_with_our_client(site: Site) -> None:
    request = build_request(site.good, site.int)  # SHA-256 CertID, nonce
    response = httpx.post(
        f"{site.base}/ocsp",
        content=request.der,
        headers={"content-type": "application/ocsp-request"},
    )
    assert response.status_code == 200
    answer = check_response(response.content, request, site.int, at=dt.datetime.now(dt.UTC))
    assert answer.status == "good"


@pytest.mark.parametrize(
    ("method", "target", "body"),
    [
        ("POST", "/ocsp", b"garbage"),
        ("GET", "/ocsp/%21%21not-base64%21", b""),
        ("GET", "/ocsp/", b""),
    ],
    ids=["post-garbage", "get-not-base64", "get-empty"],
)
def test_garbage_gets_a_malformed_request_response(
    site: Site, method: str, target: str, body: bytes
) -> None:
    response = httpx.request(method, site.base + target, content=body or None)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    parsed = ocsp.load_der_ocsp_response(response.content)
    assert parsed.response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_oversized_ocsp_post_is_413(site: Site) -> None:
    response = httpx.post(f"{site.base}/ocsp", content=b"\x30" * (MAX_OCSP_REQUEST + 1))
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies while reading
        for _ in range(MAX_OCSP_REQUEST // 1024 + 1):
            yield b"\x30" * 1024

    streamed = httpx.post(f"{site.base}/ocsp", content=chunks())
    assert streamed.status_code == 413


# --------------------------------------------------------------------------- CRLs


def _cdp_url(cert: x509.Certificate) -> str:
    cdp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    name = cdp[0].full_name
    assert name is not None
    uri = name[0]
    assert isinstance(uri, x509.UniformResourceIdentifier)
    return uri.value


def _download_crl(url: str, path: Path) -> x509.CertificateRevocationList:
    response = httpx.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pkix-crl"
    crl = x509.load_der_x509_crl(response.content)
    path.write_bytes(crl.public_bytes(PEM))
    return crl


def _verify(openssl: str, site: Site, leaf: str, *extra: str | Path) -> str:
    result = subprocess.run(
        [
            openssl,
            "verify",
            "-CAfile",
            site.path("root.pem"),
            "-untrusted",
            site.path("int.pem"),
            *extra,
            site.path(leaf),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return result.stdout + result.stderr


@pytest.mark.interop
def test_openssl_verify_crl_check_with_the_published_crl(openssl: str, site: Site) -> None:
    url = _cdp_url(site.revoked)
    assert url == f"{site.base}/crl/int.crl"
    crl = _download_crl(url, site.path("int-crl.pem"))
    assert crl.get_revoked_certificate_by_serial_number(site.revoked.serial_number) is not None
    crl_args = ("-crl_check", "-CRLfile", site.path("int-crl.pem"))
    assert "certificate revoked" in _verify(openssl, site, "revoked.pem", *crl_args)
    assert f"{site.path('good.pem')}: OK" in _verify(openssl, site, "good.pem", *crl_args)


@pytest.mark.interop
def test_openssl_verify_crl_check_all_with_both_published_crls(openssl: str, site: Site) -> None:
    _download_crl(_cdp_url(site.good), site.path("int-crl.pem"))
    _download_crl(_cdp_url(site.int), site.path("root-crl.pem"))  # the intermediate's CDP
    out = _verify(
        openssl,
        site,
        "good.pem",
        "-crl_check_all",
        "-CRLfile",
        site.path("int-crl.pem"),
        "-CRLfile",
        site.path("root-crl.pem"),
    )
    assert f"{site.path('good.pem')}: OK" in out


def test_crl_pem_is_the_same_crl(site: Site) -> None:
    der = httpx.get(f"{site.base}/crl/int.crl").content
    pem = httpx.get(f"{site.base}/crl/int.pem")
    assert pem.status_code == 200
    assert pem.content.startswith(b"-----BEGIN X509 CRL-----")
    assert x509.load_pem_x509_crl(pem.content) == x509.load_der_x509_crl(der)


def test_crl_revalidation_and_head(site: Site) -> None:
    first = httpx.get(f"{site.base}/crl/root.crl")
    assert first.headers["cache-control"] == "no-cache"
    again = httpx.get(f"{site.base}/crl/root.crl", headers={"if-none-match": first.headers["etag"]})
    assert again.status_code == 304
    head = httpx.head(f"{site.base}/crl/root.crl")
    assert head.status_code == 200
    assert head.content == b""


def test_unknown_ca_is_404_problem(site: Site) -> None:
    response = httpx.get(f"{site.base}/crl/nope.crl")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert "no CRL is published for 'nope'" in response.json()["detail"]
    assert httpx.get(f"{site.base}/elsewhere").status_code == 404
    assert httpx.get(f"{site.base}/openapi.json").status_code == 404


# --------------------------------------------------------------------------- LocalCA lookup


def test_lookup_finds_a_ca_created_later_by_another_process(tmp_path: Path) -> None:
    node = Node.init(tmp_path / "d", FixedClock(NOW), factory=False)
    node.local_ca.create_root("first", "/CN=First")
    first = node.local_ca.certificate("first")
    name_hash, key_hash = issuer_hashes(first, SHA1)
    first_status = node.local_ca.ocsp_lookup(OcspQuery(SHA1, name_hash, key_hash, 5))
    assert first_status is not None
    assert first_status.status == "unknown"
    assert first_status.issuer.certificate == first

    other = Node.open(tmp_path / "d", FixedClock(NOW))
    other.local_ca.create_root("second", "/CN=Second")
    second = other.local_ca.certificate("second")
    leaf = other.local_ca.sign("second", _csr(73)).certificate
    other.close()
    query = OcspQuery(SHA1, *issuer_hashes(second, SHA1), leaf.serial_number)
    status = node.local_ca.ocsp_lookup(query)
    assert status is not None
    assert status.status == "good"
    assert status.issuer.certificate == second
    assert node.local_ca.ocsp_lookup(OcspQuery(SHA1, b"\0" * 20, key_hash, 5)) is None
    node.close()
