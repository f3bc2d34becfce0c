"""A node process for tests/test_lossless_tcp.py: sends or receives numbered events.

python lossless_node.py receive PORT BACKEND
    starts the cluster on PORT; prints ``got K ORDERED`` whenever its count
    changes (ORDERED: the K numbers so far were exactly 0..K-1, once each)
python lossless_node.py send PORT BACKEND SECONDS LISTEN_PORT
    listens on LISTEN_PORT, joins through PORT, waits for node "recv", then sends 0, 1, 2, ... to it
    at full speed for SECONDS (at most 2,000,000 events); prints ``sent K``
    and leaves
"""

from __future__ import annotations

import sys

import anyio
from pydevts import Node


async def receive(port: int) -> None:
    node = Node(port, node_id="recv", host="127.0.0.1")
    state = {"count": 0, "ordered": True}

    @node.on("n")
    async def number(sender: str, payload: int) -> None:
        if payload != state["count"]:
            state["ordered"] = False
        state["count"] += 1

    async with node:
        print("ready", flush=True)
        last = -1
        while True:
            if state["count"] != last:
                last = state["count"]
                print(f"got {last} {state['ordered']}", flush=True)
            await anyio.sleep(0.02)


async def send(port: int, seconds: float, listen_port: int) -> None:
    node = Node(port, node_id="send", host="127.0.0.1", port=listen_port, join_only=True)
    async with node:
        with anyio.fail_after(10):
            while "recv" not in {m.id for m in node.members if m.alive}:
                await anyio.sleep(0.01)
        print("ready", flush=True)
        sent = 0
        with anyio.move_on_after(seconds):
            while sent < 2_000_000:
                await node.send("recv", "n", sent)
                sent += 1
        print(f"sent {sent}", flush=True)


if __name__ == "__main__":
    role, port, backend = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if role == "receive":
        anyio.run(receive, port, backend=backend)
    else:
        anyio.run(send, port, float(sys.argv[4]), int(sys.argv[5]), backend=backend)
