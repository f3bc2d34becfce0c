"""picklenode: a custom node type that stores one pickled object for the whole cluster.

NOTICE: never use this with untrusted data. It uses the pickle serializer,
and unpickling runs code chosen by whoever sent the bytes.

Run it on the trio event loop, in several terminals, with the same cluster port:

    python examples/picklenode.py 7000 w    # a writer: increments the value every second
    python examples/picklenode.py 7000      # a reader: prints the value every second

Needs: pydevts, pydevts-pickle and trio (``pip install -r examples/requirements.txt``).

pydevts runs the pickle serializer only in a cluster with a keyring, so that
only nodes holding the key can send what gets unpickled. Without
``--keyring PATH`` these examples share a demo keyring of this user on this
machine (made on first use, mode 0600, path printed at start); for anything
beyond one machine make your own with ``pydevts keygen > cluster.key`` and
pass ``--keyring cluster.key`` to every node.

Why the pickle serializer: the value may be any Python object, and saying so
honestly means using pickle for the whole cluster — which pydevts only
allows after the explicit ``trusted`` flag below, and with a keyring. (The alternative, pickling
inside a msgpack payload, runs the same unpickling on the receiver and would
only hide the risk.)

The value lives in a :class:`pydevts.ReplicatedDict`: a node that joins late
gets the current value at once (state transfer on join), and concurrent
writes resolve by last writer wins (logical clock).
"""

from __future__ import annotations

import argparse
import base64
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskStatus
from pydevts import Node, ReplicatedDict, handler


class PickleNode(Node):
    """Stores one pickled object, replicated to every node that keeps a copy of it."""

    def __init__(self, cluster_port: int, **options: Any) -> None:
        options.setdefault("tags", {"type": "picklenode"})
        super().__init__(cluster_port, serializer="pickle", serializer_options={"trusted": True}, **options)
        self.store = ReplicatedDict(self, "pickle")

    @property
    def value(self) -> Any:
        return self.store.get("value")

    async def set_value(self, value: Any) -> None:
        await self.store.set("value", value)

    @handler("pickle.get")
    async def get_value(self, sender: str, payload: Any) -> Any:
        """Any node may ask a picklenode for the value: ``await node.request(id, "pickle.get")``."""
        return self.value


def demo_keyring() -> Path:
    """This user's demo keyring for the pickle examples on this machine (made once, mode 0600)."""
    path = Path(tempfile.gettempdir()) / f"pydevts-examples-{os.getuid()}.keyring"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass  # made by an earlier run (or by the example started beside this one)
    else:
        with os.fdopen(fd, "w") as out:
            out.write(base64.b64encode(os.urandom(32)).decode() + "\n")
    print(f"using the demo keyring {path} (--keyring PATH for your own)", file=sys.stderr, flush=True)
    return path


async def main(cluster_port: int, write: bool, transport: str = "tcp", keyring: str | None = None) -> None:
    node = PickleNode(cluster_port, transport=transport, keyring=keyring or demo_keyring())
    async with anyio.create_task_group() as tg:
        await tg.start(cancel_on_signal, tg.cancel_scope)  # Ctrl-C, even while joining
        async with node:  # joins; leaves the cluster gracefully when cancelled
            await node.store.sync()  # the cluster's current value, before the first print
            while True:
                if write:
                    current = node.value
                    await node.set_value(1 if current is None else current + 1)
                    print(f"set value: {node.value!r}", flush=True)
                else:
                    print(f"value: {node.value!r}", flush=True)
                await anyio.sleep(1)


async def cancel_on_signal(
    scope: anyio.CancelScope, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Once started, Ctrl-C or SIGTERM cancels ``scope``: the node leaves, ``main()`` returns."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for _ in signals:
            scope.cancel()
            return


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="a node that stores one pickled object (trio)")
    parser.add_argument("cluster_port", type=int)
    parser.add_argument("w", nargs="?", choices=["w"], help="'w': update the value every second")
    parser.add_argument("--transport", default="tcp", help="tcp (default) or quic (pip install pydevts-quic)")
    parser.add_argument("--keyring", help="the cluster's keyring file (default: this user's demo keyring)")
    args = parser.parse_args()
    anyio.run(main, args.cluster_port, args.w == "w", args.transport, args.keyring, backend="trio")
