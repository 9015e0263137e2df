"""Streaming check: scoring 200,000 unlabelled 64-d items must not hold them all in memory.

A queue service (separate process, SQLite) holds 200,000 x 64 float32 items (51.2 MB of
features), 1,000 of them labelled. A trainer process runs one pass of the shared loop
(fit, then score every unlabelled item in chunks through predict_proba, then push the
priorities) and reports its resident memory before the pass and at its peak.

    python -m bench.trainer_memory [--items 200000]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from bench.common import measured_child, sqlite_queue, write

TRAINER = """
import json, sys, time
from sklearn.linear_model import LogisticRegression
from labelgrid.client import QueueClient
from trainer_service.loop import ActiveLearner
from bench.common import status_mb

address, project, strategy = sys.argv[1:4]
client = QueueClient(address)
learner = ActiveLearner(client, project, LogisticRegression(max_iter=300),
                        eval_method=lambda m, X, y: [0.0], acquisition_function=strategy,
                        record=False)
learner.fetch_labels()
before = status_mb("VmRSS")
start = time.perf_counter()
result = learner.run_once()
seconds = time.perf_counter() - start
peak = status_mb("VmHWM")
print(json.dumps({"status": result.status, "scored": result.n_scored, "rss_before_mb": before,
                  "peak_rss_mb": peak, "seconds": seconds}))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=200_000)
    args = parser.parse_args()
    from labelgrid.client import QueueClient

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(10, 64)).astype(np.float32)
    y = rng.integers(0, 10, args.items)
    X = (centers[y] + rng.normal(scale=2.0, size=(args.items, 64))).astype(np.float32)
    feature_mb = X.nbytes / 2**20
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        address = "127.0.0.1:50961"
        with sqlite_queue(tmp, address, "mem.db"):
            with QueueClient(address) as client:
                client.create_project("mem", range(10))
                labels = [str(v) if i < 1000 else None for i, v in enumerate(y)]
                t = time.perf_counter()
                client.add_features("mem", X, labels=labels, progress=False)
                add_seconds = time.perf_counter() - t
            for strategy in ("margin", "batch-margin"):
                run = measured_child(TRAINER, address, "mem", strategy)
                run["growth_mb"] = run["peak_rss_mb"] - run["rss_before_mb"]
                results[strategy] = run
                print(
                    f"{strategy}: scored {run['scored']} in {run['seconds']:.1f}s; RSS "
                    f"{run['rss_before_mb']:.0f} -> peak {run['peak_rss_mb']:.0f} MB "
                    f"(+{run['growth_mb']:.0f} MB vs {feature_mb:.1f} MB of features)"
                )
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
