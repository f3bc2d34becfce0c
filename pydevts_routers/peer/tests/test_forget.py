"""PeerRouter.forget: what the router keeps about a reaped member, and when it refuses (sans-IO)."""

from __future__ import annotations

from dataclasses import replace

from pydevts.members import Member, MemberState
from pydevts_peer import PeerRouter

LOCAL = Member("a", "127.0.0.1:7000")
X = Member("x", "127.0.0.1:7001")


def router_knowing(x: Member) -> PeerRouter:
    router = PeerRouter(seed=1)
    router.start(0.0, LOCAL, "c")
    router.detector.swim.members["x"] = x
    router.state.learn(X, 0.0)  # a pending link to it
    return router


def test_forget_drops_a_failed_member_everywhere() -> None:
    router = router_knowing(replace(X, state=MemberState.FAILED))
    router.redialing.add("x")
    assert router.forget("x") is True
    assert "x" not in router.state.known
    assert "x" not in router.detector.swim.members
    assert "x" not in router.redialing


def test_forget_refuses_a_member_swim_holds_alive_and_keeps_linking_to_it() -> None:
    # SWIM heard it is back, its link is not up yet: the node's view still says failed.
    router = router_knowing(X)
    assert router.forget("x") is False
    assert "x" in router.state.known
    assert "x" in router.detector.swim.members


def test_forget_refuses_a_member_with_a_link() -> None:
    router = router_knowing(replace(X, state=MemberState.FAILED))
    router.link_up(1.0, replace(X, state=MemberState.FAILED))
    assert router.forget("x") is False
