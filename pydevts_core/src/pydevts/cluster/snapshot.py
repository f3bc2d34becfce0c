"""Snapshots: a node keeps its id and the members it knows on disk, to rejoin through them.

``Node(snapshot=PATH)`` (``--snapshot PATH``) writes a small JSON file::

    {"format": "pydevts-snapshot", "version": 1, "cluster": "default", "node_id": "a1b2...",
     "written": 1700000000.0, "members": [{"id": "...", "address": "HOST:PORT"}, ...]}

It is rewritten when the view changes (checked once a second, so at most one
write per second) and when the node stops; each write goes to a temporary
file beside it, then ``os.replace`` (atomic: a crash leaves the old file or
the new one, never half of one). At most :data:`MAX_SNAPSHOT_MEMBERS` members
(live ones first) and :data:`MAX_SNAPSHOT_BYTES` bytes (the writer leaves out
members beyond either; the reader refuses a larger file).

When a node starts with a snapshot, the members' addresses are tried after the
cluster port and the seeds (see :mod:`pydevts.cluster.join`), and the node takes the
snapshot's id unless one is given. A snapshot that cannot be read, is
malformed, belongs to another cluster name or is older than ``reap_after``
(the cluster has forgotten those members) is ignored with a WARNING saying why.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from ..address import Address
from ..members import Member, MemberView

__all__ = [
    "MAX_SNAPSHOT_BYTES",
    "MAX_SNAPSHOT_MEMBERS",
    "Snapshot",
    "SnapshotError",
    "encode_snapshot",
    "load_snapshot",
    "parse_snapshot",
    "run_snapshots",
    "snapshot_of",
    "write_snapshot",
]

log = logging.getLogger("pydevts.snapshot")

FORMAT = "pydevts-snapshot"
VERSION = 1
MAX_SNAPSHOT_MEMBERS = 1024
MAX_SNAPSHOT_BYTES = 1024 * 1024  # 1024 members of ASCII ids and addresses of the longest kind fit
WRITE_EVERY = 1.0  # seconds between checks of the view (and so between writes)


class SnapshotError(ValueError):
    """A snapshot that cannot be used; the message says why."""


@dataclass(frozen=True)
class Snapshot:
    cluster: str
    node_id: str
    written: float  # Unix time
    members: tuple[tuple[str, str], ...]  # (id, address)

    @property
    def addresses(self) -> list[Address]:
        return [Address.parse(address) for _, address in self.members]


def snapshot_of(cluster: str, view: MemberView, *, now: float | None = None) -> Snapshot:
    """What a node at ``view`` writes: the other members, live ones first, at most MAX_SNAPSHOT_MEMBERS."""
    others = sorted((m for m in view if m.id != view.local_id), key=lambda m: (not m.alive, m.id))
    members: list[tuple[str, str]] = []
    size = 1024 + len(cluster.encode()) + len(view.local_id.encode())  # the rest of the document, and more
    for m in others[:MAX_SNAPSHOT_MEMBERS]:
        size += len(json.dumps({"id": m.id, "address": m.address}, ensure_ascii=False).encode()) + 1
        if size > MAX_SNAPSHOT_BYTES:
            break
        members.append((m.id, m.address))
    return Snapshot(cluster, view.local_id, time.time() if now is None else now, tuple(members))


def encode_snapshot(snapshot: Snapshot) -> bytes:
    return json.dumps(
        {
            "format": FORMAT,
            "version": VERSION,
            "cluster": snapshot.cluster,
            "node_id": snapshot.node_id,
            "written": snapshot.written,
            "members": [{"id": i, "address": a} for i, a in snapshot.members],
        },
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()


def parse_snapshot(data: bytes, *, cluster: str, now: float, max_age: float) -> Snapshot:
    """Check a snapshot's bytes; SnapshotError saying why it cannot be used (corrupt, foreign, stale)."""
    from ..settings import checked_node_id, finite_seconds
    from ..swim.wire import address_field, id_field

    if len(data) > MAX_SNAPSHOT_BYTES:
        raise SnapshotError(f"it is larger than {MAX_SNAPSHOT_BYTES} bytes")
    try:
        doc: Any = json.loads(data)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise SnapshotError(f"it is not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise SnapshotError("it is not a pydevts snapshot")
    if doc.get("version") != VERSION:
        raise SnapshotError(f"version {doc.get('version')!r:.20} is not {VERSION}")
    if doc.get("cluster") != cluster:
        raise SnapshotError(f"it belongs to cluster {doc.get('cluster')!r:.80}, not {cluster!r}")
    written = finite_seconds(doc.get("written"))
    if written is None:
        raise SnapshotError(f"'written' is not a time: {doc.get('written')!r:.40}")
    if now - written > max_age:
        raise SnapshotError(
            f"it is stale: written {now - written:.0f} s ago, longer than reap_after ({max_age:g} s)"
        )
    try:
        node_id = checked_node_id(id_field(doc.get("node_id")))
    except Exception as exc:  # ValueError or ConfigurationError
        raise SnapshotError(f"bad node_id: {exc}") from None
    rows = doc.get("members")
    if not isinstance(rows, list) or len(rows) > MAX_SNAPSHOT_MEMBERS:
        raise SnapshotError(f"'members' is not a list of at most {MAX_SNAPSHOT_MEMBERS} members")
    members = []
    for row in rows:
        if not isinstance(row, dict):
            raise SnapshotError(f"a member is not an object: {row!r:.60}")
        try:
            members.append((id_field(row.get("id"), "member id"), address_field(row.get("address"))))
        except ValueError as exc:
            raise SnapshotError(f"bad member: {exc}") from None
    return Snapshot(cluster, node_id, written, tuple(members))


def load_snapshot(path: str | os.PathLike[str], *, cluster: str, max_age: float) -> Snapshot | None:
    """The snapshot at ``path``, or None (no file yet: silently; unusable: a WARNING saying why)."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SNAPSHOT_BYTES + 1)
    except FileNotFoundError:
        log.info("no snapshot at %s yet: it will be written there", path)
        return None
    except OSError as exc:
        log.warning("ignoring the snapshot at %s: cannot read it: %s", path, exc)
        return None
    try:
        return parse_snapshot(data, cluster=cluster, now=time.time(), max_age=max_age)
    except SnapshotError as exc:
        log.warning("ignoring the snapshot at %s: %s", path, exc)
        return None


def write_snapshot(path: str | os.PathLike[str], snapshot: Snapshot) -> None:
    """Write ``snapshot`` atomically (a temporary file beside ``path``, then ``os.replace``)."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.urandom(4).hex()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(encode_snapshot(snapshot))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def save(path: str | os.PathLike[str], snapshot: Snapshot) -> bool:
    """:func:`write_snapshot`, logging (never raising) an OSError; True if written."""
    try:
        write_snapshot(path, snapshot)
        return True
    except OSError as exc:
        log.warning("could not write the snapshot %s: %s", path, exc)
        return False


def _signature(members: Iterable[Member]) -> frozenset[tuple[str, str, bool]]:
    return frozenset((m.id, m.address, m.alive) for m in members)


async def run_snapshots(path: str | os.PathLike[str], cluster: str, view: MemberView) -> None:
    """Write a snapshot whenever ``view`` has changed, checking once a second, until cancelled."""
    last: frozenset[tuple[str, str, bool]] | None = None
    while True:
        signature = _signature(view)
        if signature != last:
            snapshot = snapshot_of(cluster, view)
            if await anyio.to_thread.run_sync(save, path, snapshot):
                last = signature
        await anyio.sleep(WRITE_EVERY)
