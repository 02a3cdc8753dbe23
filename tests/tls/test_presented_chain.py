"""``presented_chain``: the certificates a TLS peer sent after its leaf, read on real local
connections (client side: ``ssl.SSLSocket``; server side: asyncio's ``ssl.SSLObject``)."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certway.pki.issue import create_root
from certway.tlsconf.presented import MAX_PRESENTED, presented_chain

from conftest import NOW, key_pem, test_key, write
from pkitools import DAY, Pki, name


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def pem(certs: Sequence[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki("Chain", index=70)


def identity(
    tmp_path: Path, pki: Pki, certs: Sequence[x509.Certificate], tag: str
) -> ssl.SSLContext:
    """A context presenting ``certs`` (leaf first) with the PKI's leaf key."""
    side = ssl.PROTOCOL_TLS_SERVER if tag == "server" else ssl.PROTOCOL_TLS_CLIENT
    context = ssl.SSLContext(side)
    context.load_cert_chain(
        write(tmp_path / f"{tag}-chain.pem", pem(certs)),
        write(tmp_path / f"{tag}-key.pem", key_pem(pki.leaf_key)),
    )
    return context


def accept_all_client() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@contextmanager
def tls_server(context: ssl.SSLContext) -> Iterator[int]:
    """A one-connection-at-a-time TLS server on 127.0.0.1 presenting ``context``'s chain."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)  # so that the thread sees ``stop``
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            raw.settimeout(5)
            try:
                with context.wrap_socket(raw, server_side=True) as tls:
                    tls.recv(1)
            except (OSError, ssl.SSLError):
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def client_side_chain(port: int, context: ssl.SSLContext | None = None) -> list[bytes]:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        (context or accept_all_client()).wrap_socket(raw) as tls,
    ):
        chain = presented_chain(tls)
        tls.sendall(b"x")
        return chain


def test_the_intermediate_a_server_presents_comes_back_on_the_client_side(
    tmp_path: Path, pki: Pki
) -> None:
    leaf = pki.leaf("localhost")
    with tls_server(identity(tmp_path, pki, [leaf, pki.intermediate], "server")) as port:
        assert client_side_chain(port) == [der(pki.intermediate)]


def test_a_server_presenting_its_leaf_alone_gives_nothing(tmp_path: Path, pki: Pki) -> None:
    with tls_server(identity(tmp_path, pki, [pki.leaf("localhost")], "server")) as port:
        assert client_side_chain(port) == []


def test_the_leaf_and_repeats_are_dropped_in_the_order_sent(tmp_path: Path, pki: Pki) -> None:
    leaf = pki.leaf("localhost")
    sent = [leaf, pki.intermediate, pki.root, pki.intermediate, leaf]
    with tls_server(identity(tmp_path, pki, sent, "server")) as port:
        assert client_side_chain(port) == [der(pki.intermediate), der(pki.root)]


def test_at_most_max_presented_certificates_are_taken(tmp_path: Path, pki: Pki) -> None:
    key = test_key("ec:p256", 0)
    extra = [
        create_root(key, name(f"Extra {i}"), not_before=NOW - DAY, not_after=NOW + DAY)
        for i in range(MAX_PRESENTED + 3)
    ]
    with tls_server(identity(tmp_path, pki, [pki.leaf("localhost"), *extra], "server")) as port:
        assert client_side_chain(port) == [der(c) for c in extra[:MAX_PRESENTED]]


def test_the_intermediate_a_client_presents_comes_back_on_the_server_side(
    tmp_path: Path, pki: Pki
) -> None:
    """asyncio's server side: an ``ssl.SSLObject``, where OpenSSL's chain leaves the leaf
    out."""
    leaf = pki.leaf("client.example.com")
    server_context = identity(tmp_path, pki, [pki.leaf("localhost")], "server")
    server_context.verify_mode = ssl.CERT_OPTIONAL
    server_context.load_verify_locations(cadata=pem([pki.root]).decode())
    client_context = accept_all_client()
    client_context.load_cert_chain(
        write(tmp_path / "client-chain.pem", pem([leaf, pki.intermediate])),
        write(tmp_path / "client-key.pem", key_pem(pki.leaf_key)),
    )

    async def scenario() -> tuple[object, list[bytes], bytes | None]:
        seen: asyncio.Future[tuple[object, list[bytes], bytes | None]] = (
            asyncio.get_running_loop().create_future()
        )

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            ssl_object = writer.get_extra_info("ssl_object")
            seen.set_result((ssl_object, presented_chain(ssl_object), ssl_object.getpeercert(True)))
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_context)
        port = server.sockets[0].getsockname()[1]
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_context)
            result = await asyncio.wait_for(seen, 5)
            writer.close()
            return result
        finally:
            server.close()
            await server.wait_closed()

    ssl_object, chain, peer = asyncio.run(scenario())
    assert isinstance(ssl_object, ssl.SSLObject)
    assert peer == der(leaf)
    assert chain == [der(pki.intermediate)]


@pytest.mark.parametrize(
    "thing",
    [None, object(), b"not a connection", socket.socket],
    ids=["none", "object", "bytes", "a-class"],
)
def test_anything_but_a_tls_connection_gives_nothing(thing: object) -> None:
    assert presented_chain(thing) == []


def test_a_tls_socket_before_its_handshake_gives_nothing() -> None:
    with socket.socket() as raw:
        tls = accept_all_client().wrap_socket(raw, do_handshake_on_connect=False)
        assert presented_chain(tls) == []
    bio = accept_all_client().wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO())
    assert presented_chain(bio) == []


def test_a_broken_tls_object_gives_nothing(tmp_path: Path, pki: Pki) -> None:
    """Something odd where the C object should be (as a future Python might have) is not an
    error: the leaf alone is judged."""
    leaf = pki.leaf("localhost")
    with (
        tls_server(identity(tmp_path, pki, [leaf, pki.intermediate], "server")) as port,
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        accept_all_client().wrap_socket(raw) as tls,
    ):
        inner = tls._sslobj  # type: ignore[attr-defined]
        try:
            tls._sslobj = object()  # type: ignore[attr-defined]
            assert presented_chain(tls) == []
        finally:
            tls._sslobj = inner  # type: ignore[attr-defined]
        assert presented_chain(tls) == [der(pki.intermediate)]
        tls.sendall(b"x")


def test_a_python_without_the_chain_method_gives_nothing(
    tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    from certway.tlsconf import presented

    monkeypatch.setattr(presented, "_INNER", None)
    leaf = pki.leaf("localhost")
    with tls_server(identity(tmp_path, pki, [leaf, pki.intermediate], "server")) as port:
        assert client_side_chain(port) == []
