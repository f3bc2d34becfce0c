"""PeerState: the sans-IO full-mesh state machine (and one router-level consequence)."""

from __future__ import annotations

import itertools
import json
import random
from collections import Counter, deque
from typing import Any

import pytest
from pydevts.members import Member, MemberState
from pydevts_peer.state import Connect, MemberDown, MemberUp, PeerState, SendControl


def m(node_id: str, **tags: str) -> Member:
    return Member(node_id, f"{node_id}.local:7000", tags)


def wire(member: Member) -> dict[str, Any]:
    return {"id": member.id, "address": member.address, "tags": dict(member.tags)}


def sync_of(*members: Member) -> dict[str, Any]:
    return {"t": "sync", "members": [wire(x) for x in members]}


def sends(actions: list[Any]) -> list[SendControl]:
    return [a for a in actions if isinstance(a, SendControl)]


def connects(actions: list[Any]) -> list[str]:
    return [a.member.id for a in actions if isinstance(a, Connect)]


# ------------------------------------------------------------------ link_up


def test_first_link_up_gives_member_up_and_sync_only() -> None:
    state = PeerState(m("a"))
    b = m("b", zone="eu")
    actions = state.link_up(b, now=0.0)
    assert actions == [MemberUp(b), SendControl("b", sync_of(m("a"), b))]
    assert state.linked == {"b": b}
    assert state.known == {}


def test_link_up_of_unknown_peer_introduces_it_to_every_other_linked_peer() -> None:
    state = PeerState(m("a"))
    state.link_up(m("b"), 0.0)
    state.link_up(m("c"), 0.0)
    actions = state.link_up(m("d"), 0.0)
    assert actions[0] == MemberUp(m("d"))
    assert actions[1] == SendControl("d", sync_of(m("a"), m("b"), m("c"), m("d")))
    intro = {"t": "intro", "member": wire(m("d"))}
    assert sorted(sends(actions)[1:], key=lambda s: s.peer_id) == [
        SendControl("b", intro),
        SendControl("c", intro),
    ]
    assert len(actions) == 4


def test_link_up_of_peer_learned_via_sync_sends_no_intro() -> None:
    state = PeerState(m("a"))
    state.link_up(m("b"), 0.0)
    state.control("b", sync_of(m("b"), m("c")), 0.0)
    assert "c" in state.known
    actions = state.link_up(m("c"), 1.0)
    # c learned of us from b's introduction, like we did of it: a sync of us only (no N³ wave)
    assert actions == [MemberUp(m("c")), SendControl("c", sync_of(m("a")))]
    assert "c" not in state.known
    assert set(state.linked) == {"b", "c"}


def test_a_merging_islands_members_are_introduced_to_ours_and_only_once() -> None:
    # b1 (linked to b2) meets a1 of another island (linked to a2): a1's first sync lists a2,
    # whom b2 does not know and who does not know b2 -> b1 introduces a2 to b2.
    b1 = PeerState(m("b1"))
    b1.link_up(m("b2"), 0.0)
    b1.control("b2", sync_of(m("b2")), 0.0)  # b2 joined through b1: nothing new
    actions = b1.link_up(m("a1"), 1.0)
    assert SendControl("b2", {"t": "intro", "member": wire(m("a1"))}) in actions
    actions = b1.control("a1", sync_of(m("a1"), m("a2")), 1.0)
    assert sends(actions) == [SendControl("b2", {"t": "intro", "member": wire(m("a2"))})]
    assert connects(actions) == []  # a2 < b1: a2 dials
    # a later sync, once b2 is no newcomer any more (NEWCOMER_WINDOW): no intros
    again = b1.control("a1", sync_of(m("a1"), m("a2"), m("a3")), 20.0)
    assert sends(again) == [] and "a3" in b1.known


def test_members_joining_at_once_through_different_nodes_are_introduced_to_each_other() -> None:
    # r4 joins through r3 and gets r3's full sync; a moment later r3 hears (from r1) of r6,
    # who joined through r1 at the same time: r3 tells r4, which r4 could not learn otherwise.
    r3 = PeerState(m("r3"))
    r3.link_up(m("r1"), 0.0)
    r3.link_up(m("r4"), 1.0)  # a stranger: full sync, and now a newcomer
    actions = r3.control("r1", {"t": "intro", "member": wire(m("r6"))}, 1.5)
    assert SendControl("r4", {"t": "intro", "member": wire(m("r6"))}) in sends(actions)
    assert all(s.peer_id != "r1" for s in sends(actions))  # not back to who told us
    later = r3.control("r1", {"t": "intro", "member": wire(m("r7"))}, 30.0)
    assert sends(later) == []  # r4 is no newcomer after NEWCOMER_WINDOW


class Mesh:
    """Peer states wired together in memory: links come up at once, control messages in order."""

    def __init__(self, ids: list[str]) -> None:
        self.states = {i: PeerState(m(i)) for i in ids}
        self.queue: deque[tuple[str, str, Any]] = deque()  # (to, from, control message)

    def link(self, x: str, y: str) -> None:
        for a, b in ((x, y), (y, x)):
            for action in self.states[a].link_up(m(b), 0.0):
                if isinstance(action, SendControl):
                    self.queue.append((action.peer_id, a, action.message))

    def settle(self) -> None:
        while self.queue:
            to, frm, message = self.queue.popleft()
            for action in self.states[to].control(frm, message, 0.0):
                if isinstance(action, SendControl):
                    self.queue.append((action.peer_id, to, action.message))
                elif isinstance(action, Connect) and action.member.id not in self.states[to].linked:
                    self.link(to, action.member.id)

    def assert_full(self) -> None:
        ids = set(self.states)
        for i, state in self.states.items():
            assert set(state.linked) == ids - {i}, (i, sorted(state.linked))


def test_every_pair_links_after_two_islands_merge() -> None:
    """Islands {a1, a2, a3} and {b1, b2} merge through a1 -> b1: every pair ends up linked."""
    mesh = Mesh(["a1", "a2", "a3", "b1", "b2"])
    for island in (["a1", "a2", "a3"], ["b1", "b2"]):
        for other in island[1:]:
            mesh.link(other, island[0])  # each joins through the first
            mesh.settle()
    mesh.link("a1", "b1")  # the merge
    mesh.settle()
    mesh.assert_full()


def test_every_pair_links_when_nodes_join_at_once_through_different_members() -> None:
    mesh = Mesh(["r0", "r1", "r2", "r3", "r4", "r6"])
    for i in ("r1", "r2", "r3"):
        mesh.link(i, "r0")
        mesh.settle()
    mesh.link("r4", "r3")  # both join before either's messages are handled
    mesh.link("r6", "r1")
    mesh.settle()
    mesh.assert_full()


def test_link_up_again_for_linked_peer_sends_no_intro() -> None:
    state = PeerState(m("a"))
    state.link_up(m("b"), 0.0)
    state.link_up(m("c"), 0.0)
    actions = state.link_up(m("c", v="2"), 0.0)  # a replacement link
    assert [type(a) for a in actions] == [MemberUp, SendControl]
    assert actions[0] == MemberUp(m("c", v="2"))
    assert state.linked["c"] == m("c", v="2")


# ------------------------------------------------------------------ learning members


def test_sync_connects_only_to_members_with_a_larger_id() -> None:
    state = PeerState(m("c"))
    state.link_up(m("x"), 0.0)
    actions = state.control("x", sync_of(m("x"), m("a"), m("b"), m("d"), m("e"), m("c")), 0.0)
    assert sorted(connects(actions)) == ["d", "e"]
    assert all(isinstance(a, Connect) for a in actions)
    # the smaller ones are remembered and wait for the other side (or the tick safety net)
    assert set(state.known) == {"a", "b", "d", "e"}
    assert state.known["d"].connecting and not state.known["a"].connecting


def test_intro_connects_only_when_local_id_is_smaller() -> None:
    low = PeerState(m("b"))
    assert low.control("x", {"t": "intro", "member": wire(m("c"))}, 0.0) == [Connect(m("c"))]
    high = PeerState(m("d"))
    assert high.control("x", {"t": "intro", "member": wire(m("c"))}, 0.0) == []
    assert "c" in high.known


def test_learning_keeps_member_address_and_tags() -> None:
    state = PeerState(m("a"))
    actions = state.control("x", {"t": "intro", "member": wire(m("b", zone="eu", n="1"))}, 0.0)
    assert actions == [Connect(Member("b", "b.local:7000", {"zone": "eu", "n": "1"}))]


def test_learning_self_linked_or_known_members_does_nothing() -> None:
    state = PeerState(m("a"))
    state.link_up(m("b"), 0.0)
    assert state.control("b", sync_of(m("a"), m("b")), 0.0) == []
    assert state.control("b", {"t": "intro", "member": wire(m("c"))}, 0.0) == [Connect(m("c"))]
    # a second mention of c while the connect is pending does not connect again
    assert state.control("b", sync_of(m("c")), 1.0) == []
    assert state.known["c"].attempts == 1


# ------------------------------------------------------------------ tick and connect_failed


def test_tick_connects_to_members_waiting_longer_than_connect_after() -> None:
    state = PeerState(m("z"), connect_after=3.0)
    state.control("x", sync_of(m("a"), m("b")), now=10.0)  # z > a, b: no connect yet
    state.control("x", sync_of(m("c")), now=11.0)
    assert state.tick(12.9) == []
    assert sorted(connects(state.tick(13.0))) == ["a", "b"]
    # already connecting: not again
    assert state.tick(13.5) == []
    assert connects(state.tick(14.0)) == ["c"]
    assert state.tick(100.0) == []


def test_tick_does_not_retry_a_pending_connect() -> None:
    state = PeerState(m("a"), connect_after=1.0)
    assert connects(state.control("x", sync_of(m("b")), 0.0)) == ["b"]
    assert state.tick(50.0) == []


def test_connect_failed_retries_after_connect_after_then_forgets() -> None:
    state = PeerState(m("a"), connect_after=2.0, max_attempts=3)
    assert connects(state.control("x", sync_of(m("b")), 0.0)) == ["b"]  # attempt 1
    assert state.connect_failed("b", 1.0) == []
    assert state.tick(2.9) == []  # waits connect_after from the failure
    assert connects(state.tick(3.0)) == ["b"]  # attempt 2
    state.connect_failed("b", 4.0)
    assert connects(state.tick(6.0)) == ["b"]  # attempt 3
    assert "b" in state.known
    state.connect_failed("b", 7.0)
    assert "b" not in state.known  # forgotten after max_attempts
    assert state.tick(1000.0) == []
    # learning it again starts over
    assert connects(state.control("x", sync_of(m("b")), 1001.0)) == ["b"]
    assert state.known["b"].attempts == 1


def test_connect_failed_for_unknown_or_linked_member_is_harmless() -> None:
    state = PeerState(m("a"))
    state.link_up(m("b"), 0.0)
    assert state.connect_failed("nobody", 0.0) == []
    assert state.connect_failed("b", 0.0) == []
    assert "b" in state.linked


def test_link_up_removes_member_from_known_so_tick_stops() -> None:
    state = PeerState(m("z"), connect_after=1.0)
    state.control("x", sync_of(m("a")), 0.0)
    state.link_up(m("a"), 0.5)
    assert state.tick(10.0) == []


# ------------------------------------------------------------------ leave / link_down


def test_leave_then_link_down_is_left() -> None:
    state = PeerState(m("a"))
    state.link_up(m("b"), 0.0)
    assert state.control("b", {"t": "leave"}, 1.0) == []
    assert state.link_down("b", 2.0) == [MemberDown("b", MemberState.LEFT)]
    assert "b" not in state.linked


def test_link_down_without_leave_is_failed() -> None:
    state = PeerState(m("a"))
    state.link_up(m("b"), 0.0)
    assert state.link_down("b", 2.0) == [MemberDown("b", MemberState.FAILED)]


def test_link_down_of_unlinked_peer_gives_nothing() -> None:
    state = PeerState(m("a"))
    assert state.link_down("b", 0.0) == []
    state.link_up(m("b"), 0.0)
    state.link_down("b", 1.0)
    assert state.link_down("b", 2.0) == []


def test_leave_is_forgotten_after_rejoin() -> None:
    state = PeerState(m("a"))
    state.link_up(m("b"), 0.0)
    state.control("b", {"t": "leave"}, 1.0)
    state.link_down("b", 2.0)
    state.link_up(m("b"), 3.0)  # restarted
    assert state.link_down("b", 4.0) == [MemberDown("b", MemberState.FAILED)]


def test_leave_sends_leave_to_every_linked_peer() -> None:
    state = PeerState(m("a"))
    assert state.leave() == []
    state.link_up(m("b"), 0.0)
    state.link_up(m("c"), 0.0)
    assert sorted(state.leave(), key=lambda s: s.peer_id) == [
        SendControl("b", {"t": "leave"}),
        SendControl("c", {"t": "leave"}),
    ]


# ------------------------------------------------------------------ malformed control messages


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(None, id="none"),
        pytest.param([1, 2], id="list"),
        pytest.param("sync", id="string"),
        pytest.param({}, id="no-type"),
        pytest.param({"t": "bogus"}, id="unknown-type"),
        pytest.param({"t": "sync"}, id="sync-no-members"),
        pytest.param({"t": "sync", "members": {"id": "b"}}, id="sync-members-not-list"),
        pytest.param({"t": "sync", "members": [1]}, id="sync-member-not-object"),
        pytest.param({"t": "sync", "members": [["b", "h:1"]]}, id="sync-member-list"),
        pytest.param({"t": "intro"}, id="intro-no-member"),
        pytest.param({"t": "intro", "member": "b"}, id="intro-member-string"),
    ],
)
def test_malformed_control_messages_raise_value_error(message: Any) -> None:
    state = PeerState(m("a"))
    with pytest.raises(ValueError):
        state.control("b", message, 0.0)
    assert state.known == {} and state.linked == {}


@pytest.mark.parametrize(
    "entry", [pytest.param({"address": "h:1"}, id="no-id"), pytest.param({"id": "b"}, id="no-address")]
)
def test_member_entry_missing_fields_raises_value_error(entry: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        PeerState(m("a")).control("b", {"t": "sync", "members": [entry]}, 0.0)


@pytest.mark.parametrize("tags", [["zone", "eu"], "zone=eu", 5])
def test_member_entry_with_bad_tags_raises_value_error(tags: Any) -> None:
    message = {"t": "intro", "member": {"id": "b", "address": "h:1", "tags": tags}}
    with pytest.raises(ValueError):
        PeerState(m("a")).control("x", message, 0.0)


def started_router() -> Any:
    from pydevts_peer.router import PeerRouter

    router = PeerRouter(seed=1)
    router.start(0.0, m("a"), "c")
    return router


def test_router_refuses_malformed_control_messages() -> None:
    """A bad control frame raises ValueError (or a kin the link host takes alike): that link closes."""
    from pydevts_peer.router import encode_control

    router = started_router()
    for bad in ({"t": "bogus"}, {"t": "sync", "members": [{"address": "h:1"}]}):
        with pytest.raises(ValueError):
            router.receive(0.0, "x", encode_control(bad))
    with pytest.raises(ValueError):
        router.receive(0.0, "x", b"\x40not json")
    with pytest.raises(ValueError, match="unknown router frame kind 0x41"):
        router.receive(0.0, "x", b"\x41{}")
    with pytest.raises(ValueError, match="empty frame"):
        router.receive(0.0, "x", b"")


def test_router_refuses_control_with_bad_tags() -> None:
    from pydevts_peer.router import encode_control

    bad = {"t": "intro", "member": {"id": "b", "address": "h:1", "tags": ["zone", "eu"]}}
    with pytest.raises(ValueError):
        started_router().receive(0.0, "x", encode_control(bad))


# ------------------------------------------------------------------ a simulated cluster


class Cluster:
    """Several PeerStates wired together in memory.

    Control messages travel over per-direction FIFO channels (like a real link);
    a Connect becomes link_up on both sides. ``rng`` picks which pending event
    runs next, so different seeds give different interleavings.
    """

    def __init__(self, ids: list[str], rng: random.Random | None = None) -> None:
        self.nodes = {i: PeerState(m(i)) for i in ids}
        self.rng = rng
        self.channels: dict[tuple[str, str], deque[dict[str, Any]]] = {}
        self.pending_connects: list[tuple[str, str]] = []
        self.links: Counter[frozenset[str]] = Counter()
        self.ups: Counter[tuple[str, str]] = Counter()
        self.downs: list[tuple[str, MemberDown]] = []
        self.now = 0.0

    def link(self, a: str, b: str) -> None:
        self.links[frozenset((a, b))] += 1
        self.channels.setdefault((a, b), deque())
        self.channels.setdefault((b, a), deque())
        self.apply(a, self.nodes[a].link_up(m(b), self.now))
        self.apply(b, self.nodes[b].link_up(m(a), self.now))

    def apply(self, src: str, actions: list[Any]) -> None:
        for action in actions:
            if isinstance(action, SendControl):
                assert frozenset((src, action.peer_id)) in self.links, "control sent without a link"
                # a JSON round trip, as on the wire
                self.channels[(src, action.peer_id)].append(json.loads(json.dumps(action.message)))
            elif isinstance(action, Connect):
                self.pending_connects.append((src, action.member.id))
            elif isinstance(action, MemberUp):
                self.ups[(src, action.member.id)] += 1
            elif isinstance(action, MemberDown):
                self.downs.append((src, action))

    def step(self) -> bool:
        choices: list[Any] = [key for key, q in self.channels.items() if q]
        choices += [("connect", i) for i in range(len(self.pending_connects))]
        if not choices:
            return False
        choice = self.rng.choice(choices) if self.rng else choices[0]
        if choice[0] == "connect":
            a, b = self.pending_connects.pop(choice[1])
            self.link(a, b)
        else:
            src, dst = choice
            message = self.channels[choice].popleft()
            self.apply(dst, self.nodes[dst].control(src, message, self.now))
        return True

    def settle(self) -> None:
        for _ in range(10_000):
            if not self.step():
                return
        raise AssertionError("the cluster did not settle")

    def tick_all(self, now: float) -> None:
        self.now = now
        for node_id, state in self.nodes.items():
            self.apply(node_id, state.tick(now))


def assert_full_mesh(cluster: Cluster) -> None:
    ids = sorted(cluster.nodes)
    for node_id, state in cluster.nodes.items():
        assert sorted(state.linked) == sorted(set(ids) - {node_id}), node_id
        assert state.known == {}, f"{node_id} still waits for {sorted(state.known)}"
    pairs = {frozenset(p) for p in itertools.combinations(ids, 2)}
    assert set(cluster.links) == pairs
    assert all(count == 1 for count in cluster.links.values()), cluster.links
    # every node saw every other one come up exactly once
    assert cluster.ups == Counter({(a, b): 1 for a in ids for b in ids if a != b})
    assert cluster.downs == []


def test_four_nodes_joining_one_by_one_form_a_full_mesh() -> None:
    cluster = Cluster(["n1", "n2", "n3", "n4"])
    for newcomer in ["n2", "n3", "n4"]:
        cluster.link(newcomer, "n1")  # everybody joins through n1
        cluster.settle()
    assert_full_mesh(cluster)
    cluster.tick_all(1000.0)  # the safety net has nothing left to do
    assert cluster.pending_connects == []
    assert_full_mesh(cluster)


def test_four_nodes_joining_through_different_entries_form_a_full_mesh() -> None:
    cluster = Cluster(["d", "c", "b", "a"])
    cluster.link("c", "d")
    cluster.settle()
    cluster.link("b", "c")
    cluster.settle()
    cluster.link("a", "d")
    cluster.settle()
    assert_full_mesh(cluster)


@pytest.mark.parametrize("seed", range(25))
def test_four_nodes_joining_concurrently_form_a_full_mesh(seed: int) -> None:
    rng = random.Random(seed)
    ids = ["n1", "n2", "n3", "n4"]
    rng.shuffle(ids)
    cluster = Cluster(ids, rng)
    entry, *newcomers = ids
    for newcomer in newcomers:  # all join at once, through the same entry
        cluster.link(newcomer, entry)
    cluster.settle()
    cluster.tick_all(1000.0)
    cluster.settle()
    assert_full_mesh(cluster)


def test_leaving_node_is_reported_left_everywhere() -> None:
    cluster = Cluster(["n1", "n2", "n3"])
    cluster.link("n2", "n1")
    cluster.link("n3", "n1")
    cluster.settle()
    cluster.apply("n3", cluster.nodes["n3"].leave())
    cluster.settle()
    for other in ("n1", "n2"):
        assert cluster.nodes[other].link_down("n3", 1.0) == [MemberDown("n3", MemberState.LEFT)]
    assert cluster.nodes["n1"].link_down("n2", 1.0) == [MemberDown("n2", MemberState.FAILED)]


@pytest.mark.anyio
async def test_peer_router_honours_the_router_contract() -> None:
    from pydevts.testing import check_router
    from pydevts_peer import PeerRouter

    await check_router(PeerRouter, nodes=4)


@pytest.mark.anyio
async def test_the_router_contract_catches_a_router_that_duplicates() -> None:
    from pydevts.routing import Action, Send
    from pydevts.testing import check_router
    from pydevts_peer import PeerRouter

    class Stutter(PeerRouter):
        """Routes itself (both overridden), and sends every broadcast twice."""

        def send(self, now: float, dest: str, frame: bytes) -> list[Action]:
            return [Send(dest, frame)]

        def broadcast(self, now: float, frame: bytes) -> list[Action]:
            return [Send(peer, frame) for peer in sorted(self.up) for _ in range(2)]

    with pytest.raises(AssertionError, match="exactly once"):
        await check_router(Stutter, nodes=3)


def test_next_deadline_is_when_the_safety_net_connects_and_nothing_happens_before() -> None:
    state = PeerState(m("b"), connect_after=3.0)
    assert state.next_deadline() is None  # nobody waits for a link: no timer at all
    state.learn(m("a"), 5.0)  # a has the smaller id: it dials; b waits connect_after
    assert state.next_deadline() == 8.0
    assert state.tick(7.99) == []
    assert state.tick(8.0) == [Connect(m("a"))]
    assert state.next_deadline() is None  # dialling: connect_failed or a link comes next
    state.connect_failed("a", 9.0)
    assert state.next_deadline() == 12.0
