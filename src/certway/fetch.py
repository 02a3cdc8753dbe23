"""Fetching CRLs and OCSP answers over HTTP(S), and unpacking CRL downloads.

:class:`HttpFetcher` is the one place certway talks HTTP to CRL distribution points and
OCSP responders. It follows up to 5 redirects, limits the body size while streaming it,
retries connection errors, timeouts and 5xx answers with exponential backoff (never 4xx),
and turns every failure into a :class:`~certway.errors.FetchError` whose message names the
URL and what happened. HTTPS sources are verified against ``verify``: pass
``tls_context_for(trusted_cas)`` to trust exactly certway's trusted CA list.

Each fetch has an overall **deadline** (connect, TLS, headers, body, retries and pauses
together), not only httpx's per-read timeout: a server that sends one byte every few seconds
never trips a per-read timeout. The deadline is enforced three ways: every httpx timeout of
an attempt is capped by the time left; the body is streamed and the clock checked between
chunks; and a watchdog timer shuts the connection's socket down when the deadline passes,
which wakes a read blocked on a server that trickles its headers or body (a socket closed
from another thread would not). Name resolution (``getaddrinfo``) cannot be interrupted: it
is left to the system resolver's timeouts.

:class:`FetchPool` bounds how many fetches run at once and gives work that may fetch (a SIP
peer's validation) threads of its own, so slow servers cannot starve the listeners.

:func:`unpack_crls` reads what a CRL URL serves, detected from content: a PEM file with
one or more CRLs, a DER CRL, a ZIP or a GZIP holding them. Archives are unpacked with
limits, so a decompression bomb raises :class:`~certway.errors.PolicyViolation`
(``crl-archive-too-large``) instead of filling memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import io
import socket
import ssl
import threading
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, TypeVar

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certway import __version__
from certway.errors import DecodeError, FetchError, PolicyViolation
from certway.pki.encoding import is_pem
from certway.pki.load import load_crl_der, load_crls
from certway.tlsconf.policy import INTERMEDIATE, TlsProfile
from certway.waiting import check_may_wait

__all__ = [
    "MAX_REDIRECTS",
    "USER_AGENT",
    "FetchPool",
    "FetchPoolBusy",
    "HttpFetcher",
    "tls_context_for",
    "unpack_crls",
]

USER_AGENT = f"certway/{__version__}"
MAX_REDIRECTS = 5

_CHUNK = 64 * 1024
_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_NOT_A_CRL = "the data is not a CRL (PEM, DER, ZIP or GZIP)"
T = TypeVar("T")


# --------------------------------------------------------------------------- fetcher


class _Retry(Exception):
    """A failure worth another attempt; ``str()`` says what happened."""


class _Deadline:
    """The overall deadline of one fetch, with a watchdog that shuts the connection down
    when it passes.

    httpcore reports each new TCP connection through the ``trace`` request extension; the
    watchdog keeps a duplicate of that socket (so it can never shut down a descriptor that
    was closed and reused meanwhile) and, at the deadline, calls ``shutdown()`` on it: a
    read or write blocked on the connection returns at once.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._expired = False
        self._finished = False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()
        with self._lock:
            self._finished = True
            self._forget_socket()

    @property
    def remaining(self) -> float:
        return self._end - time.monotonic()

    @property
    def passed(self) -> bool:
        return self._expired or self.remaining <= 0

    def error(self, url: str) -> FetchError:
        return FetchError(
            f"fetching {url} failed: no complete answer within the {self.seconds:.3g} s deadline"
        )

    def check(self, url: str) -> None:
        if self.passed:
            raise self.error(url)

    def trace(self, event: str, info: Mapping[str, Any]) -> None:
        """httpcore's ``trace`` extension: remember each new connection's socket."""
        if not event.endswith("connect_tcp.complete"):
            return
        stream = info.get("return_value")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if not isinstance(sock, socket.socket):
            return
        with self._lock:
            self._forget_socket()
            if self._finished:
                return
            self._socket = sock.dup()
            if self._expired:
                self._shutdown()

    def _expire(self) -> None:
        with self._lock:
            if self._finished:
                return
            self._expired = True
            self._shutdown()

    def _shutdown(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)

    def _forget_socket(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


class HttpFetcher:
    """A small synchronous HTTP client for CRL downloads (``get``) and OCSP (``post``).

    ``timeout`` bounds each network operation (connect, one read, one write); ``deadline``
    bounds a whole ``get`` or ``post``, retries included (a call may pass its own).
    ``sleep`` is called between attempts (tests pass a no-op); ``transport`` replaces the
    network (``httpx.MockTransport`` in tests).
    """

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        deadline: float = 30.0,
        max_bytes: int = 64 * 1024 * 1024,
        retries: int = 2,
        backoff: float = 0.5,
        verify: ssl.SSLContext | bool = True,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if deadline <= 0:
            raise ValueError("deadline must be positive")
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        if retries < 0:
            raise ValueError("retries must not be negative")
        self.timeout = timeout
        self.deadline = deadline
        self.max_bytes = max_bytes
        self.retries = retries
        self.backoff = backoff
        self._sleep = sleep
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout),
            follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
            verify=verify,
            transport=transport,
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
            # A fresh connection per request: the deadline's watchdog learns each
            # connection's socket when it is opened.
            limits=httpx.Limits(max_keepalive_connections=0),
        )

    def get(self, url: str, *, deadline: float | None = None) -> bytes:
        """The body of ``url`` (HTTP GET), within ``deadline`` seconds (default: the
        fetcher's)."""
        return self._fetch("GET", url, None, None, deadline)

    def post(
        self, url: str, body: bytes, content_type: str, *, deadline: float | None = None
    ) -> bytes:
        """The body answered to a POST of ``body`` (e.g. ``application/ocsp-request``)."""
        return self._fetch("POST", url, body, content_type, deadline)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpFetcher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ----------------------------------------------------------------- internals

    def _fetch(
        self,
        method: str,
        url: str,
        body: bytes | None,
        content_type: str | None,
        deadline: float | None,
    ) -> bytes:
        _check_url(url)
        check_may_wait("a network fetch")
        seconds = self.deadline if deadline is None else deadline
        if seconds <= 0:
            raise ValueError("deadline must be positive")
        headers = {"Content-Type": content_type} if content_type else None
        attempts = self.retries + 1
        with _Deadline(seconds) as limit:
            for attempt in range(attempts):
                try:
                    return self._once(method, url, body, headers, limit)
                except _Retry as exc:
                    if attempt + 1 == attempts:
                        tries = f" ({attempts} attempts)" if attempts > 1 else ""
                        raise FetchError(f"fetching {url} failed: {exc}{tries}") from exc
                    pause = self.backoff * 2**attempt
                    if pause >= limit.remaining:
                        raise FetchError(
                            f"fetching {url} failed: {exc}; the {seconds:.3g} s deadline "
                            "leaves no time for another attempt"
                        ) from exc
                    self._sleep(pause)
        raise AssertionError("unreachable")  # pragma: no cover

    def _once(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: dict[str, str] | None,
        limit: _Deadline,
    ) -> bytes:
        limit.check(url)
        capped = limit.remaining < self.timeout
        timeout = min(self.timeout, max(limit.remaining, 0.001))
        try:
            with self._client.stream(
                method,
                url,
                content=body,
                headers=headers,
                timeout=httpx.Timeout(timeout),
                extensions={"trace": limit.trace},
            ) as response:
                status = response.status_code
                if status >= 400:
                    what = f"HTTP {status} {response.reason_phrase}".rstrip()
                    if status >= 500:
                        raise _Retry(what)
                    raise FetchError(f"fetching {url} failed: {what}")
                data = self._read(url, response, limit)
        except httpx.TimeoutException as exc:
            if capped or limit.passed:
                raise limit.error(url) from exc
            raise _Retry(f"timed out after {self.timeout:g} s") from exc
        except httpx.TooManyRedirects as exc:
            raise FetchError(f"fetching {url} failed: more than {MAX_REDIRECTS} redirects") from exc
        except httpx.UnsupportedProtocol as exc:
            raise FetchError(
                f"fetching {url} failed: redirected to a URL that is not http or https"
            ) from exc
        except httpx.ConnectError as exc:
            limit.check(url)
            _raise_tls_error(url, exc)
            raise _Retry(_connect_reason(exc)) from exc
        except (httpx.TransportError, httpx.DecodingError) as exc:
            limit.check(url)  # the watchdog shut the connection down
            raise _Retry(f"the connection failed: {_cause_text(exc)}") from exc
        # A body cut short by the watchdog may look complete (no Content-Length).
        limit.check(url)
        return data

    def _read(self, url: str, response: httpx.Response, limit: _Deadline) -> bytes:
        declared = response.headers.get("Content-Length")
        if declared is not None and declared.strip().isdigit() and int(declared) > self.max_bytes:
            raise FetchError(f"{url} is larger than {self.max_bytes} bytes")
        data = bytearray()
        limit.check(url)
        for chunk in response.iter_bytes():
            limit.check(url)
            data += chunk
            if len(data) > self.max_bytes:
                raise FetchError(f"{url} is larger than {self.max_bytes} bytes")
        return bytes(data)


# --------------------------------------------------------------------------- pool


class FetchPoolBusy(FetchError):
    """Every fetch slot is taken: the URL was not asked (nothing is known about it)."""


class FetchPool:
    """Where revocation fetches run, bounded so that slow servers cannot starve anything else.

    ``slot`` admits at most ``slots`` fetches at once in the whole node (every OCSP request,
    CDP download and CRL source download takes one); a caller that finds them all busy
    waits at most ``wait`` seconds, then gets a ``FetchError``. ``executor`` runs work that
    may fetch (a SIP peer's validation, a scheduled CRL update) off the event loop and off
    asyncio's default executor, which stays free for the hot-reload poller and the
    scheduler. It has ``slots`` threads more than there are slots, so work that needs no
    fetch finds a free thread even while every slot is held by a slow server.
    """

    def __init__(self, slots: int = 8) -> None:
        if slots < 1:
            raise ValueError("slots must be at least 1")
        self.slots = slots
        self._free = threading.BoundedSemaphore(slots)
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False

    @contextlib.contextmanager
    def slot(self, url: str, *, wait: float = 0.0) -> Iterator[None]:
        """Hold one of the fetch slots while fetching ``url``."""
        if wait > 0:
            check_may_wait("a revocation fetch slot")
        acquired = self._free.acquire(timeout=wait) if wait > 0 else self._free.acquire(False)
        if not acquired:
            waited = f" (waited {wait:.3g} s)" if wait > 0 else ""
            raise FetchPoolBusy(
                f"{url} was not asked: all {self.slots} revocation fetch slots are busy{waited}"
            )
        try:
            yield
        finally:
            self._free.release()

    @property
    def executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                if self._closed:
                    raise RuntimeError("the fetch pool is closed")
                self._executor = ThreadPoolExecutor(
                    max_workers=2 * self.slots, thread_name_prefix="certway-fetch"
                )
            return self._executor

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the pool's executor, awaited from the event loop, in a copy of the
        caller's context (as ``asyncio.to_thread``): it acts as whoever the caller acts as."""
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        return await loop.run_in_executor(self.executor, functools.partial(context.run, fn, *args))

    def close(self) -> None:
        """Stop the executor's threads once their current work is done (not waited for)."""
        with self._lock:
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


def _check_url(url: str) -> None:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise FetchError(f"'{url}' is not a valid URL: {exc}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise FetchError(f"'{url}' is not an http or https URL")


def _causes(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _cause_text(exc: BaseException) -> str:
    for cause in reversed(_causes(exc)):
        text = str(cause).strip()
        if text:
            return text.splitlines()[0]
    return type(exc).__name__


def _raise_tls_error(url: str, exc: BaseException) -> None:
    for cause in _causes(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            reason = cause.verify_message or cause.reason or str(cause)
            raise FetchError(f"TLS certificate of {url} is not trusted: {reason}") from exc
        if isinstance(cause, ssl.SSLError):
            reason = cause.reason or str(cause)
            raise FetchError(f"TLS handshake with {url} failed: {reason}") from exc


def _connect_reason(exc: BaseException) -> str:
    for cause in _causes(exc):
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
    text = _cause_text(exc)
    if "refused" in text.lower():
        return "connection refused"
    return f"cannot connect: {text}"


# --------------------------------------------------------------------------- TLS


def tls_context_for(
    trusted: list[x509.Certificate], *, profile: TlsProfile = INTERMEDIATE
) -> ssl.SSLContext:
    """A client context with the TLS ``profile`` that trusts exactly the CA certificates
    ``trusted`` (with none, httpx's default CA bundle, as ``verify=True`` would)."""
    context = profile.apply(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    if trusted:
        pem = b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in trusted)
        context.load_verify_locations(cadata=pem.decode("ascii"))
    else:
        import certifi

        context.load_verify_locations(cafile=certifi.where())
    return context


# --------------------------------------------------------------------------- unpack


def unpack_crls(
    data: bytes, *, max_total: int = 256 * 1024 * 1024, max_members: int = 1000
) -> list[x509.CertificateRevocationList]:
    """Every CRL in ``data``: PEM (one or more ``X509 CRL`` blocks), DER, or a ZIP or
    GZIP holding those, detected from content.

    ``max_total`` bounds the unpacked size of an archive and ``max_members`` the number
    of files in a ZIP; beyond them ``PolicyViolation`` is raised. Anything unreadable
    raises ``DecodeError``.
    """
    if not data.strip():
        raise DecodeError("the data is empty: no CRL")
    if data.startswith(_GZIP_MAGIC):
        return _crls_of(_gunzip(data, max_total), "the GZIP content")
    if data.startswith(_ZIP_MAGICS):
        return _unzip_crls(data, max_total, max_members)
    return _crls_of(data, None)


def _crls_of(data: bytes, where: str | None) -> list[x509.CertificateRevocationList]:
    """The CRLs of PEM or DER ``data``; ``where`` names an archive member in messages."""
    if not data.strip():
        raise DecodeError(f"{where} is empty: no CRL" if where else "the data is empty: no CRL")
    if is_pem(data):
        try:
            crls = load_crls(data)
        except DecodeError as exc:
            raise DecodeError(f"{where} is not a CRL: {exc}" if where else str(exc)) from exc
        if not crls:
            raise DecodeError(f"{where or 'the PEM data'} holds no CRL")
        return crls
    try:
        return [load_crl_der(data)]
    except DecodeError as exc:
        message = f"{where} is not a CRL (PEM or DER)" if where else _NOT_A_CRL
        raise DecodeError(message) from exc


def _too_large(max_total: int) -> PolicyViolation:
    return PolicyViolation(
        "crl-archive-too-large",
        f"the CRL archive unpacks to more than {max_total} bytes, the limit",
    )


def _gunzip(data: bytes, max_total: int) -> bytes:
    """Decompress (possibly multi-member) GZIP data, never producing more than
    ``max_total`` bytes."""
    out = bytearray()
    rest = data
    try:
        while rest:
            decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
            pending = rest
            while True:
                chunk = decompressor.decompress(pending, _CHUNK)
                out += chunk
                if len(out) > max_total:
                    raise _too_large(max_total)
                pending = decompressor.unconsumed_tail
                if decompressor.eof or (not pending and not chunk):
                    break
            if not decompressor.eof:
                raise DecodeError("the GZIP data is truncated")
            rest = decompressor.unused_data
            if not rest.strip(b"\0"):
                break  # trailing NUL padding (tape-era tools) is allowed, as by gzip(1)
            if not rest.startswith(_GZIP_MAGIC):
                raise DecodeError("the GZIP data has trailing garbage")
    except zlib.error as exc:
        raise DecodeError(f"the GZIP data is corrupt: {exc}") from exc
    return bytes(out)


def _unzip_crls(
    data: bytes, max_total: int, max_members: int
) -> list[x509.CertificateRevocationList]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise DecodeError(f"the ZIP archive is corrupt: {exc}") from exc
    except NotImplementedError as exc:  # e.g. a version field no reader supports
        raise DecodeError(f"the ZIP archive cannot be read: {exc}") from exc
    with archive:
        members = [info for info in archive.infolist() if not info.is_dir()]
        if len(members) > max_members:
            raise PolicyViolation(
                "crl-archive-too-many-members",
                f"the CRL archive holds {len(members)} files, more than the limit of {max_members}",
            )
        if sum(info.file_size for info in members) > max_total:
            raise _too_large(max_total)
        crls: list[x509.CertificateRevocationList] = []
        total = 0
        for info in members:
            content = _read_member(archive, info, max_total - total, max_total)
            total += len(content)
            crls.extend(_crls_of(content, f"ZIP member '{info.filename}'"))
    if not crls:
        raise DecodeError("the ZIP archive holds no CRL")
    return crls


def _read_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: int, max_total: int
) -> bytes:
    out = bytearray()
    try:
        with archive.open(info) as member:
            while chunk := member.read(_CHUNK):
                out += chunk
                if len(out) > budget:
                    raise _too_large(max_total)
    except (
        zipfile.BadZipFile,
        zlib.error,
        RuntimeError,
        NotImplementedError,
        EOFError,
        OSError,
        ValueError,
    ) as exc:
        raise DecodeError(f"ZIP member '{info.filename}' cannot be read: {exc}") from exc
    return bytes(out)
