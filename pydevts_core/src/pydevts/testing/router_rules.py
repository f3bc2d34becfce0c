"""The rules of the router contract, one async function each (internal to :mod:`pydevts.testing`).

Each rule gets a fresh :class:`~pydevts.testing.contract_cluster.ContractCluster`
and raises ``AssertionError`` saying what it saw; :func:`~pydevts.testing.check_router`
names the rule. The list :data:`RULES` is the order they run in.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

from ..errors import UnknownNodeError
from .contract_cluster import ContractCluster, alive
from .sim_contract.cluster import first_difference  # the same message on sockets and simulated

__all__ = ["RULES", "Rule"]

Rule = Callable[[ContractCluster], Awaitable[None]]


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


async def join_through_the_first_node(c: ContractCluster) -> None:
    """Every node joins through r0; every node sees every node alive, with one joined event each."""
    ids = await c.form(c.options.nodes)

    def joined(node_id: str) -> set[str]:
        return {m for kind, m in c.events[node_id] if kind == "joined"}

    # Lifecycle callbacks run in their own task, a moment after the view changed.
    await c.until(
        lambda: all(joined(i) >= set(ids) - {i} for i in ids),
        c.options.step_timeout,
        lambda: (
            "no joined event on every node for every other node: "
            + "; ".join(f"{i} got joined events for {sorted(joined(i))}" for i in ids)
        ),
    )
    for i in ids:
        _check(joined(i) == set(ids) - {i}, f"{i} got joined events for {sorted(joined(i))}")


async def emit_exactly_once(c: ContractCluster) -> None:
    """Each node emits once: each other node gets it exactly once, the sender never."""
    ids = await c.form(c.options.nodes)
    await c.exchange(ids, "once", c.options.step_timeout)


async def send_and_request(c: ContractCluster) -> None:
    """``send`` reaches its destination only; ``request`` is answered; an unknown id raises."""
    ids = await c.form(c.options.nodes)
    first, last = c.nodes[ids[0]], ids[-1]
    await first.send(last, "contract.send", "one")
    await c.until(lambda: bool(c.got[last]), c.options.step_timeout, lambda: f"{last} never got a sent event")
    await anyio.sleep(0.2)
    reached = [(k, v) for k, v in c.got.items() if v]
    _check(
        reached == [(last, [("contract.send", ids[0], "one")])], f"send reached {reached}, not only {last}"
    )
    reply = await c.nodes[ids[1]].request(ids[0], "contract.echo", [1, 2], timeout=5)
    _check(reply == {"from": ids[0], "echo": [1, 2]}, f"request got {reply!r}")
    try:
        await first.send("no-such-node", "contract.send", None)
    except UnknownNodeError:
        pass
    else:
        raise AssertionError("send to an unknown node id did not raise UnknownNodeError")


async def graceful_leave(c: ContractCluster) -> None:
    """A node that stops is seen as left (not failed) by every other node."""
    ids = await c.form(c.options.nodes)
    leaver, rest = ids[-1], ids[:-1]
    await c.stop(leaver)
    await c.until(
        lambda: all(("left", leaver) in c.events[i] for i in rest),
        c.options.step_timeout,
        lambda: (
            f"{leaver} stopped but {[i for i in rest if ('left', leaver) not in c.events[i]]} "
            f"never saw it leave within {c.options.step_timeout:g} s"
        ),
    )
    for i in rest:
        _check(("failed", leaver) not in c.events[i], f"{i} reported {leaver}'s graceful leave as a failure")
        _check(leaver not in alive(c.nodes[i]), f"{i} still lists {leaver} alive after it left")


async def join_through_any_member(c: ContractCluster) -> None:
    """A node joins through the last member, not the first: everyone sees everyone."""
    ids = await c.form(c.options.nodes)
    via, new = ids[-1], c.hosts[len(ids)]
    await c.start(new, via=via)
    everyone = [*ids, new]
    timeout = c.options.step_timeout
    await c.until(
        lambda: all(alive(c.nodes[i]) == set(everyone) for i in everyone),
        timeout,
        lambda: (
            f"{new} joined through {via} but "
            + (
                f"{missed} never saw it within {timeout:g} s"
                if (missed := [i for i in ids if new not in alive(c.nodes[i])])
                else f"the views differ after {timeout:g} s: {c.views(everyone)}"
            )
        ),
    )
    await c.exchange(everyone, "via", timeout)


async def concurrent_joins(c: ContractCluster) -> None:
    """Three nodes join at the same moment through three different members: one full view."""
    ids = await c.form(c.options.nodes)
    joiners = {c.hosts[len(ids) + k]: ids[-1 - k] for k in range(3)}  # new node -> member it joins through

    async def join(new: str, via: str) -> None:
        await c.start(new, via=via)

    async with anyio.create_task_group() as tg:
        for new, via in joiners.items():
            tg.start_soon(join, new, via)
    everyone = [*ids, *joiners]
    what = f"single view after {', '.join(f'{n} joined through {v}' for n, v in joiners.items())} at once"
    await c.until_whole(everyone, c.options.step_timeout, what)
    await c.exchange(everyone, "concurrent", c.options.step_timeout)


async def per_sender_order(c: ContractCluster) -> None:
    """One node emits, and sends to the last, numbered events at full speed: in order, exactly once."""
    ids = await c.form(c.options.nodes)
    count, sender, receivers = c.options.events, ids[1], [i for i in ids if i != ids[1]]
    node = c.nodes[sender]
    for n in range(count):
        await node.emit("contract.seq", n)
        await node.send(ids[-1], "contract.send", n)

    def numbers(node_id: str, name: str) -> list[int]:
        return [p for n, s, p in c.got[node_id] if n == name and s == sender]

    def complete() -> bool:
        return all(len(numbers(i, "contract.seq")) >= count for i in receivers) and (
            len(numbers(ids[-1], "contract.send")) >= count
        )

    await c.until(
        complete,
        c.options.step_timeout,
        lambda: (
            f"{sender} emitted {count} events: "
            + ", ".join(f"{i} got {len(numbers(i, 'contract.seq'))}" for i in receivers)
            + f"; it sent {count} to {ids[-1]}, which got {len(numbers(ids[-1], 'contract.send'))}"
        ),
    )
    await anyio.sleep(0.2)
    for i, name in [*((i, "contract.seq") for i in receivers), (ids[-1], "contract.send")]:
        if (got := numbers(i, name)) != list(range(count)):
            raise AssertionError(f"{i} got {sender}'s {name} events {first_difference(got, count)}")


async def _crash_rule(c: ContractCluster, victim_index: int) -> None:
    ids = await c.form(c.options.nodes)
    victim = ids[victim_index]
    survivors = [i for i in ids if i != victim]
    await c.crash(victim)
    timeout = c.options.failure_timeout

    def noticed(node_id: str) -> bool:
        return ("failed", victim) in c.events[node_id] and victim not in alive(c.nodes[node_id])

    await c.until(
        lambda: all(noticed(i) for i in survivors),
        timeout,
        lambda: (
            f"{victim} crashed but {[i for i in survivors if not noticed(i)]} did not mark it failed "
            f"within failure_timeout ({timeout:g} s): {c.views(survivors)}"
        ),
    )
    what = f"one cluster of the survivors {survivors} after {victim} crashed"
    await c.until_whole(survivors, c.options.step_timeout, what)
    await c.exchange(survivors, "survivors", c.options.step_timeout)
    via, new = survivors[-1], c.hosts[len(ids)]
    try:
        await c.start(new, via=via)
    except Exception as exc:
        raise AssertionError(f"after {victim} crashed, {new} could not join through {via}: {exc!r}") from exc
    await c.until_whole(
        [*survivors, new], c.options.step_timeout, f"full view after {new} joined through {via}"
    )
    await c.exchange([*survivors, new], "after-crash", c.options.step_timeout)


async def crash_of_a_member(c: ContractCluster) -> None:
    """A member other than the first crashes (no goodbye): marked failed, the rest go on as one."""
    await _crash_rule(c, -2)


async def crash_of_the_first_node(c: ContractCluster) -> None:
    """r0, which every node joined through, crashes: marked failed, the rest go on as one."""
    await _crash_rule(c, 0)


async def partition_and_heal(c: ContractCluster) -> None:
    """Split in two (connections across cut and reset); each side sees the other go; heal; whole again."""
    ids = await c.form(c.options.nodes)
    half = len(ids) // 2
    side_a, side_b = ids[:half], ids[half:]
    c.network.partition(side_a, side_b)
    for a in side_a:
        for b in side_b:
            c.network.reset(a, b)
    timeout = c.options.failure_timeout

    def split() -> bool:
        return all(alive(c.nodes[i]) == set(side) for side in (side_a, side_b) for i in side)

    await c.until(
        split,
        timeout,
        lambda: (
            f"{side_a} | {side_b} partitioned, but not each side saw the other go within "
            f"failure_timeout ({timeout:g} s): {c.views(ids)}"
        ),
    )
    c.network.heal()
    await c.until_whole(ids, c.options.heal_timeout, f"single view after {side_a} | {side_b} healed")
    await c.exchange(ids, "healed", c.options.step_timeout)


async def restart_with_the_same_id(c: ContractCluster) -> None:
    """A member crashes and comes back at once, same id: all see it alive, events flow to and from it."""
    ids = await c.form(c.options.nodes)
    victim = ids[1]
    await c.crash(victim)
    c.revive()
    await c.start(victim, via=ids[0])
    await c.until_whole(
        ids, c.options.failure_timeout + c.options.step_timeout, f"full view after {victim} restarted"
    )
    await c.exchange(ids, "restarted", c.options.step_timeout)


async def link_churn(c: ContractCluster) -> None:
    """Connections between live members are reset again and again while two nodes emit: nothing lost."""
    ids = await c.form(c.options.nodes)
    senders, count = [ids[0], ids[-1]], c.options.events
    pairs = [(a, b) for a in ids for b in ids if a < b]
    done = anyio.Event()
    resets: list[tuple[str, str]] = []

    async def churn() -> None:
        rng = c.network.rng
        while len(resets) < c.options.resets:
            await anyio.sleep(0.02 + 0.05 * rng.random())
            a, b = pairs[rng.randrange(len(pairs))]
            if c.network.reset(a, b) + c.network.reset(b, a):
                resets.append((a, b))
        done.set()

    async def emit(node_id: str) -> None:
        n = 0
        while n < count or not done.is_set():
            await c.nodes[node_id].emit("contract.seq", n)
            n += 1
            if n % 10 == 0:
                await anyio.sleep(0.005)  # pacing: resets land while events flow
        sent[node_id] = n

    sent: dict[str, int] = {}
    with anyio.fail_after(c.options.step_timeout):
        async with anyio.create_task_group() as tg:
            tg.start_soon(churn)
            for s in senders:
                tg.start_soon(emit, s)

    def numbers(node_id: str, sender: str) -> list[int]:
        return [p for n, s, p in c.got[node_id] if n == "contract.seq" and s == sender]

    wanted = [(i, s) for s in senders for i in ids if i != s]
    await c.until(
        lambda: all(len(numbers(i, s)) >= sent[s] for i, s in wanted),
        c.options.step_timeout,
        lambda: (
            f"after {len(resets)} resets ({resets}): "
            + "; ".join(f"{i} got {len(numbers(i, s))} of {s}'s {sent[s]} events" for i, s in wanted)
            + f"; {c.views(ids)}; failed: {_failures(c, ids)}"
        ),
    )
    await anyio.sleep(0.2)
    for i, s in wanted:
        if (got := numbers(i, s)) != list(range(sent[s])):
            raise AssertionError(f"{i} got {s}'s events {first_difference(got, sent[s])}")


def _failures(c: ContractCluster, ids: list[str]) -> str:
    seen = [f"{i} marked {m} failed" for i in ids for kind, m in c.events[i] if kind == "failed"]
    return ", ".join(seen) or "none"


RULES: dict[str, Rule] = {
    "join": join_through_the_first_node,
    "exactly-once emit": emit_exactly_once,
    "send and request": send_and_request,
    "graceful leave": graceful_leave,
    "join through any member": join_through_any_member,
    "concurrent joins": concurrent_joins,
    "per-sender order": per_sender_order,
    "crash of a member": crash_of_a_member,
    "crash of the first node": crash_of_the_first_node,
    "partition and heal": partition_and_heal,
    "restart with the same id": restart_with_the_same_id,
    "link churn": link_churn,
}
