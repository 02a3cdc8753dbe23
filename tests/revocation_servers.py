"""Real revocation servers on 127.0.0.1 for service and CLI tests, and the CRLs and
certificates (``pem``, ``der``) and payloads (archives, bombs) they serve.

- :class:`LocalHttpServer`: an HTTP(S) server with mutable routes and hit counters;
- :class:`OpensslOcspResponder`: HTTP on 127.0.0.1, answers from ``openssl ocsp -index``
  (OpenSSL 3.0's ``-port`` cannot bind 127.0.0.1 only, so each POSTed request is answered
  by ``openssl ocsp -reqin … -respout …``);
- :func:`refused_url`: a URL on which nothing listens (connection refused);

Every server is a context manager and is always shut down.
"""

from __future__ import annotations

import datetime as dt
import io
import socket
import ssl
import struct
import subprocess
import threading
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certway.fetch import HttpFetcher, tls_context_for
from certway.pki.keys import PrivateKey
from certway.services.revocation import Fetcher

from conftest import key_pem, write

DAY = dt.timedelta(days=1)
MB = 1024 * 1024
PEM = serialization.Encoding.PEM
DER = serialization.Encoding.DER

Handler = BaseHTTPRequestHandler
Route = bytes | Callable[[BaseHTTPRequestHandler], None]


# --------------------------------------------------------------------------- encodings


def pem(*objects: x509.Certificate | x509.CertificateRevocationList) -> bytes:
    return b"".join(o.public_bytes(PEM) for o in objects)


def der(obj: x509.Certificate | x509.CertificateRevocationList) -> bytes:
    return obj.public_bytes(DER)


# --------------------------------------------------------------------------- payloads


def zip_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, data in members.items():
            archive.writestr(member, data)
    return buffer.getvalue()


def gzip_bomb(megabytes: int) -> bytes:
    """GZIP of ``megabytes`` MiB of zeros from one compressed 1 MiB block repeated."""
    chunk = bytes(MB)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    final = compressor.flush(zlib.Z_FINISH)
    crc = 0
    for _ in range(megabytes):
        crc = zlib.crc32(chunk, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    trailer = struct.pack("<II", crc, (megabytes * MB) & 0xFFFFFFFF)
    return header + block * megabytes + final + trailer


def zip_bomb(megabytes: int) -> bytes:
    """A small ZIP whose one member unpacks to ``megabytes`` MiB of zeros (its headers say
    so, as a real bomb's do): deflate of 1 MiB of zeros, sizes and CRC patched."""
    chunk = bytes(MB)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    body = block * megabytes + compressor.flush(zlib.Z_FINISH)
    crc = 0
    for _ in range(megabytes):
        crc = zlib.crc32(chunk, crc)
    size = megabytes * MB
    member = b"bomb.crl"
    local = struct.pack(
        "<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, len(body), size, len(member), 0
    )
    central = struct.pack(
        "<IHHHHHHIIIHHHHHII",
        0x02014B50, 20, 20, 0, 8, 0, 0, crc, len(body), size, len(member), 0, 0, 0, 0, 0, 0,
    )  # fmt: skip
    head = local + member + body
    directory = central + member
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(directory), len(head), 0)
    return head + directory + end


# --------------------------------------------------------------------------- HTTP


def send(handler: BaseHTTPRequestHandler, body: bytes, status: int = 200, **headers: str) -> None:
    handler.send_response(status)
    handler.send_header("Content-Length", str(len(body)))
    for header, value in headers.items():
        handler.send_header(header.replace("_", "-"), value)
    handler.end_headers()
    handler.wfile.write(body)


class LocalHttpServer:
    """HTTP (or HTTPS with ``tls``) on 127.0.0.1, free port. ``routes`` maps a path to the
    bytes to serve or to a handler function; it may be changed while the server runs."""

    def __init__(
        self, routes: dict[str, Route] | None = None, *, tls: ssl.SSLContext | None = None
    ) -> None:
        self.routes: dict[str, Route] = dict(routes or {})
        self.hits: Counter[str] = Counter()
        self.bodies: dict[str, bytes] = {}
        self.stop = threading.Event()
        outer = self

        class _Handler(BaseHTTPRequestHandler):
            def _dispatch(self) -> None:
                outer.hits[self.path] += 1
                length = int(self.headers.get("Content-Length") or 0)
                outer.bodies[self.path] = self.rfile.read(length) if length else b""
                route = outer.routes.get(self.path)
                try:
                    if route is None:
                        send(self, b"no such file", 404)
                    elif isinstance(route, bytes):
                        send(self, route)
                    else:
                        route(self)
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                    pass

            do_GET = _dispatch
            do_POST = _dispatch

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def slow(self, seconds: float, body: bytes = b"") -> Callable[[BaseHTTPRequestHandler], None]:
        """A route that answers only after ``seconds`` (or at shutdown)."""

        def route(handler: BaseHTTPRequestHandler) -> None:
            self.stop.wait(seconds)
            send(handler, body)

        return route

    def drip(
        self, *, interval: float = 1.0, headers_done: bool = True
    ) -> Callable[[BaseHTTPRequestHandler], None]:
        """A route that answers one byte every ``interval`` seconds for as long as the client
        listens (or until shutdown): a body that never ends after complete headers (which
        announce a 1 MB body), or with ``headers_done=False`` headers that never end. Every
        single read of the client succeeds, so only an overall deadline stops it."""

        def route(handler: BaseHTTPRequestHandler) -> None:
            if headers_done:
                handler.send_response(200)
                handler.send_header("Content-Length", str(MB))
                handler.end_headers()
            else:
                handler.wfile.write(b"HTTP/1.1 200 OK\r\nX-Drip: ")
            while not self.stop.wait(interval):
                handler.wfile.write(b"a")
                handler.wfile.flush()

        return route

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)

    def __enter__(self) -> LocalHttpServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def refused_url(path: str = "/") -> str:
    """A URL on 127.0.0.1 where nothing listens (the port was free a moment ago)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


def tls_server_context(
    folder: Path, cert: x509.Certificate, key: PrivateKey, chain: Sequence[x509.Certificate] = ()
) -> ssl.SSLContext:
    certfile = write(folder / "server-chain.pem", pem(cert, *chain))
    keyfile = write(folder / "server.key", key_pem(key))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certfile, keyfile)
    return context


def fast_fetcher(
    *, timeout: float = 0.5, max_bytes: int = 64 * MB
) -> Callable[[Sequence[x509.Certificate]], Fetcher]:
    """A fetcher factory for ``Node.init``: short timeout, one retry without pause, HTTPS
    verified against the trusted CA list (as the default factory does)."""

    def factory(trusted: Sequence[x509.Certificate]) -> Fetcher:
        return HttpFetcher(
            timeout=timeout,
            retries=1,
            max_bytes=max_bytes,
            sleep=lambda s: None,
            verify=tls_context_for(list(trusted)) if trusted else True,
        )

    return factory


# --------------------------------------------------------------------------- OCSP


def _index_time(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%y%m%d%H%M%SZ")


class OpensslOcspResponder(LocalHttpServer):
    """An OCSP responder for ``ca`` whose answers come from ``openssl ocsp -index``.

    ``good`` serials and ``revoked`` (serial, revocation time, reason) are listed in
    index.txt; any other serial is answered ``unknown``. ``delay`` makes it answer late
    (a responder that times out). ``calls`` counts the answers openssl produced.
    """

    def __init__(
        self,
        openssl: str,
        workdir: Path,
        ca: x509.Certificate,
        ca_key: PrivateKey,
        *,
        good: Sequence[int] = (),
        revoked: Sequence[tuple[int, dt.datetime, str]] = (),
        delay: float = 0.0,
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        write(workdir / "ca.pem", pem(ca))
        write(workdir / "ca.key", key_pem(ca_key))
        expiry = _index_time(ca.not_valid_after_utc)
        lines = [f"V\t{expiry}\t\t{serial:X}\tunknown\t/CN=good\n" for serial in good]
        lines += [
            f"R\t{expiry}\t{_index_time(when)},{reason}\t{serial:X}\tunknown\t/CN=revoked\n"
            for serial, when, reason in revoked
        ]
        write(workdir / "index.txt", "".join(lines).encode())
        self.calls = 0
        lock = threading.Lock()

        def answer(handler: BaseHTTPRequestHandler) -> None:
            if delay:
                self.stop.wait(delay)
                if self.stop.is_set():
                    return
            with lock:
                number = self.calls
                self.calls += 1
            request = write(workdir / f"req{number}.der", self.bodies[handler.path])
            response = workdir / f"resp{number}.der"
            subprocess.run(
                [
                    openssl, "ocsp", "-index", str(workdir / "index.txt"),
                    "-CA", str(workdir / "ca.pem"), "-rsigner", str(workdir / "ca.pem"),
                    "-rkey", str(workdir / "ca.key"), "-reqin", str(request),
                    "-respout", str(response), "-ndays", "1",
                ],
                check=True,
                capture_output=True,
                timeout=10,
            )  # fmt: skip
            send(handler, response.read_bytes(), Content_Type="application/ocsp-response")

        super().__init__({"/ocsp": answer})
