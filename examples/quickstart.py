"""Quickstart: a node that greets the cluster and answers "add" requests.

Run it in two or three terminals (same cluster port); the first one starts the
cluster, the others join it. Ctrl-C (or SIGTERM) leaves the cluster gracefully
and exits with status 0, also while the node is still joining:

    python examples/quickstart.py 7000
    python examples/quickstart.py 7000 --backend trio
    python examples/quickstart.py 7100 --transport quic   # every node of a cluster alike
"""

import argparse
import signal

import anyio
from anyio.abc import TaskStatus
from pydevts import Node


async def main(cluster_port: int, transport: str = "tcp") -> None:
    node = Node(cluster_port, transport=transport)

    @node.on("greet")
    async def greet(sender: str, payload: dict) -> None:
        print(f"{sender} says {payload['text']!r}")

    @node.on("add")
    async def add(sender: str, payload: list[int]) -> int:
        return sum(payload)

    async with anyio.create_task_group() as tg:  # your own application's task group
        await tg.start(cancel_on_ctrl_c, tg.cancel_scope)  # from now on, Ctrl-C leaves
        await tg.start(node.serve)  # join (or start) the cluster, then keep serving
        print(f"node {node.id} at {node.address}; members: {', '.join(m.id for m in node.members)}")
        await node.emit("greet", {"text": f"hello from {node.id}"})
        for member in node.members:
            if member.id != node.id:
                await node.send(member.id, "greet", {"text": "just for you"})
                total = await node.request(member.id, "add", [1, 2, 3], timeout=5)
                print(f"{member.id} added 1+2+3 = {total}")
        await anyio.sleep_forever()  # serve until Ctrl-C


async def cancel_on_ctrl_c(
    scope: anyio.CancelScope, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Once started, Ctrl-C or SIGTERM cancels ``scope``: the node leaves, ``main()`` returns."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for _ in signals:
            scope.cancel()
            return


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cluster_port", type=int)
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    parser.add_argument("--transport", default="tcp", help="tcp (default) or quic (pip install pydevts-quic)")
    args = parser.parse_args()
    anyio.run(main, args.cluster_port, args.transport, backend=args.backend)
