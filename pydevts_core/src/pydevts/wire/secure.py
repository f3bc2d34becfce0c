"""Keyring mode on the wire: the authenticating exchange, sealed links, sealed datagrams.

Theory of operation
-------------------
With a keyring, a new connection starts with an exchange of three AUTH
frames (kind ``0x32``) *before* any HELLO, so nothing about the cluster (not
even its name) reaches a peer that holds no key of the ring::

    dialler  -> AUTH1  nonce_d (32 random bytes), HMAC(k, "auth1" | nonce_d)
    answerer -> AUTH2  nonce_a, HMAC(k, "auth2" | nonce_d | nonce_a)
    dialler  -> AUTH3  HMAC(k, "auth3" | nonce_d | nonce_a)

``k`` is the dialler's primary key; the answerer finds it by trying each key
of its own ring on AUTH1 (so a ring in the middle of a rotation still
matches). AUTH2 proves the answerer holds ``k`` for this dialler's fresh
nonce, AUTH3 proves the dialler holds it for the answerer's fresh nonce: a
recorded exchange replayed later fails. Each direction then gets its own
key, HKDF-SHA256(k, salt = nonce_d | nonce_a, info = the direction), and
everything after, HELLOs included, travels in sealed *records*: AES-256-GCM
with a counter nonce (the transport is ordered and reliable, so the counter
is implicit), one record per batch of frames (records carry TCP's
length-prefixed framing inside, split at the transport's frame limit), so
the hot path pays one seal per coalesced batch. The HELLOs are therefore
bound to both nonces: a HELLO relayed from another connection cannot be
opened.

Failure-detector datagrams are sealed one by one with the primary key
(version byte, random 12-byte nonce, AES-256-GCM of a millisecond timestamp
and the message) and opened with any key of the ring. A datagram older or
newer than ``DATAGRAM_WINDOW`` or whose nonce was already seen within it is
dropped (replay protection); so is anything no key opens. Drops are counted
and logged rate-limited, never parsed.

The keyring authenticates the *cluster*, not each node: every holder of a
key can claim any identity. See ``docs/security.md``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import struct
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError, RemoteProtocolError
from ..protocols import SendsWithoutWaiting
from .framing import FrameDecoder, encode_frames
from .keyring import Keyring

if TYPE_CHECKING:
    from ..protocols import Address, Connection, DatagramEndpoint

__all__ = [
    "AUTH",
    "NO_COMMON_KEY",
    "AuthState",
    "SealedDatagrams",
    "SecureConnection",
    "auth_answer",
    "auth_check",
    "auth_finish",
    "auth_start",
    "require_cryptography",
    "secure_connection",
]

log = logging.getLogger("pydevts.secure")

AUTH = 0x32
VERSION = 1
NONCE = 32
MAC = 32
TAG = 16  # AES-GCM tag
NO_COMMON_KEY = "not authenticated: no key in common"
DATAGRAM_WINDOW = 60.0  # seconds a sealed datagram stays acceptable (clocks must agree this well)
MAX_SEEN_NONCES = 100_000  # replay cache; the oldest are forgotten first
_DATAGRAM_VERSION = 1
_AAD_DATAGRAM = b"pydevts/1 datagram"
_STAMP = struct.Struct(">Q")
_COUNTER_NONCE = struct.Struct(">4xQ")  # 4 zero bytes, then the record counter
_LENGTH = struct.Struct(">I")  # framing's length prefix
_warmed = False


def require_cryptography() -> Any:
    """The AESGCM class; ConfigurationError with the install command when cryptography is missing.

    The first call also makes a throwaway key: OpenSSL loads the cipher on a
    process's first AES-GCM key (about 1 ms), and ``Node(...)`` calls this, so
    that happens when the node is made rather than in its first handshake.
    """
    global _warmed
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError:
        raise ConfigurationError(
            "a keyring needs the cryptography package: pip install 'pydevts-core[keyring]'"
        ) from None
    if not _warmed:
        _warmed = True
        AESGCM(bytes(32))
    return AESGCM


def _mac(key: bytes, label: bytes, *parts: bytes) -> bytes:
    return hmac.new(key, b"pydevts/1 " + label + b"\x00" + b"".join(parts), hashlib.sha256).digest()


def _hkdf(key: bytes, salt: bytes, info: bytes) -> bytes:
    """HKDF-SHA256 (RFC 5869) for one 32-byte output block."""
    prk = hmac.new(salt, key, hashlib.sha256).digest()
    return hmac.new(prk, b"pydevts/1 " + info + b"\x01", hashlib.sha256).digest()


def _frame(step: int, *parts: bytes) -> bytes:
    return bytes((AUTH, step, VERSION)) + b"".join(parts)


def _parse(frame: bytes, step: int, size: int) -> bytes:
    if len(frame) != 3 + size or frame[0] != AUTH or frame[1] != step or frame[2] != VERSION:
        raise RemoteProtocolError(f"expected AUTH step {step} of {3 + size} bytes, got {len(frame)} bytes")
    return frame[3:]


# ---------------------------------------------------------------- the exchange (sans-IO)


class AuthState:
    """One side's secrets during the exchange."""

    __slots__ = ("key", "nonce_a", "nonce_d")

    def __init__(self, key: bytes, nonce_d: bytes, nonce_a: bytes = b"") -> None:
        self.key, self.nonce_d, self.nonce_a = key, nonce_d, nonce_a

    def session_keys(self, *, dialler: bool) -> tuple[bytes, bytes]:
        """(send key, receive key) for this side."""
        salt = self.nonce_d + self.nonce_a
        d2a, a2d = _hkdf(self.key, salt, b"dialler->answerer"), _hkdf(self.key, salt, b"answerer->dialler")
        return (d2a, a2d) if dialler else (a2d, d2a)


def auth_start(keyring: Keyring) -> tuple[AuthState, bytes]:
    """The dialler's AUTH1."""
    nonce = os.urandom(NONCE)
    key = keyring.primary
    return AuthState(key, nonce), _frame(1, nonce, _mac(key, b"auth1", nonce))


def auth_answer(keyring: Keyring, frame: bytes) -> tuple[AuthState, bytes] | None:
    """The answerer's AUTH2 for an AUTH1, or None when no key of the ring made it."""
    body = _parse(frame, 1, NONCE + MAC)
    nonce_d, proof = body[:NONCE], body[NONCE:]
    for key in keyring.keys:
        if hmac.compare_digest(_mac(key, b"auth1", nonce_d), proof):
            nonce_a = os.urandom(NONCE)
            return AuthState(key, nonce_d, nonce_a), _frame(2, nonce_a, _mac(key, b"auth2", nonce_d, nonce_a))
    return None


def auth_finish(state: AuthState, frame: bytes) -> bytes | None:
    """The dialler checks AUTH2 and returns AUTH3, or None when the answerer did not prove the key."""
    body = _parse(frame, 2, NONCE + MAC)
    nonce_a, proof = body[:NONCE], body[NONCE:]
    if not hmac.compare_digest(_mac(state.key, b"auth2", state.nonce_d, nonce_a), proof):
        return None
    state.nonce_a = nonce_a
    return _frame(3, _mac(state.key, b"auth3", state.nonce_d, nonce_a))


def auth_check(state: AuthState, frame: bytes) -> bool:
    """The answerer checks AUTH3."""
    proof = _parse(frame, 3, MAC)
    return hmac.compare_digest(_mac(state.key, b"auth3", state.nonce_d, state.nonce_a), proof)


# ---------------------------------------------------------------- sealed links


class _Sealer:
    """AES-GCM with a counter nonce, one direction."""

    __slots__ = ("_aead", "_count")

    def __init__(self, key: bytes) -> None:
        self._aead = require_cryptography()(key)
        self._count = 0

    def seal(self, data: bytes) -> bytes:
        self._count += 1
        sealed: bytes = self._aead.encrypt(_COUNTER_NONCE.pack(self._count), data, None)
        return sealed

    def open(self, data: bytes) -> bytes:
        self._count += 1
        try:
            plain: bytes = self._aead.decrypt(_COUNTER_NONCE.pack(self._count), data, None)
            return plain
        except Exception:  # cryptography's InvalidTag, or a record too short to hold a tag
            raise RemoteProtocolError(
                "a sealed record failed authentication (tampered, or not ours)"
            ) from None


class SecureConnection:
    """A :class:`~pydevts.protocols.Connection` whose frames travel in sealed records."""

    def __init__(
        self, inner: Connection, send_key: bytes, receive_key: bytes, early: Sequence[bytes] = ()
    ) -> None:
        self.inner = inner
        self.max_frame_size = inner.max_frame_size
        self._record_limit = max(inner.max_frame_size - TAG, 64)
        self._out, self._in = _Sealer(send_key), _Sealer(receive_key)
        self._decoder = FrameDecoder(self.max_frame_size)
        self._early = list(early)
        if isinstance(inner, SendsWithoutWaiting):
            self._inner_nowait = inner.send_frames_nowait
            self.send_frames_nowait = self._send_frames_nowait

    @property
    def remote_address(self) -> str:
        return self.inner.remote_address

    def _records(self, frames: Sequence[bytes]) -> list[bytes]:
        if len(frames) == 1 and len(frames[0]) <= self._record_limit - 4:
            # The round-trip path: one small frame (a request or a reply), one record.
            frame = frames[0]
            return [self._out.seal(_LENGTH.pack(len(frame)) + frame)]
        plain = encode_frames(frames, self.max_frame_size)  # FrameTooLargeError before sealing anything
        limit = self._record_limit
        if len(plain) <= limit:
            return [self._out.seal(plain)]
        view = memoryview(plain)
        return [self._out.seal(bytes(view[i : i + limit])) for i in range(0, len(plain), limit)]

    async def send_frames(self, frames: Sequence[bytes]) -> None:
        await self.inner.send_frames(self._records(frames))

    def _send_frames_nowait(self, frames: Sequence[bytes]) -> bool:
        return self._inner_nowait(self._records(frames))

    async def receive_frames(self) -> list[bytes]:
        decoder = self._decoder
        while True:
            if self._early:
                records, self._early = self._early, []
            else:
                records = await self.inner.receive_frames()
            if len(records) == 1 and not decoder.buffered:
                plain = self._in.open(records[0])
                # The round-trip path: a record that holds exactly one whole frame.
                if len(plain) >= 4 and _LENGTH.unpack_from(plain)[0] == len(plain) - 4 <= self.max_frame_size:
                    return [plain[4:]]
                frames = decoder.feed(plain)
            else:
                frames = []
                for record in records:
                    frames += decoder.feed(self._in.open(record))
            if frames:
                return frames

    async def aclose(self) -> None:
        await self.inner.aclose()


def secure_connection(
    conn: Connection, state: AuthState, *, dialler: bool, early: Sequence[bytes]
) -> SecureConnection:
    send_key, receive_key = state.session_keys(dialler=dialler)
    return SecureConnection(conn, send_key, receive_key, early)


# ---------------------------------------------------------------- sealed datagrams


class SealedDatagrams:
    """Wraps a :class:`~pydevts.protocols.DatagramEndpoint`: seals what it sends, opens what it gets.

    What no key of the ring opens, what is outside the time window and what
    repeats a nonce seen within the window is dropped (``dropped`` counts
    it) and never reaches the failure detector.
    """

    def __init__(
        self,
        inner: DatagramEndpoint,
        keyring: Keyring,
        *,
        window: float = DATAGRAM_WINDOW,
        clock: Callable[[], float] = time.time,
        on_drop: Callable[[str], None] | None = None,
    ) -> None:
        self.inner = inner
        self.keyring = keyring
        self.window = window
        self.clock = clock
        self.dropped = 0
        self._on_drop = on_drop
        self._aead_class = require_cryptography()
        self._aeads: dict[bytes, Any] = {}
        self._seen: OrderedDict[bytes, float] = OrderedDict()

    def _aead(self, key: bytes) -> Any:
        aead = self._aeads.get(key)
        if aead is None:
            if len(self._aeads) > 4 * len(self.keyring.keys):  # keys were rotated out
                self._aeads.clear()
            aead = self._aeads[key] = self._aead_class(key)
        return aead

    def seal(self, data: bytes) -> bytes:
        nonce = os.urandom(12)
        stamp = _STAMP.pack(int(self.clock() * 1000))
        sealed = self._aead(self.keyring.primary).encrypt(nonce, stamp + data, _AAD_DATAGRAM)
        return bytes((_DATAGRAM_VERSION,)) + nonce + bytes(sealed)

    def open(self, data: bytes) -> bytes | None:
        """The message inside ``data``, or None (counted) if it must be dropped."""
        if len(data) < 1 + 12 + TAG + _STAMP.size or data[0] != _DATAGRAM_VERSION:
            self._drop("not a sealed datagram")
            return None
        nonce, sealed = data[1:13], data[13:]
        for key in self.keyring.keys:
            try:
                plain = self._aead(key).decrypt(nonce, sealed, _AAD_DATAGRAM)
            except Exception:  # InvalidTag: not this key
                continue
            break
        else:
            self._drop("no key of the ring opens it")
            return None
        now = self.clock()
        (stamp,) = _STAMP.unpack_from(plain)
        if abs(now - stamp / 1000) > self.window:
            self._drop(f"its time stamp is over {self.window:g} s away (replayed, or clocks disagree)")
            return None
        seen = self._seen
        while seen and (len(seen) >= MAX_SEEN_NONCES or next(iter(seen.values())) < now - self.window):
            seen.popitem(last=False)
        if nonce in seen:
            self._drop("replayed")
            return None
        seen[nonce] = now
        return bytes(plain[_STAMP.size :])

    def _drop(self, why: str) -> None:
        self.dropped += 1
        if self._on_drop is not None:
            self._on_drop(why)
        return None

    def send(self, data: bytes, address: Address) -> None:
        self.inner.send(self.seal(data), address)

    async def receive(self) -> bytes:
        while True:
            opened = self.open(await self.inner.receive())
            if opened is not None:
                return opened

    async def aclose(self) -> None:
        await self.inner.aclose()
