"""picklenodewriter: another node type that writes picklenode's value to a file.

NOTICE: never use this with untrusted data: like picklenode it uses the pickle
serializer, and unpickling runs code chosen by whoever sent the bytes.

Run it on the trio event loop beside picklenode.py, with the same cluster port:

    python examples/picklenode.py 7000 w
    python examples/picklenodewriter.py 7000

Every time the picklenode value is updated, this node writes its string form
to ``pickleoutput.txt`` in the current directory (the current value as soon
as it joins, then every update).

Needs: pydevts, pydevts-pickle and trio (``pip install -r examples/requirements.txt``).
Like picklenode it needs a keyring: ``--keyring PATH``, or the demo keyring
picklenode.py describes.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import anyio
from picklenode import cancel_on_signal, demo_keyring  # the example beside this one
from pydevts import Node, ReplicatedDict

OUTPUT = Path("pickleoutput.txt")


class PickleNodeWriter(Node):
    """Keeps a replica of picklenode's store and writes each new value to a file."""

    def __init__(self, cluster_port: int, output: Path = OUTPUT, **options: Any) -> None:
        options.setdefault("tags", {"type": "picklenodewriter"})
        super().__init__(cluster_port, serializer="pickle", serializer_options={"trusted": True}, **options)
        self.output = output
        self.store = ReplicatedDict(self, "pickle")  # the same store name as picklenode's
        self.store.on_update(self.updated)

    async def updated(self, key: str, value: Any, origin: str) -> None:
        if key == "value":
            await anyio.Path(self.output).write_text(f"{value}\n")
            print(f"wrote {value!r} (set by {origin}) to {self.output}", flush=True)


async def main(cluster_port: int, transport: str = "tcp", keyring: str | None = None) -> None:
    node = PickleNodeWriter(cluster_port, transport=transport, keyring=keyring or demo_keyring())
    async with anyio.create_task_group() as tg:
        await tg.start(cancel_on_signal, tg.cancel_scope)  # Ctrl-C, even while joining
        async with node:  # joins; leaves the cluster gracefully when cancelled
            await anyio.sleep_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="writes picklenode's value to pickleoutput.txt (trio)")
    parser.add_argument("cluster_port", type=int)
    parser.add_argument("--transport", default="tcp", help="tcp (default) or quic (pip install pydevts-quic)")
    parser.add_argument("--keyring", help="the cluster's keyring file (default: this user's demo keyring)")
    args = parser.parse_args()
    anyio.run(main, args.cluster_port, args.transport, args.keyring, backend="trio")
