"""PeerRouter.forget: what the router keeps about a reaped member, and when it refuses (no IO)."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

from pydevts.members import Member, MemberState
from pydevts.swim import SwimState
from pydevts_peer import PeerRouter
from pydevts_peer.state import PeerState

LOCAL = Member("a", "127.0.0.1:7000")
X = Member("x", "127.0.0.1:7001")


def router_knowing(x: Member) -> PeerRouter:
    router = PeerRouter()
    swim = SwimState(LOCAL)
    swim.members["x"] = x
    router._state = PeerState(LOCAL)
    router._state.learn(X, 0.0)  # a pending link to it
    router._liveness = SimpleNamespace(swim=swim)  # type: ignore[assignment]
    return router


def test_forget_drops_a_failed_member_everywhere() -> None:
    router = router_knowing(replace(X, state=MemberState.FAILED))
    router._first_delay["x"] = 1.0
    assert router.forget("x") is True
    assert router._state is not None and "x" not in router._state.known
    assert router._liveness is not None and "x" not in router._liveness.swim.members
    assert "x" not in router._first_delay


def test_forget_refuses_a_member_swim_holds_alive_and_keeps_linking_to_it() -> None:
    # SWIM heard it is back, its link is not up yet: the node's view still says failed.
    router = router_knowing(X)
    assert router.forget("x") is False
    assert router._state is not None and "x" in router._state.known
    assert router._liveness is not None and "x" in router._liveness.swim.members


def test_forget_refuses_a_member_with_a_link() -> None:
    router = router_knowing(replace(X, state=MemberState.FAILED))
    router._links["x"] = object()  # type: ignore[assignment]
    assert router.forget("x") is False
