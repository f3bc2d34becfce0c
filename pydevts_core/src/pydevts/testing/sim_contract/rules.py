"""The rules of the simulated router contract, one function each (internal to :mod:`pydevts.testing`).

Each rule gets a fresh :class:`~.cluster.SimCluster` and raises
``AssertionError`` saying what it saw; :func:`~pydevts.testing.check_router_simulated`
names the rule and the seed. :data:`SIM_RULES` is the order they run in: the
names of :data:`pydevts.testing.router_rules.RULES`, plus ``silent crash``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from ...errors import UnknownNodeError
from ..sim import SimNode
from .cluster import SimCluster, first_difference

__all__ = ["SIM_RULES", "SimRule"]

SimRule = Callable[[SimCluster], None]


def join_through_the_first_node(c: SimCluster) -> None:
    """Every node joins through r0; every node sees every node alive, with a joined event for each."""
    ids = c.form(c.options.nodes)

    def joined(node_id: str) -> set[str]:
        return {e.member.id for _, e in c[node_id].member_events if e.kind == "joined"}

    for i in ids:
        if joined(i) != set(ids) - {i}:
            raise AssertionError(f"{i} got joined events for {sorted(joined(i))}, not for each of the others")


def emit_exactly_once(c: SimCluster) -> None:
    """Each node broadcasts once: each other node gets it exactly once, the sender never."""
    ids = c.form(c.options.nodes)
    c.exchange(ids, "once", c.options.step_timeout)


def send_and_request(c: SimCluster) -> None:
    """``send`` reaches its destination only; a request (a send answered by a handler) is answered;
    a send to an unknown id raises ``UnknownNodeError``."""
    ids = c.form(c.options.nodes)
    first, last, since = ids[0], ids[-1], c.sim.now
    c[first].send(last, "contract.send", "one")
    timeout = c.options.step_timeout
    c.until(lambda: bool(c.got(last, "contract.send")), timeout, lambda: f"{last} never got a sent event")
    c.sim.run_for(c.options.settle)
    reached = {i: got for i in ids if (got := c.got(i, "contract.send"))}
    if reached != {last: [(first, "one")]}:
        raise AssertionError(f"a send from {first} to {last} reached {reached}, not only {last}")

    def echo(node: SimNode, sender: str, payload: object) -> None:
        node.send(sender, "contract.reply", {"from": node.id, "echo": payload})

    c[first].on("contract.echo", echo)
    asker = ids[1]
    c[asker].send(first, "contract.echo", [1, 2])
    c.until(
        lambda: bool(c.got(asker, "contract.reply", since)),
        timeout,
        lambda: (
            f"{asker} asked {first} (a send answered by a handler) and got no answer within {timeout:g} s"
        ),
    )
    reply = c.got(asker, "contract.reply", since)
    if reply != [(first, {"from": first, "echo": [1, 2]})]:
        raise AssertionError(f"{asker} asked {first} and got {reply}")
    try:
        c[first].send("no-such-node", "contract.send", None)
    except UnknownNodeError:
        pass
    else:
        raise AssertionError("a send to an unknown node id did not raise UnknownNodeError")


def graceful_leave(c: SimCluster) -> None:
    """A node that leaves is seen as left (not failed) by every other node."""
    ids = c.form(c.options.nodes)
    leaver, rest = ids[-1], ids[:-1]
    c.sim.leave(leaver)
    timeout = c.options.step_timeout
    c.until(
        lambda: all(c.events(i, "left", leaver) for i in rest),
        timeout,
        lambda: (
            f"{leaver} left but {[i for i in rest if not c.events(i, 'left', leaver)]} "
            f"never saw it leave within {timeout:g} s"
        ),
    )
    c.sim.run_for(c.options.settle)
    for i in rest:
        if c.events(i, "failed", leaver):
            raise AssertionError(f"{i} reported {leaver}'s graceful leave as a failure")
        if leaver in c.alive(i):
            raise AssertionError(f"{i} still lists {leaver} alive after it left")


def join_through_any_member(c: SimCluster) -> None:
    """A node joins through the last member, not the first: everyone sees everyone."""
    ids = c.form(c.options.nodes)
    via, new = ids[-1], c.hosts[len(ids)]
    c.start(new, via=via)
    everyone = [*ids, new]
    timeout = c.options.step_timeout

    def seen() -> str:
        missed = [i for i in ids if new not in c.alive(i)]
        if missed:
            return f"{new} joined through {via} but {missed} never saw it within {timeout:g} s"
        return f"{new} joined through {via} but the views differ after {timeout:g} s: {c.views(everyone)}"

    c.until(lambda: all(c.alive(i) == set(everyone) for i in everyone), timeout, seen)
    c.exchange(everyone, "via", timeout)


def concurrent_joins(c: SimCluster) -> None:
    """Three nodes join at the same instant through three different members: one full view."""
    ids = c.form(c.options.nodes)
    joiners = {c.hosts[len(ids) + k]: ids[-1 - k] for k in range(3)}  # new node -> member it joins through
    for new, via in joiners.items():
        c.start(new, via=via)
    everyone = [*ids, *joiners]
    what = f"single view after {', '.join(f'{n} joined through {v}' for n, v in joiners.items())} at once"
    c.until_whole(everyone, c.options.step_timeout, what)
    c.exchange(everyone, "concurrent", c.options.step_timeout)


def per_sender_order(c: SimCluster) -> None:
    """One node broadcasts, and sends to the last, numbered events all at once: in order, exactly once."""
    ids = c.form(c.options.nodes)
    count, sender, last = c.options.events, ids[1], ids[-1]
    receivers = [i for i in ids if i != sender]
    for n in range(count):
        c[sender].broadcast("contract.seq", n)
        c[sender].send(last, "contract.send", n)

    def complete() -> bool:
        return all(len(c.numbers(i, "contract.seq", sender)) >= count for i in receivers) and (
            len(c.numbers(last, "contract.send", sender)) >= count
        )

    c.until(
        complete,
        c.options.step_timeout,
        lambda: (
            f"{sender} broadcast {count} events: "
            + ", ".join(f"{i} got {len(c.numbers(i, 'contract.seq', sender))}" for i in receivers)
            + f"; it sent {count} to {last}, which got {len(c.numbers(last, 'contract.send', sender))}"
        ),
    )
    c.sim.run_for(c.options.settle)
    for i, name in [*((i, "contract.seq") for i in receivers), (last, "contract.send")]:
        if (got := c.numbers(i, name, sender)) != list(range(count)):
            raise AssertionError(f"{i} got {sender}'s {name} events {first_difference(got, count)}")


def _crash_rule(c: SimCluster, victim_index: int, *, reset: bool) -> None:
    ids = c.form(c.options.nodes)
    victim = ids[victim_index]
    survivors = [i for i in ids if i != victim]
    c.sim.crash(victim, reset=reset)
    down, timeout = c.sim.now, c.options.failure_timeout
    how = "crashed" if reset else "crashed silently (no reset)"

    def noticed(node_id: str) -> bool:
        return bool(c.events(node_id, "failed", victim, down)) and victim not in c.alive(node_id)

    def seen() -> str:
        late = [i for i in survivors if not noticed(i)]
        saw = [
            f"{i} saw it {e.kind}"
            for i in late
            for t, e in c[i].member_events
            if t >= down and e.member.id == victim and e.kind in ("left", "failed")
        ]
        return (
            f"{victim} {how} but {late} did not mark it failed within failure_timeout ({timeout:g} s)"
            + (f" ({', '.join(saw)})" if saw else "")
            + f": {c.views(survivors)}"
        )

    c.until(lambda: all(noticed(i) for i in survivors), timeout, seen)
    c.until_whole(
        survivors, c.options.step_timeout, f"one cluster of the survivors {survivors} after {victim} {how}"
    )
    c.exchange(survivors, "survivors", c.options.step_timeout)
    via, new = survivors[-1], c.hosts[len(ids)]
    c.start(new, via=via)
    c.until_whole([*survivors, new], c.options.step_timeout, f"full view after {new} joined through {via}")
    c.exchange([*survivors, new], "after-crash", c.options.step_timeout)


def crash_of_a_member(c: SimCluster) -> None:
    """A member other than the first crashes (its links reset): marked failed, the rest go on as one."""
    _crash_rule(c, -2, reset=True)


def crash_of_the_first_node(c: SimCluster) -> None:
    """r0, which every node joined through, crashes (its links reset): marked failed, the rest go on."""
    _crash_rule(c, 0, reset=True)


def silent_crash(c: SimCluster) -> None:
    """A member goes silent with no reset (a lost host): a failure detector must catch it."""
    _crash_rule(c, -2, reset=False)


def partition_and_heal(c: SimCluster) -> None:
    """Split in two (the links across reset); each side sees the other go; heal; whole again."""
    ids = c.form(c.options.nodes)
    half = len(ids) // 2
    side_a, side_b = ids[:half], ids[half:]
    c.sim.partition(side_a, side_b)
    for a in side_a:
        for b in side_b:
            if b in c[a].links and a in c[b].links:
                c.sim.break_link(a, b)
    timeout = c.options.failure_timeout

    def split() -> bool:
        return all(c.alive(i) == set(side) for side in (side_a, side_b) for i in side)

    c.until(
        split,
        timeout,
        lambda: (
            f"{side_a} | {side_b} partitioned, but not each side saw the other go within "
            f"failure_timeout ({timeout:g} s): {c.views(ids)}"
        ),
    )
    c.sim.heal()
    c.until_whole(ids, c.options.heal_timeout, f"single view after {side_a} | {side_b} healed")
    c.exchange(ids, "healed", c.options.step_timeout)


def restart_with_the_same_id(c: SimCluster) -> None:
    """A member crashes and comes back at once, same id: all see it alive, events flow to and from it."""
    ids = c.form(c.options.nodes)
    victim = ids[1]
    c.sim.crash(victim)
    c.start(victim, via=ids[0])
    c.until_whole(
        ids, c.options.failure_timeout + c.options.step_timeout, f"full view after {victim} restarted"
    )
    c.exchange(ids, "restarted", c.options.step_timeout)


def link_churn(c: SimCluster) -> None:
    """Links between live members reset again and again while two nodes broadcast: nothing lost."""
    ids = c.form(c.options.nodes)
    senders, count, sim = [ids[0], ids[-1]], c.options.events, c.sim
    since, pace = sim.now, 0.005
    resets: list[tuple[str, str]] = []

    def churn() -> None:
        pairs = [(a, b) for a in ids for b in sim[a].links if a < b and a in sim[b].links]
        if pairs:
            a, b = pairs[c.rng.randrange(len(pairs))]
            sim.break_link(a, b)
            resets.append((a, b))

    span = count * pace
    for k in range(c.options.resets):  # spread over the sending, at random moments
        sim.call_at(since + span * (k + c.rng.random()) / c.options.resets, churn)
    for n in range(count):
        for s in senders:
            sim.call_at(since + n * pace, partial(sim[s].broadcast, "contract.seq", n))
    wanted = [(i, s) for s in senders for i in ids if i != s]

    def complete() -> bool:
        return sim.now > since + span and all(
            len(c.numbers(i, "contract.seq", s)) >= count for i, s in wanted
        )

    def failures() -> str:
        seen = [f"{i} marked {m} failed" for i in ids for m in ids if c.events(i, "failed", m, since)]
        return ", ".join(seen) or "none"

    c.until(
        complete,
        span + c.options.step_timeout,
        lambda: (
            f"after {len(resets)} resets ({resets}): "
            + "; ".join(
                f"{i} got {len(c.numbers(i, 'contract.seq', s))} of {s}'s {count} events" for i, s in wanted
            )
            + f"; {c.views(ids)}; failed: {failures()}"
        ),
    )
    sim.run_for(c.options.settle)
    for i, s in wanted:
        if (got := c.numbers(i, "contract.seq", s)) != list(range(count)):
            raise AssertionError(f"{i} got {s}'s events {first_difference(got, count)} (resets: {resets})")


SIM_RULES: dict[str, SimRule] = {
    "join": join_through_the_first_node,
    "exactly-once emit": emit_exactly_once,
    "send and request": send_and_request,
    "graceful leave": graceful_leave,
    "join through any member": join_through_any_member,
    "concurrent joins": concurrent_joins,
    "per-sender order": per_sender_order,
    "crash of a member": crash_of_a_member,
    "crash of the first node": crash_of_the_first_node,
    "silent crash": silent_crash,
    "partition and heal": partition_and_heal,
    "restart with the same id": restart_with_the_same_id,
    "link churn": link_churn,
}
