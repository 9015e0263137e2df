"""Two queue-service replicas on one PostgreSQL: a change made through either reaches the
other's WatchProgress streams by LISTEN/NOTIFY (queue_service/store/changes.py), and still does
after the listener's connection is killed.

The replicas poll only every 60 s (LABELGRID_FOLLOW_POLL_SECONDS), and every wait here gives up
after 20 s, so nothing passes by the poll.
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator

import asyncpg
import grpc
import numpy as np
import pytest

from labelgrid import QueueClient
from labelgrid_proto.v1 import queue_pb2, queue_pb2_grpc
from queue_service.store.changes import PostgresFeed
from queue_service.store.sql.postgres import CHANGES_CHANNEL, LISTENER_APPLICATION
from tests.support.servers import ServiceProcess
from tests.support.snapshot import query

POLL = "60"
WAIT = 20.0  # well under the poll


class Watch:
    """A WatchProgress stream read by a thread; every progress it delivers lands in `seen`."""

    def __init__(self, address: str, project: str) -> None:
        self.channel = grpc.insecure_channel(address)
        stub = queue_pb2_grpc.QueueServiceStub(self.channel)
        self.call = stub.WatchProgress(queue_pb2.WatchProgressRequest(project=project))
        self.seen: queue.Queue[queue_pb2.Progress] = queue.Queue()
        self.error: grpc.RpcError | None = None
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for reply in self.call:
                self.seen.put(reply.progress)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                self.error = exc

    def until(self, predicate: Callable[[queue_pb2.Progress], bool], what: str) -> None:
        """Wait (at most WAIT seconds) for a delivered progress that satisfies `predicate`."""
        deadline = time.monotonic() + WAIT
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no progress with {what} within {WAIT} s (error: {self.error})"
            try:
                if predicate(self.seen.get(timeout=left)):
                    return
            except queue.Empty:
                continue

    def close(self) -> None:
        self.call.cancel()
        self.thread.join(10)
        self.channel.close()
        assert self.error is None, self.error


@pytest.fixture
def replicas(pg) -> Iterator[tuple[ServiceProcess, ServiceProcess, str]]:
    url = pg.new_database()
    env = {"LABELGRID_FOLLOW_POLL_SECONDS": POLL}
    a = ServiceProcess(url, env).start()
    b = ServiceProcess(url, env).start()
    try:
        yield a, b, url
    finally:
        for proc in (a, b):
            assert proc.terminate() == 0, proc.logs()[-3000:]
        for proc in (a, b):
            assert _unexpected_tracebacks(proc.logs()) == []


def _unexpected_tracebacks(logs: str) -> list[str]:
    """Log lines with a traceback, except calls refused as UNAVAILABLE (the first call on a
    pooled connection PostgreSQL's restart closed: the service reports it and drops it)."""
    found = []
    for line in logs.splitlines():
        if "Traceback" not in line:
            continue
        entry = json.loads(line) if line.startswith("{") else {}
        if not (entry.get("msg") == "rpc failed" and entry.get("code") == "UNAVAILABLE"):
            found.append(line[:3000])
    return found


def _label(address: str, project: str, worker: str) -> None:
    with QueueClient(address, retries=0) as client:
        [item] = client.pop(project, worker)
        client.submit(project, item, "x", worker)


def _each_sees_the_other(a: ServiceProcess, b: ServiceProcess, project: str, done: int) -> int:
    """Label once through each replica; both replicas' watchers see both labels."""
    watch_a, watch_b = Watch(a.address, project), Watch(b.address, project)
    try:
        watch_a.until(lambda p: p.labelled == done, f"{done} labelled (first reply, A)")
        watch_b.until(lambda p: p.labelled == done, f"{done} labelled (first reply, B)")
        _label(a.address, project, "alice")
        watch_b.until(lambda p: p.labelled == done + 1, "A's label, on B")
        _label(b.address, project, "bob")
        watch_a.until(lambda p: p.labelled == done + 2, "B's label, on A")
        watch_b.until(lambda p: p.labelled == done + 2, "B's own label, on B")
    finally:
        watch_a.close()
        watch_b.close()
    return done + 2


def _listeners(url: str) -> list[tuple[int, str]]:
    return query(
        url,
        "SELECT pid, query FROM pg_stat_activity WHERE datname = current_database() "
        f"AND application_name LIKE '{LISTENER_APPLICATION}%'",
    )


def _setup(url: str, address: str, project: str) -> None:
    with QueueClient(address) as client:
        client.create_project(project, ["x"])
        client.add_features(project, np.arange(50, dtype=np.int32).reshape(-1, 1))


@pytest.mark.postgres
def test_two_replicas_deliver_each_others_changes(replicas, project_name: str) -> None:
    a, b, url = replicas
    _setup(url, a.address, project_name)
    assert len(_listeners(url)) == 2  # one dedicated connection per replica
    _each_sees_the_other(a, b, project_name, 0)


def _listening_again(url: str, old: set[int]) -> None:
    """Wait until both replicas listen again, on new backends (LISTEN has run on them)."""
    deadline = time.monotonic() + WAIT
    while True:
        try:
            back = [(pid, q) for pid, q in _listeners(url) if pid not in old and q]
        except Exception:  # the server is still starting
            back = []
        if len(back) == 2:
            return
        assert time.monotonic() < deadline, "the replicas' listeners did not come back"
        time.sleep(0.1)


@pytest.mark.postgres
def test_listener_recovers_after_its_connection_is_killed(replicas, project_name: str) -> None:
    a, b, url = replicas
    _setup(url, a.address, project_name)
    done = _each_sees_the_other(a, b, project_name, 0)

    killed = {pid for pid, _ in _listeners(url)}
    assert len(killed) == 2
    query(url, f"SELECT pg_terminate_backend(pid) FROM unnest(ARRAY{sorted(killed)}) AS pid")
    _listening_again(url, killed)
    _each_sees_the_other(a, b, project_name, done)


@pytest.mark.postgres
def test_listener_recovers_after_a_postgres_restart(pg, replicas, project_name: str) -> None:
    a, b, url = replicas
    _setup(url, a.address, project_name)
    old = {pid for pid, _ in _listeners(url)}
    pg.stop("fast")
    pg.start()
    _listening_again(url, old)
    for proc in (a, b):  # the first call on a stale pooled connection is UNAVAILABLE: retried
        with QueueClient(proc.address, retries=5) as client:
            client.progress(project_name)
    _each_sees_the_other(a, b, project_name, 0)


@pytest.mark.postgres
def test_feed_coalesces_bursts_and_drops_its_own_echo(pg) -> None:
    """In one process: a burst of 300 changes to one project costs a few NOTIFYs (one per
    coalescing interval), the other feed hears the last of them, the sender hears none."""
    url = pg.new_database()
    args = {"dsn": url.replace("postgresql+asyncpg", "postgresql")}

    async def run() -> tuple[list[str], list[int], list[int], float]:
        counted: list[str] = []
        raw = await asyncpg.connect(**args)
        await raw.add_listener(CHANGES_CHANNEL, lambda *a: counted.append(a[3]))
        heard_a: list[int] = []
        heard_b: list[int] = []
        a, b = PostgresFeed(args), PostgresFeed(args)
        await a.start(heard_a.append, lambda: None)
        await b.start(heard_b.append, lambda: None)
        assert a.connected.is_set() and b.connected.is_set()
        started = time.monotonic()
        for i in range(300):
            a.publish(7)
            if i % 10 == 0:
                await asyncio.sleep(0.01)
        elapsed = time.monotonic() - started
        for _ in range(100):
            if a.sent and not a._pending and heard_b and len(counted) == a.sent:
                await asyncio.sleep(0.2)  # and nothing more arrives
                break
            await asyncio.sleep(0.05)
        await a.close()
        await b.close()
        await raw.close()
        return counted, heard_a, heard_b, elapsed

    counted, heard_a, heard_b, elapsed = asyncio.run(run())
    assert counted and set(counted) == {"7"}
    assert len(counted) <= elapsed / 0.05 + 3, (len(counted), elapsed)
    assert len(counted) < 300 / 3
    assert heard_a == []  # its own notifications are not news to it
    assert heard_b == [7] * len(counted)
