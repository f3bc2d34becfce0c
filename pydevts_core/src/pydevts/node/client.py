"""A one-off client of a running node: what ``pydevts members`` and ``pydevts emit`` use.

A client connects to one node, does the handshake with the role ``client``
(so it never becomes a member), sends requests to that node and reads the
replies. Every node answers two system requests:

- ``pydevts.members`` -> the member list as that node sees it;
- ``pydevts.emit`` ``{"name": ..., "payload": ...}`` -> the node handles the
  event itself and emits it to every other member (like ``serf event``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import anyio

from ..errors import RemoteProtocolError, RequestTimeoutError
from ..members import Member, MemberState
from ..plugins.registry import Registry
from ..protocols import Address, Connection, Serializer
from ..wire.handshake import open_link
from ..wire.keyring import Keyring, check_open_mode
from ..wire.messages import ERROR, REPLY, REPLY_H, Hello, decode_message, encode_request
from .dispatch import remote_error

__all__ = ["NodeClient"]


class NodeClient:
    """``async with NodeClient(address) as client: await client.members()``."""

    def __init__(
        self,
        address: Address | str,
        *,
        cluster: str = "default",
        transport: str = "tcp",
        transport_options: dict[str, Any] | None = None,
        serializer: str = "msgpack",
        serializer_options: dict[str, Any] | None = None,
        timeout: float = 5.0,
        registry: Registry | None = None,
        keyring: Keyring | str | os.PathLike[str] | None = None,
    ) -> None:
        self.address = address if isinstance(address, Address) else Address.parse(address)
        self.cluster = cluster
        self.timeout = timeout
        self._registry = registry
        self._choices = (transport, serializer, dict(serializer_options or {}))
        self._transport_options = dict(transport_options or {})
        self.keyring = Keyring.coerce(keyring)
        self._conn: Connection | None = None
        self._serializer: Serializer | None = None
        self._next_id = 1
        self._buffered: list[bytes] = []

    async def __aenter__(self) -> NodeClient:
        registry = self._registry or Registry()
        transport_name, serializer_name, options = self._choices
        transport = registry.create("transport", transport_name, **self._transport_options)
        self._serializer = registry.create("serializer", serializer_name, **options)
        check_open_mode(self.keyring, self._serializer)  # pickle unpickles replies: key holders only
        conn = await transport.connect(self.address)
        hello = Hello(
            cluster=self.cluster,
            node_id=f"client-{os.urandom(4).hex()}",
            address="0.0.0.0:0",
            serializer=self._serializer.name,
            role="client",
        )
        link = await open_link(conn, hello, initiated=True, timeout=self.timeout, keyring=self.keyring)
        self._buffered = link._early  # frames that came with the node's HELLO
        self._conn = link.conn  # sealed when there is a keyring
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._conn is not None:
            await self._conn.aclose()
            self._conn = None

    async def request(self, name: str, payload: Any = None) -> Any:
        """Send one request to the node and return its reply (raises DeliveryError subclasses)."""
        conn, serializer = self._conn, self._serializer
        assert conn is not None and serializer is not None, "use `async with NodeClient(...)`"
        request_id = self._next_id
        self._next_id += 1
        await conn.send_frames([encode_request(request_id, name, serializer.dumps(payload))])
        with anyio.move_on_after(self.timeout):
            while True:
                if not self._buffered:
                    self._buffered = await conn.receive_frames()
                frame = self._buffered.pop(0)
                if not frame or frame[0] not in (REPLY, ERROR, REPLY_H):
                    continue  # not for us (clients get no events)
                msg = decode_message(frame)
                if msg.request_id != request_id:
                    continue
                if msg.kind == REPLY:
                    return serializer.loads(msg.payload)
                raise remote_error(str(self.address), name, msg)
        raise RequestTimeoutError(f"no reply from {self.address} to {name!r} within {self.timeout:g} s")

    async def members(self) -> list[Member]:
        """The member list as the node sees it."""
        rows = await self.request("pydevts.members")
        if not isinstance(rows, list):
            raise RemoteProtocolError(f"unexpected members reply: {rows!r}")
        try:
            return [
                Member(
                    str(r["id"]),
                    str(r["address"]),
                    {str(k): str(v) for k, v in r["tags"].items()},
                    MemberState(r["state"]),
                    int(r.get("incarnation", 0)),
                    None if r.get("next_hop") is None else str(r["next_hop"]),
                    None if r.get("distance") is None else int(r["distance"]),
                )
                for r in rows
            ]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RemoteProtocolError(f"unexpected members reply: {exc!r}") from exc

    async def keys(self, op: str, key: str | None = None) -> dict[str, Any]:
        """Change (or ``list``) the keyring of every live member: ``{member id: result}``.

        ``op`` is ``list``, ``install``, ``use`` or ``remove``; ``key`` is base64.
        Each result holds ``keys`` and ``primary`` (fingerprints) or ``error``.
        """
        reply = await self.request("pydevts.keys", {"op": op, "key": key})
        if not isinstance(reply, dict) or not isinstance(reply.get("members"), dict):
            raise RemoteProtocolError(f"unexpected keys reply: {reply!r:.200}")
        return dict(reply["members"])

    async def emit(
        self, name: str, payload: Any = None, *, headers: Mapping[str, str] | None = None
    ) -> list[str]:
        """Have the node handle event ``name`` and emit it to every other member; return who got it."""
        body: dict[str, Any] = {"name": name, "payload": payload}
        if headers:
            body["headers"] = dict(headers)
        reply = await self.request("pydevts.emit", body)
        if not isinstance(reply, dict) or not isinstance(reply.get("sent_to"), list):
            raise RemoteProtocolError(f"unexpected emit reply: {reply!r}")
        return [str(x) for x in reply["sent_to"]]

    async def trace(self, trace_id: str) -> dict[str, Any]:
        """Every live member's records of traced message ``trace_id``: ``{"nodes": {id: [records]},
        "missing": {id: why}}`` (see :mod:`pydevts.observe.tracing`)."""
        reply = await self.request("pydevts.trace", {"id": trace_id, "all": True})
        if not isinstance(reply, dict) or not isinstance(reply.get("nodes"), dict):
            raise RemoteProtocolError(f"unexpected trace reply: {reply!r:.200}")
        return reply
