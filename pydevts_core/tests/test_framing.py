"""Length-prefixed framing: encode_frames / FrameDecoder (sans-IO).

hypothesis is not installed in this environment, so property-style checks use
parametrized cases plus a seeded random fuzz loop (deterministic, reproducible).
"""

from __future__ import annotations

import itertools
import random
import struct

import pytest
from pydevts.errors import FrameTooLargeError, RemoteProtocolError, TransportError
from pydevts.wire.framing import DEFAULT_MAX_FRAME_SIZE, FrameDecoder, encode_frames

LIMIT = 64

CASES = [
    pytest.param([], id="no-frames"),
    pytest.param([b""], id="one-empty"),
    pytest.param([b"", b"", b""], id="many-empty"),
    pytest.param([b"a"], id="one-byte"),
    pytest.param([b"hello", b"", b"world"], id="mixed-with-empty"),
    pytest.param([bytes(range(LIMIT))], id="exactly-limit"),
    pytest.param([b"\x00\x00\x00\x05"] * 3, id="body-looks-like-header"),
    pytest.param([bytes([i]) * i for i in range(LIMIT + 1)], id="all-sizes"),
]


def _feed_all(decoder: FrameDecoder, chunks: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for chunk in chunks:
        out.extend(decoder.feed(chunk))
    return out


# ------------------------------------------------------------------ encoding


def test_encode_layout_is_big_endian_length_then_body() -> None:
    assert encode_frames([b"ab", b""], LIMIT) == b"\x00\x00\x00\x02ab\x00\x00\x00\x00"


def test_encode_no_frames_is_empty() -> None:
    assert encode_frames([], LIMIT) == b""


def test_default_max_frame_size_is_one_mebibyte() -> None:
    assert DEFAULT_MAX_FRAME_SIZE == 1024 * 1024
    assert FrameDecoder().max_frame_size == DEFAULT_MAX_FRAME_SIZE


@pytest.mark.parametrize("position", [0, 1, 2])
def test_encode_refuses_oversize_frame_and_encodes_nothing(position: int) -> None:
    frames = [b"ok", b"fine"]
    frames.insert(position, b"x" * (LIMIT + 1))
    result: bytes | None = None
    with pytest.raises(FrameTooLargeError) as info:
        result = encode_frames(frames, LIMIT)
    assert result is None  # no partial buffer came back
    assert info.value.size == LIMIT + 1
    assert info.value.limit == LIMIT
    assert str(LIMIT + 1) in str(info.value) and str(LIMIT) in str(info.value)
    assert isinstance(info.value, TransportError)


def test_encode_accepts_frame_exactly_at_limit() -> None:
    frame = b"z" * LIMIT
    assert encode_frames([frame], LIMIT) == struct.pack(">I", LIMIT) + frame


def test_encode_with_zero_limit_allows_only_empty_frames() -> None:
    assert encode_frames([b"", b""], 0) == bytes(8)
    with pytest.raises(FrameTooLargeError):
        encode_frames([b"x"], 0)


# ------------------------------------------------------------------ round trips


@pytest.mark.parametrize("frames", CASES)
def test_round_trip_single_feed(frames: list[bytes]) -> None:
    decoder = FrameDecoder(LIMIT)
    assert decoder.feed(encode_frames(frames, LIMIT)) == frames
    assert decoder.buffered == 0


@pytest.mark.parametrize("frames", CASES)
def test_round_trip_byte_by_byte(frames: list[bytes]) -> None:
    data = encode_frames(frames, LIMIT)
    decoder = FrameDecoder(LIMIT)
    out: list[bytes] = []
    for i in range(len(data)):
        got = decoder.feed(data[i : i + 1])
        out.extend(got)
        # Every frame is returned as soon as its last byte arrives, never later.
        assert out == frames[: len(out)]
    assert out == frames
    assert decoder.buffered == 0


def test_many_frames_in_one_feed_come_back_in_order() -> None:
    frames = [f"frame {i}".encode() for i in range(1000)]
    decoder = FrameDecoder(LIMIT)
    assert decoder.feed(encode_frames(frames, LIMIT)) == frames


def test_partial_frame_is_buffered_until_complete() -> None:
    data = encode_frames([b"hello"], LIMIT)
    decoder = FrameDecoder(LIMIT)
    assert decoder.feed(data[:3]) == []
    assert decoder.buffered == 3
    assert decoder.feed(data[3:6]) == []
    assert decoder.buffered == 6
    assert decoder.feed(data[6:]) == [b"hello"]
    assert decoder.buffered == 0


def test_feed_with_whole_frames_and_a_tail_keeps_the_tail() -> None:
    data = encode_frames([b"one", b"two", b"three"], LIMIT)
    cut = len(data) - 2
    decoder = FrameDecoder(LIMIT)
    assert decoder.feed(data[:cut]) == [b"one", b"two"]
    assert decoder.buffered == 4 + len(b"three") - 2
    assert decoder.feed(data[cut:]) == [b"three"]
    assert decoder.buffered == 0


def test_feed_empty_bytes_is_a_no_op() -> None:
    decoder = FrameDecoder(LIMIT)
    assert decoder.feed(b"") == []
    assert decoder.feed(b"\x00\x00") == []
    assert decoder.feed(b"") == []
    assert decoder.buffered == 2


def test_decoded_frames_are_immutable_bytes() -> None:
    decoder = FrameDecoder(LIMIT)
    (frame,) = decoder.feed(encode_frames([b"abc"], LIMIT))
    assert type(frame) is bytes


@pytest.mark.parametrize("seed", range(20))
def test_round_trip_random_frames_random_chunks(seed: int) -> None:
    rng = random.Random(seed)
    frames = [rng.randbytes(rng.choice([0, 1, 2, 3, 4, 5, rng.randrange(LIMIT + 1)])) for _ in range(50)]
    data = encode_frames(frames, LIMIT)
    cuts = sorted(rng.sample(range(len(data) + 1), k=min(len(data) + 1, rng.randrange(1, 40))))
    bounds = [0, *cuts, len(data)]
    chunks = [data[a:b] for a, b in itertools.pairwise(bounds)]
    assert b"".join(chunks) == data
    decoder = FrameDecoder(LIMIT)
    assert _feed_all(decoder, chunks) == frames
    assert decoder.buffered == 0


# ------------------------------------------------------------------ size limit on decode


def test_decode_accepts_frame_exactly_at_limit() -> None:
    frame = bytes(range(LIMIT))
    decoder = FrameDecoder(LIMIT)
    assert decoder.feed(struct.pack(">I", LIMIT) + frame) == [frame]


def test_decode_oversize_raises_as_soon_as_header_arrives() -> None:
    decoder = FrameDecoder(LIMIT)
    header = struct.pack(">I", LIMIT + 1)
    for byte in header[:3]:
        assert decoder.feed(bytes([byte])) == []
    with pytest.raises(RemoteProtocolError) as info:
        decoder.feed(header[3:])  # no body byte has arrived yet
    message = str(info.value)
    assert str(LIMIT + 1) in message and str(LIMIT) in message


def test_decode_oversize_header_for_huge_length_raises_without_body() -> None:
    decoder = FrameDecoder(LIMIT)
    with pytest.raises(RemoteProtocolError):
        decoder.feed(b"\xff\xff\xff\xff")


def test_decode_oversize_after_good_frames_in_same_feed_raises() -> None:
    decoder = FrameDecoder(LIMIT)
    data = encode_frames([b"good"], LIMIT) + struct.pack(">I", LIMIT + 1)
    with pytest.raises(RemoteProtocolError):
        decoder.feed(data)


def test_decode_oversize_header_split_across_feeds_after_a_frame() -> None:
    decoder = FrameDecoder(LIMIT)
    bad = struct.pack(">I", 10 * LIMIT)
    assert decoder.feed(encode_frames([b"first"], LIMIT) + bad[:2]) == [b"first"]
    with pytest.raises(RemoteProtocolError):
        decoder.feed(bad[2:])


def test_decoder_limit_is_independent_of_encoder_limit() -> None:
    data = encode_frames([b"x" * 10], 100)
    with pytest.raises(RemoteProtocolError):
        FrameDecoder(9).feed(data)
    assert FrameDecoder(10).feed(data) == [b"x" * 10]
