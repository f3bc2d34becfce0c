"""Property-based tests: every parser that reads network bytes raises only its typed error.

Random bytes find little; *almost valid* inputs (a valid message with one
byte flipped, cut short or extended; a valid JSON body with one field
replaced by an arbitrary JSON value) find far more, so both are used.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydevts.errors import ConfigurationError, RemoteProtocolError
from pydevts.node.keys import apply_local
from pydevts.wire import (
    HELLO,
    Hello,
    decode_message,
    decode_refuse,
    encode_error,
    encode_event,
    encode_reply,
    encode_request,
)
from pydevts.wire.keyring import Keyring

CASES = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)

VALID_FRAMES = [
    encode_event("greet", b"\x81\xa1x\x01"),
    encode_request(7, "add", b"\x93\x01\x02\x03"),
    encode_reply(7, b"\x06"),
    encode_error(7, 1, "no handler"),
]


def mutated(valid: list[bytes]) -> st.SearchStrategy[bytes]:
    """A valid frame with a byte flipped, the end cut off or junk appended."""

    def mutate(data: tuple[int, int, int, int, bytes]) -> bytes:
        which, position, mask, cut, tail = data
        frame = bytearray(valid[which % len(valid)])
        frame[position % len(frame)] ^= mask or 1
        return bytes(frame[: len(frame) - cut % len(frame)]) + tail

    return st.tuples(
        st.integers(0, 100),
        st.integers(0, 10_000),
        st.integers(0, 255),
        st.integers(0, 64),
        st.binary(max_size=8),
    ).map(mutate)


@given(st.binary(max_size=300) | mutated(VALID_FRAMES))
@CASES
def test_core_frames_decode_or_raise_remote_protocol_error(frame: bytes) -> None:
    try:
        decode_message(frame)
    except RemoteProtocolError:
        pass


GOOD_HELLO = json.loads(
    Hello(
        cluster="c", node_id="n", address="127.0.0.1:7000", serializer="msgpack", tags={"a": "b"}
    ).to_frame()[1:]
)


@given(st.sampled_from(sorted(GOOD_HELLO)) | st.text(max_size=10), json_values)
@settings(max_examples=800, deadline=None)
def test_hello_with_any_field_replaced_parses_or_raises_remote_protocol_error(field: str, value: Any) -> None:
    body = {**GOOD_HELLO, field: value}
    frame = bytes((HELLO,)) + json.dumps(body).encode()
    try:
        hello = Hello.from_frame(frame)
    except RemoteProtocolError:
        return
    assert 0 < len(hello.node_id.encode()) <= 255 and hello.node_id.isprintable()


@given(st.binary(max_size=400) | mutated([Hello("c", "n", "h:1", "s").to_frame()]))
@CASES
def test_hello_bytes_parse_or_raise_remote_protocol_error(frame: bytes) -> None:
    try:
        Hello.from_frame(frame)
    except RemoteProtocolError:
        pass


@given(st.binary(max_size=5000))
@settings(max_examples=300, deadline=None)
def test_refuse_text_is_always_readable(frame: bytes) -> None:
    assert isinstance(decode_refuse(b"\x31" + frame), str)


@settings(max_examples=500, deadline=None)
@given(
    json_values
    | st.fixed_dictionaries({"op": st.sampled_from(["list", "install", "use", "remove"]), "key": json_values})
)
def test_keyring_requests_apply_or_raise_a_clear_error(payload: Any) -> None:
    ring = Keyring([bytes(32)])
    try:
        result = apply_local(ring, payload)
    except (ValueError, ConfigurationError):
        return
    assert ring.primary == bytes(32) and result["primary"]  # only a 32-byte key could change it


@pytest.mark.parametrize("payload", [None, {"op": "list"}])
def test_an_open_node_has_no_keyring_to_change(payload: Any) -> None:
    with pytest.raises((ValueError, ConfigurationError)):
        apply_local(None, payload)
