"""Live progress at scale: another labeller's Pop+Submit while W WatchProgress streams are open.

    python -m bench.watchers                  # W = 0, 100, 500, 1000 on one project of 5,000
                                              # items: SQLite and PostgreSQL over gRPC, the same
                                              # over Connect (HTTP/1.1), two PostgreSQL replicas
    python -m bench.watchers --quick          # tiny sizes: the smoke test (no timing asserted)
    python -m bench.watchers --items 1000000 --labelled 0.5 --watchers 0 100
                                              # a big project (half of it with imported labels)

Every run is a real `labelgrid queue serve` process (two on one database for the replica runs)
with default settings (the follow poll is 1 s). W streams are opened by one watcher process
per replica (asyncio, one connection per stream, as W browser pages would have), and the run
starts when every stream has had its first progress. Then, for `--seconds`, one labeller in
this process pops and submits one item at a time, back to back, and each pair's latency is
recorded. The server's CPU time (utime + stime from /proc/<pid>/stat) over the window, divided
by the changes made (each Pop and each Submit is one change), is its cost per change (and on
PostgreSQL the same of the database's own processes); the
same read over `--idle` seconds before the labeller starts is what W open streams cost with
nothing changing. `deliveries` counts the progress messages the watchers received in the
window. With two replicas the watchers are split between them and the labeller uses the first,
so the second replica's watchers see the labels only through LISTEN/NOTIFY (or the poll).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import write
from bench.throughput import start_queue
from tests.support.ports import free_port

QUICK = {"watchers": [0, 5], "items": 2000, "seconds": 1.0, "idle": 0.5}
FULL = {"watchers": [0, 100, 500, 1000], "items": 5000, "seconds": 10.0, "idle": 3.0}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(values) * 1000, q)), 2) if values else 0.0


# -- the servers -----------------------------------------------------------------------------


@dataclass
class Server:
    proc: subprocess.Popen
    address: str
    web: str
    database: int | None = None  # PostgreSQL's postmaster: its processes' CPU is counted too

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def start_server(url: str, tmp: Path, database: int | None = None) -> Server:
    web = free_port()
    proc, address = start_queue(
        url, tmp, extra_args=("--web-address", f"127.0.0.1:{web}"), tuned=False
    )
    return Server(proc, address, f"http://127.0.0.1:{web}", database)


def database_cpu(servers: list[Server]) -> float:
    """CPU seconds of the database's processes so far (0 on SQLite, inside the service)."""
    from bench.crowd import tree_cpu_seconds

    root = servers[0].database
    return tree_cpu_seconds(root) if root else 0.0


# -- the watchers (one process per replica) --------------------------------------------------


def _watchers_process(
    target: str, transport: str, project: str, n: int, ready: Any, stop: Any, delivered: Any
) -> None:
    asyncio.run(_watch(target, transport, project, n, ready, stop, delivered))


async def _watch(
    target: str, transport: str, project: str, n: int, ready: Any, stop: Any, delivered: Any
) -> None:
    from labelgrid_proto.v1 import queue_pb2

    opened = 0
    request = queue_pb2.WatchProgressRequest(project=project)

    def got() -> None:
        delivered.value += 1

    async def one_grpc() -> None:
        nonlocal opened
        import grpc

        from labelgrid_proto.v1 import queue_pb2_grpc

        # a connection of its own, as a page has (channels share one by default)
        options = [("grpc.use_local_subchannel_pool", 1)]
        async with grpc.aio.insecure_channel(target, options=options) as channel:
            first = True
            async for _ in queue_pb2_grpc.QueueServiceStub(channel).WatchProgress(request):
                got()
                if first:
                    first = False
                    opened += 1

    async def one_connect(client: Any) -> None:
        nonlocal opened
        first = True
        async for _ in client.watch_progress(request):
            got()
            if first:
                first = False
                opened += 1

    if transport == "grpc":
        tasks = [asyncio.create_task(one_grpc()) for _ in range(n)]
    else:
        from labelgrid_proto.v1.queue_connect import QueueServiceClient

        client = QueueServiceClient(target, send_compression=None)
        tasks = [asyncio.create_task(one_connect(client)) for _ in range(n)]
    while opened < n:
        await asyncio.sleep(0.05)
        failed = [t for t in tasks if t.done()]
        if failed:
            failed[0].result()  # raises what ended a stream early
    ready.set()
    await asyncio.to_thread(stop.wait)  # a multiprocessing event: wait for it in a thread
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


@dataclass
class Watchers:
    procs: list[Any] = field(default_factory=list)
    counters: list[Any] = field(default_factory=list)
    stop: Any = None

    @classmethod
    def open(
        cls, targets: list[str], transport: str, project: str, n: int, timeout: float = 300
    ) -> Watchers:
        ctx = mp.get_context("spawn")
        self = cls(stop=ctx.Event())
        readies = []
        for i, target in enumerate(targets):
            share = n // len(targets) + (1 if i < n % len(targets) else 0)
            ready, counter = ctx.Event(), ctx.Value("q", 0, lock=False)
            proc = ctx.Process(
                target=_watchers_process,
                args=(target, transport, project, share, ready, self.stop, counter),
            )
            proc.start()
            self.procs.append(proc)
            self.counters.append(counter)
            readies.append(ready)
        deadline = time.monotonic() + timeout
        for ready, proc in zip(readies, self.procs, strict=True):
            while not ready.wait(0.2):
                if not proc.is_alive() or time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError(f"watchers did not open ({transport}, {n})")
        return self

    def delivered(self) -> list[int]:
        return [c.value for c in self.counters]

    def cpu(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.procs if p.is_alive())

    def close(self) -> None:
        self.stop.set()
        for proc in self.procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()


# -- the labeller ----------------------------------------------------------------------------


class Labeller:
    """Pop one item, submit it, again, over gRPC or Connect."""

    def __init__(self, server: Server, transport: str, project: str) -> None:
        from labelgrid_proto.v1 import queue_pb2

        self.pb = queue_pb2
        self.project = project
        self.transport = transport
        if transport == "grpc":
            import grpc

            from labelgrid_proto.v1 import queue_pb2_grpc

            self.channel = grpc.insecure_channel(server.address)
            self.stub: Any = queue_pb2_grpc.QueueServiceStub(self.channel)
        else:
            from labelgrid_proto.v1.queue_connect import QueueServiceClientSync

            self.stub = QueueServiceClientSync(server.web, send_compression=None)

    def pair(self) -> bool:
        pb = self.pb
        pop, submit = (
            (self.stub.Pop, self.stub.Submit)
            if self.transport == "grpc"
            else (self.stub.pop, self.stub.submit)
        )
        items = pop(pb.PopRequest(project=self.project, worker_id="labeller")).items
        if not items:
            return False
        item = items[0]
        submit(
            pb.SubmitRequest(
                project=self.project,
                item_id=item.id,
                lease_token=item.lease_token,
                worker_id="labeller",
                labels=["a"],
            )
        )
        return True

    def run(self, seconds: float) -> list[float]:
        latencies: list[float] = []
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t = time.perf_counter()
            if not self.pair():
                raise RuntimeError("the project ran out of items; use more --items")
            latencies.append(time.perf_counter() - t)
        return latencies

    def close(self) -> None:
        if self.transport == "grpc":
            self.channel.close()
        else:
            self.stub.close()


# -- one run ---------------------------------------------------------------------------------


def make_project(server: Server, name: str, items: int, labelled: float = 0.0) -> None:
    """`items` items, the first `labelled` share of them with an imported label each (the
    quick way to a project whose progress counts many annotations)."""
    from labelgrid import QueueClient

    done = int(items * labelled)
    with QueueClient(server.address, timeout=600) as client:
        client.create_project(name, ["a", "b"])
        rng = np.random.default_rng(0)
        if done:
            labels = [["a", "b"][i % 2] for i in range(done)]
            x = rng.random((done, 16), dtype=np.float32)
            client.add_features(name, x, labels=labels, progress=False)
        x = rng.random((items - done, 16), dtype=np.float32)
        client.add_features(name, x, progress=False)


def one_run(servers: list[Server], transport: str, watchers: int, size: dict) -> dict[str, Any]:
    project = f"w{watchers}-{transport}-{len(servers)}-{time.monotonic_ns()}"
    make_project(servers[0], project, size["items"], size.get("labelled", 0.0))
    targets = [s.address if transport == "grpc" else s.web for s in servers]
    pids = [s.proc.pid for s in servers]
    crowd = Watchers.open(targets, transport, project, watchers)
    labeller = Labeller(servers[0], transport, project)
    try:
        labeller.pair()  # warm the labeller's connection up
        time.sleep(1.0)
        cpu0, db0 = [cpu_seconds(p) for p in pids], database_cpu(servers)
        time.sleep(size["idle"])
        cpu1, db1 = [cpu_seconds(p) for p in pids], database_cpu(servers)
        sent1, wcpu1 = crowd.delivered(), crowd.cpu()
        latencies = labeller.run(size["seconds"])
        cpu2, db2 = [cpu_seconds(p) for p in pids], database_cpu(servers)
        sent2, wcpu2 = crowd.delivered(), crowd.cpu()
        time.sleep(1.5)  # the last change reaches every watcher
        sent3 = crowd.delivered()
    finally:
        labeller.close()
        crowd.close()
    changes = 2 * len(latencies)  # a Pop and a Submit each notify once
    busy = [b - a for a, b in zip(cpu1, cpu2, strict=True)]
    idle = [(b - a) / size["idle"] for a, b in zip(cpu0, cpu1, strict=True)]
    result = {
        "transport": transport,
        "replicas": len(servers),
        "watchers": watchers,
        "pairs": len(latencies),
        "pairs_per_s": round(len(latencies) / size["seconds"], 1),
        "pop_submit_p50_ms": percentile(latencies, 50),
        "pop_submit_p99_ms": percentile(latencies, 99),
        "pop_submit_max_ms": round(max(latencies) * 1000, 1),
        "server_cpu_s": [round(b, 3) for b in busy],
        "server_cpu_ms_per_change": round(1000 * sum(busy) / changes, 3),
        "server_idle_cpu_ms_per_s": [round(1000 * x, 1) for x in idle],
        "database_cpu_ms_per_change": round(1000 * (db2 - db1) / changes, 3),
        "database_idle_cpu_ms_per_s": round(1000 * (db1 - db0) / size["idle"], 1),
        "deliveries": [b - a for a, b in zip(sent1, sent2, strict=True)],
        "deliveries_after_window": [b - a for a, b in zip(sent2, sent3, strict=True)],
        "watcher_cpu_s": round(wcpu2 - wcpu1, 2),
        "server_rss_mb": [round(rss_mb(p), 1) for p in pids],
    }
    print(
        f"  {transport:7} replicas={len(servers)} W={watchers:5}: "
        f"{result['pairs_per_s']:6} pairs/s, p50 {result['pop_submit_p50_ms']} ms, "
        f"p99 {result['pop_submit_p99_ms']} ms, "
        f"{result['server_cpu_ms_per_change']} ms CPU/change (database "
        f"{result['database_cpu_ms_per_change']}), idle {result['server_idle_cpu_ms_per_s']} "
        f"ms/s (database {result['database_idle_cpu_ms_per_s']}), "
        f"deliveries {result['deliveries']}",
        flush=True,
    )
    return result


def warm_up(server: Server, transports: list[str], seconds: float) -> None:
    """Label for a moment first (not recorded): a fresh server's first calls open its pool's
    connections and warm its caches, which is not what W watchers cost."""
    project = f"warm-up-{time.monotonic_ns()}"
    make_project(server, project, 20_000)
    for transport in transports:
        labeller = Labeller(server, transport, project)
        try:
            labeller.run(seconds)
        finally:
            labeller.close()


def run_backend(
    backend: str,
    url: str,
    size: dict,
    tmp: Path,
    transports: list[str],
    replicas: bool,
    database: int | None = None,
) -> list[dict[str, Any]]:
    results = []
    server = start_server(url, tmp, database)
    try:
        warm_up(server, transports, size["idle"] / 2)
        for transport in transports:
            for w in size["watchers"]:
                results.append({"backend": backend, **one_run([server], transport, w, size)})
        if replicas:
            second = start_server(url, tmp, database)
            try:
                warm_up(second, ["grpc"], size["idle"] / 2)
                for w in size["watchers"]:
                    results.append(
                        {"backend": backend, **one_run([server, second], "grpc", w, size)}
                    )
            finally:
                second.stop()
    finally:
        server.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--transports", default="grpc,connect")
    parser.add_argument("--watchers", type=int, nargs="*")
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--idle", type=float, help="seconds of the idle read")
    parser.add_argument("--items", type=int, help="items in each measured project")
    parser.add_argument(
        "--labelled", type=float, default=0.0, help="share of them with an imported label"
    )
    parser.add_argument("--no-replicas", action="store_true")
    parser.add_argument("--name", default="", help="suffix of the results file")
    args = parser.parse_args()
    size = dict(QUICK if args.quick else FULL)
    if args.watchers:
        size["watchers"] = args.watchers
    if args.seconds:
        size["seconds"] = args.seconds
    if args.idle:
        size["idle"] = args.idle
    if args.items:
        size["items"] = args.items
    size["labelled"] = args.labelled
    transports = args.transports.split(",")
    runs: list[dict[str, Any]] = []
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for backend in args.backends.split(","):
            print(f"{backend}:", flush=True)
            if backend == "sqlite":
                url = f"sqlite:///{tmp / 'watchers.db'}"
                runs += run_backend("sqlite", url, size, tmp, transports, False)
                continue
            from tests.support.postgres import Postgres

            pg = Postgres().start()
            try:
                runs += run_backend(
                    "postgres",
                    pg.new_database(),
                    size,
                    tmp,
                    transports,
                    not args.no_replicas,
                    pg.proc.pid if pg.proc else None,
                )
            finally:
                pg.cleanup()
    name = "watchers" + ("-quick" if args.quick else "") + (f"-{args.name}" if args.name else "")
    path = write(
        name,
        {
            "command": "python -m bench.watchers " + " ".join(sys.argv[1:]),
            "size": size,
            "load_average_at_start": os.getloadavg(),
            "minutes": round((time.time() - started) / 60, 1),
            "runs": runs,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
