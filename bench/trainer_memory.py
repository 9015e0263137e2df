"""Streaming check: scoring 200,000 unlabelled 64-d items must not hold them all in memory.

A queue service (separate process, SQLite) holds 200,000 x 64 float32 items (51.2 MB of
features), 1,000 of them labelled. A trainer process runs one pass of the shared loop
(fit, then score every unlabelled item in chunks through predict_proba, then push the
priorities) and reports its resident memory before the pass and at its peak.

    python -m bench.trainer_memory [--items 200000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import write

TRAINER = """
import json, sys, time
from sklearn.linear_model import LogisticRegression
from labelgrid.client import QueueClient
from trainer_service.loop import ActiveLearner

def rss_mb(field="VmRSS:"):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) / 1024

address, project, strategy = sys.argv[1:4]
client = QueueClient(address)
learner = ActiveLearner(client, project, LogisticRegression(max_iter=300),
                        eval_method=lambda m, X, y: [0.0], acquisition_function=strategy,
                        record=False)
learner.fetch_labels()
before = rss_mb()
start = time.perf_counter()
result = learner.run_once()
seconds = time.perf_counter() - start
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent through fork and exec
peak = rss_mb("VmHWM:")
print(json.dumps({"status": result.status, "scored": result.n_scored, "rss_before_mb": before,
                  "peak_rss_mb": peak, "seconds": seconds}))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=200_000)
    args = parser.parse_args()
    from labelgrid.client import QueueClient
    from labelgrid.stack import wait_serving

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(10, 64)).astype(np.float32)
    y = rng.integers(0, 10, args.items)
    X = (centers[y] + rng.normal(scale=2.0, size=(args.items, 64))).astype(np.float32)
    feature_mb = X.nbytes / 2**20
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        address = "127.0.0.1:50961"
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
                f"sqlite:///{Path(tmp) / 'mem.db'}",
                "--log-level",
                "WARNING",
            ]
        )
        try:
            wait_serving(address)
            with QueueClient(address) as client:
                client.create_project("mem", range(10))
                labels = [str(v) if i < 1000 else None for i, v in enumerate(y)]
                t = time.perf_counter()
                client.add_features("mem", X, labels=labels, progress=False)
                add_seconds = time.perf_counter() - t
            for strategy in ("margin", "batch-margin"):
                out = subprocess.run(
                    [sys.executable, "-c", TRAINER, address, "mem", strategy],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                run = json.loads(out.stdout.strip().splitlines()[-1])
                run["growth_mb"] = run["peak_rss_mb"] - run["rss_before_mb"]
                results[strategy] = run
                print(
                    f"{strategy}: scored {run['scored']} in {run['seconds']:.1f}s; RSS "
                    f"{run['rss_before_mb']:.0f} -> peak {run['peak_rss_mb']:.0f} MB "
                    f"(+{run['growth_mb']:.0f} MB vs {feature_mb:.1f} MB of features)"
                )
        finally:
            queue.terminate()
            queue.wait(30)
    path = write(
        "trainer_memory",
        {
            "command": f"python -m bench.trainer_memory --items {args.items}",
            "items": args.items,
            "feature_mb": feature_mb,
            "add_seconds": add_seconds,
            "runs": results,
            "flat": all(r["growth_mb"] < feature_mb for r in results.values()),
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
