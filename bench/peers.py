"""One side of a benchmark, started by ``bench/run.py``: ``python bench/peers.py KIND ROLE [options]``.

Speaks to the driver through stdout (``ready {json}``, then ``result {json}``);
see ``benchlib/common.py``. Each kind lives in ``benchlib/<kind>_peers.py``.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib.common import emit, peer_arguments, profiled, run_async

ASYNCIO_ONLY = {"nats", "zmq_asyncio"}  # always on asyncio, whatever --backend says


def main() -> int:
    args = peer_arguments().parse_args()
    module = importlib.import_module(f"benchlib.{args.kind}_peers")
    roles: dict[str, Any] = module.ROLES
    if args.role not in roles:
        sys.exit(f"unknown role {args.role!r} for {args.kind}; choose from {sorted(roles)}")
    role = roles[args.role]
    backend = "asyncio" if args.kind in ASYNCIO_ONLY else args.backend
    with profiled(args.profile):
        if inspect.iscoroutinefunction(role):
            result = run_async(lambda: role(args), backend, args.uvloop)
        else:
            result = role(args)
    if result is not None:
        emit("result", **result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
