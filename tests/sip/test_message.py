"""The SIP message subset: stream framing, keep-alives, limits, malformed input, responses."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from certway.sip.message import (
    PONG,
    Keepalive,
    Message,
    SipError,
    SipFramer,
    bad_request,
    build_response,
    canonical_name,
    method_not_allowed,
    options_ok,
)


def options(
    *,
    call_id: str = "a84b4c76e66710@pc33.example.com",
    extra: str = "",
    body: bytes = b"",
    length: str | None = None,
    compact: bool = False,
) -> bytes:
    if compact:
        head = (
            "OPTIONS sip:sip.example.com SIP/2.0\r\n"
            "v: SIP/2.0/TLS peer.example.com:5061;branch=z9hG4bK776asdhds\r\n"
            "f: <sip:ping@peer.example.com>;tag=1928301774\r\n"
            "t: <sip:sip.example.com>\r\n"
            f"i: {call_id}\r\n"
            "CSeq: 63104 OPTIONS\r\n"
            f"l: {len(body) if length is None else length}\r\n"
        )
    else:
        head = (
            "OPTIONS sip:sip.example.com SIP/2.0\r\n"
            "Via: SIP/2.0/TLS peer.example.com:5061;branch=z9hG4bK776asdhds\r\n"
            "Via: SIP/2.0/TLS proxy.example.com:5061;branch=z9hG4bKnashds8\r\n"
            "Max-Forwards: 70\r\n"
            "From: <sip:ping@peer.example.com>;tag=1928301774\r\n"
            "To: <sip:sip.example.com>\r\n"
            f"Call-ID: {call_id}\r\n"
            "CSeq: 63104 OPTIONS\r\n"
            f"Content-Length: {len(body) if length is None else length}\r\n"
        )
    return (head + extra + "\r\n").encode() + body


def one(data: bytes) -> Message:
    items = SipFramer().feed(data)
    assert len(items) == 1
    item = items[0]
    assert isinstance(item, Message)
    return item


def test_options_request_is_parsed() -> None:
    message = one(options())
    assert message.is_request and message.method == "OPTIONS"
    assert message.uri == "sip:sip.example.com"
    assert message.header("call-id") == "a84b4c76e66710@pc33.example.com"
    assert message.header_values("Via") == [
        "SIP/2.0/TLS peer.example.com:5061;branch=z9hG4bK776asdhds",
        "SIP/2.0/TLS proxy.example.com:5061;branch=z9hG4bKnashds8",
    ]


def test_compact_header_forms_are_accepted() -> None:
    message = one(options(compact=True))
    assert message.header("Call-ID") == "a84b4c76e66710@pc33.example.com"
    assert message.header("From") == "<sip:ping@peer.example.com>;tag=1928301774"
    assert message.header("Via") is not None and message.header("i") is not None
    assert canonical_name("l") == "Content-Length"
    assert canonical_name("CALL-ID") == "Call-ID"
    assert canonical_name("cseq") == "CSeq"
    assert canonical_name("m") == "Contact"


def test_body_is_framed_by_content_length() -> None:
    data = options(body=b"v=0\r\n\r\nxyz") + options(call_id="second")
    items = SipFramer().feed(data)
    assert [i.body for i in items if isinstance(i, Message)] == [b"v=0\r\n\r\nxyz", b""]
    assert items[1].header("Call-ID") == "second"  # type: ignore[union-attr]


def test_byte_by_byte_delivery_gives_the_same_messages() -> None:
    framer = SipFramer()
    data = options(body=b"abc") + b"\r\n\r\n" + options(call_id="two")
    items: list[Message | Keepalive] = []
    for byte in data:
        items += framer.feed(bytes([byte]))
    assert len(items) == 3
    assert isinstance(items[1], Keepalive)
    assert isinstance(items[0], Message) and items[0].body == b"abc"
    assert not framer.in_message and framer.buffered == 0


def test_crlf_ping_between_messages_is_a_keepalive() -> None:
    framer = SipFramer()
    assert framer.feed(b"\r\n\r\n") == [Keepalive()]
    assert framer.feed(b"\r\n") == []  # maybe the start of a ping: wait
    assert framer.feed(b"\r\n") == [Keepalive()]
    assert PONG == b"\r\n"


def test_lone_crlf_before_a_message_is_ignored() -> None:
    items = SipFramer().feed(b"\r\n" + options())
    assert len(items) == 1 and isinstance(items[0], Message)


def test_response_is_parsed_as_a_response() -> None:
    data = (
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TLS a;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n"
        b"To: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    message = one(data)
    assert not message.is_request and message.status == 200 and message.reason == "OK"


def test_content_length_is_required_on_streams() -> None:
    data = options().replace(b"Content-Length: 0\r\n", b"")
    with pytest.raises(SipError) as caught:
        SipFramer().feed(data)
    assert caught.value.status == 400 and caught.value.fatal
    assert caught.value.request is not None  # the request could be answered
    assert "Content-Length is required" in str(caught.value)


@pytest.mark.parametrize("value", ["-1", "abc", "1.5", "0x10", "", "１"])
def test_bad_content_length_is_a_400_and_closes(value: str) -> None:
    with pytest.raises(SipError) as caught:
        SipFramer().feed(options(length=value))
    assert caught.value.status == 400 and caught.value.fatal
    assert caught.value.request is not None


@pytest.mark.parametrize("value", ["65537", "99999999999999999999999", "4294967296"])
def test_huge_content_length_is_a_413_and_closes(value: str) -> None:
    with pytest.raises(SipError) as caught:
        SipFramer().feed(options(length=value))
    assert caught.value.status == 413 and caught.value.fatal


def test_conflicting_content_lengths_are_refused() -> None:
    with pytest.raises(SipError, match="conflicting"):
        SipFramer().feed(options(extra="l: 5\r\n"))


def test_oversized_header_block_is_refused_before_it_ends() -> None:
    framer = SipFramer(max_header=1024)
    with pytest.raises(SipError) as caught:
        framer.feed(b"OPTIONS sip:x SIP/2.0\r\n" + b"X-Pad: " + b"a" * 2000)
    assert caught.value.request is None and caught.value.fatal
    with pytest.raises(SipError):  # the stream stays broken
        framer.feed(options())


def test_garbage_cannot_be_answered() -> None:
    with pytest.raises(SipError) as caught:
        SipFramer().feed(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n")
    assert caught.value.request is None
    assert bad_request(caught.value) is None


def test_missing_mandatory_header_closes_without_answer() -> None:
    data = options().replace(b"Call-ID: a84b4c76e66710@pc33.example.com\r\n", b"")
    with pytest.raises(SipError) as caught:
        SipFramer().feed(data)
    assert caught.value.request is None and "Call-ID" in str(caught.value)


def test_wrong_version_is_a_505_and_the_stream_continues() -> None:
    framer = SipFramer()
    with pytest.raises(SipError) as caught:
        framer.feed(options().replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1))
    assert caught.value.status == 505 and not caught.value.fatal
    assert len(framer.feed(options())) == 1


def test_cseq_method_must_match() -> None:
    with pytest.raises(SipError, match="CSeq method") as caught:
        SipFramer().feed(options().replace(b"CSeq: 63104 OPTIONS", b"CSeq: 63104 INVITE"))
    answer = bad_request(caught.value, tag="t1")
    assert answer is not None and answer.startswith(b"SIP/2.0 400 Bad Request\r\n")


def test_messages_before_an_error_are_kept() -> None:
    with pytest.raises(SipError) as caught:
        SipFramer().feed(options() + b"\r\n\r\n" + b"NOT SIP AT ALL\r\n\r\n")
    assert [type(i) for i in caught.value.preceding] == [Message, Keepalive]


def test_control_characters_in_headers_are_refused() -> None:
    with pytest.raises(SipError) as caught:
        SipFramer().feed(options(extra="Subject: a\x00b\r\n"))
    answer = bad_request(caught.value)
    assert answer is not None and b"\x00" not in answer


def test_options_answer_echoes_the_transaction() -> None:
    request = one(options())
    text = options_ok(request, tag="abc").decode()
    lines = text.split("\r\n")
    assert lines[0] == "SIP/2.0 200 OK"
    assert lines[1] == "Via: SIP/2.0/TLS peer.example.com:5061;branch=z9hG4bK776asdhds"
    assert lines[2] == "Via: SIP/2.0/TLS proxy.example.com:5061;branch=z9hG4bKnashds8"
    assert "From: <sip:ping@peer.example.com>;tag=1928301774" in lines
    assert "To: <sip:sip.example.com>;tag=abc" in lines
    assert "Call-ID: a84b4c76e66710@pc33.example.com" in lines
    assert "CSeq: 63104 OPTIONS" in lines
    assert "Allow: OPTIONS" in lines
    assert "Accept: application/sdp" in lines
    assert "Supported:" in lines
    assert "Server: certway" in lines
    assert text.endswith("Content-Length: 0\r\n\r\n")
    # and it parses as a response
    parsed = one(text.encode())
    assert parsed.status == 200 and parsed.header("CSeq") == "63104 OPTIONS"


def test_existing_to_tag_is_kept() -> None:
    request = one(options().replace(b"To: <sip:sip.example.com>", b"To: <sip:x;tag=u>;TAG=k"))
    assert b"To: <sip:x;tag=u>;TAG=k\r\n" in options_ok(request)
    uri_tag_only = one(options().replace(b"To: <sip:sip.example.com>", b"To: <sip:x;tag=u>"))
    assert b"To: <sip:x;tag=u>;tag=" in options_ok(uri_tag_only)


def test_other_methods_get_405_with_allow() -> None:
    invite = (
        options().replace(b"OPTIONS sip:", b"INVITE sip:").replace(b"63104 OPTIONS", b"1 INVITE")
    )
    answer = method_not_allowed(one(invite)).decode()
    assert answer.startswith("SIP/2.0 405 Method Not Allowed\r\n")
    assert "\r\nAllow: OPTIONS\r\n" in answer and "\r\nCSeq: 1 INVITE\r\n" in answer


def test_responses_are_not_answered() -> None:
    response = one(
        b"SIP/2.0 200 OK\r\nv: a\r\nf: b\r\nt: c\r\ni: d\r\nCSeq: 1 OPTIONS\r\nl: 0\r\n\r\n"
    )
    with pytest.raises(ValueError):
        build_response(response, 200, "OK")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_any_bytes_give_messages_or_a_sip_error(data: bytes) -> None:
    framer = SipFramer(max_header=512, max_body=512)
    try:
        items = framer.feed(data)
    except SipError as exc:
        assert 400 <= exc.status < 600
        if exc.request is not None:
            assert bad_request(exc) is not None
        return
    assert all(isinstance(i, Message | Keepalive) for i in items)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                options(),
                options(compact=True),
                options(body=b"hello"),
                b"\r\n\r\n",
                b"OPTIONS sip:x SIP/2.0\r\nContent-Length: -1\r\n\r\n",
                b"\x00\xff garbage\r\n\r\n",
                b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
            ]
        ),
        max_size=6,
    ),
    st.integers(min_value=1, max_value=64),
)
def test_chunking_never_changes_the_outcome(parts: list[bytes], chunk: int) -> None:
    data = b"".join(parts)

    def run(pieces: list[bytes]) -> tuple[list[Message | Keepalive], str | None]:
        framer = SipFramer()
        items: list[Message | Keepalive] = []
        for piece in pieces:
            try:
                items += framer.feed(piece)
            except SipError as exc:
                return items + exc.preceding, f"{exc.status} {exc.detail}"
        return items, None

    whole = run([data])
    chunked = run([data[i : i + chunk] for i in range(0, len(data), chunk)])
    assert whole == chunked
