"""The crowd benchmark (issue 15): N simulated labellers speaking the browser's protocol.

    python -m bench.crowd                              # both backends, N ramped, ~20 min
    python -m bench.crowd --backends sqlite --steps 500,1000 --window 30
    python -m bench.crowd --quick                      # tiny N and seconds (the smoke test)
    python -m bench.crowd --servers base=/tmp/base,new=. --steps 500,500   # A/B, alternated

Each simulated labeller does what clients/web/src/main.ts does, over HTTP/1.1 with the
Connect protocol in its binary encoding (`application/proto`; streams
`application/connect+proto`), with its own connections (a browser's, up to 6) and the
`accept-encoding` a browser sends:

- on start: GetProject, ListLeases (its own live leases), Pop(n = 2 - those), then
  WatchProgress (a server stream, open the whole time), whose first message makes it
  ask ListTrainingRuns;
- one label every `--pace` seconds on average (uniform 0.5-1.5 x pace, counted from when the
  item is on screen): the click shows the prefetched item at once if one is held, and queues
  Submit(pop_next) then a refill Pop if fewer than 2 leases are held, one step after another
  (the page's `serial` chain);
- WatchProgress with its worker id (its own count, not the crowd's); ListTrainingRuns when
  a message's last_training_run_id differs from what the last fetch saw, at most every 3 s
  (the page's `lookForRuns`). A stand-in trainer records a training run every
  `--record-runs-every` seconds (30; over gRPC, as the trainer service does), so every page
  fetches the runs once per run.

Click-to-next-item is the time from the click to having the next item to show: zero when the
prefetched item is there, else until the Submit's next (or the refill) arrives. The Submit
round trip is measured too: it is what a labeller would wait without the prefetch.

Per step (a fresh server process and database for each N): a warm-up, then a fixed measured
window. The server's CPU is read from /proc/<pid>/stat (utime + stime) at both ends of the
window and divided by the labels acknowledged in it, so the simulator's share of the same two
cores does not count; PostgreSQL's own CPU (its processes) is reported beside it. Every
acknowledged label is read back from the database afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import percentiles, write
from bench.throughput import start_queue
from tests.support.ports import free_port

SERVICE = "/labelgrid.v1.QueueService/"
PROJECT = "crowd"
OPTIONS = [str(i) for i in range(10)]
DEPTH = 2  # leases a page holds: the item shown and one prefetched (main.ts DEPTH)
RUNS_EVERY = 3.0  # main.ts RUNS_EVERY_MS
RUNS_SPREAD = 2.0  # main.ts RUNS_SPREAD_MS
# What Chromium's fetch sends; the server then gzips unary replies, as it does for a browser.
UNARY_HEADERS = {
    "content-type": "application/proto",
    "connect-protocol-version": "1",
    "accept-encoding": "gzip, deflate, br, zstd",
}
STREAM_HEADERS = {
    "content-type": "application/connect+proto",
    "connect-protocol-version": "1",
    "accept-encoding": "gzip, deflate, br, zstd",
}
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- the simulated page ----------------------------------------------------------------------


class Failed(Exception):
    """An RPC that did not succeed (already counted by its code)."""


class Stats:
    """What one simulator process measured, kept only inside the measured window."""

    def __init__(self, measure_from: float, measure_to: float) -> None:
        self.t0, self.t1 = measure_from, measure_to
        self.clicks: list[float] = []  # click-to-next-item, seconds
        self.rtt: dict[str, list[float]] = {}
        self.errors: Counter[str] = Counter()
        self.errors_outside: Counter[str] = Counter()
        self.acked = 0  # labels acknowledged inside the window
        self.duplicates = 0
        self.acked_items: list[tuple[int, str]] = []  # every acknowledged (item, worker)
        self.progress_messages = 0
        self.progress_bytes = 0
        self.startup: list[float] = []  # page start to the first item on screen
        self.empty_clicks = 0  # clicks that found no prefetched item
        self.retried = 0  # requests retried after the server closed an idle connection

    def inside(self, t: float) -> bool:
        return self.t0 <= t < self.t1

    def error(self, method: str, code: str, t: float) -> None:
        (self.errors if self.inside(t) else self.errors_outside)[f"{method} {code}"] += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "clicks": self.clicks,
            "rtt": self.rtt,
            "errors": dict(self.errors),
            "errors_outside": dict(self.errors_outside),
            "acked": self.acked,
            "duplicates": self.duplicates,
            "acked_items": self.acked_items,
            "progress_messages": self.progress_messages,
            "progress_bytes": self.progress_bytes,
            "startup": self.startup,
            "empty_clicks": self.empty_clicks,
            "retried": self.retried,
        }


class Page:
    """One labeller's page: main.ts's start(), submit(), refill(), watchProgress() and
    lookForRuns(), with the same order of calls."""

    def __init__(
        self, base: str, worker: str, stats: Stats, pace: float, end: float, without: set[str]
    ) -> None:
        self.base = base
        self.worker = worker
        self.stats = stats
        self.pace = pace
        self.end = end
        self.without = without
        self.rng = random.Random(worker)
        self.held: list[Any] = []
        self.shown: Any = None
        self.arrived = asyncio.Event()
        self.chain = asyncio.Lock()  # labels, then refills, one after another
        self.refilling: asyncio.Task | None = None
        self.runs_at = 0.0
        self.runs_timer: asyncio.TimerHandle | None = None
        self.runs_known = -1  # main.ts runsKnown: the newest run id the last fetch saw
        self.last_run = -1  # the newest run id progress told of
        self.runs_asking = False  # a ListTrainingRuns in flight
        self.tasks: set[asyncio.Task] = set()
        self.stopping = False

    # -- Connect over HTTP/1.1 -----------------------------------------------------------

    async def call(self, method: str, request: Any, reply_type: Any) -> Any:
        import aiohttp

        t = time.monotonic()
        for attempt in (1, 2):
            try:
                async with self.http.post(
                    SERVICE + method,
                    data=request.SerializeToString(),
                    headers=UNARY_HEADERS,
                    timeout=aiohttp.ClientTimeout(total=60),
                ) as r:
                    body = await r.read()
                    if r.status != 200:
                        try:
                            code = json.loads(body).get("code", f"http_{r.status}")
                        except ValueError:
                            code = f"http_{r.status}"
                        self.stats.error(method, code, t)
                        raise Failed(code)
                break
            except aiohttp.ServerDisconnectedError:
                # uvicorn closes a keep-alive connection idle for 5 s; a request sent on it as
                # it closes is retried once on a new connection, as browsers do
                if attempt == 2 or self.stopping:
                    if not self.stopping:
                        self.stats.error(method, "ServerDisconnectedError", t)
                    raise Failed("ServerDisconnectedError") from None
                self.stats.retried += 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                if not self.stopping:
                    self.stats.error(method, type(exc).__name__, t)
                raise Failed(type(exc).__name__) from None
        if self.stats.inside(t):
            self.stats.rtt.setdefault(method, []).append(time.monotonic() - t)
        return reply_type.FromString(body)

    def _spawn(self, coro: Any) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    # -- the page ------------------------------------------------------------------------

    async def run(self, start_at: float) -> None:
        import aiohttp

        from labelgrid_proto.v1 import queue_pb2 as pb

        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        connector = aiohttp.TCPConnector(limit=6)  # a browser's connections per host
        async with aiohttp.ClientSession(self.base, connector=connector) as self.http:
            t = time.monotonic()
            try:
                await self.call(
                    "GetProject", pb.GetProjectRequest(project=PROJECT), pb.GetProjectResponse
                )
                mine = await self.call(
                    "ListLeases",
                    pb.ListLeasesRequest(project=PROJECT, worker_id=self.worker),
                    pb.ListLeasesResponse,
                )
                popped = []
                if DEPTH > len(mine.items):
                    popped = (
                        await self.call(
                            "Pop",
                            pb.PopRequest(
                                project=PROJECT, worker_id=self.worker, n=DEPTH - len(mine.items)
                            ),
                            pb.PopResponse,
                        )
                    ).items
                self.add_held([*mine.items, *popped])
            except Failed:
                pass
            if self.shown is not None:
                self.stats.startup.append(time.monotonic() - t)
            if "watch" not in self.without:
                self._spawn(self.watch())
            try:
                await self.label()
            finally:
                self.stopping = True
                async with self.chain:  # let the last label land
                    pass
                for task in list(self.tasks):
                    task.cancel()
                await asyncio.gather(*self.tasks, return_exceptions=True)
                if self.runs_timer is not None:
                    self.runs_timer.cancel()

    def add_held(self, items: Any) -> None:
        for item in items:
            if not any(h.id == item.id for h in self.held):
                self.held.append(item)
        if self.shown is None and self.held:
            self.shown = self.held[0]
            self.arrived.set()

    async def label(self) -> None:
        while True:
            if self.shown is None:
                self.arrived.clear()
                try:
                    await asyncio.wait_for(self.arrived.wait(), self.end - time.monotonic())
                except TimeoutError:
                    return
            think = self.rng.uniform(0.5, 1.5) * self.pace
            if time.monotonic() + think >= self.end:
                return
            await asyncio.sleep(think)
            click = time.monotonic()
            item = self.shown
            self.held = [h for h in self.held if h is not item]
            self.shown = self.held[0] if self.held else None
            self._spawn(self.submit(item))
            if self.shown is None:  # nothing prefetched: wait for the Submit's next item
                self.arrived.clear()
                if self.stats.inside(click):
                    self.stats.empty_clicks += 1
                try:
                    await asyncio.wait_for(self.arrived.wait(), max(0.0, self.end - click))
                except TimeoutError:
                    if self.stats.inside(click):  # still waiting at the end: at least this
                        self.stats.clicks.append(time.monotonic() - click)
                    return
            if self.stats.inside(click):
                self.stats.clicks.append(time.monotonic() - click)

    async def submit(self, item: Any) -> None:
        from labelgrid_proto.v1 import queue_pb2 as pb

        async with self.chain:
            request = pb.SubmitRequest(
                project=PROJECT,
                item_id=item.id,
                lease_token=item.lease_token,
                worker_id=self.worker,
                labels=[self.rng.choice(OPTIONS)],
                pop_next=True,
            )
            try:
                reply = await self.call("Submit", request, pb.SubmitResponse)
            except Failed:
                return
            done = time.monotonic()
            self.stats.acked_items.append((item.id, self.worker))
            if self.stats.inside(done):
                self.stats.acked += 1
                self.stats.duplicates += reply.duplicate
            if reply.HasField("next"):
                self.add_held([reply.next])
            await self.refill()

    async def refill(self) -> None:
        if self.refilling is not None:
            await self.refilling
            return
        want = DEPTH - len(self.held)
        if want <= 0:
            return
        self.refilling = self._spawn(self._pop(want))
        try:
            await self.refilling
        finally:
            self.refilling = None

    async def _pop(self, want: int) -> None:
        from labelgrid_proto.v1 import queue_pb2 as pb

        try:
            reply = await self.call(
                "Pop", pb.PopRequest(project=PROJECT, worker_id=self.worker, n=want), pb.PopResponse
            )
        except Failed:
            return
        self.add_held(reply.items)

    async def watch(self) -> None:
        """WatchProgress, a Connect server stream read envelope by envelope; reopened 2 s
        after it ends, as the page does."""
        import aiohttp

        from labelgrid_proto.v1 import queue_pb2 as pb

        request = pb.WatchProgressRequest(project=PROJECT, worker_id=self.worker)
        body = request.SerializeToString()
        envelope = b"\x00" + len(body).to_bytes(4, "big") + body
        while True:
            t = time.monotonic()
            try:
                async with self.http.post(
                    SERVICE + "WatchProgress",
                    data=envelope,
                    headers=STREAM_HEADERS,
                    timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
                ) as r:
                    if r.status != 200:
                        self.stats.error("WatchProgress", f"http_{r.status}", t)
                    else:
                        while True:
                            head = await r.content.readexactly(5)
                            n = int.from_bytes(head[1:], "big")
                            data = await r.content.readexactly(n)
                            if head[0] & 2:  # end of stream
                                error = json.loads(data or b"{}").get("error")
                                if error:
                                    self.stats.error("WatchProgress", error.get("code", "?"), t)
                                break
                            self.on_progress(pb.WatchProgressResponse.FromString(data).progress, n)
            except (aiohttp.ClientError, asyncio.IncompleteReadError) as exc:
                if not self.stopping:
                    self.stats.error("WatchProgress", type(exc).__name__, time.monotonic())
            await asyncio.sleep(2.0)

    def on_progress(self, progress: Any, size: int) -> None:
        now = time.monotonic()
        if self.stats.inside(now):
            self.stats.progress_messages += 1
            self.stats.progress_bytes += size
        if self.shown is None and not self.held and progress.available > 0:
            self._spawn(self.refill())
        self.last_run = progress.last_training_run_id
        if self.last_run != self.runs_known:  # a run was recorded since the last fetch
            self.look_for_runs()

    def look_for_runs(self) -> None:
        if self.runs_timer is not None or self.runs_asking or "runs" in self.without:
            return
        # a new run reaches every page at once: spread their fetches over RUNS_SPREAD
        spread = self.rng.uniform(0, RUNS_SPREAD) if self.runs_known >= 0 else 0.0
        wait = max(spread, self.runs_at + RUNS_EVERY - time.monotonic())
        self.runs_timer = asyncio.get_running_loop().call_later(wait, self._runs_due)

    def _runs_due(self) -> None:
        self.runs_timer = None
        if not self.stopping:
            self._spawn(self.fetch_runs())

    async def fetch_runs(self) -> None:
        from labelgrid_proto.v1 import queue_pb2 as pb

        self.runs_at = time.monotonic()
        wanted = self.last_run
        self.runs_asking = True
        try:
            await self.call(
                "ListTrainingRuns",
                pb.ListTrainingRunsRequest(project=PROJECT, newest=1),
                pb.ListTrainingRunsResponse,
            )
            self.runs_known = wanted
        except Failed:
            pass
        finally:
            self.runs_asking = False
        if self.last_run != self.runs_known and not self.stopping:
            self.look_for_runs()  # a run recorded while it asked


def _simulator(
    base: str,
    workers: list[str],
    go: mp.Queue,
    out: mp.Queue,
    pace: float,
    spread: float,
    without: list[str],
) -> None:
    """One simulator process: its share of the crowd as asyncio tasks, at a lower priority
    than the server (LABELGRID_CROWD_SIM_NICE, default 10): the labellers' browsers would be
    on their own machines."""
    os.nice(int(os.environ.get("LABELGRID_CROWD_SIM_NICE", "10")))

    async def run() -> None:
        start, measure_from, measure_to = go.get()
        stats = Stats(measure_from, measure_to)
        rng = random.Random(workers[0] if workers else 0)
        pages = [Page(base, w, stats, pace, measure_to, set(without)) for w in workers]
        await asyncio.gather(*(p.run(start + rng.uniform(0, spread)) for p in pages))
        out.put(stats.as_dict())

    asyncio.run(run())


# -- the server and the machine --------------------------------------------------------------


def cpu_seconds(pid: int, with_children: bool = False, stat: str = "") -> float:
    fields = Path(stat or f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if with_children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime (children reaped)
    return ticks / CLK_TCK


def tree_cpu_seconds(root: int) -> float:
    """CPU of a process tree (PostgreSQL: the postmaster, reaped backends, live backends)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry)] = int(fields[1])
    total = 0.0
    tree = {root}
    changed = True
    while changed:
        changed = False
        for pid, ppid in parents.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                changed = True
    for pid in tree:
        try:
            total += cpu_seconds(pid, with_children=True)
        except OSError:
            pass
    return total


def status_mb(pid: int, field: str) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def _wait_http(base: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(base + "/", timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _stored(url: str, pg: Any) -> dict[int, list[str]]:
    """item id -> the workers whose annotation the database holds."""
    if url.startswith("sqlite"):
        with sqlite3.connect(url.split("///", 1)[1]) as conn:
            rows = conn.execute("SELECT item_id, worker_id FROM annotations").fetchall()
    else:
        import psycopg

        with psycopg.connect(pg.dsn(url.rsplit("/", 1)[1])) as conn:
            rows = conn.execute("SELECT item_id, worker_id FROM annotations").fetchall()
    out: dict[int, list[str]] = {}
    for item, worker in rows:
        out.setdefault(item, []).append(worker)
    return out


def _record_runs(address: str, every: float, stop: threading.Event) -> None:
    """A trainer's RecordTrainingRun every `every` seconds (0: none) until `stop`."""
    from labelgrid.client import QueueClient
    from labelgrid_proto.v1 import queue_pb2 as pb

    if every <= 0:
        return
    with QueueClient(address, timeout=60) as client:
        version = 0
        while not stop.wait(every):
            version += 1
            run = pb.TrainingRun(
                status="ok", message="crowd", n_labels=version, model_version=version
            )
            client.record_training_run(PROJECT, run)


def run_step(
    backend: str, n: int, args: argparse.Namespace, tmp: Path, pg: Any, server: tuple[str, str]
) -> dict[str, Any]:
    """One N on a fresh server process and database."""
    from labelgrid.client import QueueClient

    name, root = server
    if backend == "sqlite":
        url = f"sqlite:///{tmp / f'crowd-{name}-{n}-{time.monotonic_ns()}.db'}"
    else:
        url = pg.new_database()
    web = f"127.0.0.1:{free_port()}"
    # 0: the service's own default (queue_service/db.py POOL_SIZE), not start_queue's 40
    env = {"LABELGRID_DB_POOL_SIZE": str(args.pool_size)}
    cwd = None
    if root != ".":
        here = Path(root).resolve()
        env["PYTHONPATH"] = f"{here}:{here / 'clients/python'}:{here / 'protos/python'}"
        cwd = here
    proc, address = start_queue(url, tmp, extra_args=("--web-address", web), extra_env=env, cwd=cwd)
    base = f"http://{web}"
    try:
        _wait_http(base)
        seconds = args.warmup + args.window + args.spread
        n_items = int(n * seconds / args.pace * 1.5) + 200
        with QueueClient(address, timeout=600) as client:
            client.create_project(PROJECT, OPTIONS)
            rng = np.random.default_rng(n)
            client.add_features(
                PROJECT, rng.integers(0, 17, size=(n_items, 64), dtype=np.uint8), progress=False
            )
        processes = args.sim_processes or max(1, min(4, -(-n // 400)))
        ctx = mp.get_context("spawn")
        go: mp.Queue = ctx.Queue()
        out: mp.Queue = ctx.Queue()
        names = [f"{name}-{n}-{i:05d}" for i in range(n)]
        sims = [
            ctx.Process(
                target=_simulator,
                args=(base, names[i::processes], go, out, args.pace, args.spread, args.without),
            )
            for i in range(processes)
        ]
        for p in sims:
            p.start()
        time.sleep(2.0)  # the simulators import aiohttp and the stubs
        start = time.monotonic() + 1.0
        measure_from = start + args.spread + args.warmup
        measure_to = measure_from + args.window
        for _ in sims:
            go.put((start, measure_from, measure_to))
        load_start = loadavg()
        trainer_stop = threading.Event()
        trainer = threading.Thread(
            target=_record_runs, args=(address, args.record_runs_every, trainer_stop), daemon=True
        )
        trainer.start()

        pg_root = pg.proc.pid if pg is not None and backend == "postgres" else None
        rss: list[float] = []
        time.sleep(max(0.0, measure_from - time.monotonic()))
        cpu0 = cpu_seconds(proc.pid)
        main0 = cpu_seconds(proc.pid, stat=f"/proc/{proc.pid}/task/{proc.pid}/stat")
        spy = None
        if args.py_spy:
            Path(args.py_spy).mkdir(parents=True, exist_ok=True)
            spy = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "py-spy"),
                    "record",
                    "--pid",
                    str(proc.pid),
                    "--duration",
                    str(int(args.window)),
                    "--rate",
                    "50",
                    "--nonblocking",
                    "--format",
                    "raw",
                    "--output",
                    str(Path(args.py_spy) / f"{backend}-{name}-{n}.txt"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        db0 = tree_cpu_seconds(pg_root) if pg_root else None
        wall0 = time.monotonic()
        while time.monotonic() < measure_to - 0.5:
            rss.append(status_mb(proc.pid, "VmRSS"))
            time.sleep(0.5)
        time.sleep(max(0.0, measure_to - time.monotonic()))
        cpu1 = cpu_seconds(proc.pid)
        main1 = cpu_seconds(proc.pid, stat=f"/proc/{proc.pid}/task/{proc.pid}/stat")
        db1 = tree_cpu_seconds(pg_root) if pg_root else None
        wall = time.monotonic() - wall0
        fds = len(os.listdir(f"/proc/{proc.pid}/fd"))
        threads = int(
            next(x for x in open(f"/proc/{proc.pid}/status") if x.startswith("Threads:")).split()[1]
        )
        hwm = status_mb(proc.pid, "VmHWM")
        results = [out.get(timeout=300) for _ in sims]
        trainer_stop.set()
        trainer.join(30)
        if spy is not None:
            spy.wait(60)
        for p in sims:
            p.join(60)
        load_end = loadavg()
    finally:
        proc.terminate()
        proc.wait(60)

    clicks = [x for r in results for x in r["clicks"]]
    rtt: dict[str, list[float]] = {}
    for r in results:
        for method, values in r["rtt"].items():
            rtt.setdefault(method, []).extend(values)
    errors: Counter[str] = Counter()
    errors_outside: Counter[str] = Counter()
    for r in results:
        errors.update(r["errors"])
        errors_outside.update(r["errors_outside"])
    acked = sum(r["acked"] for r in results)
    acked_items = [tuple(x) for r in results for x in r["acked_items"]]
    stored = _stored(url, pg)
    lost = sum(1 for item, worker in acked_items if worker not in stored.get(item, []))
    twice = sum(1 for workers in stored.values() if len(workers) > 1)
    labels_per_s = acked / wall
    offered = n / args.pace
    click = percentiles(clicks)
    submit = percentiles(rtt.get("Submit", []))
    cpu_ms = (cpu1 - cpu0) * 1000 / acked if acked else None
    result = {
        "server": name,
        "labellers": n,
        "items": n_items,
        "simulator_processes": processes,
        "window_s": round(wall, 2),
        "labels": acked,
        "labels_per_s": round(labels_per_s, 1),
        "offered_labels_per_s": round(offered, 1),
        "click_to_next": click,
        "clicks_without_prefetched_item": sum(r["empty_clicks"] for r in results),
        "requests_retried_after_idle_close": sum(r["retried"] for r in results),
        "rtt": {m: percentiles(v) for m, v in sorted(rtt.items())},
        "startup_to_first_item": percentiles([x for r in results for x in r["startup"]]),
        "server_cpu_ms_per_label": round(cpu_ms, 3) if cpu_ms is not None else None,
        "server_cpu_share": round((cpu1 - cpu0) / wall, 3),
        # at this CPU per label, the labellers one whole core would serve (a projection)
        "labellers_per_server_core": round(1000 / cpu_ms * args.pace) if cpu_ms else None,
        # the event loop's thread; the rest is aiosqlite's and gRPC's threads
        "server_main_thread_cpu_share": round((main1 - main0) / wall, 3),
        "database_cpu_ms_per_label": round((db1 - db0) * 1000 / acked, 3)
        if db0 is not None and acked
        else None,
        "server_rss_mb": {"max": round(max(rss, default=0.0), 1), "hwm": round(hwm, 1)},
        "server_open_fds": fds,
        "server_threads": threads,
        "progress_messages_per_s": round(sum(r["progress_messages"] for r in results) / wall, 1),
        "progress_mb_per_s": round(sum(r["progress_bytes"] for r in results) / wall / 2**20, 2),
        "errors": dict(sorted(errors.items())),
        "errors_outside_window": dict(sorted(errors_outside.items())),
        "acknowledged_total": len(acked_items),
        "acknowledged_lost": lost,
        "items_labelled_twice": twice,
        "load_average": {"start": load_start, "end": load_end},
    }
    result["keeps_up"] = labels_per_s >= 0.75 * offered
    result["meets_click_target"] = bool(
        click["p99_ms"] is not None
        and click["p99_ms"] <= args.target_ms
        and not errors
        and result["keeps_up"]
    )
    result["meets_submit_target"] = bool(
        result["meets_click_target"]
        and submit["p99_ms"] is not None
        and submit["p99_ms"] <= args.target_ms
    )
    return result


def summarise(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """Largest N meeting each target (every run of that N must meet it)."""
    out: dict[str, Any] = {}
    for key in ("meets_click_target", "meets_submit_target"):
        by_n: dict[int, list[bool]] = {}
        for s in steps:
            by_n.setdefault(s["labellers"], []).append(s[key])
        ok = [n for n, v in by_n.items() if all(v)]
        best = max(ok, default=None)
        out[key.replace("meets_", "largest_n_")] = best
        at = [s for s in steps if s["labellers"] == best]
        if at:
            out[key.replace("meets_", "at_largest_")] = {
                "server_rss_mb_max": max(s["server_rss_mb"]["max"] for s in at),
                "server_cpu_ms_per_label": [s["server_cpu_ms_per_label"] for s in at],
                "click_p99_ms": [s["click_to_next"]["p99_ms"] for s in at],
                "submit_p99_ms": [s["rtt"].get("Submit", {}).get("p99_ms") for s in at],
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--steps", default="100,250,500,750,1000,1250,1500,2000")
    parser.add_argument("--pace", type=float, default=2.0, help="mean seconds per label")
    parser.add_argument("--spread", type=float, default=5.0, help="seconds over which pages open")
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--window", type=float, default=30.0, help="measured seconds per step")
    parser.add_argument("--target-ms", type=float, default=100.0)
    parser.add_argument(
        "--record-runs-every",
        type=float,
        default=30.0,
        help="seconds between the stand-in trainer's RecordTrainingRun calls (0: none)",
    )
    parser.add_argument(
        "--pool-size", type=int, default=0, help="LABELGRID_DB_POOL_SIZE (0: the default)"
    )
    parser.add_argument("--sim-processes", type=int, default=0, help="0: one per 400 labellers")
    parser.add_argument(
        "--without",
        default="",
        help="leave out parts of the page to attribute cost: watch, runs (comma-separated)",
    )
    parser.add_argument(
        "--servers",
        default="",
        help="NAME=SOURCE_TREE,...: run each step on each tree's server, alternating order",
    )
    parser.add_argument(
        "--py-spy", default="", help="folder: record the server with py-spy in each window"
    )
    parser.add_argument("--keep-going", action="store_true", help="do not stop at a failed N")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="", help="result name in bench/results/")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.warmup, args.window, args.spread = "5,15", 2.0, 5.0, 1.0
        args.pace = min(args.pace, 1.0)
        args.record_runs_every = min(args.record_runs_every, 3.0) or 0.0
        args.keep_going = True
    args.without = [w for w in args.without.split(",") if w]
    servers = [tuple(s.split("=", 1)) for s in args.servers.split(",") if s] or [("this", ".")]
    steps = [int(x) for x in args.steps.split(",")]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        pg = None
        try:
            for backend in args.backends.split(","):
                if backend == "postgres" and pg is None:
                    from tests.support.postgres import Postgres

                    pg = Postgres().start()
                runs: list[dict[str, Any]] = []
                failed = {s[0]: False for s in servers}
                for i, n in enumerate(steps):
                    order = servers if i % 2 == 0 else servers[::-1]
                    for server in order:
                        if failed[server[0]] and not args.keep_going:
                            continue
                        r = run_step(backend, n, args, tmp, pg, server)
                        runs.append(r)
                        failed[server[0]] = not r["meets_click_target"]
                        print(
                            f"{backend:8} {server[0]:6} N={n:5} labels/s {r['labels_per_s']:7.1f}"
                            f" click p99 {r['click_to_next']['p99_ms']} ms"
                            f" submit p50/p99 {r['rtt'].get('Submit', {}).get('p50_ms')}"
                            f"/{r['rtt'].get('Submit', {}).get('p99_ms')} ms"
                            f" cpu/label {r['server_cpu_ms_per_label']} ms"
                            f" (db {r['database_cpu_ms_per_label']})"
                            f" rss {r['server_rss_mb']['max']} MB fds {r['server_open_fds']}"
                            f" errors {r['errors']}",
                            flush=True,
                        )
                    if all(failed.values()) and not args.keep_going:
                        break
                results[backend] = {
                    "steps": runs,
                    "summary": {
                        name: summarise([r for r in runs if r["server"] == name])
                        for name, _ in servers
                    },
                }
        finally:
            if pg is not None:
                pg.cleanup()
    name = args.out or ("crowd-quick" if args.quick else "crowd")
    path = write(
        name,
        {
            "command": "python -m bench.crowd " + " ".join(sys.argv[1:]),
            "conditions": (
                "one server process and the simulator processes (at nice "
                f"{os.environ.get('LABELGRID_CROWD_SIM_NICE', '10')}) on the same 2 cores, "
                "shared with other engineers' jobs (see load_average per step); loopback "
                "HTTP/1.1; auth off"
            ),
            "parameters": {k: v for k, v in vars(args).items()},
            "servers": {
                n: {"tree": str(Path(root).resolve()), "commit": _commit(root)}
                for n, root in servers
            },
            "backends": results,
        },
    )
    print(json.dumps({b: r["summary"] for b, r in results.items()}, indent=2))
    print(f"wrote {path}")


def _commit(root: str) -> str:
    try:
        return subprocess.run(
            ["git", "-C", root, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


if __name__ == "__main__":
    main()
