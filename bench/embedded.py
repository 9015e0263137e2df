"""The embedded default against what it replaces: one labeller's Pop+Submit on SQLite through
a real `labelgrid queue serve` (gRPC, labeller in another process), beside superintendent
0.6.0's in-process DatabaseQueue on SQLite, alternated round by round in one run.

    python -m bench.embedded --peer-python bench/.venv-superintendent/bin/python \
        [--rounds 3] [--seconds 6] [--a OTHER/.venv/bin/python] [--py-spy DIR]

`--a` adds another checkout's server (the before of an A/B) to each round; `--py-spy DIR`
records the server of this checkout for one round (`python -m bench.profile_summary`).
`synchronous=FULL` (the default) throughout. Writes bench/results/embedded.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import write
from bench.crowd import cpu_seconds
from bench.throughput import pop_submit, start_queue

ITEMS = 100_000


def labelgrid_pairs(python: str, tmp: Path, seconds: float, spy: Path | None) -> dict[str, Any]:
    from labelgrid.client import QueueClient

    db = tmp / "lg.db"
    for f in tmp.glob(db.name + "*"):
        f.unlink()
    proc, address = start_queue(f"sqlite:///{db}", tmp, python)
    recorder = None
    try:
        client = QueueClient(address, timeout=600)
        client.create_project("pairs", ["x"])
        client.add_features("pairs", np.zeros((ITEMS, 1), np.int32), progress=False)
        client.close()
        if spy is not None:
            recorder = subprocess.Popen(
                [str(Path(sys.executable).parent / "py-spy"), "record", "--format", "raw",
                 "--nonblocking", "-r", "100", "-o", str(spy), "-d", str(int(seconds)),
                 "-p", str(proc.pid)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        cpu = cpu_seconds(proc.pid)
        r = pop_submit(address, "pairs", 1, seconds, "pop+submit")
        assert r["double_leases"] == 0, r
        # the server's CPU per pair: steadier than pairs/s on a shared machine
        r["server_cpu_ms_per_pair"] = (
            (cpu_seconds(proc.pid) - cpu) * 1000 / max(1, r["pairs_per_s"] * seconds)
        )
        return r
    finally:
        if recorder is not None:
            recorder.wait(60)
        proc.terminate()
        proc.wait(30)


def superintendent_pairs(peer: str, tmp: Path, seconds: float) -> dict[str, Any]:
    db = tmp / "peer.db"
    for f in tmp.glob("peer.db*"):
        f.unlink()
    script = Path(__file__).parent / "peer_superintendent.py"
    result = subprocess.run(
        [peer, str(script), f"sqlite:///{db}", "--insert", "20000", "--seconds", str(seconds),
         "--workers", "1", "--reorder", "10"],
        capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peer-python", required=True)
    parser.add_argument("--a", help="another checkout's python: its server measured beside")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--py-spy", type=Path, help="directory for a py-spy raw profile")
    parser.add_argument("--out", default="embedded")
    args = parser.parse_args()
    rounds: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        for i in range(args.rounds):
            row: dict[str, float] = {}
            spy = None
            if args.py_spy is not None and i == 0:
                args.py_spy.mkdir(parents=True, exist_ok=True)
                spy = args.py_spy / "embedded-sqlite-x1.txt"
            order = ["peer", "this", "a"] if i % 2 == 0 else ["a", "this", "peer"]
            for side in order:
                if side == "peer":
                    row["superintendent"] = superintendent_pairs(
                        args.peer_python, tmp, args.seconds
                    )["single_pairs_per_s"]
                elif side == "this":
                    r = labelgrid_pairs(sys.executable, tmp, args.seconds, spy)
                    row["labelgrid"] = r["pairs_per_s"]
                    row["labelgrid_server_cpu_ms_per_pair"] = r["server_cpu_ms_per_pair"]
                elif args.a:
                    r = labelgrid_pairs(args.a, tmp, args.seconds, None)
                    row["labelgrid_a"] = r["pairs_per_s"]
                    row["labelgrid_a_server_cpu_ms_per_pair"] = r["server_cpu_ms_per_pair"]
            row["ratio"] = row["labelgrid"] / row["superintendent"]
            print(json.dumps(row), flush=True)
            rounds.append(row)
    medians = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    path = write(
        args.out,
        {
            "command": "python -m bench.embedded " + " ".join(sys.argv[1:]),
            "what": "SQLite (synchronous=FULL) Pop+Submit, 1 labeller, pairs/s; "
            "superintendent 0.6.0 DatabaseQueue pop+submit in-process on SQLite",
            "rounds": rounds,
            "medians": medians,
        },
    )
    print(json.dumps(medians), f"wrote {path}")


if __name__ == "__main__":
    main()
