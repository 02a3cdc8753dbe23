"""The SIP message subset certway speaks over TCP/TLS streams (RFC 3261 §7, §18.3; RFC 5626).

``SipFramer`` cuts a byte stream into messages using Content-Length (mandatory on streams) and
recognises CRLF keep-alive pings between messages. It is pure: bytes in, ``Message`` and
``Keepalive`` objects out, ``SipError`` for anything malformed. Limits bound the work any peer
can cause: the header block and the body have maximum sizes, and header parsing is done once
per message however slowly its bytes arrive.

An error says whether an answer is possible: ``error.request`` is set when the start line and
the headers a response echoes (Via, From, To, Call-ID, CSeq) were read; otherwise the
connection can only be closed. ``error.fatal`` means the stream's framing is lost (close after
answering). Messages parsed before the error, in the same ``feed``, are in
``error.preceding`` so that nothing already received is lost.

``build_response`` and its helpers write the answers: Via (all, in order), From, To (with a tag
added when absent), Call-ID and CSeq echoed, ``Content-Length: 0``.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from certway.errors import CertwayError

__all__ = [
    "ALLOWED_METHODS",
    "MAX_BODY",
    "MAX_HEADER",
    "PONG",
    "Keepalive",
    "Message",
    "SipError",
    "SipFramer",
    "bad_request",
    "build_response",
    "canonical_name",
    "method_not_allowed",
    "options_ok",
]

MAX_HEADER = 16 * 1024
"""Largest start line + header block, in bytes."""
MAX_BODY = 64 * 1024
"""Largest body (Content-Length), in bytes."""
PONG = b"\r\n"
"""The answer to a CRLF keep-alive ping (RFC 5626 §3.5.1)."""
ALLOWED_METHODS = ("OPTIONS",)
SERVER = "certway"

_PING = b"\r\n\r\n"
_END_OF_HEAD = b"\r\n\r\n"
# RFC 3261 §7.3.3 compact forms.
_COMPACT = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}
_SPECIAL = {
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "www-authenticate": "WWW-Authenticate",
    "mime-version": "MIME-Version",
    "rack": "RAck",
    "rseq": "RSeq",
}
_TOKEN = re.compile(r"[A-Za-z0-9.!%*_+`'~-]+")
_REQUEST_LINE = re.compile(r"([A-Za-z0-9.!%*_+`'~-]+) (\S+) (SIP/\d+\.\d+)")
_STATUS_LINE = re.compile(r"(SIP/\d+\.\d+) ([1-6]\d\d) ([^\x00-\x08\x0a-\x1f\x7f]*)")
_CTL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_CSEQ = re.compile(r"(\d{1,10})\s+([A-Za-z0-9.!%*_+`'~-]+)")
_TAG = re.compile(r";\s*tag\s*=", re.IGNORECASE)
_ECHOED = ("Via", "From", "To", "Call-ID", "CSeq")


def canonical_name(name: str) -> str:
    """The full, conventionally capitalised form of a header name (``i`` → ``Call-ID``)."""
    lower = name.lower()
    if lower in _COMPACT:
        return _COMPACT[lower]
    if lower in _SPECIAL:
        return _SPECIAL[lower]
    return "-".join(part.capitalize() for part in lower.split("-"))


@dataclass(frozen=True, slots=True)
class Keepalive:
    """A CRLF keep-alive ping; answer it with ``PONG``."""


@dataclass(frozen=True, slots=True)
class Message:
    """A request (``method`` set) or a response (``status`` set)."""

    start_line: str
    headers: tuple[tuple[str, str], ...]
    """(canonical name, value) in the order received; one entry per header line."""
    body: bytes = b""
    method: str | None = None
    uri: str | None = None
    status: int | None = None
    reason: str | None = None

    @property
    def is_request(self) -> bool:
        return self.method is not None

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (any form: ``i`` or ``Call-ID``), or None."""
        wanted = canonical_name(name)
        return next((v for n, v in self.headers if n == wanted), None)

    def header_values(self, name: str) -> list[str]:
        """Every line of header ``name``, in order."""
        wanted = canonical_name(name)
        return [v for n, v in self.headers if n == wanted]

    @property
    def respondable(self) -> bool:
        """A request carrying what a response must echo."""
        return self.is_request and all(self.header(h) for h in _ECHOED)


class SipError(CertwayError):
    """Malformed SIP. ``status``/``reason`` is the answer to send when ``request`` is set."""

    def __init__(
        self,
        status: int,
        reason: str,
        *,
        request: Message | None = None,
        fatal: bool = True,
        detail: str | None = None,
    ) -> None:
        super().__init__(detail or reason)
        self.status = status
        self.reason = reason
        self.request = request if request is not None and request.respondable else None
        self.fatal = fatal or self.request is None
        self.detail = detail or reason
        self.preceding: list[Message | Keepalive] = []


@dataclass(slots=True)
class _Head:
    message: Message
    body_start: int
    total: int  # bytes of head + body
    problem: SipError | None


def _parse_head(block: bytes) -> tuple[Message, list[str]]:
    """Start line and headers of one message (without body); problems that still allow an
    answer are returned, problems that do not are raised."""
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError:
        raise SipError(400, "Bad Request", detail="the message is not UTF-8 text") from None
    lines = text.split("\r\n")
    start = lines[0]
    problems: list[str] = []
    method = uri = reason = None
    status: int | None = None
    request = _REQUEST_LINE.fullmatch(start)
    if request is not None:
        method, uri, version = request.group(1), request.group(2), request.group(3)
        if _CTL.search(uri):
            raise SipError(400, "Bad Request", detail="control characters in the request line")
        if version.upper() != "SIP/2.0":
            problems.append(f"505:version {version} is not supported")
        if ":" not in uri:
            problems.append(f"400:the request URI '{uri[:80]}' has no scheme")
    else:
        response = _STATUS_LINE.fullmatch(start)
        if response is None:
            raise SipError(400, "Bad Request", detail="not a SIP request or status line")
        status, reason = int(response.group(2)), response.group(3)
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:  # folded continuation line
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {line.strip()}")
            continue
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")
        if not colon or not _TOKEN.fullmatch(name):
            problems.append(f"400:malformed header line '{line[:40]}'")
            continue
        if _CTL.search(value):
            problems.append(f"400:control characters in header {name}")
            continue
        headers.append((canonical_name(name), value.strip(" \t")))
    message = Message(start, tuple(headers), b"", method, uri, status, reason)
    return message, problems


def _content_length(message: Message) -> int:
    values = {v.strip() for v in message.header_values("Content-Length")}
    if not values:
        raise SipError(
            400,
            "Bad Request",
            request=message,
            detail="Content-Length is required on stream transports",
        )
    if len(values) > 1:
        raise SipError(
            400, "Bad Request", request=message, detail="conflicting Content-Length headers"
        )
    text = values.pop()
    if not text.isascii() or not text.isdigit():
        raise SipError(
            400,
            "Bad Request",
            request=message,
            detail=f"Content-Length '{text[:20]}' is not a non-negative number",
        )
    if len(text) > 10 or int(text) > MAX_BODY:
        raise SipError(
            413,
            "Request Entity Too Large",
            request=message,
            detail=f"Content-Length {text[:20]} exceeds the limit",
        )
    return int(text)


def _semantic_problem(message: Message, problems: Sequence[str]) -> SipError | None:
    """The first reason to answer with an error although the framing is sound."""
    missing = [h for h in _ECHOED if not message.header(h)]
    if missing:
        return SipError(
            400, "Bad Request", detail=f"missing mandatory header {', '.join(missing)}", fatal=True
        )
    if message.is_request:
        cseq = _CSEQ.fullmatch(message.header("CSeq") or "")
        if cseq is None or int(cseq.group(1)) >= 2**31:
            problems = [*problems, "400:malformed CSeq"]
        elif cseq.group(2) != message.method:
            problems = [*problems, "400:the CSeq method differs from the request method"]
    if not problems:
        return None
    code, _, text = problems[0].partition(":")
    status = int(code)
    reason = "Version Not Supported" if status == 505 else "Bad Request"
    return SipError(status, reason, request=message, fatal=False, detail=text)


@dataclass(slots=True)
class SipFramer:
    """Incremental parser for one connection's byte stream."""

    max_header: int = MAX_HEADER
    max_body: int = MAX_BODY
    _buffer: bytearray = field(default_factory=bytearray)
    _scanned: int = 0
    _head: _Head | None = None
    _broken: SipError | None = None

    @property
    def in_message(self) -> bool:
        """True while part of a message (not just keep-alive CRLFs) is buffered."""
        return self._head is not None or bool(self._buffer.lstrip(b"\r\n"))

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Message | Keepalive]:
        """Add bytes; return the complete messages and pings they finish."""
        if self._broken is not None:
            raise self._broken
        self._buffer += data
        items: list[Message | Keepalive] = []
        try:
            while True:
                item = self._next()
                if item is None:
                    return items
                items.append(item)
        except SipError as exc:
            if exc.fatal:
                self._broken = exc
                self._buffer.clear()
            exc.preceding = items
            raise

    def _next(self) -> Message | Keepalive | None:
        if self._head is None:
            while self._buffer.startswith(b"\r\n"):
                if self._buffer.startswith(_PING):
                    del self._buffer[:4]
                    self._scanned = 0
                    return Keepalive()
                if _PING.startswith(bytes(self._buffer)):
                    return None  # "\r\n" or "\r\n\r": wait for the rest of a ping
                del self._buffer[:2]  # a lone CRLF (a pong, or padding): ignored
            end = self._buffer.find(_END_OF_HEAD, max(0, self._scanned - 3))
            if end < 0:
                self._scanned = len(self._buffer)
                if len(self._buffer) > self.max_header:
                    raise SipError(
                        400, "Bad Request", detail=f"header block exceeds {self.max_header} bytes"
                    )
                return None
            if end + 4 > self.max_header:
                raise SipError(
                    400, "Bad Request", detail=f"header block exceeds {self.max_header} bytes"
                )
            message, problems = _parse_head(bytes(self._buffer[:end]))
            length = _content_length(message)
            if length > self.max_body:
                raise SipError(
                    413,
                    "Request Entity Too Large",
                    request=message,
                    detail=f"body of {length} bytes exceeds {self.max_body}",
                )
            problem = _semantic_problem(message, problems)
            self._head = _Head(message, end + 4, end + 4 + length, problem)
        head = self._head
        if len(self._buffer) < head.total:
            return None
        body = bytes(self._buffer[head.body_start : head.total])
        del self._buffer[: head.total]
        self._head = None
        self._scanned = 0
        if head.problem is not None:
            raise head.problem
        m = head.message
        return Message(m.start_line, m.headers, body, m.method, m.uri, m.status, m.reason)


def _with_tag(to: str, tag: str) -> str:
    outside = re.sub(r"<[^>]*>", "", to)
    if _TAG.search(outside):
        return to
    return f"{to};tag={tag}"


def build_response(
    request: Message,
    status: int,
    reason: str,
    extra_headers: Iterable[tuple[str, str]] = (),
    *,
    tag: str | None = None,
) -> bytes:
    """A response to ``request`` echoing Via (every line, in order), From, To (with ``tag``,
    random by default, added when it has none), Call-ID and CSeq; no body."""
    if not request.is_request:
        raise ValueError("only requests are answered")
    if not 100 <= status <= 699 or _CTL.search(reason):
        raise ValueError(f"bad status {status} {reason!r}")
    lines = [f"SIP/2.0 {status} {reason}"]
    lines += [f"Via: {v}" for v in request.header_values("Via")]
    lines.append(f"From: {request.header('From') or ''}")
    to = request.header("To") or ""
    if status > 100:
        to = _with_tag(to, tag or secrets.token_hex(8))
    lines.append(f"To: {to}")
    lines.append(f"Call-ID: {request.header('Call-ID') or ''}")
    lines.append(f"CSeq: {request.header('CSeq') or ''}")
    for name, value in extra_headers:
        if _CTL.search(name) or _CTL.search(value):
            raise ValueError(f"control characters in header {name!r}")
        lines.append(f"{name}: {value}" if value else f"{name}:")
    lines.append(f"Server: {SERVER}")
    lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


_CAPABILITIES = (
    ("Allow", ", ".join(ALLOWED_METHODS)),
    ("Accept", "application/sdp"),
    ("Supported", ""),
)


def options_ok(request: Message, *, tag: str | None = None) -> bytes:
    """``200 OK`` to an OPTIONS request, with Allow, Accept and Supported."""
    return build_response(request, 200, "OK", _CAPABILITIES, tag=tag)


def method_not_allowed(request: Message, *, tag: str | None = None) -> bytes:
    """``405 Method Not Allowed`` with Allow."""
    return build_response(
        request, 405, "Method Not Allowed", [("Allow", ", ".join(ALLOWED_METHODS))], tag=tag
    )


def bad_request(error: SipError, *, tag: str | None = None) -> bytes | None:
    """The answer to a malformed request, or None when none is possible."""
    if error.request is None:
        return None
    text = _CTL.sub("?", error.detail).replace('"', "'")
    return build_response(
        error.request, error.status, error.reason, [("Warning", f'399 {SERVER} "{text}"')], tag=tag
    )
