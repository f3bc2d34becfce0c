"""Replicated key-value state, with state transfer when members join.

A :class:`ReplicatedDict` lives on a node and keeps a copy of the same map on
every node of the cluster that has one under the same name::

    store = ReplicatedDict(node, "kv")

    @store.on_update
    async def changed(key: str, value: Any, origin: str) -> None: ...

    await store.set("x", 1)      # applied here, then sent to every member
    store.get("x")               # the local copy

Theory of operation (the rule that makes it safe)
-------------------------------------------------
Every entry carries a *version* ``(clock, node_id)``: ``clock`` is a Lamport
clock of the store (one more than any clock the node has seen), ``node_id``
breaks ties. An incoming value is applied only if its version is newer than
the one held, so **the last writer wins, by logical clock**, on every node,
whatever order updates arrive in, and an older value never overwrites a
newer one.

State transfer is the original project's ``on_fetch``/``on_replicate`` made
reusable: whenever a member joins — and, for a newcomer, whenever it links to
a member while joining — each side asks the other for its entries
(``<name>.state``) and merges them by version. Updates made during the
transfer are not lost: an update a member makes before answering is in its
answer, one it makes after is sent to the newcomer directly (it already has a
link to it). Arrival order does not matter because merging is by version.
Members that have no store under this name (other node types) are ignored.

Values must be encodable by the cluster's serializer. Deleting keys is not
supported (set a tombstone value of your own).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from .errors import DeliveryError, PydevtsError
from .members import MemberEvent
from .node.core import Node

__all__ = ["ReplicatedDict"]

log = logging.getLogger("pydevts.replicated")

UpdateCallback = Callable[[str, Any, str], Awaitable[None]]
Version = tuple[int, str]


class ReplicatedDict:
    """A last-writer-wins map replicated to every node that has one named ``name``."""

    def __init__(self, node: Node, name: str = "state", *, fetch_timeout: float = 5.0) -> None:
        self.node = node
        self.name = name
        self.fetch_timeout = fetch_timeout
        self._data: dict[str, tuple[Any, Version]] = {}
        self._clock = 0
        self._callbacks: list[UpdateCallback] = []
        node.add_handler(f"{name}.set", self._on_set)
        node.add_handler(f"{name}.state", self._on_state_request)
        node.on_lifecycle(self._on_member)

    # ------------------------------------------------------------ reading

    def get(self, key: str, default: Any = None) -> Any:
        entry = self._data.get(key)
        return default if entry is None else entry[0]

    def __getitem__(self, key: str) -> Any:
        return self._data[key][0]

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._data))

    def __len__(self) -> int:
        return len(self._data)

    def to_dict(self) -> dict[str, Any]:
        """A plain copy of the current map."""
        return {key: value for key, (value, _) in self._data.items()}

    def version(self, key: str) -> Version | None:
        """The ``(clock, node_id)`` version of ``key``'s value, or None."""
        entry = self._data.get(key)
        return None if entry is None else entry[1]

    def on_update(self, callback: UpdateCallback) -> UpdateCallback:
        """Decorator: ``async def callback(key, value, origin)`` after every applied change.

        ``origin`` is the node whose write it was. Runs for local writes,
        remote writes and values merged by a state transfer, never for a
        value that lost to a newer one.
        """
        self._callbacks.append(callback)
        return callback

    # ------------------------------------------------------------ writing

    async def set(self, key: str, value: Any) -> None:
        """Set ``key`` here, then send the write to every other member."""
        self._clock += 1
        version = (self._clock, self.node.id)
        await self._apply(key, value, version)
        await self.node.emit(f"{self.name}.set", [key, value, version[0], version[1]])

    async def _apply(self, key: str, value: Any, version: Version) -> bool:
        self._clock = max(self._clock, version[0])
        held = self._data.get(key)
        if held is not None and held[1] >= version:
            return False  # an older (or the same) write: last writer wins
        self._data[key] = (value, version)
        for callback in list(self._callbacks):
            try:
                await callback(key, value, version[1])
            except Exception:
                log.exception("update callback %r of store %r raised on key %r", callback, self.name, key)
        return True

    # ------------------------------------------------------------ network

    async def _on_set(self, sender: str, payload: Any) -> None:
        key, value, clock, origin = _entry(payload)
        await self._apply(key, value, (clock, origin))

    async def _on_state_request(self, sender: str, payload: Any) -> list[list[Any]]:
        return [[key, value, version[0], version[1]] for key, (value, version) in self._data.items()]

    async def _on_member(self, event: MemberEvent) -> None:
        if event.kind == "joined":
            await self.fetch(event.member.id)

    async def sync(self) -> int:
        """Fetch and merge the entries of every live member now; return how many were applied.

        State transfer also happens by itself as members join; call this
        right after joining when you need the cluster's state before going on.
        """
        applied = 0
        for member in self.node.members:
            if member.alive and member.id != self.node.id:
                applied += await self.fetch(member.id)
        return applied

    async def fetch(self, node_id: str) -> int:
        """Merge ``node_id``'s entries into ours; return how many were applied.

        Done automatically whenever a member joins; a member without this
        store, or one that is gone, contributes nothing.
        """
        try:
            entries = await self.node.request(node_id, f"{self.name}.state", None, timeout=self.fetch_timeout)
        except DeliveryError as exc:
            log.debug("no state for store %r from %s: %s", self.name, node_id, exc)
            return 0
        except PydevtsError as exc:
            log.warning("could not fetch store %r from %s: %s", self.name, node_id, exc)
            return 0
        applied = 0
        for item in entries if isinstance(entries, list) else []:
            try:
                key, value, clock, origin = _entry(item)
            except ValueError as exc:
                log.warning("ignoring a bad entry of store %r from %s: %s", self.name, node_id, exc)
                continue
            applied += await self._apply(key, value, (clock, origin))
        return applied


def _entry(item: Any) -> tuple[str, Any, int, str]:
    if not isinstance(item, (list, tuple)) or len(item) != 4:
        raise ValueError(f"expected [key, value, clock, node_id], got {item!r}")
    key, value, clock, origin = item
    if not isinstance(key, str) or not isinstance(clock, int) or not isinstance(origin, str):
        raise ValueError(f"bad types in entry {item!r}")
    return key, value, clock, origin
