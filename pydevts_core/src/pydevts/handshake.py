"""The handshake that turns a new connection into a :class:`~pydevts.link.Link`.

The connecting side sends HELLO; the accepting side checks it and answers
with its own HELLO or with REFUSE and the reason; the connecting side checks
the answer the same way (see :mod:`pydevts.wire` for the fields and
:func:`~pydevts.wire.handshake_mismatch` for what is compared).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import anyio

from .errors import HandshakeRefusedError, RemoteProtocolError
from .link import Link
from .protocols import Connection, ConnectionInfo, ConnectionPlugin
from .wire import REFUSE, Hello, decode_refuse, encode_refuse, handshake_mismatch

__all__ = ["open_link"]


async def open_link(
    conn: Connection,
    local: Hello,
    *,
    initiated: bool,
    plugins: Sequence[ConnectionPlugin] = (),
    timeout: float = 5.0,
    check: Callable[[Hello], str | None] | None = None,
) -> Link:
    """Run the handshake on ``conn`` and return the link.

    The side that ``initiated`` the connection speaks first. A mismatch makes
    the checking side send a REFUSE frame with the reason and close (``check``
    adds the caller's own reasons to refuse, e.g. an id in use); both
    sides then raise :class:`HandshakeRefusedError` with that reason. On any
    failure the connection is closed before this raises.
    """
    try:
        with anyio.fail_after(timeout):
            if initiated:
                await conn.send_frames([local.to_frame()])
            frames = await conn.receive_frames()
            first, rest = frames[0], frames[1:]
            if first and first[0] == REFUSE:
                raise HandshakeRefusedError(decode_refuse(first))
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
