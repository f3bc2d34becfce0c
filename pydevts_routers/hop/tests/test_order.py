"""Per-sender order while a new, shorter path opens (sans-IO, deterministic).

An origin ``o`` reaches ``d`` over a long path; a link opens that makes a
shorter one. What ``o`` sent before it is still on the long path, what it
sends after takes the short one and arrives first. ``d`` must still hand
``o``'s broadcasts to its node in order, and a unicast ``o`` sent after them
behind them (the router contract's rule 'per-sender order' broke this way
under load: r3 got r1's events 1, 2, 5, 6, ... and 3, 4 late).
"""

from __future__ import annotations

import pytest
from hoptest import event
from pydevts_hop import HopConfig
from pydevts_hop.simulation import Network

#: The long path ``o`` - ``d`` and the link that opens the short one, per case.
CASES = {
    # d a neighbour of o once the link opens: the unicast is o's raw core frame
    "direct": ([("o", "b"), ("b", "d")], ("o", "d")),
    # d two hops away over the short path: the unicast is relayed (a UNICAST frame)
    "relayed": ([("o", "b"), ("b", "c"), ("c", "d"), ("a", "d")], ("o", "a")),
}


def settled(edges: list[tuple[str, str]]) -> Network:
    net = Network(HopConfig(max_neighbours=0))
    net.build(edges)
    net.settle()
    return net


def open_short_path(net: Network, link: tuple[str, str]) -> None:
    """Link ``o`` to its new neighbour; ``o`` hears of it at once, the rest is still in flight."""
    o, new = link
    net.link(o, new)
    net.deliver(new, o)  # o now routes (and floods) over the new link
    assert net.nodes[o].route("d") is not None and net.nodes[o].route("d")[0] == new


def from_o(net: Network, node: str = "d") -> list[bytes]:
    return [frame for origin, frame in net.delivered[node] if origin == "o"]


@pytest.mark.parametrize("case", list(CASES))
def test_a_unicast_waits_behind_broadcasts_held_for_a_gap_on_a_slower_path(case: str) -> None:
    edges, link = CASES[case]
    net = settled(edges)
    net.broadcast("o", event("o", 1))
    net.run()
    assert from_o(net) == [event("o", 1)]
    net.broadcast("o", event("o", 2))  # on the long path, not delivered yet
    open_short_path(net, link)
    net.broadcast("o", event("o", 3))  # flooded: the short path too
    net.send("o", "d", event("o", 4))  # the short path
    net.deliver(*link)
    if case == "relayed":
        net.deliver("a", "d")
    assert from_o(net) == [event("o", 1)]  # 3 and the unicast wait for 2
    net.run()
    assert from_o(net) == [event("o", i) for i in (1, 2, 3, 4)]
    assert net.nodes["d"].statistics()["unicasts_held_for_order"] == 1


@pytest.mark.parametrize("case", list(CASES))
def test_the_first_broadcast_heard_of_a_known_origin_waits_if_it_was_flooded(case: str) -> None:
    """``d`` has known ``o`` for long (past settle_time) but heard none of its broadcasts yet:
    the first one it hears, flooded over the new path, must not pass the one on the old path."""
    edges, link = CASES[case]
    net = settled(edges)
    net.broadcast("o", event("o", 1))  # on the long path
    open_short_path(net, link)
    net.broadcast("o", event("o", 2))  # flooded: the short path too
    net.deliver(*link)
    if case == "relayed":
        net.deliver("a", "d")
    assert from_o(net) == []  # 2 waits for 1
    net.run()
    assert from_o(net) == [event("o", 1), event("o", 2)]


def test_a_unicast_behind_a_gap_that_never_fills_waits_at_most_reorder_wait() -> None:
    edges, link = CASES["direct"]
    net = settled(edges)
    net.broadcast("o", event("o", 1))
    net.run()
    net.cut("o", "b")  # 2 is lost on the long path
    net.broadcast("o", event("o", 2))
    open_short_path(net, link)
    net.broadcast("o", event("o", 3))
    net.send("o", "d", event("o", 4))
    net.run()
    assert from_o(net) == [event("o", 1)]
    net.tick(int(net.config.reorder_wait / net.config.tick_interval) + 1)
    assert from_o(net) == [event("o", i) for i in (1, 3, 4)]
    assert net.nodes["d"].statistics()["order_gaps_skipped"] == 1
