"""superintendent 0.6.0's DatabaseQueue on the same work (run in its own virtualenv).

    python bench/peer_superintendent.py URL --insert 20000 --seconds 5

Prints one JSON object. Uses only superintendent's public queue API.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time

import numpy as np


def _queue(url: str, worker: str):
    from superintendent.db_queue import DatabaseQueue

    return DatabaseQueue(connection_string=url, worker_id=worker)


def _pairs(url: str, seconds: float, worker: str, out: mp.Queue | None = None) -> dict:
    q = _queue(url, worker)
    popped: list[int] = []
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t = time.perf_counter()
        try:
            id_, _ = q.pop()
        except IndexError:
            break
        q.submit(id_, "x")
        latencies.append(time.perf_counter() - t)
        popped.append(id_)
    result = {"popped": popped, "latencies": latencies}
    if out is not None:
        out.put(result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--insert", type=int, default=20000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--reorder", type=int, default=20000)
    args = parser.parse_args()
    out: dict = {}
    q = _queue(args.url, "setup")
    X = np.random.default_rng(0).normal(size=(args.insert, 64)).astype(np.float32)
    t = time.perf_counter()
    q.enqueue(X)
    out["insert_rows_per_s"] = args.insert / (time.perf_counter() - t)

    single = _pairs(args.url, args.seconds, "solo")
    out["single_pairs_per_s"] = len(single["popped"]) / args.seconds
    out["single_p50_ms"] = float(np.percentile(single["latencies"], 50) * 1000)

    ctx = mp.get_context("spawn")
    results: mp.Queue = ctx.Queue()
    procs = [
        ctx.Process(target=_pairs, args=(args.url, args.seconds, f"w{i}", results))
        for i in range(args.workers)
    ]
    for p in procs:
        p.start()
    runs = [results.get(timeout=args.seconds + 120) for _ in procs]
    for p in procs:
        p.join()
    popped = [i for r in runs for i in r["popped"]]
    out["concurrent_workers"] = args.workers
    out["concurrent_pairs_per_s"] = len(popped) / args.seconds
    out["concurrent_pops"] = len(popped)
    out["concurrent_distinct"] = len(set(popped))
    out["concurrent_double_handed_share"] = 1 - len(set(popped)) / max(1, len(popped))

    ids = list(range(1, args.reorder + 1))
    priorities = dict(
        zip(ids, np.random.default_rng(1).permutation(args.reorder).tolist(), strict=True)
    )
    t = time.perf_counter()
    q.reorder(priorities)
    out["reorder_seconds"] = time.perf_counter() - t
    out["reorder_items"] = args.reorder

    t = time.perf_counter()
    ids_done, _, _labels = q.list_completed()
    out["list_completed_seconds"] = time.perf_counter() - t
    out["list_completed_items"] = len(ids_done)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
