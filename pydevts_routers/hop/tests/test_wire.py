"""The hop router's frame format: round trips and strict decoding."""

from __future__ import annotations

import random
import struct

import pytest
from pydevts.errors import LocalProtocolError, RemoteProtocolError
from pydevts.wire import encode_event, encode_request
from pydevts_hop.wire import (
    ADVERT,
    BROADCAST,
    KEEPALIVE_FRAME,
    Advert,
    Broadcast,
    HopWireError,
    Keepalive,
    Unicast,
    decode,
    encode_advert,
    encode_broadcast,
    encode_unicast,
    relay,
)

ADV = Advert(
    "node-é", 1_700_000_000_000, 7, "10.0.0.1:7000", {"role": "db", "zone": ""}, frozenset({"b", "c"})
)
EVENT = encode_event("greet", b"\x81\xa1x\x01")


def test_advert_round_trip() -> None:
    assert decode(encode_advert(ADV)) == ADV
    left = Advert("a", 1, 2, "[::1]:1", {}, frozenset(), left=True)
    assert decode(encode_advert(left)) == left


def test_advert_encoding_is_canonical() -> None:
    other = Advert(
        ADV.origin, ADV.incarnation, ADV.seq, ADV.address, {"zone": "", "role": "db"}, ADV.neighbours
    )
    assert encode_advert(other) == encode_advert(ADV)


def test_broadcast_and_unicast_round_trip() -> None:
    frame = encode_broadcast("a", 5, 2**64 - 1, 9, EVENT, flood=True)
    assert decode(frame) == Broadcast("a", 5, 2**64 - 1, 9, True, EVENT)
    assert decode(encode_broadcast("a", 5, 1, 1, EVENT)) == Broadcast("a", 5, 1, 1, False, EVENT)
    request = encode_request(3, "add", b"[1]")
    assert decode(encode_unicast("a", "b", 255, request)) == Unicast("a", "b", 255, request)
    assert decode(KEEPALIVE_FRAME) == Keepalive()


def test_broadcast_header_is_compact() -> None:
    # kind, flags, hop limit, incarnation, seq, origin length: 20 bytes + the origin id
    assert len(encode_broadcast("abcdefabcdef", 1, 1, 1, EVENT)) == 20 + 12 + len(EVENT)
    assert len(encode_unicast("abcdefabcdef", "012345678901", 1, EVENT)) == 5 + 24 + len(EVENT)


def test_relay_lowers_the_hop_limit_and_sets_flood_only_when_asked() -> None:
    frame = encode_broadcast("a", 1, 1, 5, EVENT)
    assert decode(relay(frame)) == Broadcast("a", 1, 1, 4, False, EVENT)
    assert decode(relay(frame, flood=True)) == Broadcast("a", 1, 1, 4, True, EVENT)
    assert decode(relay(encode_unicast("a", "b", 2, EVENT))) == Unicast("a", "b", 1, EVENT)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: encode_broadcast("a", 1, 1, 0, EVENT), "hop limit"),
        (lambda: encode_broadcast("a", 1, 1, 256, EVENT), "hop limit"),
        (lambda: encode_broadcast("a", 1, 1, 1, b""), "core frames only"),
        (lambda: encode_unicast("a", "b", 1, b"\x41x"), "core frames only"),
        (lambda: encode_unicast("", "b", 1, EVENT), "origin"),
        (lambda: encode_unicast("a", "b" * 256, 1, EVENT), "dest"),
        (lambda: encode_advert(Advert("a", 1, 1, "h:1", {"k" * 300: "v"})), "tag key"),
    ],
)
def test_encoding_refuses_bad_local_values(call: object, message: str) -> None:
    assert callable(call)
    with pytest.raises(LocalProtocolError, match=message):
        call()


def test_decode_error_is_a_value_error_and_a_remote_protocol_error() -> None:
    with pytest.raises(ValueError, match="empty") as info:
        decode(b"")
    assert isinstance(info.value, RemoteProtocolError)


def _header_length(frame: bytes) -> int:
    """Bytes before the carried core frame (everything, for adverts)."""
    if frame[0] == ADVERT:
        return len(frame)
    if frame[0] == BROADCAST:
        return 19 + 1 + frame[19]
    origin_end = 4 + frame[3]
    return origin_end + 1 + frame[origin_end]


@pytest.mark.parametrize(
    "frame",
    [
        encode_advert(ADV),
        encode_broadcast("origin", 3, 4, 5, EVENT),
        encode_unicast("origin", "dest", 5, EVENT),
    ],
    ids=["advert", "broadcast", "unicast"],
)
def test_every_truncation_is_refused_with_the_field_named(frame: bytes) -> None:
    for size in range(1, min(_header_length(frame) + 1, len(frame))):
        with pytest.raises(
            HopWireError, match=r"malformed hop \w+ frame .*(truncated|carries no core|empty)"
        ):
            decode(frame[:size])


def _advert_bytes(**changes: object) -> bytes:
    fields = {
        "flags": 0,
        "incarnation": 1,
        "seq": 1,
        "origin": b"a",
        "address": b"h:1",
        "tags": [],
        "neighbours": [b"b"],
    }
    fields.update(changes)
    flags, incarnation, seq = fields["flags"], fields["incarnation"], fields["seq"]
    assert isinstance(flags, int) and isinstance(incarnation, int) and isinstance(seq, int)
    out = bytes((ADVERT, flags)) + struct.pack(">QI", incarnation, seq)
    for key in ("origin", "address"):
        raw = fields[key]
        assert isinstance(raw, bytes)
        out += bytes((len(raw),)) + raw
    tags = fields["tags"]
    assert isinstance(tags, list)
    out += struct.pack(">H", len(tags))
    for k, v in tags:
        out += bytes((len(k),)) + k + struct.pack(">H", len(v)) + v
    neighbours = fields["neighbours"]
    assert isinstance(neighbours, list)
    out += struct.pack(">H", len(neighbours)) + b"".join(bytes((len(n),)) + n for n in neighbours)
    return out


def test_hand_built_advert_matches_the_encoder() -> None:
    assert decode(_advert_bytes()) == Advert("a", 1, 1, "h:1", {}, frozenset({"b"}))


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (b"\x40{}", "peer router's control frame"),
        (b"\x45", "unknown hop frame kind 0x45"),
        (b"\x01greet", "core frame, not a hop-router frame"),
        (KEEPALIVE_FRAME + b"x", "1 unexpected bytes"),
        (_advert_bytes() + b"\x00", "1 unexpected bytes"),
        (_advert_bytes(flags=2), "unknown flag bits 0x02"),
        (_advert_bytes(origin=b""), "origin is empty"),
        (_advert_bytes(origin=b"\xff"), "origin is not UTF-8"),
        (_advert_bytes(address=b"nohost"), "bad address"),
        (_advert_bytes(address=b"h:99999"), "bad address"),
        (_advert_bytes(tags=[(b"k", b"1"), (b"k", b"2")]), "tag 'k' appears twice"),
        (_advert_bytes(tags=[(b"", b"1")]), "tag key is empty"),
        (_advert_bytes(neighbours=[b"b", b"b"]), "neighbour 'b' is repeated"),
        (_advert_bytes(neighbours=[b"a"]), "is the origin itself"),
        (_advert_bytes(neighbours=[b""]), "neighbour id is empty"),
        (
            encode_broadcast("a", 1, 1, 1, EVENT)[:2] + b"\x00" + encode_broadcast("a", 1, 1, 1, EVENT)[3:],
            "hop limit is 0",
        ),
        (b"\x42\x02" + encode_broadcast("a", 1, 1, 1, EVENT)[2:], "unknown flag bits"),
        (encode_broadcast("a", 1, 1, 1, EVENT)[: -len(EVENT)] + b"\x42", "not a core kind"),
        (b"\x43\x01" + encode_unicast("a", "b", 1, EVENT)[2:], "unknown flag bits"),
        (encode_unicast("a", "b", 1, EVENT)[: -len(EVENT)], "carries no core frame"),
    ],
)
def test_malformed_frames_are_refused_saying_what_is_wrong(frame: bytes, message: str) -> None:
    with pytest.raises(HopWireError, match=message):
        decode(frame)


def test_random_bytes_never_raise_anything_but_hop_wire_error() -> None:
    rng = random.Random(6)
    valid = [encode_advert(ADV), encode_broadcast("o", 1, 2, 3, EVENT), encode_unicast("o", "d", 3, EVENT)]
    for _ in range(3000):
        if rng.random() < 0.5:
            frame = bytes([rng.choice((0x41, 0x42, 0x43, 0x44))]) + rng.randbytes(rng.randrange(40))
        else:  # a valid frame with a few bytes flipped
            flipped = bytearray(rng.choice(valid))
            for _ in range(rng.randrange(1, 4)):
                flipped[rng.randrange(len(flipped))] = rng.randrange(256)
            frame = bytes(flipped)
        try:
            decode(frame)
        except HopWireError:
            pass
