"""RSS of a QUIC node under a flood of Initial packets: ``.venv/bin/python bench/quic_initial_flood.py``.

Each mode runs in a fresh process: one pydevts node on the quic transport
(it starts a cluster on a free UDP port), then ``--count`` junk Initials
(valid long header, fresh destination connection ID, 1,200 bytes, as a
spoofer would send: nobody ever answers a Retry) from one UDP socket. It
prints the node's RSS before, at the peak, right after the flood and once the
half-open handshakes have timed out, and its counters.

Modes: ``unbounded`` (no cap, no Retry, no handshake timeout: as before issue
10), ``cap`` (the half-open cap of 64 and the timeout, no Retry), ``default``
(the defaults: Retry while 8 or more handshakes are in progress, cap, timeout).
``--mode M`` runs one mode in this process (JSON out).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import socket
import subprocess
import sys
from typing import Any

MODES: dict[str, dict[str, Any]] = {
    "unbounded": {"max_half_open": 10**9, "retry_above": 10**9, "connect_timeout": 3600.0},
    "cap": {"retry_above": 10**9},
    "default": {},
}


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def junk_initial() -> bytes:
    cids = b"\x08" + os.urandom(8) + b"\x08" + os.urandom(8)
    head = bytes([0xC3]) + (1).to_bytes(4, "big") + cids + b"\x00"  # no token
    rest = 1200 - len(head) - 2
    return head + (0x4000 | rest).to_bytes(2, "big") + os.urandom(rest)


async def one_mode(mode: str, count: int, settle: float) -> dict[str, Any]:
    import anyio
    from pydevts import Node

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    node = Node(port, node_id="flooded", transport="quic", transport_options=MODES[mode])
    result: dict[str, Any] = {"mode": mode, "count": count}
    async with node:
        endpoint = node._ctx.listener.endpoint  # type: ignore[attr-defined]
        await anyio.sleep(0.5)
        gc.collect()
        result["rss_before"] = rss_mib()
        peak = result["rss_before"]
        most = 0
        start = anyio.current_time()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for i in range(count):
                sock.sendto(junk_initial(), ("127.0.0.1", port))
                if i % 50 == 49:
                    await anyio.sleep(0.001)
                    most = max(most, len(endpoint.connections))
                    if i % 500 == 499:
                        peak = max(peak, rss_mib())
        await anyio.sleep(0.2)
        result["flood_seconds"] = round(anyio.current_time() - start, 2)
        result["rss_after_flood"] = rss_mib()
        result["rss_peak"] = max(peak, result["rss_after_flood"])
        result["most_connections"] = max(most, len(endpoint.connections))
        await anyio.sleep(settle)
        gc.collect()
        result["rss_settled"] = rss_mib()
        result["connections_settled"] = len(endpoint.connections)
        result["counters"] = {k: v for k, v in node.statistics().items() if k.startswith("transport.")}
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=5000, help="junk Initials sent (default 5000)")
    p.add_argument("--settle", type=float, default=7.0, help="seconds to wait after the flood (default 7)")
    p.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    p.add_argument("--mode", choices=list(MODES), help="run one mode here and print JSON")
    args = p.parse_args()
    if args.mode:
        import anyio

        print(json.dumps(anyio.run(one_mode, args.mode, args.count, args.settle, backend=args.backend)))
        return
    rows = []
    for mode in MODES:
        cmd = [sys.executable, __file__, "--mode", mode, "--count", str(args.count)]
        cmd += ["--settle", str(args.settle), "--backend", args.backend]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    print(f"{args.count} junk QUIC Initials at one node ({args.backend}); RSS in MiB")
    head = ("mode", "before", "peak", "+peak", "settled", "+settled", "conns")
    print("{:<10} {:>7} {:>7} {:>7} {:>8} {:>9} {:>6}  counters".format(*head))
    for r in rows:
        before, peak, settled = r["rss_before"], r["rss_peak"], r["rss_settled"]
        counters = ", ".join(f"{k.removeprefix('transport.')}={v}" for k, v in r["counters"].items())
        print(
            f"{r['mode']:<10} {before:7.1f} {peak:7.1f} {peak - before:+7.1f} {settled:8.1f}"
            f" {settled - before:+9.1f} {r['most_connections']:>6}  {counters}"
        )


if __name__ == "__main__":
    main()
