"""fastapi_example: a FastAPI application served by hypercorn beside a pydevts node.

Both run in one asyncio event loop, in one task group. Start two or more,
with the same cluster port and each with its own host port:

    python examples/fastapi_example.py 7000 8000
    python examples/fastapi_example.py 7000 8001

Then, for instance, ``curl localhost:8000/set/colour/blue`` and
``curl localhost:8001/store``. Endpoints (all return JSON):

- ``GET /`` emits a ``test`` event to every other node (as in the original example);
- ``GET /received`` lists the ``test`` events this node has received;
- ``GET /set/{name}/{value}`` sets a key in a small key-value store replicated
  to every fastapi_example node (a node that joins late receives the store);
- ``GET /store`` returns the whole store;
- ``GET /members`` lists the members: id, address, tags, state and, for
  fastapi_example nodes, the HTTP URL they advertise (their host port is in
  their tags);
- ``GET /request/{node_id}`` sends a ``whoami`` request to one node and returns its reply.

The HTTP port is bound first: if it is in use, the example says so in one
line and exits with status 1 before it joins the cluster. Ctrl-C (or SIGTERM)
stops HTTP gracefully, leaves the cluster and exits with status 0 (at once
while it is still joining).

Needs: pydevts, fastapi and hypercorn (``pip install -r examples/requirements.txt``).
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import socket
import sys
from functools import partial
from typing import Any

import anyio
from anyio.abc import TaskStatus
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from hypercorn.asyncio import serve
from hypercorn.config import Config
from pydevts import DeliveryError, Node, ReplicatedDict


def build(
    cluster_port: int, host_port: int, host: str = "127.0.0.1", transport: str = "tcp"
) -> tuple[Node, ReplicatedDict, FastAPI]:
    tags = {"type": "fastapi_example", "http_port": str(host_port)}
    node = Node(cluster_port, host=host, tags=tags, transport=transport)
    store = ReplicatedDict(node, "kv")
    received: list[dict[str, Any]] = []
    app = FastAPI(title=f"pydevts node on port {host_port}")

    @node.on("test")
    async def on_test(sender: str, payload: Any) -> None:
        received.append({"from": sender, "payload": payload})
        print(f"test event from {sender}: {payload}", flush=True)

    @node.on("whoami")
    async def whoami(sender: str, payload: Any) -> dict[str, Any]:
        return {"id": node.id, "http_port": host_port, "asked_by": sender, "store_size": len(store)}

    @app.get("/")
    async def root() -> dict[str, Any]:
        await node.emit("test", {"from": node.id, "http_port": host_port})
        return {"emitted": "test", "by": node.id}

    @app.get("/received")
    async def get_received() -> list[dict[str, Any]]:
        return received

    @app.get("/set/{name}/{value}")
    async def set_key(name: str, value: str) -> dict[str, Any]:
        await store.set(name, value)
        return {"set": name, "value": value, "by": node.id}

    @app.get("/store")
    async def get_store() -> dict[str, Any]:
        return store.to_dict()

    @app.get("/members")
    async def members() -> list[dict[str, Any]]:
        out = []
        for member in node.members:
            item = member.to_dict()
            if "http_port" in member.tags:
                item["http"] = f"http://{member.address.rsplit(':', 1)[0]}:{member.tags['http_port']}"
            out.append(item)
        return out

    @app.get("/request/{node_id}")
    async def request(node_id: str) -> Any:
        try:
            return {"reply": await node.request(node_id, "whoami", None, timeout=5)}
        except DeliveryError as exc:
            return JSONResponse({"error": type(exc).__name__, "detail": str(exc)}, status_code=502)

    return node, store, app


def bind_http(host_port: int, host: str = "127.0.0.1") -> socket.socket:
    """Bind and listen on the HTTP port before anything else, so that a port in use is
    reported at once, before the node joins the cluster or anything claims to serve."""
    try:
        return socket.create_server((host, host_port))
    except OSError as exc:
        reason = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be bound ({exc.strerror})"
        sys.exit(f"fastapi_example: error: HTTP port {host}:{host_port} {reason}")


async def main(cluster_port: int, http: socket.socket, transport: str = "tcp") -> None:
    host, host_port = http.getsockname()[:2]
    node, store, app = build(cluster_port, host_port, host=host, transport=transport)
    config = Config()
    config.accesslog = None
    stop = anyio.Event()  # hypercorn's shutdown trigger
    serving = False
    async with anyio.create_task_group() as tg:

        async def on_signal(*, task_status: TaskStatus[None]) -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                task_status.started()
                async for _ in signals:  # Ctrl-C or SIGTERM: stop HTTP, then leave the cluster
                    stop.set()
                    if not serving:  # still joining or fetching the store: give up at once
                        tg.cancel_scope.cancel()
                    return

        await tg.start(on_signal)
        async with node:
            await store.sync()  # the current store, before serving HTTP
            config.bind = [f"fd://{os.dup(http.fileno())}"]  # hypercorn serves (and closes) a copy
            serving = True
            print(f"node {node.id} serving http://{host}:{host_port}", flush=True)
            # hypercorn in a task of its own: on Python 3.11 its asyncio.TaskGroup may leave
            # the task it runs in marked as cancelled, which would break the node's exit
            async with anyio.create_task_group() as http_tg:
                http_tg.start_soon(partial(serve, app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
        tg.cancel_scope.cancel()  # the signal task


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="FastAPI + hypercorn beside a pydevts node")
    parser.add_argument("cluster_port", type=int)
    parser.add_argument("host_port", type=int)
    parser.add_argument("--transport", default="tcp", help="tcp (default) or quic (pip install pydevts-quic)")
    args = parser.parse_args()
    with bind_http(args.host_port) as http:
        anyio.run(main, args.cluster_port, http, args.transport)
