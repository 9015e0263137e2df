"""Shared helpers for the benchmarks: machine description, result files."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

#: Where results go; LABELGRID_BENCH_RESULTS redirects them (the CI smoke run uses a
#: temporary folder so it never overwrites the recorded figures).
RESULTS = Path(os.environ.get("LABELGRID_BENCH_RESULTS", Path(__file__).parent / "results"))


def machine() -> dict[str, Any]:
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in open("/proc/cpuinfo")
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        cpu = platform.processor()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem, 1),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
    }


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"machine": machine(), "commit": git_commit(), **payload}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def status_mb(field: str = "VmRSS", pid: int | str = "self") -> float | None:
    """A memory figure of a process from /proc (VmRSS now, VmHWM its peak), in MB.

    VmHWM rather than ru_maxrss: Linux carries ru_maxrss over from the parent through fork
    and exec, so a child would report its parent's peak."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def measured_child(script: str, *args: str) -> dict[str, Any]:
    """Run `script` in a fresh interpreter (so its peak memory is its own) and return the
    JSON object it prints last; the script can `from bench.common import status_mb`."""
    import sys

    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    if done.returncode != 0:
        raise RuntimeError(f"measured child failed ({done.returncode}):\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def sqlite_queue(tmp: str | Path, address: str, db: str = "bench.db") -> Iterator[subprocess.Popen]:
    """A `labelgrid queue serve` process on a SQLite file in `tmp`, stopped on exit."""
    import sys

    from labelgrid.stack import wait_serving

    queue = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "labelgrid.cli",
            "queue",
            "serve",
            "--address",
            address,
            "--database-url",
            f"sqlite:///{Path(tmp) / db}",
            "--log-level",
            "WARNING",
        ]
    )
    try:
        wait_serving(address)
        yield queue
    finally:
        queue.terminate()
        queue.wait(30)


def percentiles(values: list[float]) -> dict[str, float | int | None]:
    """Latencies in seconds as n, p50/p95/p99 and max in ms (None when there are none)."""
    if not values:
        return {"n": 0, "p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    a = np.asarray(values) * 1000
    return {
        "n": len(values),
        "p50_ms": round(float(np.percentile(a, 50)), 2),
        "p95_ms": round(float(np.percentile(a, 95)), 2),
        "p99_ms": round(float(np.percentile(a, 99)), 2),
        "max_ms": round(float(a.max()), 1),
    }
