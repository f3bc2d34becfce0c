"""Members whose maximum frame sizes differ: each side sends only what the other takes.

A node's HELLO says the largest frame its transport takes; a link's
``max_frame_size`` is the smaller of both. A frame over it is refused to the
sender before it is queued (a resumable link would otherwise resend it to a
peer that closes the link on it, again and again).
"""

from __future__ import annotations

import anyio
import pytest
from inproc import cluster, free_port, wait_until
from pydevts import FrameTooLargeError, Node

pytestmark = pytest.mark.anyio


async def test_a_frame_over_what_the_peer_takes_is_refused_to_the_sender_and_the_link_stays() -> None:
    port = free_port()
    a = Node(port, node_id="a", max_frame_size=1024 * 1024)
    b = Node(port, node_id="b", max_frame_size=64 * 1024)
    c = Node(port, node_id="c", max_frame_size=1024 * 1024)
    got: dict[str, list[int]] = {"b": [], "c": []}
    for node in (b, c):

        @node.on("blob")
        async def blob(sender: str, payload: bytes, me: str = node.id) -> None:
            got[me].append(len(payload))

    with anyio.fail_after(20):
        async with cluster(a, b, c):
            with pytest.raises(FrameTooLargeError, match="65536"):
                await a.send("b", "blob", bytes(100_000))
            await a.send("c", "blob", bytes(100_000))  # c takes it
            with pytest.raises(FrameTooLargeError, match=r"members b \(takes 65536\)"):
                await a.emit("blob", bytes(200_000))  # c still gets it
            await a.send("b", "blob", bytes(1000))
            expected = {"b": [1000], "c": [100_000, 200_000]}
            await wait_until(lambda: got == expected, 5, "the frames each takes")
            router = a._ctx.router  # type: ignore[attr-defined]
            assert router.links["b"].max_frame_size == 64 * 1024
            assert not router.links["b"].closed
