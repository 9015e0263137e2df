"""Label efficiency: held-out accuracy against labels used, per acquisition strategy.

Runs the real queue service (embedded, SQLite) and the shared active-learning loop on
scikit-learn's digits: 1,297 items to label, 500 held out. Simulated labellers answer with the
true digit. Each round, every labeller labels `per_labeller` items popped from the current
ranking (1 labeller: 5 per round; 10 labellers: 2 each, as a widget holds the shown item and
the prefetched one), then the model is retrained and the queue re-ranked.

    python -m bench.label_efficiency [--seeds 3] [--budget 500]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from bench.common import RESULTS, write
from labelgrid.client import QueueClient
from labelgrid.embedded import EmbeddedService
from trainer_service.loop import ActiveLearner

STRATEGIES = ["random", "margin", "entropy", "batch-margin"]
SETTINGS = {1: 5, 10: 2}  # labellers -> items each per round
CHECKPOINTS = [50, 100, 150, 200, 300, 400, 500]
START = 20  # a random start: a classifier needs several classes


def one_run(
    client: QueueClient, strategy: str, labellers: int, seed: int, budget: int, data: tuple
) -> list[tuple[int, float]]:
    X_pool, y_pool, X_test, y_test = data
    project = f"{strategy}-{labellers}-{seed}-{time.monotonic_ns()}"
    client.create_project(project, range(10))
    rng = np.random.default_rng(seed)
    ids = client.add_features(project, X_pool, priorities=rng.random(len(X_pool)))
    truth = dict(zip(ids, y_pool, strict=True))
    learner = ActiveLearner(
        client,
        project,
        LogisticRegression(max_iter=2000),
        eval_method=lambda m, X, y: [0.0],  # scored on the held-out set below instead
        acquisition_function=strategy,
        shuffle_prop=0.0,
        seed=seed,
        record=False,
    )
    labelled = 0
    curve: list[tuple[int, float]] = []

    def label(n: int, workers: int) -> int:
        popped = [client.pop(project, f"w{w}", n) for w in range(workers)]
        done = 0
        for w, items in enumerate(popped):
            for item in items:
                client.submit(project, item, str(truth[item.id]), f"w{w}")
                done += 1
        return done

    labelled += label(START, 1)
    while labelled < budget:
        learner.run_once()
        accuracy = float(learner.model.score(X_test, y_test.astype(str)))
        curve.append((labelled, accuracy))
        per = SETTINGS[labellers]
        labelled += label(min(per, max(1, (budget - labelled) // labellers)), labellers)
    learner.run_once()
    curve.append((labelled, float(learner.model.score(X_test, y_test.astype(str)))))
    return curve


def at(curve: list[tuple[int, float]], n: int) -> float:
    """Accuracy of the model trained on the largest label count not above n."""
    return max((c for c in curve if c[0] <= n), key=lambda c: c[0])[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget", type=int, default=500)
    args = parser.parse_args()
    digits = load_digits()
    X_pool, X_test, y_pool, y_test = train_test_split(
        digits.data.astype(np.float32),
        digits.target,
        test_size=500,
        random_state=0,
        stratify=digits.target,
    )
    data = (X_pool, y_pool, X_test, y_test)
    with tempfile.TemporaryDirectory() as tmp:
        service = EmbeddedService(f"sqlite:///{Path(tmp) / 'bench.db'}")
        client = QueueClient(service.address)
        results = []
        for labellers in SETTINGS:
            for strategy in STRATEGIES:
                for seed in range(args.seeds):
                    start = time.perf_counter()
                    curve = one_run(client, strategy, labellers, seed, args.budget, data)
                    results.append(
                        {
                            "strategy": strategy,
                            "labellers": labellers,
                            "seed": seed,
                            "curve": curve,
                            "seconds": time.perf_counter() - start,
                        }
                    )
                    print(
                        f"{strategy:>12} x{labellers:<2} seed {seed}: "
                        f"acc@100={at(curve, 100):.3f} acc@300={at(curve, 300):.3f} "
                        f"acc@{args.budget}={at(curve, args.budget):.3f}",
                        flush=True,
                    )
        client.close()
        service.stop()
    summary = {}
    for labellers in SETTINGS:
        for strategy in STRATEGIES:
            runs = [
                r["curve"]
                for r in results
                if r["strategy"] == strategy and r["labellers"] == labellers
            ]
            summary[f"{strategy} x{labellers}"] = {
                str(n): [
                    round(float(np.mean([at(c, n) for c in runs])), 4),
                    round(float(np.std([at(c, n) for c in runs])), 4),
                ]
                for n in CHECKPOINTS
                if n <= args.budget
            }
    path = write(
        "label_efficiency",
        {
            "command": "python -m bench.label_efficiency "
            f"--seeds {args.seeds} --budget {args.budget}",
            "setup": {
                "pool": len(X_pool),
                "held_out": len(X_test),
                "start": START,
                "per_round": SETTINGS,
                "model": "LogisticRegression(max_iter=2000)",
            },
            "summary_mean_std_accuracy": summary,
            "runs": results,
        },
    )
    plot(summary, RESULTS / "label_efficiency.png")
    print(f"wrote {path}")


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, labellers in zip(axes, SETTINGS, strict=True):
        for strategy in STRATEGIES:
            points = summary[f"{strategy} x{labellers}"]
            xs = [int(n) for n in points]
            ys = np.array([v[0] for v in points.values()])
            es = np.array([v[1] for v in points.values()])
            ax.plot(xs, ys, marker="o", label=strategy)
            ax.fill_between(xs, ys - es, ys + es, alpha=0.15)
        ax.set_title(f"{labellers} labeller{'s' if labellers > 1 else ''}")
        ax.set_xlabel("labels")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("held-out accuracy (digits)")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
