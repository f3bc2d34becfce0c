"""Length-prefixed framing for stream transports (sans-IO).

Each frame on a byte stream is a 4-byte big-endian length followed by that
many bytes. :func:`encode_frames` turns a batch of frames into one buffer (one
write); :class:`FrameDecoder` is fed whatever the stream returned and yields
whole frames. Both enforce the maximum frame size.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from ..errors import FrameTooLargeError, RemoteProtocolError

__all__ = ["DEFAULT_MAX_FRAME_SIZE", "FrameDecoder", "encode_frames"]

DEFAULT_MAX_FRAME_SIZE = 1024 * 1024
HEADER = struct.Struct(">I")
_pack = HEADER.pack
_unpack_from = HEADER.unpack_from


def encode_frames(frames: Sequence[bytes], max_frame_size: int) -> bytes:
    """Return the wire bytes of ``frames``; raise FrameTooLargeError before encoding any."""
    parts: list[bytes] = []
    append = parts.append
    for frame in frames:
        n = len(frame)
        if n > max_frame_size:
            raise FrameTooLargeError(n, max_frame_size)
        append(_pack(n))
        append(frame)
    return b"".join(parts)


class FrameDecoder:
    """Accumulates stream bytes and splits them into frames.

    A length over ``max_frame_size`` raises :class:`RemoteProtocolError` at
    once, before the body is buffered, so an oversized frame costs no memory.
    """

    __slots__ = ("_buf", "max_frame_size")

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        self._buf = bytearray()
        self.max_frame_size = max_frame_size

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a frame (a partial frame)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data`` and return every frame now complete, in order."""
        buf = self._buf
        buf += data
        frames: list[bytes] = []
        pos = 0
        end = len(buf)
        limit = self.max_frame_size
        while end - pos >= 4:
            (n,) = _unpack_from(buf, pos)
            if n > limit:
                raise RemoteProtocolError(
                    f"peer announced a frame of {n} bytes, over the maximum frame size of {limit} bytes"
                )
            stop = pos + 4 + n
            if stop > end:
                break
            frames.append(bytes(buf[pos + 4 : stop]))
            pos = stop
        if pos:
            del buf[:pos]
        return frames
