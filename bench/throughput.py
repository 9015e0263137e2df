"""Throughput, latency and scale, side by side in one run, on SQLite and PostgreSQL.

    python -m bench.throughput            # full run (a few minutes), writes bench/results/
    python -m bench.throughput --quick    # tiny sizes: the CI smoke run (no timing asserted)

Measures through real gRPC (a `labelgrid queue serve` process, labellers in other
processes): Pop+Submit at 1/8/32/128 labellers (also Submit-with-next and batch Pop), the
items handed to two workers at once, AddFeatures, UpdatePriorities of 1,000,000 rows,
StreamUnlabelled and the server's memory while streaming. Beside it: the bare limits (an
asyncpg SKIP LOCKED loop; a bare grpc.aio echo) and superintendent 0.6.0's DatabaseQueue on
the same work (its own virtualenv, `--peer-python`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import status_mb, write
from tests.support.ports import free_port

QUICK = {
    "seconds": 1.0,
    "items": 20000,
    "concurrency": [1, 8],
    "add_rows": 5000,
    "images": 20,
    "priorities": 20000,
    "stream_rows": 5000,
    "peer_insert": 500,
}
FULL = {
    "seconds": 6.0,
    "items": 300_000,
    "concurrency": [1, 8, 32, 128],
    "add_rows": 100_000,
    "images": 1000,
    "priorities": 1_000_000,
    "stream_rows": 200_000,
    "peer_insert": 20_000,
}


# -- processes -------------------------------------------------------------------------------


#: The service's settings for the throughput runs: a pool for 128 labellers, no lease cap.
TUNED_ENV = {
    "LABELGRID_DB_POOL_SIZE": "40",
    "LABELGRID_MAX_LEASES_PER_WORKER": "100000",
    "LABELGRID_MAX_POP": "1000",
}


def start_queue(
    url: str,
    tmp: Path,
    python: str = sys.executable,
    extra_args: tuple[str, ...] = (),
    extra_env: dict[str, str] | None = None,
    cwd: Path | None = None,
    tuned: bool = True,
) -> tuple[subprocess.Popen, str]:
    """A `labelgrid queue serve` process; `python` may be another checkout's interpreter
    (bench/server_ab.py runs two versions of the server under the same clients);
    `extra_args` such as `--web-address`, and `cwd` with a PYTHONPATH in `extra_env` to run
    another source tree under this interpreter (bench/crowd.py); `tuned=False` keeps the
    service's default pool and limits (bench/watchers.py measures those)."""
    from labelgrid.stack import wait_serving

    port = free_port()
    env = {**os.environ, **(TUNED_ENV if tuned else {}), "LABELGRID_LOG_LEVEL": "WARNING"}
    env.update(extra_env or {})
    log = open(tmp / f"queue-{port}.log", "wb")
    proc = subprocess.Popen(
        [
            python,
            "-m",
            "labelgrid.cli",
            "queue",
            "serve",
            "--address",
            f"127.0.0.1:{port}",
            "--database-url",
            url,
            *extra_args,
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        # another checkout's server runs from its own tree (its packages, not this one's)
        cwd=cwd or (None if python == sys.executable else Path(python).absolute().parents[2]),
    )
    wait_serving(f"127.0.0.1:{port}")
    return proc, f"127.0.0.1:{port}"


def _rss(pid: int, field: str = "VmRSS") -> float:
    return status_mb(field, pid) or 0.0


# -- labellers (in separate processes) -------------------------------------------------------


def _labeller_process(
    address: str, project: str, names: list[str], seconds: float, mode: str, out: mp.Queue
) -> None:
    from labelgrid.aio import AsyncQueueClient

    async def one(client: AsyncQueueClient, worker: str) -> tuple[list[int], list[float]]:
        popped: list[int] = []
        latencies: list[float] = []
        deadline = time.perf_counter() + seconds
        current = None
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            if mode == "submit-next":
                if current is None:
                    got = await client.pop(project, worker)
                    if not got:
                        break
                    current = got[0]
                    popped.append(current.id)
                reply = await client.submit(project, current, "x", worker, pop_next=True)
                latencies.append(time.perf_counter() - t)
                if not reply.HasField("next"):
                    break
                from labelgrid.client import Item

                current = Item.from_proto(reply.next)
                popped.append(current.id)
                continue
            n = 10 if mode == "batch" else 1
            items = await client.pop(project, worker, n)
            if not items:
                break
            for item in items:
                popped.append(item.id)
                await client.submit(project, item, "x", worker)
            latencies.append((time.perf_counter() - t) / len(items))
        return popped, latencies

    async def run() -> None:
        client = AsyncQueueClient(address, retries=0)
        results = await asyncio.gather(*(one(client, w) for w in names))
        await client.close()
        out.put(
            {
                "popped": [p for p, _ in results],
                "latencies": [x for _, lat in results for x in lat],
            }
        )

    asyncio.run(run())


def pop_submit(
    address: str, project: str, concurrency: int, seconds: float, mode: str, overlap: int = 1
) -> dict[str, Any]:
    """Labellers in separate processes; `double_leases` counts every item served to one
    worker twice or to more than `overlap` workers (must be 0)."""
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()
    processes = min(concurrency, 4)
    names = [f"{mode}-{concurrency}-{i}" for i in range(concurrency)]
    groups = [names[i::processes] for i in range(processes)]
    procs = [
        ctx.Process(target=_labeller_process, args=(address, project, g, seconds, mode, out))
        for g in groups
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join()
    per_worker = [p for r in results for p in r["popped"]]
    popped = [i for p in per_worker for i in p]
    twice = sum(len(p) - len(set(p)) for p in per_worker)
    over = sum(max(0, c - overlap) for c in Counter(popped).values())
    latencies = np.array([x for r in results for x in r["latencies"]]) * 1000
    submitted = len(popped) - (concurrency if mode == "submit-next" else 0)
    return {
        "mode": mode,
        "overlap": overlap,
        "labellers": concurrency,
        "pairs_per_s": max(0, submitted) / seconds,
        "p50_ms": float(np.percentile(latencies, 50)) if len(latencies) else None,
        "p99_ms": float(np.percentile(latencies, 99)) if len(latencies) else None,
        "double_leases": twice + over,
    }


# -- bare limits -----------------------------------------------------------------------------


async def _bare_asyncpg(dsn: str, concurrency: int, seconds: float, items: int) -> float:
    import asyncpg

    setup = await asyncpg.connect(dsn)
    await setup.execute(
        "DROP TABLE IF EXISTS bare_items; CREATE TABLE bare_items (id bigserial "
        "PRIMARY KEY, status smallint NOT NULL DEFAULT 0, priority float8 NOT "
        "NULL DEFAULT 0, leased_by text); CREATE INDEX ON bare_items "
        "(priority DESC, id) WHERE status = 0"
    )
    await setup.execute(
        f"INSERT INTO bare_items (priority) SELECT 0 FROM generate_series(1, {items})"
    )
    await setup.close()
    done = 0

    async def worker(i: int) -> None:
        nonlocal done
        conn = await asyncpg.connect(dsn)
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            async with conn.transaction():
                row = await conn.fetchrow(
                    "UPDATE bare_items SET status = 1, leased_by = $1 WHERE id = (SELECT id FROM "
                    "bare_items WHERE status = 0 ORDER BY priority DESC, id LIMIT 1 FOR UPDATE "
                    "SKIP LOCKED) RETURNING id",
                    f"w{i}",
                )
            if row is None:
                break
            async with conn.transaction():
                await conn.execute(
                    "UPDATE bare_items SET status = 2 WHERE id = $1 AND leased_by = $2",
                    row["id"],
                    f"w{i}",
                )
            done += 1
        await conn.close()

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return done / seconds


def _echo_server_process(port: int, ready: mp.Event) -> None:
    import grpc

    async def serve() -> None:
        server = grpc.aio.server()
        handler = grpc.unary_unary_rpc_method_handler(_echo)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("bench.Echo", {"Echo": handler}),)
        )
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        ready.set()
        await server.wait_for_termination()

    asyncio.run(serve())


async def _echo(request: bytes, context: object) -> bytes:
    return request


def _echo_client_process(port: int, concurrency: int, seconds: float, out: mp.Queue) -> None:
    import grpc

    async def run() -> None:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        call = channel.unary_unary("/bench.Echo/Echo")
        count = 0

        async def one() -> None:
            nonlocal count
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline:
                await call(b"x" * 64)
                count += 1

        await asyncio.gather(*(one() for _ in range(concurrency)))
        await channel.close()
        out.put(count)

    asyncio.run(run())


def bare_grpc(concurrency: int, seconds: float) -> float:
    ctx = mp.get_context("spawn")
    port = free_port()
    ready = ctx.Event()
    server = ctx.Process(target=_echo_server_process, args=(port, ready), daemon=True)
    server.start()
    ready.wait(30)
    out: mp.Queue = ctx.Queue()
    processes = min(concurrency, 4)
    clients = [
        ctx.Process(
            target=_echo_client_process, args=(port, max(1, concurrency // processes), seconds, out)
        )
        for _ in range(processes)
    ]
    for c in clients:
        c.start()
    total = sum(out.get(timeout=seconds + 60) for _ in clients)
    for c in clients:
        c.join()
    server.terminate()
    return total / seconds


# -- one backend -----------------------------------------------------------------------------


def run_backend(
    name: str, url: str, size: dict, tmp: Path, peer_python: str | None, dsn: str | None
) -> dict[str, Any]:
    from labelgrid.client import QueueClient

    out: dict[str, Any] = {"backend": name}
    proc, address = start_queue(url, tmp)
    try:
        client = QueueClient(address, timeout=600)
        # AddFeatures
        client.create_project("add", ["x"])
        X = np.random.default_rng(0).normal(size=(size["add_rows"], 64)).astype(np.float32)
        t = time.perf_counter()
        client.add_features("add", X, progress=False)
        seconds = time.perf_counter() - t
        out["add_64d_rows_per_s"] = len(X) / seconds
        out["add_64d_mb_per_s"] = X.nbytes / 2**20 / seconds
        images = np.random.default_rng(1).integers(
            0, 255, (size["images"], 224, 224, 3), dtype=np.uint8
        )
        client.create_project("images", ["x"])
        t = time.perf_counter()
        client.add_features("images", images, progress=False)
        seconds = time.perf_counter() - t
        out["add_images_per_s"] = len(images) / seconds
        out["add_images_mb_per_s"] = images.nbytes / 2**20 / seconds
        del images

        # Streaming and the server's memory
        client.create_project("stream", ["x"])
        S = np.random.default_rng(2).normal(size=(size["stream_rows"], 64)).astype(np.float32)
        client.add_features("stream", S, progress=False)
        rss_before = _rss(proc.pid)
        t = time.perf_counter()
        received = sum(len(c.items) for c in client.stream_unlabelled("stream"))
        seconds = time.perf_counter() - t
        out["stream_unlabelled_mb_per_s"] = S.nbytes / 2**20 / seconds
        out["stream_items"] = received
        t = time.perf_counter()
        packed = sum(len(ids) for ids, _ in client.unlabelled("stream"))
        seconds = time.perf_counter() - t
        out["stream_unlabelled_packed_mb_per_s"] = S.nbytes / 2**20 / seconds
        out["stream_packed_items"] = packed
        out["server_rss_before_stream_mb"] = rss_before
        out["server_rss_after_stream_mb"] = _rss(proc.pid)
        out["stream_features_mb"] = S.nbytes / 2**20
        del S

        # UpdatePriorities
        n = size["priorities"]
        client.create_project("prio", ["x"])
        ids = np.asarray(client.add_features("prio", np.zeros((n, 1), np.uint8), progress=False))
        prios = np.random.default_rng(3).random(n)
        t = time.perf_counter()
        client.update_priorities("prio", ids, prios, model_version=1)
        out["update_priorities_seconds"] = time.perf_counter() - t
        out["update_priorities_rows"] = n
        out["update_priorities_bare_sql_seconds"] = _bare_update(name, url, dsn, ids, prios)

        # Pop+Submit
        client.create_project("pairs", ["x"])
        client.add_features("pairs", np.zeros((size["items"], 1), np.int32), progress=False)
        runs = []
        for concurrency in size["concurrency"]:
            for mode in ("pop+submit", "submit-next", "batch"):
                if mode != "pop+submit" and concurrency not in (1, 32, size["concurrency"][-1]):
                    continue
                r = pop_submit(address, "pairs", concurrency, size["seconds"], mode)
                runs.append(r)
                print(
                    f"  {name} {mode:>11} x{concurrency:<3} {r['pairs_per_s']:8.0f} pairs/s "
                    f"p50 {r['p50_ms']:.1f} ms p99 {r['p99_ms']:.1f} ms "
                    f"double leases {r['double_leases']}",
                    flush=True,
                )
        # overlap 3: every item to three different workers (the assignments path)
        client.create_project("pairs-k3", ["x"], overlap=3)
        client.add_features("pairs-k3", np.zeros((size["items"], 1), np.int32), progress=False)
        for concurrency in (8, 32):
            if concurrency > size["concurrency"][-1]:
                continue
            r = pop_submit(address, "pairs-k3", concurrency, size["seconds"], "pop+submit", 3)
            runs.append(r)
            print(
                f"  {name} overlap=3 pop+submit x{concurrency:<3} {r['pairs_per_s']:8.0f} "
                f"labels/s p50 {r['p50_ms']:.1f} ms p99 {r['p99_ms']:.1f} ms "
                f"double leases {r['double_leases']}",
                flush=True,
            )
        out["pop_submit"] = runs
        client.close()
    finally:
        proc.terminate()
        proc.wait(30)

    if dsn is not None:
        out["bare_asyncpg_pairs_per_s"] = {
            str(c): asyncio.run(_bare_asyncpg(dsn, c, size["seconds"], size["items"]))
            for c in size["concurrency"]
        }
    if peer_python:
        peer_url = (
            f"sqlite:///{tmp / 'peer.db'}"
            if name == "sqlite"
            else dsn.replace("postgresql://", "postgresql+psycopg2://")
        )
        if name == "postgres":
            import psycopg

            with psycopg.connect(dsn) as conn:
                conn.execute("DROP TABLE IF EXISTS superintendentdata")
        result = subprocess.run(
            [
                peer_python,
                str(Path(__file__).parent / "peer_superintendent.py"),
                peer_url,
                "--insert",
                str(size["peer_insert"]),
                "--seconds",
                str(size["seconds"]),
                "--reorder",
                str(min(20000, size["peer_insert"])),
            ],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if result.returncode == 0:
            out["superintendent"] = json.loads(result.stdout.strip().splitlines()[-1])
        else:
            out["superintendent_error"] = result.stderr[-2000:]
    return out


def _bare_update(name: str, url: str, dsn: str | None, ids: np.ndarray, prios: np.ndarray) -> float:
    """The same bulk update, straight to the database, for comparison."""
    if name == "postgres":
        import asyncpg

        async def go() -> float:
            conn = await asyncpg.connect(dsn)
            t = time.perf_counter()
            await conn.execute(
                "UPDATE items SET priority = u.p FROM unnest($1::bigint[], "
                "$2::float8[]) AS u(id, p) WHERE items.id = u.id",
                ids.tolist(),
                (prios + 1).tolist(),
            )
            seconds = time.perf_counter() - t
            await conn.close()
            return seconds

        return asyncio.run(go())
    conn = sqlite3.connect(url.split("///", 1)[1])
    t = time.perf_counter()
    conn.execute("CREATE TEMP TABLE np (id INTEGER PRIMARY KEY, p REAL)")
    conn.executemany(
        "INSERT INTO np VALUES (?, ?)", zip(ids.tolist(), (prios + 1).tolist(), strict=True)
    )
    conn.execute("UPDATE items SET priority = np.p FROM np WHERE items.id = np.id")
    conn.commit()
    seconds = time.perf_counter() - t
    conn.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument(
        "--peer-python",
        default=os.environ.get("LABELGRID_PEER_PYTHON"),
        help="python of a venv with superintendent==0.6.0 (see bench/README)",
    )
    parser.add_argument("--no-echo", action="store_true")
    args = parser.parse_args()
    size = QUICK if args.quick else FULL
    results: dict[str, Any] = {"size": size, "backends": {}}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for backend in args.backends.split(","):
            print(f"{backend}:", flush=True)
            if backend == "sqlite":
                url = f"sqlite:///{tmp / 'bench.db'}"
                results["backends"]["sqlite"] = run_backend(
                    "sqlite", url, size, tmp, args.peer_python, None
                )
            else:
                from tests.support.postgres import Postgres

                pg = Postgres().start()
                try:
                    url = pg.new_database()
                    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
                    results["backends"]["postgres"] = run_backend(
                        "postgres", url, size, tmp, args.peer_python, dsn
                    )
                finally:
                    pg.cleanup()
        if not args.no_echo:
            results["bare_grpc_echo_calls_per_s"] = {
                str(c): bare_grpc(c, size["seconds"]) for c in size["concurrency"]
            }
    results["ratios"] = ratios(results)
    name = "throughput-quick" if args.quick else "throughput"
    flags = " --quick" if args.quick else ""
    path = write(name, {"command": f"python -m bench.throughput{flags}", **results})
    print(json.dumps(results["ratios"], indent=2))
    print(f"wrote {path}")


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    """The figures the targets are stated in, each measured in this same run."""
    out: dict[str, Any] = {}
    for name, r in results["backends"].items():
        pairs = {
            (x["mode"], x["labellers"]): x["pairs_per_s"]
            for x in r["pop_submit"]
            if x.get("overlap", 1) == 1
        }
        peer = r.get("superintendent", {})
        row: dict[str, Any] = {
            "double_leases_total": sum(x["double_leases"] for x in r["pop_submit"])
        }
        if peer.get("single_pairs_per_s") and pairs.get(("pop+submit", 1)):
            # one labeller through gRPC against superintendent in-process (issue 17: >= 1)
            row["x1_vs_superintendent_single"] = pairs["pop+submit", 1] / peer["single_pairs_per_s"]
        for (mode, c), v in pairs.items():
            if mode != "pop+submit":
                continue
            if peer.get("concurrent_pairs_per_s"):
                row[f"x{c}_vs_superintendent_8_workers"] = v / peer["concurrent_pairs_per_s"]
                # superintendent hands items to two workers at once: per distinct item
                distinct = peer["concurrent_distinct"] / results["size"]["seconds"]
                row[f"x{c}_vs_superintendent_8_workers_distinct_items"] = v / distinct
            bare = r.get("bare_asyncpg_pairs_per_s", {}).get(str(c))
            if bare:
                row[f"x{c}_vs_bare_asyncpg"] = v / bare
            echo = results.get("bare_grpc_echo_calls_per_s", {}).get(str(c))
            if echo:
                row[f"x{c}_rpcs_vs_bare_grpc_echo"] = 2 * v / echo
        for x in r["pop_submit"]:
            if x.get("overlap", 1) > 1 and pairs.get(("pop+submit", x["labellers"])):
                # labels per second with k = 3 over labels per second with k = 1
                row[f"overlap3_x{x['labellers']}_vs_overlap1"] = (
                    x["pairs_per_s"] / pairs["pop+submit", x["labellers"]]
                )
        if peer.get("insert_rows_per_s"):
            row["add_vs_superintendent_insert"] = (
                r["add_64d_rows_per_s"] / peer["insert_rows_per_s"]
            )
        row["update_priorities_vs_bare_sql"] = (
            r["update_priorities_seconds"] / r["update_priorities_bare_sql_seconds"]
        )
        out[name] = row
    return out


if __name__ == "__main__":
    main()
