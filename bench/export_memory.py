"""Streaming check: `labelgrid export` must not hold every label in memory.

A queue service (separate process, SQLite) holds two projects per size: one with overlap 1
and one with overlap 3, where the export joins each annotation with its item's majority
consensus. The labels are added with AddFeatures (one imported label per item, on a 1-float
item), which is the quick way to 10^6 labels; the export reads them as any other label.
Each export runs `labelgrid.cli.main(["export", ...])` in a fresh process writing to a
file, which reports its resident memory after the imports (before) and at its peak (VmHWM).

    python -m bench.export_memory [--sizes 100000 1000000] [--formats csv jsonl parquet]
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import measured_child, sqlite_queue, status_mb, write

EXPORTER = """
import json, sys, time
from bench.common import status_mb
import grpc, pyarrow, pyarrow.parquet  # imported before the baseline, as the command would
from labelgrid import cli, export
from labelgrid.client import QueueClient
before = status_mb("VmRSS")
start = time.perf_counter()
code = cli.main(["export", *sys.argv[1:]])
seconds = time.perf_counter() - start
print(json.dumps({"code": code, "rss_before_mb": before, "peak_rss_mb": status_mb("VmHWM"),
                  "seconds": seconds}))
"""

OPTIONS = [f"class-{i}" for i in range(10)]


def project_name(n: int, overlap: int) -> str:
    return f"export-{n}-k{overlap}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--formats", nargs="+", default=["csv", "jsonl", "parquet"])
    args = parser.parse_args()
    from labelgrid.client import QueueClient

    # a SIGTERM still stops the queue service (the finally below)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    rng = np.random.default_rng(0)
    runs = []
    adds = {}
    with tempfile.TemporaryDirectory() as tmp:
        address = "127.0.0.1:50962"
        with sqlite_queue(tmp, address, "export.db") as queue:
            with QueueClient(address, timeout=600) as client:
                for n in args.sizes:
                    X = np.zeros((n, 1), dtype=np.float32)
                    labels = [OPTIONS[v] for v in rng.integers(0, len(OPTIONS), n)]
                    for overlap in (1, 3):
                        name = project_name(n, overlap)
                        client.create_project(name, OPTIONS, overlap=overlap)
                        t = time.perf_counter()
                        client.add_features(name, X, labels=labels, progress=False)
                        adds[name] = time.perf_counter() - t
                        print(f"{name}: added {n} labels in {adds[name]:.1f}s", flush=True)
            for n in args.sizes:
                for overlap in (1, 3):
                    for fmt in args.formats:
                        out = Path(tmp) / f"out.{fmt}"
                        run = measured_child(
                            EXPORTER,
                            project_name(n, overlap),
                            "--server",
                            address,
                            "--format",
                            fmt,
                            "--output",
                            str(out),
                        )
                        assert run["code"] == 0, run
                        run.update(
                            labels=n,
                            overlap=overlap,
                            consensus="majority" if overlap > 1 else "none",
                            format=fmt,
                            file_mb=out.stat().st_size / 2**20,
                            growth_mb=run["peak_rss_mb"] - run["rss_before_mb"],
                            rows_per_s=n / run["seconds"],
                        )
                        if fmt == "csv":  # every label is there, joined where it should be
                            rows, joined = count_csv(out)
                            assert rows == n, (rows, n)
                            assert joined == (n if overlap > 1 else 0), (joined, n)
                        out.unlink()
                        runs.append(run)
                        print(
                            f"{n:>9} labels, overlap {overlap}, {fmt:>7}: "
                            f"{run['seconds']:.1f}s ({run['rows_per_s']:,.0f} rows/s), "
                            f"file {run['file_mb']:.1f} MB, RSS {run['rss_before_mb']:.0f} -> "
                            f"peak {run['peak_rss_mb']:.0f} MB (+{run['growth_mb']:.0f} MB)",
                            flush=True,
                        )
            server_peak = status_mb("VmHWM", queue.pid)
    smallest, largest = min(args.sizes), max(args.sizes)
    growth = {}
    for overlap in (1, 3):
        for fmt in args.formats:
            of = {
                r["labels"]: r["peak_rss_mb"]
                for r in runs
                if r["overlap"] == overlap and r["format"] == fmt
            }
            growth[f"k{overlap}-{fmt}"] = of[largest] - of[smallest]
    path = write(
        "export_memory",
        {
            "command": "python -m bench.export_memory --sizes "
            + " ".join(map(str, args.sizes))
            + " --formats "
            + " ".join(args.formats),
            "add_seconds": adds,
            "runs": runs,
            # the exporting process's peak at the largest size minus at the smallest
            "peak_growth_mb_smallest_to_largest": growth,
            "queue_service_peak_rss_mb": server_peak,
        },
    )
    print(f"wrote {path}")


def count_csv(path: Path) -> tuple[int, int]:
    """Rows, and rows with a consensus, of an exported CSV file (read as a stream)."""
    import csv

    rows = joined = 0
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            rows += 1
            joined += bool(row.get("consensus"))
    return rows, joined


if __name__ == "__main__":
    main()
