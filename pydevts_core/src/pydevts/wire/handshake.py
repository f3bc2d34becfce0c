"""The handshake that turns a new connection into a :class:`~pydevts.wire.link.Link`.

The connecting side sends HELLO; the accepting side checks it and answers
with its own HELLO or with REFUSE and the reason; the connecting side checks
the answer the same way (see :mod:`pydevts.wire` for the fields and
:func:`~pydevts.wire.handshake_mismatch` for what is compared).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import NoReturn

import anyio

from ..errors import HandshakeRefusedError, RemoteProtocolError
from ..protocols import Connection, ConnectionInfo, ConnectionPlugin
from . import session
from .keyring import Keyring
from .link import Link
from .messages import HELLO, REFUSE, Hello, decode_refuse, encode_refuse, handshake_mismatch
from .secure import (
    AUTH,
    NO_COMMON_KEY,
    auth_answer,
    auth_check,
    auth_finish,
    auth_start,
    secure_connection,
)

__all__ = ["open_link"]


async def open_link(
    conn: Connection,
    local: Hello,
    *,
    initiated: bool,
    plugins: Sequence[ConnectionPlugin] = (),
    timeout: float = 5.0,
    check: Callable[[Hello], str | None] | None = None,
    keyring: Keyring | None = None,
) -> Link:
    """Run the handshake on ``conn`` and return the link.

    The side that ``initiated`` the connection speaks first. A mismatch makes
    the checking side send a REFUSE frame with the reason and close (``check``
    adds the caller's own reasons to refuse, e.g. an id in use); both
    sides then raise :class:`HandshakeRefusedError` with that reason. On any
    failure the connection is closed before this raises.

    With a ``keyring`` both sides first prove that they hold a key in common
    (:mod:`pydevts.wire.secure`); the HELLOs and everything after travel sealed.
    A peer without a key in common learns nothing, not even the cluster name.
    """
    # Members offer resumable links (pydevts.wire.session); everyone says how large a frame it takes.
    offers: dict[str, object] = {"max_frame_size": conn.max_frame_size}
    if local.role == "member" and session.ENABLED:
        offers["resume"] = 1
    if any(local.extensions.get(key) != value for key, value in offers.items()):
        local = replace(local, extensions={**local.extensions, **offers})
    try:
        with anyio.fail_after(timeout):
            if keyring is not None:
                conn = await _authenticate(conn, keyring, initiated=initiated)
            if initiated:
                await conn.send_frames([local.to_frame()])
            try:
                frames = await conn.receive_frames()
            except RemoteProtocolError as exc:  # e.g. an HTTP or SSH server's first bytes read as a length
                raise RemoteProtocolError(f"{conn.remote_address} does not speak pydevts: {exc}") from None
            first, rest = frames[0], frames[1:]
            if first and first[0] == REFUSE:
                raise HandshakeRefusedError(decode_refuse(first))
            if first and first[0] == AUTH:  # a node with a keyring dials this open one
                await _refuse(
                    conn,
                    f"not authenticated: this node uses a keyring; the cluster at {local.address} is open",
                    f"not authenticated: the node at {conn.remote_address} uses a keyring; this one is open",
                )
            remote = Hello.from_frame(first)
            mismatch = handshake_mismatch(local, remote, initiated=initiated)
            if mismatch is not None:  # worded for each side's reader
                await conn.send_frames([encode_refuse(mismatch.there)])
                raise HandshakeRefusedError(mismatch.here)
            reason = check(remote) if check is not None else None
            link = Link(conn, local, remote, initiated=initiated, plugins=plugins, early_frames=rest)
            if reason is None:
                reason = _plugins_refusal(plugins, link.info)
            if reason is not None:
                await conn.send_frames([encode_refuse(reason)])
                raise HandshakeRefusedError(reason)
            if not initiated:
                await conn.send_frames([local.to_frame()])
            return link
    except TimeoutError:
        await _close_quietly(conn)
        raise RemoteProtocolError(
            f"handshake with {conn.remote_address} did not complete within {timeout:g} s"
        ) from None
    except BaseException:
        with anyio.CancelScope(shield=True):
            await _close_quietly(conn)
        raise


async def _refuse(conn: Connection, there: str, here: str) -> NoReturn:
    await conn.send_frames([encode_refuse(there)])
    raise HandshakeRefusedError(here)


async def _authenticate(conn: Connection, keyring: Keyring, *, initiated: bool) -> Connection:
    """The AUTH exchange; the sealed connection, or HandshakeRefusedError (the peer told why)."""
    where = conn.remote_address
    if initiated:
        state, hello = auth_start(keyring)
        await conn.send_frames([hello])
        frames = await conn.receive_frames()
        if frames[0][:1] == bytes((REFUSE,)):
            raise HandshakeRefusedError(decode_refuse(frames[0]))
        proof = auth_finish(state, frames[0])
        if proof is None:
            await _refuse(conn, NO_COMMON_KEY, f"{NO_COMMON_KEY} with the node at {where}")
        await conn.send_frames([proof])
        return secure_connection(conn, state, dialler=True, early=frames[1:])
    frames = await conn.receive_frames()
    if frames[0][:1] == bytes((HELLO,)):
        await _refuse(
            conn,
            "not authenticated: this cluster requires a key (--keyring) and this node has none",
            f"not authenticated: the node at {where} has no keyring",
        )
    answered = auth_answer(keyring, frames[0])
    if answered is None:
        await _refuse(conn, NO_COMMON_KEY, f"{NO_COMMON_KEY} with the node at {where}")
    state, answer = answered
    await conn.send_frames([answer])
    frames = frames[1:] or await conn.receive_frames()
    if frames[0][:1] == bytes((REFUSE,)):
        raise HandshakeRefusedError(decode_refuse(frames[0]))
    if not auth_check(state, frames[0]):
        await _refuse(conn, NO_COMMON_KEY, f"{NO_COMMON_KEY} with the node at {where}")
    return secure_connection(conn, state, dialler=False, early=frames[1:])


def _plugins_refusal(plugins: Sequence[ConnectionPlugin], info: ConnectionInfo) -> str | None:
    for plugin in plugins:
        try:
            plugin.on_open(info)
        except Exception as exc:
            return f"refused by connection plugin {plugin.name!r}: {exc}"
    return None


async def _close_quietly(conn: Connection) -> None:
    try:
        await conn.aclose()
    except Exception:
        pass
