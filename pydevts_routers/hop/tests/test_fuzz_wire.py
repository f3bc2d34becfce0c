"""Property-based tests: hop frames decode, or raise HopWireError naming the field."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydevts.wire import encode_event
from pydevts_hop.wire import (
    KEEPALIVE_FRAME,
    Advert,
    HopWireError,
    decode,
    encode_advert,
    encode_broadcast,
    encode_unicast,
)

EVENT = encode_event("greet", b"\x81\xa1x\x01")
VALID = [
    encode_advert(
        Advert("node-é", 1_700_000_000_000, 7, "10.0.0.1:7000", {"role": "db"}, frozenset({"b", "c"}))
    ),
    encode_broadcast("a", 3, 9, 4, EVENT),
    encode_unicast("a", "b", 5, EVENT),
    KEEPALIVE_FRAME,
]


@given(
    st.integers(0, 3), st.integers(0, 10_000), st.integers(0, 255), st.integers(0, 64), st.binary(max_size=8)
)
@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_almost_valid_hop_frames_decode_or_raise_hop_wire_error(
    which: int, position: int, mask: int, cut: int, tail: bytes
) -> None:
    frame = bytearray(VALID[which])
    frame[position % len(frame)] ^= mask or 1
    data = bytes(frame[: len(frame) - cut % len(frame)]) + tail
    try:
        decode(data)
    except HopWireError:
        pass


@given(st.binary(max_size=300))
@settings(max_examples=1500, deadline=None)
def test_random_bytes_decode_or_raise_hop_wire_error(data: bytes) -> None:
    try:
        decode(data)
    except HopWireError:
        pass
