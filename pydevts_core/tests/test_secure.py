"""Keyring mode's wire: the AUTH exchange (sans-IO), sealed links, sealed datagrams."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydevts.errors import ConfigurationError, HandshakeRefusedError, RemoteProtocolError
from pydevts.protocols import Address, Connection
from pydevts.testing import MemoryNetwork, MemoryTransport, check_transport
from pydevts.wire.handshake import _authenticate
from pydevts.wire.keyring import Keyring, generate_key, key_fingerprint
from pydevts.wire.secure import (
    DATAGRAM_WINDOW,
    NO_COMMON_KEY,
    SealedDatagrams,
    SecureConnection,
    auth_answer,
    auth_check,
    auth_finish,
    auth_start,
)

K1, K2, K3 = (bytes([n]) * 32 for n in (1, 2, 3))


# ---------------------------------------------------------------- the exchange


def test_the_exchange_agrees_on_keys_when_a_key_is_shared() -> None:
    dialler, answerer = Keyring([K1]), Keyring([K2, K1])  # the answerer is mid-rotation
    state_d, auth1 = auth_start(dialler)
    answered = auth_answer(answerer, auth1)
    assert answered is not None
    state_a, auth2 = answered
    auth3 = auth_finish(state_d, auth2)
    assert auth3 is not None and auth_check(state_a, auth3)
    send_d, recv_d = state_d.session_keys(dialler=True)
    send_a, recv_a = state_a.session_keys(dialler=False)
    assert (send_d, recv_d) == (recv_a, send_a) and send_d != recv_d
    assert K1 not in (send_d, recv_d)  # the ring's key never keys a link itself


def test_no_key_in_common_is_found_on_either_side() -> None:
    state, auth1 = auth_start(Keyring([K1]))
    assert auth_answer(Keyring([K2]), auth1) is None
    # an answerer that fakes AUTH2 without the key is caught by the dialler
    forged = auth1[:3] + bytes(64)
    forged = bytes((0x32, 2, 1)) + forged[3:]
    assert auth_finish(state, forged) is None


def test_a_recorded_exchange_cannot_be_replayed() -> None:
    ring = Keyring([K1])
    state_d, auth1 = auth_start(ring)
    answered = auth_answer(ring, auth1)
    assert answered is not None
    _, auth2 = answered
    auth3 = auth_finish(state_d, auth2)
    assert auth3 is not None
    # an attacker replays AUTH1 then AUTH3 of that exchange: the answerer's fresh nonce differs
    replay = auth_answer(ring, auth1)
    assert replay is not None
    assert not auth_check(replay[0], auth3)


@given(st.binary(max_size=200))
@settings(max_examples=1500, deadline=None)
def test_auth_parsers_refuse_junk_with_a_typed_error(junk: bytes) -> None:
    ring = Keyring([K1])
    state, _ = auth_start(ring)
    for parse in (
        lambda: auth_answer(ring, junk),
        lambda: auth_finish(state, junk),
        lambda: auth_check(state, junk),
    ):
        try:
            parse()
        except RemoteProtocolError:
            pass


# ---------------------------------------------------------------- keyrings


def test_keyring_file_rotation_and_persistence(tmp_path: Any) -> None:
    k1, k2 = generate_key(), generate_key()
    path = tmp_path / "ring"
    path.write_text(f"# our cluster\n{k1}\n\n")
    ring = Keyring.from_file(path)
    assert ring.primary == base64.b64decode(k1) and len(ring.keys) == 1
    new = base64.b64decode(k2)
    assert ring.install(new) and not ring.install(new)
    ring.use(new)
    assert ring.remove(base64.b64decode(k1))
    assert path.read_text() == f"{k2}\n"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    with pytest.raises(ConfigurationError, match="primary"):
        ring.remove(new)
    assert "Keyring(1 keys" in repr(ring) and k2 not in repr(ring) and key_fingerprint(new) in repr(ring)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("not base64!\n", "line 1 is not base64"),
        (base64.b64encode(b"short").decode(), "is 5 bytes"),
        ("# nothing\n", "holds no key"),
    ],
)
def test_a_bad_keyring_file_says_what_and_where(tmp_path: Any, text: str, error: str) -> None:
    path = tmp_path / "ring"
    path.write_text(text)
    with pytest.raises(ConfigurationError, match=error):
        Keyring.from_file(path)
    with pytest.raises(ConfigurationError, match="cannot read keyring"):
        Keyring.from_file(tmp_path / "missing")


# ---------------------------------------------------------------- sealed links


def secure_transport(network: MemoryNetwork, ring: Keyring, **settings: Any) -> MemoryTransport:
    """An in-memory transport whose connections run the AUTH exchange and are sealed."""
    transport = MemoryTransport(network, **settings)
    connect, listen = transport.connect, transport.listen

    async def sealed_connect(address: Address) -> Connection:
        return await _authenticate(await connect(address), ring, initiated=True)

    async def sealed_listen(address: Address) -> Any:
        listener = await listen(address)
        serve = listener.serve

        async def sealed_serve(handler: Callable[[Connection], Awaitable[None]]) -> None:
            async def wrapped(conn: Connection) -> None:
                await handler(await _authenticate(conn, ring, initiated=False))

            await serve(wrapped)

        listener.serve = sealed_serve  # type: ignore[method-assign]
        return listener

    transport.connect = sealed_connect  # type: ignore[method-assign]
    transport.listen = sealed_listen  # type: ignore[method-assign]
    return transport


@pytest.mark.anyio
async def test_sealed_links_honour_the_transport_contract() -> None:
    network = MemoryNetwork()
    ring = Keyring([K1])
    await check_transport(lambda **settings: secure_transport(network, ring, **settings))


@pytest.mark.anyio
async def test_a_sealed_link_carries_large_batches_and_hides_them() -> None:
    network = MemoryNetwork()
    ring = Keyring([K1])
    server = secure_transport(network, ring, host="s", max_frame_size=4096)
    client = secure_transport(network, ring, host="c", max_frame_size=4096)
    got: list[bytes] = []
    seen_on_the_wire: list[bytes] = []
    with anyio.fail_after(10):
        listener = await server.listen(Address("s", 1))
        async with anyio.create_task_group() as tg:

            async def handler(conn: Connection) -> None:
                assert isinstance(conn, SecureConnection)
                while len(got) < 50:
                    got.extend(await conn.receive_frames())
                await conn.aclose()

            tg.start_soon(listener.serve, handler)
            conn = await client.connect(Address("s", 1))
            assert isinstance(conn, SecureConnection)
            inner_send = conn.inner.send_frames

            async def spy(records: Any) -> None:
                seen_on_the_wire.extend(records)
                await inner_send(records)

            conn.inner.send_frames = spy  # type: ignore[method-assign]
            frames = [b"secret-%03d" % i + bytes(4000) for i in range(50)]
            await conn.send_frames(frames)
            with anyio.fail_after(5):
                while len(got) < 50:
                    await anyio.sleep(0.01)
            await conn.aclose()
            await listener.aclose()
            tg.cancel_scope.cancel()
    assert got == frames
    assert all(len(r) <= 4096 for r in seen_on_the_wire) and len(seen_on_the_wire) > 1
    assert not any(b"secret" in r for r in seen_on_the_wire)


@pytest.mark.anyio
async def test_a_tampered_record_closes_the_link_with_a_reason() -> None:
    network = MemoryNetwork()
    ring = Keyring([K1])
    server = secure_transport(network, ring, host="s")
    client = secure_transport(network, ring, host="c")
    errors: list[BaseException] = []
    with anyio.fail_after(10):
        listener = await server.listen(Address("s", 1))
        async with anyio.create_task_group() as tg:
            done = anyio.Event()

            async def handler(conn: Connection) -> None:
                try:
                    await conn.receive_frames()
                except RemoteProtocolError as exc:
                    errors.append(exc)
                done.set()

            tg.start_soon(listener.serve, handler)
            conn = await client.connect(Address("s", 1))
            assert isinstance(conn, SecureConnection)
            record = conn._records([b"hello"])[0]
            await conn.inner.send_frames([record[:-1] + bytes([record[-1] ^ 1])])
            await done.wait()
            await listener.aclose()
            tg.cancel_scope.cancel()
    assert errors and "failed authentication" in str(errors[0])


@pytest.mark.anyio
async def test_no_key_in_common_is_refused_on_both_sides() -> None:
    network = MemoryNetwork()
    server = secure_transport(network, Keyring([K1]), host="s")
    client = secure_transport(network, Keyring([K2]), host="c")
    refused: list[BaseException] = []
    with anyio.fail_after(10):
        listener = await server.listen(Address("s", 1))
        async with anyio.create_task_group() as tg:
            answered = anyio.Event()

            async def handler(conn: Connection) -> None:  # never reached
                answered.set()

            async def serve() -> None:
                try:
                    await listener.serve(handler)
                except* HandshakeRefusedError as group:
                    refused.extend(group.exceptions)
                    answered.set()

            tg.start_soon(serve)
            with pytest.raises(HandshakeRefusedError, match=NO_COMMON_KEY):
                await client.connect(Address("s", 1))
            await answered.wait()
            await listener.aclose()
            tg.cancel_scope.cancel()
    assert refused and NO_COMMON_KEY in str(refused[0])


# ---------------------------------------------------------------- sealed datagrams


class Loop:
    """A datagram endpoint that hands back what was sent (for sealing tests)."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, data: bytes, address: Address) -> None:
        self.sent.append(data)

    async def receive(self) -> bytes:  # pragma: no cover - not used
        raise NotImplementedError

    async def aclose(self) -> None:
        pass


def test_sealed_datagrams_open_with_any_key_and_refuse_the_rest() -> None:
    now = [1000.0]
    a = SealedDatagrams(Loop(), Keyring([K2, K1]), clock=lambda: now[0])
    b = SealedDatagrams(Loop(), Keyring([K1, K2]), clock=lambda: now[0])
    c = SealedDatagrams(Loop(), Keyring([K3]), clock=lambda: now[0])
    sealed = a.seal(b"ping")
    assert b"ping" not in sealed
    assert b.open(sealed) == b"ping"
    assert b.open(sealed) is None  # replayed
    assert c.open(a.seal(b"ping")) is None and c.dropped == 1
    old = a.seal(b"old")
    now[0] += DATAGRAM_WINDOW + 1
    assert b.open(old) is None and b.dropped == 2
    assert b.open(b"\x00ping") is None and b.dropped == 3


@given(st.binary(max_size=300))
@settings(max_examples=2000, deadline=None)
def test_sealed_datagram_opening_never_raises(junk: bytes) -> None:
    ring = SealedDatagrams(Loop(), Keyring([K1]))
    assert ring.open(junk) is None


@given(st.integers(min_value=0, max_value=200), st.integers(min_value=0, max_value=255))
@settings(max_examples=500, deadline=None)
def test_a_sealed_datagram_with_any_bit_flipped_is_dropped(position: int, mask: int) -> None:
    ring = SealedDatagrams(Loop(), Keyring([K1]))
    sealed = bytearray(ring.seal(b"some swim message"))
    position %= len(sealed)
    sealed[position] ^= mask or 1
    assert ring.open(bytes(sealed)) is None
