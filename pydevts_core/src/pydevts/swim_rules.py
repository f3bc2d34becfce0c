"""The ordering rules of SWIM updates, and their validation (see :mod:`pydevts.swim`)."""

from __future__ import annotations

from typing import Any

from .members import Member, MemberState

__all__ = ["STATES", "check_update", "int_field", "tags_of", "wins"]


STATES = {
    "alive": MemberState.ALIVE,
    "suspect": MemberState.SUSPECT,
    "failed": MemberState.FAILED,
    "left": MemberState.LEFT,
}


def wins(kind: str, inc: int, current: Member | None) -> bool:
    """Does an update of ``kind`` at incarnation ``inc`` override ``current``?"""
    if current is None:
        return kind == "alive"  # we only learn members from evidence that they live
    cur_inc, state = current.incarnation, current.state
    if kind == "alive":
        return inc > cur_inc
    if kind == "suspect":
        if state == MemberState.ALIVE:
            return inc >= cur_inc
        return state == MemberState.SUSPECT and inc > cur_inc
    if kind == "failed":
        return state in (MemberState.ALIVE, MemberState.SUSPECT) and inc >= cur_inc
    if kind == "left":
        return inc > cur_inc if state == MemberState.LEFT else inc >= cur_inc
    return False


def tags_of(member: Member, kind: str) -> dict[str, str] | None:
    return dict(member.tags) if kind == "alive" else None


def int_field(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r}")
    return value


def check_update(update: Any) -> list[Any]:
    if not isinstance(update, list) or len(update) != 5:
        raise ValueError(f"bad SWIM update {update!r}")
    kind, node_id, address, inc, tags = update
    if kind not in STATES or not isinstance(node_id, str) or not isinstance(address, str):
        raise ValueError(f"bad SWIM update {update!r}")
    int_field(inc)
    if tags is not None and not (isinstance(tags, dict) and all(isinstance(v, str) for v in tags.values())):
        raise ValueError(f"bad tags in SWIM update {update!r}")
    return [kind, node_id, address, inc, tags]
