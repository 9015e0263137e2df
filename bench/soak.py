"""A soak run: N human-paced labellers and a re-ranking trainer against a queue service on
PostgreSQL, with one `kill -9` of the queue service and one PostgreSQL restart in the middle.

    python -m bench.soak --labellers 200 --minutes 30      # what the issue asks for
    python -m bench.soak --labellers 100 --minutes 5       # the shorter run recorded here

Everything runs on loopback on this machine: a throwaway PostgreSQL, the queue service and the
trainer as processes (`labelgrid queue serve`, `labelgrid trainer serve --job`), and the
labellers as asyncio tasks in this process, each with its own channel, labelling one item
every `--seconds-per-label` (jittered) with Submit + pop_next, as the labelling page does.
A labeller retries a Submit that failed with UNAVAILABLE, DEADLINE_EXCEEDED or ABORTED (it is
idempotent), and counts a label as acknowledged only when a Submit returned OK.

At `--kill-at` of the run the queue service gets SIGKILL and is started again on the same
port (as a supervisor would, after `--restart-delay`); at `--pg-restart-at` PostgreSQL is
stopped (fast) and started again after `--pg-down-seconds`. Reported:
- acknowledged labels missing from the database (target 0), and items labelled twice
  (target 0; overlap 1), and labels stored whose Submit was never acknowledged;
- every call attempt's status, by method;
- latency percentiles of the calls outside the outage windows (from the fault until the
  service is SERVING again, plus `--grace` seconds), and inside them;
- memory (RSS) and open file descriptors of the queue service (the first process at the
  start, the restarted one after its start and at the end), the trainer and the labellers'
  process, at the start and at the end;
- the trainer's runs (re-ranks) during the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import percentiles, status_mb, write
from tests.support.ports import free_port

RETRY = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "ABORTED"}
PROJECT = "soak"
DIM = 16


def proc_stats(pid: int) -> dict[str, float]:
    """Resident memory (MB) and open file descriptors of a process."""
    rss = status_mb("VmRSS", pid) or 0.0
    return {"rss_mb": round(rss, 1), "open_fds": len(os.listdir(f"/proc/{pid}/fd"))}


class Service:
    """One of our servers as a child process on a fixed port, restartable on that port."""

    def __init__(self, command: list[str], env: dict[str, str], log: Path) -> None:
        self.command = command
        self.env = {**os.environ, **env}
        self.log = log
        self.proc: subprocess.Popen | None = None

    def start(self) -> Service:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.command, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def serving(address: str, timeout: float = 1.0) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=timeout
            )
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


async def wait_serving(address: str, limit: float = 120) -> float:
    deadline = time.monotonic() + limit
    while not await asyncio.to_thread(serving, address):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{address} did not become SERVING")
        await asyncio.sleep(0.1)
    return time.monotonic()


class Crowd:
    """The labellers: every call attempt is recorded as (time, method, code, seconds)."""

    def __init__(self, address: str, n: int, seconds_per_label: float, truth: dict) -> None:
        self.address = address
        self.n = n
        self.pace = seconds_per_label
        self.truth = truth
        self.calls: list[tuple[float, str, str, float]] = []
        self.acked: dict[int, tuple[str, str]] = {}  # item -> (worker, label)
        self.acked_twice = 0
        self.lease_lost = 0
        self.stop = asyncio.Event()

    async def _call(self, method: str, make) -> tuple[str, Any]:
        import grpc

        started = time.monotonic()
        try:
            reply = await make()
            code = "OK"
        except grpc.aio.AioRpcError as exc:
            reply, code = exc, exc.code().name
        self.calls.append((started, method, code, time.monotonic() - started))
        return code, reply

    async def _pop(self, client, worker: str):
        delay = 0.2
        while not self.stop.is_set():
            code, reply = await self._call("Pop", lambda: client.pop(PROJECT, worker))
            if code == "OK" and reply:
                return reply[0]
            if code == "OK":  # nothing left to lease right now
                await asyncio.sleep(1.0)
                continue
            if code not in RETRY:
                raise RuntimeError(f"Pop: {code}: {reply.details()}")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
        return None

    async def labeller(self, i: int) -> None:
        from labelgrid.aio import AsyncQueueClient
        from labelgrid.client import Item

        worker = f"labeller-{i:04d}"
        await asyncio.sleep(random.uniform(0, self.pace))  # people do not start in step
        async with AsyncQueueClient(self.address, retries=0, timeout=10) as client:
            item = await self._pop(client, worker)
            while item is not None and not self.stop.is_set():
                await asyncio.sleep(random.uniform(0.5, 1.5) * self.pace)
                label = self.truth[item.input.tobytes()]
                delay = 0.2
                while True:  # Submit is idempotent: retry it until it is answered
                    code, reply = await self._call(
                        "Submit",
                        lambda item=item, label=label: client.submit(
                            PROJECT, item, label, worker, pop_next=True
                        ),
                    )
                    if code == "OK":
                        if item.id in self.acked and not reply.duplicate:
                            self.acked_twice += 1
                        self.acked[item.id] = (worker, label)
                        item = Item.from_proto(reply.next) if reply.HasField("next") else None
                        if item is None:
                            item = await self._pop(client, worker)
                        break
                    if code == "FAILED_PRECONDITION":  # the lease expired during an outage
                        self.lease_lost += 1
                        item = await self._pop(client, worker)
                        break
                    if code not in RETRY:
                        raise RuntimeError(f"Submit: {code}: {reply.details()}")
                    if self.stop.is_set():
                        return
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)

    async def run(self) -> list[BaseException]:
        tasks = [asyncio.create_task(self.labeller(i)) for i in range(self.n)]
        await self.stop.wait()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        return [r for r in done if isinstance(r, BaseException)]


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    import psycopg

    from labelgrid.client import QueueClient
    from tests.support.postgres import Postgres

    tmp = Path(tempfile.mkdtemp(prefix="labelgrid-soak-"))
    duration = args.minutes * 60
    pg = Postgres().start()
    url = pg.new_database()
    dbname = url.rsplit("/", 1)[1]
    port, tport = free_port(), free_port()
    address = f"127.0.0.1:{port}"
    queue_env = {
        "LABELGRID_DB_POOL_SIZE": str(args.pool_size),
        "LABELGRID_HEALTH_INTERVAL": "0.5",
        "LABELGRID_LOG_LEVEL": "WARNING",
    }
    cli = [sys.executable, "-m", "labelgrid.cli"]
    queue = Service(
        [*cli, "queue", "serve", "--address", address, "--database-url", url],
        queue_env,
        tmp / "queue.log",
    ).start()
    events: dict[str, float] = {}
    stats: dict[str, Any] = {}
    trainer: Service | None = None
    try:
        await wait_serving(address)
        rng = np.random.default_rng(0)
        n_items = int(args.labellers * duration / args.seconds_per_label * 1.3) + 1000
        X = rng.normal(size=(n_items, DIM)).astype(np.float32)
        y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
        truth = {X[i].tobytes(): str(y[i]) for i in range(n_items)}
        with QueueClient(address) as client:
            client.create_project(PROJECT, ["0", "1"], lease_seconds=args.lease_seconds)
            client.add_features(PROJECT, X, key="soak-v1")
        trainer = Service(
            [
                *cli,
                "trainer",
                "serve",
                "--address",
                f"127.0.0.1:{tport}",
                "--queue",
                address,
                "--job",
                f"{PROJECT}=sklearn.linear_model:LogisticRegression",
            ],
            {
                "LABELGRID_TRAINER_PARAMS": json.dumps({"max_iter": 300}),
                "LABELGRID_TRAINER_ACQUISITION": "margin",
                "LABELGRID_TRAINER_INTERVAL_SECONDS": str(args.retrain_seconds),
                "LABELGRID_TRAINER_INTERVAL_N_LABELS": "20",
                "LABELGRID_LOG_LEVEL": "WARNING",
            },
            tmp / "trainer.log",
        ).start()
        await wait_serving(f"127.0.0.1:{tport}")

        crowd = Crowd(address, args.labellers, args.seconds_per_label, truth)
        labelling = asyncio.create_task(crowd.run())
        t0 = time.monotonic()
        events["start"] = 0.0
        windows: list[tuple[float, float]] = []

        async def at(fraction: float) -> None:
            await asyncio.sleep(max(0.0, t0 + fraction * duration - time.monotonic()))

        await asyncio.sleep(min(20.0, duration * 0.05))  # warmed up
        assert queue.proc is not None and trainer.proc is not None
        stats["start"] = {
            "queue": proc_stats(queue.proc.pid),
            "trainer": proc_stats(trainer.proc.pid),
            "labellers": proc_stats(os.getpid()),
        }

        await at(args.kill_at)
        killed = time.monotonic()
        queue.kill()  # SIGKILL
        await asyncio.sleep(args.restart_delay)
        queue.start()
        back = await wait_serving(address)
        windows.append((killed, back + args.grace))
        events["queue_killed_s"] = round(killed - t0, 1)
        events["queue_serving_again_s"] = round(back - t0, 1)
        await asyncio.sleep(min(10.0, duration * 0.03))
        stats["queue_restarted"] = proc_stats(queue.proc.pid)

        await at(args.pg_restart_at)
        stopped = time.monotonic()
        await asyncio.to_thread(pg.stop, "fast")
        await asyncio.sleep(args.pg_down_seconds)
        await asyncio.to_thread(pg.start)
        pg_up = time.monotonic()
        await asyncio.sleep(1.0)
        back = await wait_serving(address)
        windows.append((stopped, back + args.grace))
        events["postgres_stopped_s"] = round(stopped - t0, 1)
        events["postgres_started_s"] = round(pg_up - t0, 1)
        events["queue_serving_again_after_postgres_s"] = round(back - t0, 1)

        await at(1.0)
        stats["end"] = {
            "queue": proc_stats(queue.proc.pid),
            "trainer": proc_stats(trainer.proc.pid),
            "labellers": proc_stats(os.getpid()),
        }
        crowd.stop.set()
        errors = await labelling
        events["end_s"] = round(time.monotonic() - t0, 1)

        # -- what the database holds ---------------------------------------------------------
        with psycopg.connect(pg.dsn(dbname)) as conn:
            rows = conn.execute("SELECT item_id, worker_id, labels FROM annotations").fetchall()
            runs = conn.execute(
                "SELECT status, seconds, score, model_version FROM training_runs ORDER BY id"
            ).fetchall()
        stored: dict[int, list[tuple[str, str]]] = {}
        for item_id, worker, labels in rows:
            stored.setdefault(item_id, []).append((worker, json.loads(labels)[0]))
        lost = [i for i, ack in crowd.acked.items() if ack not in stored.get(i, [])]
        doubled = [i for i, found in stored.items() if len(found) > 1]
        unacked = [i for i in stored if i not in crowd.acked]

        def outside(t: float) -> bool:
            return not any(a <= t <= b for a, b in windows)

        latency: dict[str, Any] = {}
        for method in ("Pop", "Submit"):
            ok = [(t, s) for t, m, c, s in crowd.calls if m == method and c == "OK"]
            latency[method] = {
                "outside_outages": percentiles([s for t, s in ok if outside(t)]),
                "inside_outages": percentiles([s for t, s in ok if not outside(t)]),
            }
        all_ok = [(t, s) for t, _, c, s in crowd.calls if c == "OK"]
        latency["all"] = {
            "outside_outages": percentiles([s for t, s in all_ok if outside(t)]),
            "inside_outages": percentiles([s for t, s in all_ok if not outside(t)]),
        }
        statuses = Counter(f"{m} {c}" for _, m, c, _ in crowd.calls)
        labelled_s = events["end_s"]
        return {
            "command": "python -m bench.soak " + " ".join(sys.argv[1:]),
            "parameters": {k: v for k, v in vars(args).items() if k != "out"},
            "items": n_items,
            "events": events,
            "outage_windows_s": [[round(a - t0, 1), round(b - t0, 1)] for a, b in windows],
            "acknowledged_labels": len(crowd.acked),
            "labels_per_second": round(len(crowd.acked) / labelled_s, 1),
            "lost_acknowledged_labels": len(lost),
            "items_labelled_twice": len(doubled),
            "acknowledged_twice_as_new": crowd.acked_twice,
            "stored_without_acknowledgement": len(unacked),
            "leases_lost_to_expiry": crowd.lease_lost,
            "labeller_errors": [repr(e) for e in errors][:10],
            "statuses": dict(sorted(statuses.items())),
            "latency": latency,
            "processes": stats,
            "training_runs": {
                "runs": len(runs),
                "ok": sum(1 for r in runs if r[0] == "ok"),
                "newest_model_version": max((r[3] or 0 for r in runs), default=0),
                "median_seconds": round(float(np.median([r[1] for r in runs])), 2)
                if runs
                else None,
                "last_score": runs[-1][2] if runs else None,
            },
            "logs": str(tmp),
        }
    finally:
        if trainer is not None:
            trainer.stop()
        queue.stop()
        pg.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labellers", type=int, default=200)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--seconds-per-label", type=float, default=2.0)
    parser.add_argument("--kill-at", type=float, default=1 / 3, help="fraction of the run")
    parser.add_argument("--restart-delay", type=float, default=1.0)
    parser.add_argument("--pg-restart-at", type=float, default=2 / 3, help="fraction of the run")
    parser.add_argument("--pg-down-seconds", type=float, default=3.0)
    parser.add_argument("--grace", type=float, default=5.0, help="seconds after recovery")
    parser.add_argument("--lease-seconds", type=int, default=60)
    parser.add_argument("--retrain-seconds", type=float, default=15.0)
    parser.add_argument("--pool-size", type=int, default=20)
    parser.add_argument("--out", default="soak", help="result name in bench/results/")
    args = parser.parse_args()
    result = asyncio.run(soak(args))
    path = write(args.out, result)
    summary = {
        k: result[k]
        for k in (
            "acknowledged_labels",
            "lost_acknowledged_labels",
            "items_labelled_twice",
            "stored_without_acknowledgement",
            "leases_lost_to_expiry",
            "labeller_errors",
        )
    }
    summary["p99_outside_outages_ms"] = result["latency"]["all"]["outside_outages"].get("p99_ms")
    print(json.dumps(summary, indent=2))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
