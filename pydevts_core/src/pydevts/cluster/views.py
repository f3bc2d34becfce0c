"""Views agree: a node records the down members another node lists and it lacks (internal).

A node that joins late (or merges with another island) never saw the members
that left or failed before; the older members still list them until they
reap them. While joining, a node asks its entry for its member list
(``pydevts.members`` over the new link, before the start returns; it gives
each down member's state and how long it has been down); a merge probe brings
the answering node's list; a node that merged tells the other side its own
(``pydevts.merged``). The left and failed members missing from this node's
view are recorded with :meth:`~pydevts.members.MemberView.import_down`: no
lifecycle event, the same reaping time. Live members are never taken from
such a list: the router learns those itself.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import anyio

from ..errors import PydevtsError, UnknownNodeError
from ..fields import address_field, id_field, int_field, tags_field
from ..members import Member, MemberState, MemberView
from ..settings import finite_seconds

if TYPE_CHECKING:
    from ..node.context import NodeContext

__all__ = ["MAX_ROWS", "MemberRow", "agree_with", "import_rows", "member_rows", "parse_rows", "tell_down"]

log = logging.getLogger("pydevts.node")

MAX_ROWS = 10_000  # members taken from one answer (as many as the peer router's sync takes)


class MemberRow:
    """One entry of a ``pydevts.members`` answer: the member and how long it has been down."""

    __slots__ = ("down_for", "member")

    def __init__(self, member: Member, down_for: float) -> None:
        self.member = member
        self.down_for = down_for


def parse_rows(rows: Any, *, limit: int = MAX_ROWS) -> list[MemberRow]:
    """Check a ``pydevts.members`` answer; ValueError saying what is wrong (at most ``limit`` rows)."""
    if not isinstance(rows, list):
        raise ValueError(f"a member list is a list, not {type(rows).__name__}")
    if len(rows) > limit:
        raise ValueError(f"the answer lists {len(rows)} members; at most {limit} are taken")
    parsed = []
    for row in rows:
        if not isinstance(row, dict):
            raise ValueError(f"a member entry is an object: {row!r:.80}")
        try:
            state = MemberState(str(row.get("state")))
        except ValueError:
            raise ValueError(f"unknown member state {row.get('state')!r:.40}") from None
        down_for = finite_seconds(row.get("down_for", 0.0))
        if down_for is None:
            raise ValueError(f"down_for is not a number of seconds: {row.get('down_for')!r:.40}")
        member = Member(
            id_field(row.get("id"), "member id"),
            address_field(row.get("address")),
            tags_field(row.get("tags", {})) or {},
            state,
            int_field(row.get("incarnation", 0), "incarnation"),
        )
        parsed.append(MemberRow(member, max(0.0, down_for)))
    return parsed


def member_rows(view: MemberView, *, down_only: bool = False) -> list[dict[str, object]]:
    """The view as ``pydevts.members`` rows (sorted by id); down members say for how long (``down_for``)."""
    rows = []
    for member in sorted(view, key=lambda m: m.id):
        down_for = view.down_for(member.id)
        if down_only and down_for is None:
            continue
        row = member.to_dict()
        if down_for is not None:
            row["down_for"] = round(down_for, 3)
        rows.append(row)
        if len(rows) >= MAX_ROWS:
            break
    return rows


def import_rows(view: MemberView, rows: list[MemberRow], reap_after: float) -> list[Member]:
    """Record the down members of ``rows`` that ``view`` lacks (not those due for reaping); return them."""
    return [
        row.member
        for row in rows
        if not row.member.alive and row.down_for < reap_after and view.import_down(row.member, row.down_for)
    ]


async def agree_with(ctx: NodeContext, entry_id: str, reap_after: float, timeout: float) -> None:
    """While joining through ``entry_id``: take the down members it lists (over the new link, bounded)."""
    answer = await _ask(ctx, entry_id, "pydevts.members", None, timeout)
    try:
        rows = parse_rows(answer) if answer is not None else []
    except ValueError as exc:
        log.info("ignoring the member list of %s: %s", entry_id, exc)
        return
    imported = import_rows(ctx.members, rows, reap_after)
    if imported:
        names = ", ".join(f"{m.id} ({m.state.value})" for m in imported)
        log.info("recorded %d member(s) %s lists as down: %s", len(imported), entry_id, names)


async def _ask(ctx: NodeContext, peer_id: str, name: str, payload: Any, timeout: float) -> Any:
    """A system request to a member the router may not report reachable at once; None if it fails."""
    deadline = anyio.current_time() + timeout
    with anyio.move_on_after(timeout):
        while True:
            try:
                return (await ctx.dispatcher.request(peer_id, name, payload, timeout)).value
            except UnknownNodeError:  # not linked or routed yet: ask again until the deadline
                if anyio.current_time() >= deadline:
                    return None
                await anyio.sleep(0.05)
            except PydevtsError as exc:
                log.debug("%s to %s failed: %s", name, peer_id, exc)
                return None
    return None


async def tell_down(ctx: NodeContext, peer_id: str, timeout: float) -> None:
    """After merging with ``peer_id``: give it the down members we list (``pydevts.merged``), bounded."""
    rows = member_rows(ctx.members, down_only=True)
    if not rows:
        return
    await _ask(ctx, peer_id, "pydevts.merged", rows, timeout)
