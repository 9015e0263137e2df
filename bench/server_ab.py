"""Two versions of the queue service, alternated under the same clients, in one run.

    python -m bench.server_ab --a /path/to/old/.venv/bin/python --b .venv/bin/python

For a change that must not cost speed (the store split of issue 13): each round starts the
server of A, then of B (then B, then A, so neither always goes first), on a fresh database of
each backend, and measures AddFeatures, UpdatePriorities and Pop+Submit with this checkout's
client code (the wire contract is the same). Medians over the rounds go to
bench/results/server_ab.json with the ratio B/A; the machine's noise is shared by both sides.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import write
from bench.throughput import pop_submit, start_queue


def one_server(python: str, url: str, tmp: Path, size: dict[str, Any]) -> dict[str, float]:
    from labelgrid.client import QueueClient

    proc, address = start_queue(url, tmp, python)
    out: dict[str, float] = {}
    try:
        client = QueueClient(address, timeout=600)
        client.create_project("add", ["x"])
        X = np.random.default_rng(0).normal(size=(size["add_rows"], 64)).astype(np.float32)
        t = time.perf_counter()
        client.add_features("add", X, progress=False)
        out["add_64d_rows_per_s"] = len(X) / (time.perf_counter() - t)

        n = size["priorities"]
        client.create_project("prio", ["x"])
        ids = np.asarray(client.add_features("prio", np.zeros((n, 1), np.uint8), progress=False))
        t = time.perf_counter()
        client.update_priorities("prio", ids, np.random.default_rng(3).random(n), model_version=1)
        out["update_priorities_seconds"] = time.perf_counter() - t

        client.create_project("pairs", ["x"])
        client.add_features("pairs", np.zeros((size["items"], 1), np.int32), progress=False)
        for c in size["concurrency"]:
            r = pop_submit(address, "pairs", c, size["seconds"], "pop+submit")
            assert r["double_leases"] == 0, r
            out[f"pop_submit_x{c}_pairs_per_s"] = r["pairs_per_s"]
        client.create_project("pairs-k3", ["x"], overlap=3)
        client.add_features("pairs-k3", np.zeros((size["items"], 1), np.int32), progress=False)
        r = pop_submit(address, "pairs-k3", 8, size["seconds"], "pop+submit", 3)
        assert r["double_leases"] == 0, r
        out["overlap3_x8_labels_per_s"] = r["pairs_per_s"]
        client.close()
    finally:
        proc.terminate()
        proc.wait(30)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--a", required=True, help="python of the baseline checkout's venv")
    parser.add_argument("--b", default=sys.executable, help="python of the changed checkout")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="server_ab", help="result name in bench/results/")
    args = parser.parse_args()
    size = {
        "seconds": 1.0 if args.quick else 5.0,
        "items": 5000 if args.quick else 100_000,
        "concurrency": [1, 8] if args.quick else [1, 8, 32],
        "add_rows": 2000 if args.quick else 100_000,
        "priorities": 5000 if args.quick else 300_000,
    }
    versions = {"a": args.a, "b": args.b}
    commits = {
        k: subprocess.run(
            ["git", "-C", str(Path(v).absolute().parents[2]), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        for k, v in versions.items()
    }
    runs: dict[str, dict[str, list[dict[str, float]]]] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        pg = None
        for backend in args.backends.split(","):
            runs[backend] = {"a": [], "b": []}
            for r in range(args.rounds):
                for side in ("a", "b") if r % 2 == 0 else ("b", "a"):
                    if backend == "sqlite":
                        url = f"sqlite:///{tmp / f'{side}-{r}.db'}"
                    else:
                        if pg is None:
                            from tests.support.postgres import Postgres

                            pg = Postgres().start()
                        url = pg.new_database()
                    result = one_server(versions[side], url, tmp, size)
                    runs[backend][side].append(result)
                    print(backend, r, side, {k: round(v, 2) for k, v in result.items()}, flush=True)
        if pg is not None:
            pg.cleanup()
    summary: dict[str, Any] = {}
    for backend, sides in runs.items():
        row = {}
        for key in sides["a"][0]:
            a = statistics.median(x[key] for x in sides["a"])
            b = statistics.median(x[key] for x in sides["b"])
            row[key] = {"a": a, "b": b, "b_over_a": b / a}
        summary[backend] = row
    flags = f" --rounds {args.rounds} --backends {args.backends}" + (
        " --quick" if args.quick else ""
    )
    if args.out != "server_ab":
        flags += f" --out {args.out}"
    path = write(
        args.out + ("-quick" if args.quick else ""),
        {
            "command": f"python -m bench.server_ab --a A --b B{flags}",
            "a": {"python": args.a, "commit": commits["a"]},
            "b": {"python": args.b, "commit": commits["b"]},
            "size": size,
            "runs": runs,
            "medians": summary,
        },
    )
    for backend, row in summary.items():
        for key, v in row.items():
            print(
                f"{backend:8} {key:32} A {v['a']:10.2f}  B {v['b']:10.2f}  B/A {v['b_over_a']:.2f}"
            )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
