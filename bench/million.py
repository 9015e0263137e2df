"""A million items on PostgreSQL (issue 17): what adding them costs, where the first and the
second training run spend their time (pull, fit, score, push), how fast the trainer's stream
is against a bare asyncpg read of the same bytes, Pop at 1 M against 10 k items and during a
1 M re-rank, disk bytes per item against the raw feature bytes, and an extrapolation to
10 M items x 512 float32.

A throwaway PostgreSQL 15 (tests/support/postgres.py: fsync off, shared_buffers 128 MB), one
queue service process, the trainer's loop (ActiveLearner, feature cache in a temporary
directory, scoring over `--workers` processes) in this process, labellers in another.

    python -m bench.million [--items 1000000] [--dim 64] [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import percentiles, write

SMALL = 10_000
POP_SECONDS = 6.0


def _popper(address: str, project: str, seconds: float, ready: Any, stop: Any, out: Any) -> None:
    """One labeller, Pop then Submit, as fast as it can, for `seconds` or until `stop`:
    (wall time, Pop seconds, whether it came back empty) per Pop."""
    from labelgrid.client import QueueClient

    samples: list[tuple[float, float, bool]] = []
    with QueueClient(address, timeout=120) as client:
        client.pop(project, "warmup")  # connect before the clock starts
        ready.set()
        end = time.time() + seconds
        while time.time() < end and not stop.is_set():
            t = time.perf_counter()
            items = client.pop(project, "bench")
            samples.append((time.time(), time.perf_counter() - t, not items))
            if items:
                client.submit(project, items[0], "0", "bench")
    out.put(samples)


class Popper:
    """A labeller in its own process (its latencies are not the benchmark's GIL's)."""

    def __init__(self, address: str, project: str, seconds: float) -> None:
        ctx = mp.get_context("spawn")
        ready, self.stop, self.out = ctx.Event(), ctx.Event(), ctx.Queue()
        self.proc = ctx.Process(
            target=_popper, args=(address, project, seconds, ready, self.stop, self.out)
        )
        self.proc.start()
        ready.wait(120)

    def collect(self, stop: bool = False) -> list[tuple[float, float, bool]]:
        if stop:
            self.stop.set()
        samples = self.out.get(timeout=600)
        self.proc.join()
        return samples


async def bare_read(dsn: str, project_id: int) -> tuple[int, float]:
    """The same rows' bytes (unlabelled items of the project, in id order) over a bare
    asyncpg cursor: the ceiling the stream is compared with."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        t = time.perf_counter()
        total = 0
        async with conn.transaction():
            async for row in conn.cursor(
                "SELECT i.data FROM items it JOIN item_inputs i ON i.item_id = it.id "
                "WHERE it.project_id = $1 AND it.status <> 2 ORDER BY it.id",
                project_id,
                prefetch=5000,
            ):
                total += len(row[0])
        return total, time.perf_counter() - t
    finally:
        await conn.close()


def stream_read(address: str, project: str) -> tuple[int, float]:
    """StreamUnlabelled, packed, as the trainer's cache pulls it: bytes received."""
    from labelgrid.client import QueueClient

    with QueueClient(address, timeout=600) as client:
        t = time.perf_counter()
        total = 0
        for reply in client.stream_unlabelled(project, chunk_size=5000, packed=True):
            total += len(reply.rows.data)
        return total, time.perf_counter() - t


def sql(dsn: str, text: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(text)
        return cur.fetchall() if cur.description else []


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression

    from bench.throughput import start_queue
    from labelgrid.client import QueueClient
    from tests.support.postgres import Postgres
    from trainer_service.loop import ActiveLearner

    out: dict[str, Any] = {}
    pg = Postgres().start()
    try:
        url = pg.new_database()
        dsn = url.replace("postgresql+asyncpg://", "postgresql://")
        proc, address = start_queue(url, tmp)
        try:
            client = QueueClient(address, timeout=1800)
            rng = np.random.default_rng(0)
            centers = rng.normal(size=(10, args.dim)).astype(np.float32)

            def data(n: int) -> tuple[np.ndarray, np.ndarray]:
                y = rng.integers(0, 10, n)
                X = (centers[y] + rng.normal(scale=2.0, size=(n, args.dim))).astype(np.float32)
                return X, y

            # -- add ------------------------------------------------------------------
            client.create_project("big", [str(i) for i in range(10)])
            added = 0
            add_seconds = 0.0
            step = 200_000
            while added < args.items:
                n = min(step, args.items - added)
                X, y = data(n)
                labels = [str(v) for v in y[: max(0, args.labels - added)]] + [None] * max(
                    0, n - max(0, args.labels - added)
                )
                t = time.perf_counter()
                client.add_features("big", X, labels=labels, progress=False)
                add_seconds += time.perf_counter() - t
                added += n
            raw = args.items * args.dim * 4
            out["add"] = {
                "items": args.items,
                "seconds": round(add_seconds, 1),
                "items_per_s": round(args.items / add_seconds),
                "mb_per_s": round(raw / 2**20 / add_seconds, 1),
            }
            print("add", out["add"], flush=True)
            client.create_project("small", [str(i) for i in range(10)])
            client.add_features("small", data(SMALL)[0], progress=False)
            sql(dsn, "VACUUM ANALYZE items")
            sql(dsn, "VACUUM ANALYZE item_inputs")

            # -- disk -------------------------------------------------------------------
            sizes = sql(
                dsn,
                "SELECT pg_total_relation_size('items'), pg_total_relation_size('item_inputs'), "
                "(SELECT COUNT(*) FROM items)",
            )[0]
            n_all = sizes[2]
            out["disk"] = {
                "items_table_bytes": sizes[0],
                "item_inputs_table_bytes": sizes[1],
                "rows": n_all,
                "bytes_per_item": round((sizes[0] + sizes[1]) / n_all, 1),
                "raw_feature_bytes_per_item": args.dim * 4,
                "overhead_bytes_per_item": round((sizes[0] + sizes[1]) / n_all - args.dim * 4, 1),
            }
            print("disk", out["disk"], flush=True)

            # -- the stream against a bare read of the same bytes, side by side ------------
            project_id = sql(dsn, "SELECT id FROM projects WHERE name = 'big'")[0][0]
            rounds = []
            for _ in range(2):
                got, ours = stream_read(address, "big")
                bare_bytes, bare = asyncio.run(bare_read(dsn, project_id))
                assert got == bare_bytes, (got, bare_bytes)
                rounds.append(
                    {
                        "bytes": got,
                        "stream_mb_per_s": round(got / 2**20 / ours, 1),
                        "bare_asyncpg_mb_per_s": round(got / 2**20 / bare, 1),
                        "ratio": round(bare / ours, 3),
                    }
                )
                print("stream", rounds[-1], flush=True)
            out["stream_vs_bare"] = rounds

            # -- Pop at 1 M against 10 k ---------------------------------------------------
            out["pop"] = {}
            for name in ("small", "big"):
                samples = Popper(address, name, POP_SECONDS).collect()
                out["pop"][name] = percentiles([s for _, s, _ in samples])
                print("pop", name, out["pop"][name], flush=True)

            # -- the first training run ----------------------------------------------------
            cache_dir = tmp / "cache"
            learner = ActiveLearner(
                client,
                "big",
                LogisticRegression(max_iter=300),
                eval_method=lambda m, X, y: [0.0],
                workers=args.workers,
                cache_dir=cache_dir,
                chunk_size=20_000,
                trainer_name="bench",
            )
            first = learner.run_once()
            out["first_run"] = _run_summary(first)
            out["trainer_cache_bytes_per_item"] = round(
                learner.cache().disk_bytes() / len(learner.cache()), 1
            )
            print("first run", out["first_run"], flush=True)

            # -- labellers and new data, then the second run, with Pop measured during it --
            labelled = len(Popper(address, "big", POP_SECONDS).collect())
            X, _ = data(args.new)
            client.add_features("big", X, progress=False)
            popper = Popper(address, "big", 3600)
            second = learner.run_once()
            samples = popper.collect(stop=True)
            out["second_run"] = _run_summary(second)
            out["second_run"]["new_labels"] = labelled
            out["second_run"]["new_items"] = args.new
            out["second_run"]["pop_during"] = percentiles([s for _, s, _ in samples])
            out["second_run"]["empty_pops_during"] = sum(e for _, _, e in samples)
            print("second run", out["second_run"], flush=True)

            # -- Pop during a 1 M re-rank (UpdatePriorities alone, measured in the popper) --
            ids = np.concatenate(
                [
                    np.fromiter(r.ids, np.int64, len(r.ids))
                    for r in client.stream_unlabelled(
                        "big", chunk_size=10_000, ids_only=True, packed=True
                    )
                ]
            )
            prios = np.random.default_rng(1).random(len(ids))
            version = client.get_project("big").model_version + 1
            popper = Popper(address, "big", 3600)
            time.sleep(2.0)
            t0 = time.time()
            client.update_priorities("big", ids, prios, model_version=version)
            t1 = time.time()
            samples = popper.collect(stop=True)
            during = [(s, e) for at, s, e in samples if t0 <= at - s and at <= t1]
            out["rerank"] = {
                "rows": len(ids),
                "seconds": round(t1 - t0, 2),
                "pop_before": percentiles([s for at, s, _ in samples if at < t0]),
                "pop_during": percentiles([s for s, _ in during]),
                "empty_pops_during": sum(e for _, e in during),
            }
            print("rerank", out["rerank"], flush=True)
            learner.close()
            client.close()
        finally:
            proc.terminate()
            proc.wait(60)
    finally:
        pg.cleanup()
    return out


def _run_summary(result: Any) -> dict[str, Any]:
    return {
        "status": result.status,
        "n_labels": result.n_labels,
        "n_scored": result.n_scored,
        "seconds": round(result.seconds, 2),
        "phases": {name: round(s, 2) for name, s in result.phases},
    }


def extrapolate(out: dict[str, Any], items: int, dim: int) -> dict[str, Any]:
    """10 M x 512 float32 from the measured rates, each line saying what it scales."""
    big, big_dim = 10_000_000, 512
    raw = big * big_dim * 4
    first = out["first_run"]["phases"]
    second = out["second_run"]["phases"]
    feature_bytes = items * dim * 4
    pull_mb_s = feature_bytes / 2**20 / first["pull"]
    score_items_s = out["first_run"]["n_scored"] / first["score"]
    push_items_s = out["first_run"]["n_scored"] / first["push"]
    return {
        "items": big,
        "dim": big_dim,
        "raw_feature_gb": round(raw / 1e9, 1),
        "disk_gb": round(big * (out["disk"]["overhead_bytes_per_item"] + big_dim * 4) / 1e9, 1),
        "add_minutes": round(raw / 2**20 / out["add"]["mb_per_s"] / 60, 1),
        "first_run_pull_minutes": round(raw / 2**20 / pull_mb_s / 60, 1),
        "second_run_pull_seconds": round(second["pull"] * big / items, 1),
        "score_minutes_all_items": round(big / score_items_s * big_dim / dim / 60, 1),
        "push_minutes_all_items": round(big / push_items_s / 60, 1),
        "trainer_cache_gb": round(big * (big_dim * 4 + 8) / 1e9, 1),
        "how": (
            "add and first pull at the measured MB/s; the second run's pull (labels, the "
            "pool's ids, new items) scales with the item count; scoring (logistic "
            "regression) with items x dim at the measured rate on the same cores; push "
            "(UpdatePriorities) with the items pushed; disk = measured overhead per item + "
            "2,048 raw bytes (rows of 2 KB go to TOAST in PostgreSQL, so the overhead at "
            "512-d is a lower bound). With a score budget B (LABELGRID_TRAINER_SCORE_BUDGET) "
            "score and push scale with B instead of 10 M."
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--labels", type=int, default=2_000)
    parser.add_argument("--new", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--name", default="million")
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        out = run(args, Path(tmp))
    # the machine is shared: how busy it was (1, 5, 15-minute load averages, 2 cores)
    out["load_average"] = {"start": load_before, "end": os.getloadavg()}
    out["extrapolation_10m_x_512"] = extrapolate(out, args.items, args.dim)
    command = (
        f"python -m bench.million --items {args.items} --dim {args.dim} --labels {args.labels} "
        f"--new {args.new} --workers {args.workers}"
    )
    path = write(args.name, {"command": command, "args": vars(args), **out})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
