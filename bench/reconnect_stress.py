"""Cut a live link and send at once, N times: does every event sent right after a reconnect arrive?

Two nodes over real TCP on 127.0.0.1. Each round closes the TCP connection
under both nodes (as a reset would), sends one numbered event the moment a
new link appears (both ends redial at once, so the duplicate-link rule may
still replace that link), and waits for it at the other end. Before
resumable links (pydevts.wire.session) about half the rounds lost the event on
trio.

    .venv/bin/python bench/reconnect_stress.py --backend trio --rounds 200
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from inproc import cluster, free_port, wait_until
from pydevts import Node


async def one_round(i: int) -> bool:
    """Cut, send at once, and say whether the event arrived."""
    port = free_port()
    a, b = Node(port, node_id="a"), Node(port, node_id="b")
    got: list[int] = []

    @b.on("n")
    async def n(sender: str, payload: int) -> None:
        got.append(payload)

    with anyio.fail_after(30):
        async with cluster(a, b):
            router = a._ctx.router  # type: ignore[attr-defined]
            old = router.links["b"]
            await old.conn.aclose()
            await wait_until(lambda: router.links.get("b") not in (None, old), 5, "a new link to b")
            await a.send("b", "n", i)
            try:
                await wait_until(lambda: got == [i], 5, "the event")
            except AssertionError:
                print(f"round {i}: lost (got {got})", flush=True)
                return False
    return True


async def main(rounds: int) -> int:
    started = time.perf_counter()
    lost = 0
    for i in range(rounds):
        lost += not await one_round(i)
    print(f"{rounds} rounds, {lost} lost, {time.perf_counter() - started:.1f} s")
    return 1 if lost else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="trio")
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    sys.exit(anyio.run(main, args.rounds, backend=args.backend))
