"""HttpFetcher against real local HTTP(S) servers, and unpack_crls for every CRL packaging."""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import io
import ipaddress
import socket
import ssl
import struct
import threading
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st

from certway import __version__
from certway.errors import DecodeError, FetchError, PolicyViolation
from certway.fetch import HttpFetcher, tls_context_for, unpack_crls

from conftest import key_pem, write
from pkitools import Pki
from revocation_servers import gzip_bomb

DAY = dt.timedelta(days=1)
MB = 1024 * 1024
PEM = serialization.Encoding.PEM
DER = serialization.Encoding.DER


# --------------------------------------------------------------------------- test PKI


@dataclass
class Material:
    """What the servers serve: CRLs of two test PKIs' roots, and their packagings."""

    pki: Pki
    other: Pki
    crl_a: x509.CertificateRevocationList
    crl_b: x509.CertificateRevocationList

    @property
    def ca(self) -> x509.Certificate:
        return self.pki.root

    @property
    def other_ca(self) -> x509.Certificate:
        return self.other.root

    @property
    def two_pem(self) -> bytes:
        return self.crl_a.public_bytes(PEM) + b"\n" + self.crl_b.public_bytes(PEM)

    @property
    def der(self) -> bytes:
        return self.crl_a.public_bytes(DER)

    @property
    def zip(self) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.mkdir("crls")
            archive.writestr("crls/a.pem", self.crl_a.public_bytes(PEM))
            archive.writestr("crls/b.crl", self.crl_b.public_bytes(DER))
        return buffer.getvalue()


def _crl(serials: list[int]) -> x509.CertificateRevocationList:
    pki = Pki("Fetch Test", index=30)
    return pki.crl(serials=serials, issuer=pki.root_issuer)


@pytest.fixture(scope="module")
def material() -> Material:
    pki = Pki("Fetch Test", index=30)
    other = Pki("Some Other", index=33)
    return Material(
        pki=pki,
        other=other,
        crl_a=pki.crl(serials=[1, 2, 3], issuer=pki.root_issuer),
        crl_b=other.crl(serials=[4], issuer=other.root_issuer),
    )


def serials(crls: list[x509.CertificateRevocationList]) -> list[list[int]]:
    return [sorted(entry.serial_number for entry in crl) for crl in crls]


def test_gzip_bomb_helper_makes_valid_gzip() -> None:
    assert gzip.decompress(gzip_bomb(3)) == bytes(3 * MB)


# --------------------------------------------------------------------------- servers


Route = Callable[[BaseHTTPRequestHandler], None]


@dataclass
class Server:
    url: str
    hits: dict[str, int] = field(default_factory=dict)
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    bodies: dict[str, bytes] = field(default_factory=dict)


def _send(handler: BaseHTTPRequestHandler, body: bytes, status: int = 200, **extra: str) -> None:
    handler.send_response(status)
    handler.send_header("Content-Length", str(len(body)))
    for name, value in extra.items():
        handler.send_header(name.replace("_", "-"), value)
    handler.end_headers()
    handler.wfile.write(body)


def _serve(
    routes: dict[str, Route], wrap: Callable[[socket.socket], socket.socket] | None = None
) -> Iterator[tuple[ThreadingHTTPServer, Server]]:
    state = Server(url="")

    class Handler(BaseHTTPRequestHandler):
        def _dispatch(self) -> None:
            state.hits[self.path] = state.hits.get(self.path, 0) + 1
            state.headers[self.path] = dict(self.headers.items())
            length = int(self.headers.get("Content-Length") or 0)
            state.bodies[self.path] = self.rfile.read(length) if length else b""
            route = routes.get(self.path)
            try:
                if route is None:
                    _send(self, b"no such file", 404)
                else:
                    route(self)
            except (BrokenPipeError, ConnectionResetError):
                pass

        do_GET = _dispatch
        do_POST = _dispatch

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if wrap is not None:
        server.socket = wrap(server.socket)
    scheme = "https" if wrap else "http"
    state.url = f"{scheme}://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def http(material: Material) -> Iterator[Server]:
    stop = threading.Event()

    def flaky(handler: BaseHTTPRequestHandler) -> None:
        if state.hits["/flaky"] <= 2:
            _send(handler, b"busy", 500)
        else:
            _send(handler, material.der)

    def slow(handler: BaseHTTPRequestHandler) -> None:
        stop.wait(2.0)
        _send(handler, material.der)

    def no_length(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.end_headers()
        for _ in range(64):
            handler.wfile.write(bytes(32 * 1024))

    def gzip_encoded(handler: BaseHTTPRequestHandler) -> None:
        _send(handler, gzip.compress(material.der), Content_Encoding="gzip")

    routes: dict[str, Route] = {
        "/two.pem": lambda h: _send(h, material.two_pem),
        "/one.der": lambda h: _send(h, material.der, Content_Type="application/pkix-crl"),
        "/bundle.zip": lambda h: _send(h, material.zip),
        "/crl.gz": lambda h: _send(h, gzip.compress(material.der)),
        "/encoded": gzip_encoded,
        "/bomb.gz": lambda h: _send(h, gzip_bomb(300)),
        "/big": lambda h: _send(h, bytes(2 * MB)),
        "/big-no-length": no_length,
        "/flaky": flaky,
        "/down": lambda h: _send(h, b"down", 503),
        "/slow": slow,
        "/garbage": lambda h: _send(h, b"<html>not a CRL</html>"),
        "/redirect": lambda h: _send(h, b"", 302, Location="/one.der"),
        "/loop": lambda h: _send(h, b"", 302, Location="/loop"),
        "/to-ftp": lambda h: _send(h, b"", 302, Location="ftp://127.0.0.1/crl"),
        "/ocsp": lambda h: _send(h, b"answer:" + state.bodies["/ocsp"]),
    }
    servers = _serve(routes)
    _, state = next(servers)
    try:
        yield state
    finally:
        stop.set()
        next(servers, None)


@pytest.fixture
def fetcher() -> Iterator[HttpFetcher]:
    with HttpFetcher(timeout=5, sleep=lambda s: None) as client:
        yield client


# --------------------------------------------------------------------------- HTTP


def test_pem_with_two_crls(http: Server, fetcher: HttpFetcher) -> None:
    assert serials(unpack_crls(fetcher.get(f"{http.url}/two.pem"))) == [[1, 2, 3], [4]]


def test_der_crl(http: Server, fetcher: HttpFetcher, material: Material) -> None:
    data = fetcher.get(f"{http.url}/one.der")
    assert data == material.der
    assert serials(unpack_crls(data)) == [[1, 2, 3]]


def test_zip_with_pem_and_der_members(http: Server, fetcher: HttpFetcher) -> None:
    assert serials(unpack_crls(fetcher.get(f"{http.url}/bundle.zip"))) == [[1, 2, 3], [4]]


def test_gzip_der_crl(http: Server, fetcher: HttpFetcher) -> None:
    assert serials(unpack_crls(fetcher.get(f"{http.url}/crl.gz"))) == [[1, 2, 3]]


def test_gzip_content_encoding_is_undone(http: Server, fetcher: HttpFetcher) -> None:
    assert serials(unpack_crls(fetcher.get(f"{http.url}/encoded"))) == [[1, 2, 3]]


def test_gzip_bomb_is_refused(http: Server, fetcher: HttpFetcher) -> None:
    data = fetcher.get(f"{http.url}/bomb.gz")
    assert len(data) < MB  # 300 MiB of zeros, compressed
    with pytest.raises(PolicyViolation, match="more than 1048576 bytes") as info:
        unpack_crls(data, max_total=MB)
    assert info.value.code == "crl-archive-too-large"


def test_request_identifies_certway(http: Server, fetcher: HttpFetcher) -> None:
    fetcher.get(f"{http.url}/one.der")
    assert http.headers["/one.der"]["User-Agent"] == f"certway/{__version__}"


@pytest.mark.parametrize("path", ["/big", "/big-no-length"])
def test_oversized_body_is_refused(http: Server, path: str) -> None:
    with HttpFetcher(max_bytes=MB) as fetcher, pytest.raises(FetchError) as info:
        fetcher.get(f"{http.url}{path}")
    assert str(info.value) == f"{http.url}{path} is larger than 1048576 bytes"


def test_404_is_not_retried(http: Server, fetcher: HttpFetcher) -> None:
    with pytest.raises(FetchError) as info:
        fetcher.get(f"{http.url}/missing.crl")
    assert str(info.value) == f"fetching {http.url}/missing.crl failed: HTTP 404 Not Found"
    assert http.hits["/missing.crl"] == 1


def test_500_succeeds_on_retry(http: Server, material: Material) -> None:
    pauses: list[float] = []
    with HttpFetcher(retries=2, backoff=0.5, sleep=pauses.append) as fetcher:
        assert fetcher.get(f"{http.url}/flaky") == material.der
    assert http.hits["/flaky"] == 3
    assert pauses == [0.5, 1.0]


def test_persistent_5xx_fails_after_retries(http: Server) -> None:
    with HttpFetcher(retries=1, sleep=lambda s: None) as fetcher, pytest.raises(FetchError) as info:
        fetcher.get(f"{http.url}/down")
    assert "HTTP 503 Service Unavailable (2 attempts)" in str(info.value)
    assert http.hits["/down"] == 2


def test_no_retry_that_the_deadline_leaves_no_time_for(http: Server) -> None:
    pauses: list[float] = []
    before = http.hits["/down"]
    fetcher = HttpFetcher(retries=2, backoff=5, deadline=1, sleep=pauses.append)
    with fetcher, pytest.raises(FetchError) as info:
        fetcher.get(f"{http.url}/down")
    assert str(info.value) == (
        f"fetching {http.url}/down failed: HTTP 503 Service Unavailable; "
        "the 1 s deadline leaves no time for another attempt"
    )
    assert pauses == [] and http.hits["/down"] == before + 1


def test_timeout(http: Server) -> None:
    with HttpFetcher(timeout=0.5, retries=0) as fetcher, pytest.raises(FetchError) as info:
        fetcher.get(f"{http.url}/slow")
    assert str(info.value) == f"fetching {http.url}/slow failed: timed out after 0.5 s"


def test_connection_refused_is_retried_then_reported() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pauses: list[float] = []
    with HttpFetcher(retries=2, sleep=pauses.append) as fetcher, pytest.raises(FetchError) as info:
        fetcher.get(f"http://127.0.0.1:{port}/crl")
    assert "connection refused (3 attempts)" in str(info.value)
    assert len(pauses) == 2


def test_redirect_is_followed(http: Server, fetcher: HttpFetcher, material: Material) -> None:
    assert fetcher.get(f"{http.url}/redirect") == material.der


def test_redirect_loop_stops(http: Server, fetcher: HttpFetcher) -> None:
    with pytest.raises(FetchError, match="more than 5 redirects"):
        fetcher.get(f"{http.url}/loop")
    assert http.hits["/loop"] == 6


def test_redirect_to_other_scheme_is_refused(http: Server, fetcher: HttpFetcher) -> None:
    with pytest.raises(FetchError, match="not http or https"):
        fetcher.get(f"{http.url}/to-ftp")


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/crl", "file:///etc/passwd", "crl.pem", ""])
def test_only_http_urls(fetcher: HttpFetcher, url: str) -> None:
    with pytest.raises(FetchError, match=r"http or https URL|not a valid URL"):
        fetcher.get(url)


def test_garbage_content_is_a_decode_error(http: Server, fetcher: HttpFetcher) -> None:
    data = fetcher.get(f"{http.url}/garbage")
    with pytest.raises(DecodeError, match=r"not a CRL \(PEM, DER, ZIP or GZIP\)"):
        unpack_crls(data)


def test_post_sends_body_and_content_type(http: Server, fetcher: HttpFetcher) -> None:
    answer = fetcher.post(f"{http.url}/ocsp", b"\x30\x00", "application/ocsp-request")
    assert answer == b"answer:\x30\x00"
    assert http.headers["/ocsp"]["Content-Type"] == "application/ocsp-request"


def test_mock_transport_can_replace_the_network() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=b"ok"))
    with HttpFetcher(transport=transport) as fetcher:
        assert fetcher.get("http://crl.example/x.crl") == b"ok"


# --------------------------------------------------------------------------- HTTPS


@pytest.fixture(scope="module")
def https(material: Material, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    pki = material.pki
    now = dt.datetime.now(dt.UTC)
    cert = pki.leaf(
        "127.0.0.1",
        alt_names=[x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
        issuer=pki.root_issuer,
        not_before=now - DAY,
        days=2,
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file = write(folder / "server.pem", cert.public_bytes(PEM))
    key_file = write(folder / "server.key", key_pem(pki.leaf_key))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)

    def wrap(sock: socket.socket) -> socket.socket:
        return context.wrap_socket(sock, server_side=True)

    servers = _serve({"/one.der": lambda h: _send(h, material.der)}, wrap)
    _, state = next(servers)
    try:
        yield state
    finally:
        next(servers, None)


def test_https_with_trusted_ca(https: Server, material: Material) -> None:
    with HttpFetcher(verify=tls_context_for([material.other_ca, material.ca])) as fetcher:
        assert fetcher.get(f"{https.url}/one.der") == material.der


def test_https_with_untrusted_ca_is_refused_without_retry(
    https: Server, material: Material
) -> None:
    pauses: list[float] = []
    fetcher = HttpFetcher(verify=tls_context_for([material.other_ca]), sleep=pauses.append)
    with fetcher, pytest.raises(FetchError) as info:
        fetcher.get(f"{https.url}/one.der")
    message = str(info.value)
    assert message.startswith(f"TLS certificate of {https.url}/one.der is not trusted: ")
    assert "unable to get local issuer certificate" in message
    assert pauses == []


def test_tls_context_requires_tls12_and_checks_names(material: Material) -> None:
    context = tls_context_for([material.ca])
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    assert context.check_hostname and context.verify_mode is ssl.CERT_REQUIRED
    assert len(context.get_ca_certs()) == 1


# --------------------------------------------------------------------------- unpack_crls


def _zip(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_gzip_of_pem_with_two_crls(material: Material) -> None:
    assert serials(unpack_crls(gzip.compress(material.two_pem))) == [[1, 2, 3], [4]]


def test_concatenated_gzip_members(material: Material) -> None:
    data = gzip.compress(material.crl_a.public_bytes(PEM)) + gzip.compress(
        material.crl_b.public_bytes(PEM)
    )
    assert serials(unpack_crls(data)) == [[1, 2, 3], [4]]


def test_truncated_gzip(material: Material) -> None:
    with pytest.raises(DecodeError, match="truncated"):
        unpack_crls(gzip.compress(material.der)[:-12])


def test_gzip_of_garbage(material: Material) -> None:
    with pytest.raises(DecodeError, match="GZIP content is not a CRL"):
        unpack_crls(gzip.compress(b"hello"))


def test_zip_member_too_large(material: Material) -> None:
    data = _zip({"a.crl": material.der, "zeros.crl": bytes(2 * MB)})
    with pytest.raises(PolicyViolation) as info:
        unpack_crls(data, max_total=MB)
    assert info.value.code == "crl-archive-too-large"


def test_zip_with_lying_sizes_is_refused(material: Material) -> None:
    data = bytearray(_zip({"zeros.crl": bytes(2 * MB)}))
    local = data.index(b"PK\x03\x04")
    central = data.index(b"PK\x01\x02")
    data[local + 22 : local + 26] = struct.pack("<I", 100)
    data[central + 24 : central + 28] = struct.pack("<I", 100)
    with pytest.raises((DecodeError, PolicyViolation)):
        unpack_crls(bytes(data), max_total=MB)


def test_zip_with_too_many_members(material: Material) -> None:
    data = _zip({f"{i}.crl": material.der for i in range(5)})
    with pytest.raises(PolicyViolation) as info:
        unpack_crls(data, max_members=4)
    assert info.value.code == "crl-archive-too-many-members"
    assert len(unpack_crls(data, max_members=5)) == 5


def test_zip_member_that_is_not_a_crl(material: Material) -> None:
    data = _zip({"a.crl": material.der, "README.txt": b"read me"})
    with pytest.raises(DecodeError, match=r"ZIP member 'README\.txt' is not a CRL"):
        unpack_crls(data)


def test_zip_with_a_certificate_instead_of_a_crl(material: Material) -> None:
    data = _zip({"ca.pem": material.ca.public_bytes(PEM)})
    with pytest.raises(DecodeError, match=r"ZIP member 'ca\.pem' is not a CRL.*CERTIFICATE"):
        unpack_crls(data)


def test_empty_zip() -> None:
    with pytest.raises(DecodeError, match="holds no CRL"):
        unpack_crls(_zip({}))


def test_stored_zip(material: Material) -> None:
    data = _zip({"b.der": material.crl_b.public_bytes(DER)}, zipfile.ZIP_STORED)
    assert serials(unpack_crls(data)) == [[4]]


@pytest.mark.parametrize("data", [b"", b"  \n", b"\x30\x03\x02\x01\x00", b"garbage"])
def test_not_a_crl(data: bytes) -> None:
    with pytest.raises(DecodeError):
        unpack_crls(data)


def test_pem_certificate_is_not_a_crl(material: Material) -> None:
    with pytest.raises(DecodeError, match="CERTIFICATE"):
        unpack_crls(material.ca.public_bytes(PEM))


@settings(max_examples=150, deadline=None)
@given(
    prefix=st.sampled_from([b"", b"\x1f\x8b", b"\x1f\x8b\x08\x00", b"PK\x03\x04", b"PK\x05\x06"]),
    body=st.binary(max_size=600),
)
def test_random_bytes_only_raise_our_errors(prefix: bytes, body: bytes) -> None:
    with contextlib.suppress(DecodeError, PolicyViolation):
        unpack_crls(prefix + body, max_total=64 * 1024)


@settings(max_examples=60, deadline=None)
@given(cut=st.integers(min_value=0, max_value=10_000), flip=st.integers(0, 255))
def test_corrupted_archives_only_raise_our_errors(cut: int, flip: int) -> None:
    der = _crl([1, 2]).public_bytes(DER)
    for archive in (gzip.compress(der), _zip({"a.crl": der, "b.pem": der})):
        position = cut % len(archive)
        corrupted = bytearray(archive)
        corrupted[position] ^= flip
        for data in (bytes(corrupted), archive[:position]):
            with contextlib.suppress(DecodeError, PolicyViolation):
                unpack_crls(data, max_total=64 * 1024)


def test_zip_needing_an_unknown_version_is_a_decode_error() -> None:
    der = _crl([1]).public_bytes(DER)
    archive = bytearray(_zip({"a.crl": der}))
    entry = archive.index(b"PK\x01\x02")  # central directory: "version needed" at +6
    archive[entry + 6 : entry + 8] = (223).to_bytes(2, "little")
    with pytest.raises(DecodeError, match=r"ZIP archive cannot be read: zip file version 22\.3"):
        unpack_crls(bytes(archive), max_total=64 * 1024)
