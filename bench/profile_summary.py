"""Where the queue service's CPU goes, from a py-spy raw profile (`bench.crowd --py-spy DIR`).

    python -m bench.profile_summary /tmp/spy/postgres-this-500.txt [--top 25]

Each sampled stack is put in one RPC (the QueueService handler or Connect stream it runs
under) and one layer (the innermost frame of a known library: SQL driver, SQLAlchemy, Connect,
uvicorn, asyncio), so the table says both *which calls* and *which code* cost the time.
Samples of threads waiting (epoll, an aiosqlite thread waiting for work) are left out: py-spy
counts them as active when the machine is so busy that a woken thread waits for a core.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

IDLE = ("select (selectors.py", "_connection_worker_thread (aiosqlite/core.py:59)")
RPC = re.compile(r"QueueService\.(\w+) ")
# innermost match wins; the order here breaks ties within one frame
LAYERS = [
    ("database driver (asyncpg, sqlite3 via aiosqlite)", ("asyncpg/", "aiosqlite/", "sqlite3")),
    ("SQLAlchemy", ("sqlalchemy/",)),
    ("store (our SQL calls, rows)", ("queue_service/store/",)),
    ("protobuf messages (build, copy, compare)", ("queue_service/convert.py", "_pb2")),
    ("handlers (validation, auth, notify)", ("queue_service/service.py", "queue_service/auth")),
    ("WatchProgress shared reads", ("queue_service/watch.py", "queue_service/notify.py")),
    ("gzip of replies", ("gzip.py", "compression/gzip")),
    ("Connect (connectrpc)", ("connectrpc/",)),
    ("HTTP (uvicorn, h11/httptools)", ("uvicorn/", "h11/", "httptools")),
    ("asyncio event loop and sockets", ("asyncio/", "selectors.py")),
]


def summarise(path: Path) -> tuple[int, int, Counter[str], Counter[str], Counter[tuple[str, str]]]:
    rpcs: Counter[str] = Counter()
    layers: Counter[str] = Counter()
    both: Counter[tuple[str, str]] = Counter()
    total = idle = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        leaf = frames[-1]
        if any(marker in leaf for marker in IDLE):
            idle += n
            continue
        total += n
        rpc = "other (no RPC: loop, health, gRPC)"
        for frame in frames:
            found = RPC.search(frame)
            if found:
                rpc = found.group(1)
        if rpc.startswith("other") and any("_stream_responses" in f for f in frames):
            rpc = "WatchProgress"
        layer = "other"
        for frame in reversed(frames):
            hit = next((name for name, keys in LAYERS if any(k in frame for k in keys)), None)
            if hit:
                layer = hit
                break
        rpcs[rpc] += n
        layers[layer] += n
        both[(rpc, layer)] += n
    return total, idle, rpcs, layers, both


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    total, idle, rpcs, layers, both = summarise(args.profile)
    print(f"{total} busy samples ({idle} waiting left out)")
    for title, counter in (("by RPC", rpcs), ("by layer", layers)):
        print(f"-- {title}")
        for name, n in counter.most_common():
            print(f"{100 * n / total:5.1f}%  {name}")
    print("-- by RPC and layer")
    for (rpc, layer), n in both.most_common(args.top):
        print(f"{100 * n / total:5.1f}%  {rpc:18} {layer}")


if __name__ == "__main__":
    main()
