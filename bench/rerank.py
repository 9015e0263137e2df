"""A labeller's Pops while a large re-rank is applied (issue 17), on SQLite and PostgreSQL.

    python -m bench.rerank [--items 1000000] [--backends sqlite,postgres] \
        [--a OTHER/.venv/bin/python]

One `labelgrid queue serve` per backend (and per server version with `--a`: another
checkout's server, the before of an A/B, on a fresh database of its own). A labeller process
pops and submits one item at a time throughout, recording each Pop's latency and whether it
came back empty; after a quiet baseline the bench sends one UpdatePriorities of every item.
Pops that overlap the re-rank are its "during" figures. Writes bench/results/rerank.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing as mp
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import percentiles, write
from bench.throughput import start_queue

BASELINE_SECONDS = 3.0


def _labeller(address: str, project: str, stop: Any, out: Any) -> None:
    from labelgrid.client import QueueClient

    pops: list[tuple[float, float, int]] = []  # start, seconds, items
    submits: list[tuple[float, float]] = []
    with QueueClient(address, timeout=120, retries=0) as client:
        while not stop.is_set():
            t = time.monotonic()
            items = client.pop(project, "labeller")
            pops.append((t, time.monotonic() - t, len(items)))
            for item in items:
                t = time.monotonic()
                client.submit(project, item, "x", "labeller")
                submits.append((t, time.monotonic() - t))
    out.put((pops, submits))


def one(python: str, url: str, tmp: Path, n: int) -> dict[str, Any]:
    from labelgrid.client import QueueClient

    proc, address = start_queue(url, tmp, python)
    try:
        with QueueClient(address, timeout=1200) as client:
            client.create_project("rerank", ["x"])
            ids = np.asarray(client.add_features("rerank", np.zeros((n, 1), np.uint8)))
            ctx = mp.get_context("spawn")
            stop, out = ctx.Event(), ctx.Queue()
            labeller = ctx.Process(target=_labeller, args=(address, "rerank", stop, out))
            labeller.start()
            time.sleep(BASELINE_SECONDS)
            t0 = time.monotonic()
            prios = np.random.default_rng(0).random(n)
            client.update_priorities("rerank", ids, prios, model_version=1)
            t1 = time.monotonic()
            threading.Event().wait(1.0)
            stop.set()
            pops, submits = out.get(timeout=300)
            labeller.join(60)
    finally:
        proc.terminate()
        proc.wait(30)
    started = [p for p in pops if p[0] > pops[0][0] + 0.5]  # past the first connection
    before = [p for p in started if p[0] + p[1] < t0]
    during = [p for p in started if p[0] < t1 and p[0] + p[1] > t0]
    return {
        "items": n,
        "rerank_seconds": t1 - t0,
        "pops_before": len(before),
        "pop_before": percentiles([p[1] for p in before]),
        "pops_during": len(during),
        "pop_during": percentiles([p[1] for p in during]),
        "empty_pops_during": sum(1 for p in during if p[2] == 0),
        "submit_during": percentiles([x[1] for x in submits if x[0] < t1 and sum(x) > t0]),
        # the longest stretch of the re-rank with no Pop completing, and where it began
        **longest_gap([t0] + [p[0] + p[1] for p in during] + [t1], t0),
    }


def longest_gap(times: list[float], t0: float) -> dict[str, float]:
    ends = sorted(times)
    gap, at = max(((b - a, a) for a, b in itertools.pairwise(ends)), default=(0.0, t0))
    return {"longest_gap_ms": gap * 1000, "longest_gap_from_s": at - t0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--a", help="another checkout's python: its server measured first")
    parser.add_argument("--out", default="rerank")
    args = parser.parse_args()
    servers = {"this": sys.executable, **({"a": args.a} if args.a else {})}
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        pg = None
        for backend in args.backends.split(","):
            for side, python in servers.items():
                if backend == "sqlite":
                    url = f"sqlite:///{tmp / f'{side}.db'}"
                else:
                    if pg is None:
                        from tests.support.postgres import Postgres

                        pg = Postgres().start()
                    url = pg.new_database()
                r = one(python, url, tmp, args.items)
                results[f"{backend}_{side}"] = r
                print(backend, side, json.dumps(r), flush=True)
        if pg is not None:
            pg.cleanup()
    path = write(
        args.out, {"command": "python -m bench.rerank " + " ".join(sys.argv[1:]), **results}
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
