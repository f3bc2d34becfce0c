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

Needs: pydevts, fastapi and hypercorn (``pip install -r examples/requirements.txt``).
"""

from __future__ import annotations

import argparse
import signal
from typing import Any

import anyio
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


async def main(cluster_port: int, host_port: int, transport: str = "tcp") -> None:
    node, store, app = build(cluster_port, host_port, transport=transport)
    config = Config()
    config.bind = [f"127.0.0.1:{host_port}"]
    config.accesslog = None
    stop = anyio.Event()
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with node, anyio.create_task_group() as tg:
            await store.sync()  # the current store, before serving HTTP

            async def serve_http() -> None:
                await serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
                tg.cancel_scope.cancel()

            tg.start_soon(serve_http)
            print(f"node {node.id} serving http://127.0.0.1:{host_port}", flush=True)
            async for _ in signals:  # Ctrl-C or SIGTERM: stop HTTP, leave the cluster
                stop.set()
                break


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="FastAPI + hypercorn beside a pydevts node")
    parser.add_argument("cluster_port", type=int)
    parser.add_argument("host_port", type=int)
    parser.add_argument("--transport", default="tcp", help="tcp (default) or quic (pip install pydevts-quic)")
    args = parser.parse_args()
    anyio.run(main, args.cluster_port, args.host_port, args.transport)
