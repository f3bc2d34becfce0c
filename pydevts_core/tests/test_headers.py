"""Event headers on the wire (sans-IO): round trips, bounds, and hostile header blocks."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydevts.errors import LocalProtocolError, RemoteProtocolError
from pydevts.headers import MAX_BLOCK, MAX_HEADERS, MAX_VALUE, checked_headers, decode_headers, encode_headers
from pydevts.wire import (
    ERROR,
    EVENT,
    EVENT_H,
    REPLY,
    REQUEST,
    decode_message,
    encode_event,
    encode_reply,
    encode_request,
    message_name,
    request_id_of,
)

KEYS = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.", min_size=1, max_size=64
)
VALUES = st.text(max_size=200)
HEADERS = st.dictionaries(KEYS, VALUES, max_size=8)


def test_a_message_without_headers_is_sent_exactly_as_before() -> None:
    assert encode_event("greet", b"x") == b"\x01\x05greetx"
    assert encode_event("greet", b"x", {}) == encode_event("greet", b"x", None) == b"\x01\x05greetx"
    assert encode_request(7, "add", b"p")[0] == REQUEST
    assert encode_reply(7, b"p")[0] == REPLY
    assert decode_message(encode_event("greet", b"x")).headers == {}


@given(headers=HEADERS, payload=st.binary(max_size=64), name=st.text(min_size=1, max_size=40))
@settings(max_examples=200, deadline=None)
def test_headers_round_trip_on_events_requests_and_replies(
    headers: dict[str, str], payload: bytes, name: str
) -> None:
    if len(name.encode()) > 255:
        return
    event = decode_message(encode_event(name, payload, headers))
    assert (event.kind, event.name, event.payload, dict(event.headers)) == (EVENT, name, payload, headers)
    request = decode_message(encode_request(99, name, payload, headers))
    assert (request.kind, request.request_id, request.name, request.payload) == (REQUEST, 99, name, payload)
    assert dict(request.headers) == headers
    reply = decode_message(encode_reply(99, payload, headers))
    assert (reply.kind, reply.request_id, reply.payload, dict(reply.headers)) == (REPLY, 99, payload, headers)
    assert request_id_of(encode_request(99, name, payload, headers)) == 99
    assert message_name(encode_event(name, payload, headers)) == (EVENT, name)


@pytest.mark.parametrize(
    ("headers", "says"),
    [
        ({f"k{i}": "v" for i in range(MAX_HEADERS + 1)}, "at most 32 headers"),
        ({"bad key": "v"}, "header name 'bad key'"),
        ({"": "v"}, "header name ''"),
        ({"k" * 65: "v"}, "must be 1 to 64"),
        ({"k": "é" * MAX_VALUE}, "over 1024 bytes"),
        ({"k": 3}, "must be a string"),
    ],
)
def test_headers_over_their_bounds_are_refused_to_the_sender(headers: dict[str, object], says: str) -> None:
    with pytest.raises(LocalProtocolError, match=says):
        encode_event("e", b"", headers)  # type: ignore[arg-type]


def test_a_block_over_its_size_is_refused_to_the_sender() -> None:
    headers = {f"k{i:02d}": "v" * 500 for i in range(9)}  # each within bounds, 4.5 kB together
    with pytest.raises(LocalProtocolError, match=f"at most {MAX_BLOCK}"):
        encode_headers(checked_headers(headers))


def _block(*items: tuple[bytes, bytes], count: int | None = None, extra: bytes = b"") -> bytes:
    body = bytes((len(items) if count is None else count,))
    for key, value in items:
        body += bytes((len(key),)) + key + struct.pack(">H", len(value)) + value
    body += extra
    return struct.pack(">H", len(body)) + body


@pytest.mark.parametrize(
    ("block", "says"),
    [
        (_block((b"a", b"1"), (b"a", b"2")), "given twice"),
        (_block((b"a", b"1"), count=40), "at most 32"),
        (_block((b"a b", b"1")), "bad header name"),
        (_block((b"a", b"\xff")), "malformed header block"),
        (_block((b"a", b"1"), extra=b"zz"), "bytes after"),
        (_block((b"a", b"1"), count=2), "malformed header block|runs past"),
        (struct.pack(">H", 0), "empty header block"),
        (struct.pack(">H", 50) + b"\x01", "runs past the end"),
        (struct.pack(">H", MAX_BLOCK + 1) + b"\x00" * (MAX_BLOCK + 1), "at most 4096"),
    ],
)
def test_a_hostile_header_block_is_refused_saying_why(block: bytes, says: str) -> None:
    with pytest.raises(RemoteProtocolError, match=says):
        decode_message(bytes((EVENT_H,)) + block + b"\x01e")


def test_a_headed_frame_cut_short_is_refused() -> None:
    with pytest.raises(RemoteProtocolError, match="no header block length"):
        decode_message(bytes((EVENT_H, 0)))


def test_a_value_length_over_the_bound_is_refused_before_reading_it() -> None:
    block = b"\x01\x01a" + struct.pack(">H", MAX_VALUE + 1) + b"x" * (MAX_VALUE + 1)
    with pytest.raises(RemoteProtocolError, match="at most 1024"):
        decode_headers(struct.pack(">H", len(block)) + block, 0)


@given(body=st.binary(max_size=300), kind=st.sampled_from([0x11, 0x12, 0x13]))
@settings(max_examples=1500, deadline=None)
def test_random_headed_frames_decode_or_are_refused_never_crash(body: bytes, kind: int) -> None:
    try:
        msg = decode_message(bytes((kind,)) + body)
    except RemoteProtocolError:
        return
    assert msg.kind in (EVENT, REQUEST, REPLY, ERROR)
    assert len(msg.headers) <= MAX_HEADERS
    assert all(len(v.encode()) <= MAX_VALUE for v in msg.headers.values())
