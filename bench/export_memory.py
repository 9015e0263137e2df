"""Streaming check: `labelgrid export` must not hold every label in memory.

A queue service (separate process, SQLite) holds three projects per size: one with overlap 1
and one with overlap 3, where the export joins each annotation with its item's majority
consensus, their labels added with AddFeatures (one imported label per item, on a 1-float
item: the quick way to 10^6 labels, and final labels, so the consensus is theirs); and one
of a crowd's votes (overlap 3, a third as many items, each with three ordinary labels from
20 workers, written into the file directly), whose consensus is computed from the votes.
Each export runs `labelgrid.cli.main(["export", ...])` in a fresh process writing to a
file, which reports its resident memory after the imports (before) and at its peak (VmHWM);
the queue service's peak during each export is read the same way, its VmHWM reset first
(`/proc/<pid>/clear_refs`), since the service computes the consensus the export joins.

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
from tests.support.ports import free_port

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


def crowd_votes(db: Path, name: str, workers: int = 20, per_item: int = 3) -> None:
    """Make a project's imported labels (one per item, final) ordinary votes of a crowd:
    each item labelled by `per_item` of `workers` workers, a third of them disagreeing, so
    the consensus is computed from votes (Dawid-Skene or majority), not taken from finals.
    Written into the SQLite file directly (the quick way to 10^6 votes; the service reads
    them as any other labels)."""
    import sqlite3

    with sqlite3.connect(db) as conn:
        (p,) = conn.execute("SELECT id FROM projects WHERE name = ?", (name,)).fetchone()
        conn.execute(
            "UPDATE annotations SET worker_id = 'w' || (item_id % ?) WHERE project_id = ?",
            (workers, p),
        )
        for k in range(1, per_item):
            conn.execute(
                "INSERT INTO annotations (project_id, item_id, worker_id, labels, kind, "
                "lease_token, created_at) SELECT project_id, item_id, "
                "'w' || ((item_id + ?) % ?), CASE WHEN (item_id + ?) % 3 = 0 "
                "THEN '[\"class-0\"]' ELSE labels END, kind, NULL, created_at + ? "
                "FROM annotations WHERE project_id = ? AND worker_id = 'w' || (item_id % ?)",
                (k, workers, k, k, p, workers),
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--formats", nargs="+", default=["csv", "jsonl", "parquet"])
    parser.add_argument("--out", default="export_memory", help="result name in bench/results/")
    args = parser.parse_args()
    from labelgrid.client import QueueClient

    # a SIGTERM still stops the queue service (the finally below)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    rng = np.random.default_rng(0)
    runs = []
    adds = {}
    with tempfile.TemporaryDirectory() as tmp:
        # a free port, not a fixed one: two runs at once (a benchmark beside the suite's smoke
        # run of it) each talked to whichever service held the fixed port
        address = f"127.0.0.1:{free_port()}"
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
                    # n votes of a crowd: n / 3 items, three ordinary labels each
                    name = f"votes-{n}"
                    client.create_project(name, OPTIONS, overlap=3)
                    third = n // 3
                    client.add_features(name, X[:third], labels=labels[:third], progress=False)
                    crowd_votes(Path(tmp) / "export.db", name)
                    print(f"{name}: {3 * third} crowd votes", flush=True)
            for n in args.sizes:
                for overlap in (1, 3, "votes"):
                    for fmt in args.formats:
                        out = Path(tmp) / f"out.{fmt}"
                        name = f"votes-{n}" if overlap == "votes" else project_name(n, overlap)
                        # the service's own peak during this export (VmHWM reset first)
                        Path(f"/proc/{queue.pid}/clear_refs").write_text("5")
                        server_before = status_mb("VmRSS", queue.pid)
                        run = measured_child(
                            EXPORTER,
                            name,
                            "--server",
                            address,
                            "--format",
                            fmt,
                            "--output",
                            str(out),
                        )
                        assert run["code"] == 0, run
                        if overlap == "votes":
                            n_rows, votes = 3 * (n // 3), "crowd"
                        else:
                            n_rows, votes = n, "imported"
                        run.update(
                            labels=n_rows,
                            votes=votes,
                            server_rss_before_mb=server_before,
                            server_peak_rss_mb=status_mb("VmHWM", queue.pid),
                            overlap=3 if overlap == "votes" else overlap,
                            consensus="majority" if overlap != 1 else "none",
                            format=fmt,
                            file_mb=out.stat().st_size / 2**20,
                            growth_mb=run["peak_rss_mb"] - run["rss_before_mb"],
                            rows_per_s=n_rows / run["seconds"],
                        )
                        if fmt == "csv":  # every label is there, joined where it should be
                            rows, joined = count_csv(out)
                            assert rows == n_rows, (rows, n_rows)
                            assert joined == (n_rows if overlap != 1 else 0), (joined, n_rows)
                        out.unlink()
                        runs.append(run)
                        print(
                            f"{n_rows:>9} labels, {votes}, overlap {run['overlap']}, {fmt:>7}: "
                            f"{run['seconds']:.1f}s ({run['rows_per_s']:,.0f} rows/s), "
                            f"file {run['file_mb']:.1f} MB, RSS {run['rss_before_mb']:.0f} -> "
                            f"peak {run['peak_rss_mb']:.0f} MB (+{run['growth_mb']:.0f} MB); "
                            f"queue service {server_before:.0f} -> peak "
                            f"{run['server_peak_rss_mb']:.0f} MB",
                            flush=True,
                        )
    smallest, largest = min(args.sizes), max(args.sizes)
    growth = {}
    for overlap in (1, 3):
        for fmt in args.formats:
            of = {
                r["labels"]: r["peak_rss_mb"]
                for r in runs
                if r["overlap"] == overlap and r["format"] == fmt and r["votes"] == "imported"
            }
            growth[f"k{overlap}-{fmt}"] = of[largest] - of[smallest]
    path = write(
        args.out,
        {
            "command": "python -m bench.export_memory --sizes "
            + " ".join(map(str, args.sizes))
            + " --formats "
            + " ".join(args.formats),
            "add_seconds": adds,
            "runs": runs,
            # the exporting process's peak at the largest size minus at the smallest
            "peak_growth_mb_smallest_to_largest": growth,
            # the queue service's highest peak during an export (each run has its own)
            "queue_service_export_peak_rss_mb": max(r["server_peak_rss_mb"] for r in runs),
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
