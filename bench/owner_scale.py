"""The owner's view at 10^6 labels: GetProjectStats time, and the queue service's memory
while it serves an export download (`POST /export`).

One queue service (SQLite, separate process, --web-address) holds a project of N items,
each with one label, added with AddFeatures (imported labels: the quick way to 10^6). The
labels are then spread over 50 workers and a week of times by one UPDATE, so the per-worker
and per-bucket aggregates have real work to do. Measured: GetProjectStats wall time (3
calls), and the service's resident memory sampled every 20 ms while a client reads each
export format to nowhere, against its resident memory just before.

    python -m bench.owner_scale [--labels 1000000] [--formats csv jsonl parquet]
    python -m bench.owner_scale --formats     # GetProjectStats only
"""

from __future__ import annotations

import argparse
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np

from bench.common import write

OPTIONS = ["a", "b", "c"]


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def serve(db: Path, web_port: int, grpc_port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "labelgrid.cli", "queue", "serve"),
            *("--address", f"127.0.0.1:{grpc_port}", "--database-url", f"sqlite:///{db}"),
            *("--web-address", f"127.0.0.1:{web_port}", "--log-level", "WARNING"),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--labels", type=int, default=1_000_000)
    parser.add_argument("--formats", nargs="*", default=["csv", "jsonl", "parquet"])
    args = parser.parse_args()
    from labelgrid.client import QueueClient
    from labelgrid.stack import wait_serving

    n = args.labels
    address, web = "127.0.0.1:50971", 50972
    result: dict = {"command": f"python -m bench.owner_scale --labels {n}", "labels": n}
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "owner.db"
        queue = serve(db, web, 50971)
        try:
            wait_serving(address)
            with QueueClient(address, timeout=600) as client:
                client.create_project("big", OPTIONS)
                labels = [OPTIONS[i % 3] for i in range(n)]
                client.add_features("big", np.zeros((n, 1), np.float32), labels=labels)
        finally:
            queue.terminate()
            queue.wait(30)
        with sqlite3.connect(db) as conn:  # 50 workers, one label every ~0.6 s for a week
            conn.execute(
                "UPDATE annotations SET worker_id = 'w' || (id % 50), "
                "created_at = 1.7e9 + id * 0.6048"
            )
        queue = serve(db, web, 50971)
        try:
            wait_serving(address)
            with QueueClient(address, timeout=600) as client:
                times = []
                for _ in range(3):
                    t = time.perf_counter()
                    stats = client.project_stats("big")
                    times.append(time.perf_counter() - t)
                assert sum(b.labels for b in stats.buckets) == n
                assert len(stats.workers) == 50
            result["project_stats_seconds"] = times
            result["bucket_seconds"] = stats.bucket_seconds
            result["buckets"] = len(stats.buckets)
            print(f"GetProjectStats over {n} labels: {', '.join(f'{t:.2f}' for t in times)} s")
            result["exports"] = [export(queue.pid, web, fmt) for fmt in args.formats]
        finally:
            queue.terminate()
            queue.wait(30)
    # `--formats` with none: the statistics alone, recorded apart
    print(f"wrote {write('owner_scale' if args.formats else 'owner_scale_stats', result)}")


def export(pid: int, port: int, fmt: str) -> dict:
    """Read one download to nowhere while sampling the server's resident memory."""
    before = rss_mb(pid)
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_mb(pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    body = urllib.parse.urlencode({"project": "big", "format": fmt}).encode()
    start = time.perf_counter()
    size = 0
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/export", data=body, timeout=3600) as r:
        while chunk := r.read(1 << 20):
            size += len(chunk)
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    run = {
        "format": fmt,
        "seconds": seconds,
        "file_mb": size / 2**20,
        "server_rss_before_mb": before,
        "server_rss_peak_mb": peak,
        "server_growth_mb": peak - before,
    }
    print(
        f"/export {fmt}: {seconds:.1f} s, {run['file_mb']:.0f} MB, server RSS {before:.0f} -> "
        f"peak {peak:.0f} MB",
        flush=True,
    )
    return run


if __name__ == "__main__":
    main()
