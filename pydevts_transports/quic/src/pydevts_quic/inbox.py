"""The receiving side of a QUIC connection: frames decoded, queued, and credited as they are read.

Connection flow-control credit (QUIC ``MAX_DATA``) is granted as the
application *reads* frames, not as packets arrive (aioquic's own policy), so
a receiver that stops reading stops its sender after one window: memory
stays bounded on both sides.
"""

from __future__ import annotations

from aioquic.quic.connection import QuicConnection
from pydevts.wire.framing import FrameDecoder

from ._aioquic import install_read_credit

__all__ = ["READ_SIZE", "Inbox"]

#: Bytes of frames one ``receive_frames`` returns at most (at least one frame), as TCP's read size:
#: what the application has taken but not handled stays as bounded as over TCP.
READ_SIZE = 256 * 1024


class Inbox:
    """The frames stream 0 brought that the application has not read yet, and the credit they cost."""

    def __init__(self, quic: QuicConnection, max_frame_size: int) -> None:
        # A frame completes only once all of it is in: with credit that lags by at most a quarter
        # of the window, three quarters of two largest frames always leave room for one.
        self.window = max(2 * 1024 * 1024, 2 * (max_frame_size + 4))
        self.credit = install_read_credit(quic, self.window)
        self.decoder = FrameDecoder(max_frame_size)
        self.needed = max_frame_size + 4  # one largest frame, its length included
        self.frames: list[bytes] = []
        self.size = 0  # bytes of ``frames``, with their length prefixes
        self.consumed = 0  # bytes of stream 0 taken by the application (and the preamble)

    @property
    def partial(self) -> int:
        """Bytes of a frame that began arriving but is not complete."""
        return self.decoder.buffered

    def feed(self, data: bytes) -> list[bytes]:
        """Decode ``data``, queue the frames it completes and return them (RemoteProtocolError if bad)."""
        frames = self.decoder.feed(data)
        if frames:
            self.frames.extend(frames)
            self.size += sum(map(len, frames)) + 4 * len(frames)
        return frames

    def take(self) -> tuple[list[bytes], bool]:
        """Up to READ_SIZE bytes of frames (at least one frame), credited to the peer.

        Also whether the credit moved enough to be worth telling the peer now.
        """
        frames = self._take()
        return frames, self.credit.grant(self.consumed, self.window, self.needed)

    def _take(self) -> list[bytes]:
        frames = self.frames
        if self.size <= READ_SIZE:
            self.frames = []
            taken, self.size = self.size, 0
            self.consumed += taken
            return frames
        size = count = 0
        for frame in frames:
            if count and size + len(frame) + 4 > READ_SIZE:
                break
            size += len(frame) + 4
            count += 1
        taken_frames, self.frames = frames[:count], frames[count:]
        self.size -= size
        self.consumed += size
        return taken_frames
