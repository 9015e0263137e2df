"""Faults with real processes and real databases: crashes, a database outage, a trainer kill.

What must hold: every acknowledged submit is in the database afterwards, nothing is
duplicated, abandoned leases come back, and priorities never go back to an older model.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from labelgrid import QueueClient
from labelgrid.trainer_client import TrainerClient
from tests.support.ports import free_port
from tests.support.servers import ServiceProcess, TrainerProcess
from tests.support.snapshot import query


class StatusCounter(grpc.UnaryUnaryClientInterceptor):
    """Counts the status of every call attempt, the client's own retries included."""

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()
        self.lock = threading.Lock()

    def intercept_unary_unary(self, continuation, details, request):
        outcome = continuation(details, request)
        code = outcome.code()
        with self.lock:
            self.seen[code.name if code is not None else "NONE"] += 1
        return outcome


# What a labeller may see while the database or the service goes away: retry statuses, and a
# stale lease refused after an outage longer than the lease (the item went to someone else).
EXPECTED = {"OK", "UNAVAILABLE", "DEADLINE_EXCEEDED", "ABORTED", "FAILED_PRECONDITION"}


class Labellers:
    """N threads labelling until stopped; only acknowledged submits are recorded, and every
    status any call got is counted (`statuses`); a thread never dies with an exception:
    anything unexpected is kept in `errors` for the test to assert on."""

    def __init__(
        self, address: Callable[[], str], project: str, n: int, keep_going: bool = False
    ) -> None:
        self.address = address
        self.project = project
        self.acked: list[tuple[int, str]] = []
        self.unavailable = 0
        self.counter = StatusCounter()
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.keep_going = keep_going
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(f"w{i}",)) for i in range(n)]

    @property
    def statuses(self) -> Counter[str]:
        return self.counter.seen

    def _client(self) -> QueueClient:
        channel = grpc.intercept_channel(grpc.insecure_channel(self.address()), self.counter)
        return QueueClient(self.address(), retries=8, timeout=10, channel=channel)

    def _run(self, worker: str) -> None:
        try:
            self._label(worker)
        except Exception as exc:  # kept for the test, which fails on it
            with self.lock:
                self.errors.append(f"{worker}: {exc!r}")

    def _label(self, worker: str) -> None:
        while not self.stop.is_set():
            try:
                with self._client() as client:
                    while not self.stop.is_set():
                        items = client.pop(self.project, worker)
                        if not items:
                            return
                        client.submit(self.project, items[0], "x", worker)
                        with self.lock:
                            self.acked.append((items[0].id, worker))
            except grpc.RpcError as exc:
                if exc.code().name not in EXPECTED:
                    raise
                with self.lock:
                    self.unavailable += exc.code() != grpc.StatusCode.FAILED_PRECONDITION
                if not self.keep_going:
                    return
                time.sleep(0.2)

    def check(self) -> None:
        """No thread failed, and no call got a status outside EXPECTED (INTERNAL above all)."""
        assert self.errors == []
        assert self.statuses["OK"] > 0
        assert set(self.statuses) <= EXPECTED, dict(self.statuses)

    def __enter__(self) -> Labellers:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)


def _health(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        try:
            return (
                health_pb2_grpc.HealthStub(channel)
                .Check(health_pb2.HealthCheckRequest(), timeout=2)
                .status
            )
        except grpc.RpcError:
            return -1


def _wait(predicate: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_kill_9_while_twenty_labellers_submit(database_url: str, project_name: str) -> None:
    proc = ServiceProcess(database_url).start()
    with QueueClient(proc.address) as client:
        client.create_project(project_name, ["x"], lease_seconds=2)
        ids = client.add_features(project_name, np.arange(3000, dtype=np.int32).reshape(-1, 1))
    address = proc.address
    with Labellers(lambda: address, project_name, 20) as crowd:
        _wait(lambda: len(crowd.acked) >= 100, 60, "labels before the crash")
        proc.kill()  # SIGKILL: no chance to finish anything
    crowd.check()
    acked = list(crowd.acked)
    assert 100 <= len(acked) < len(ids)

    restarted = ServiceProcess(database_url).start()
    try:
        rows = query(database_url, "SELECT item_id, worker_id FROM annotations")
        assert set(acked) <= set(rows), "an acknowledged submit was lost"
        assert len({item for item, _ in rows}) == len(rows), "an item was labelled twice"
        assert query(database_url, "SELECT COUNT(*) FROM items WHERE status = 2") == [(len(rows),)]
        time.sleep(2.2)  # the leases the crash abandoned expire ...
        with QueueClient(restarted.address) as client:
            remaining: list[int] = []
            while items := client.pop(project_name, f"after{len(remaining)}", n=500):
                remaining += [i.id for i in items]
            # ... and every item without a label can be leased again
            assert sorted(remaining) == sorted(set(ids) - {item for item, _ in rows})
    finally:
        restarted.kill()


@pytest.mark.parametrize("backend", ["postgres"])
def test_database_outage_and_recovery(pg, database_url: str, project_name: str) -> None:
    proc = ServiceProcess(database_url, env={"LABELGRID_HEALTH_INTERVAL": "0.3"}).start()
    try:
        with QueueClient(proc.address) as client:
            client.create_project(project_name, ["x"], lease_seconds=3)
            ids = client.add_features(project_name, np.arange(4000, dtype=np.int32).reshape(-1, 1))
        serving = health_pb2.HealthCheckResponse.SERVING
        not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
        with Labellers(lambda: proc.address, project_name, 4, keep_going=True) as crowd:
            _wait(lambda: len(crowd.acked) >= 50, 60, "labels before the outage")
            pg.stop("fast")
            try:
                _wait(lambda: _health(proc.address) == not_serving, 20, "NOT_SERVING")
                with (
                    QueueClient(proc.address, retries=0, timeout=10) as direct,
                    pytest.raises(grpc.RpcError) as err,
                ):
                    direct.progress(project_name)
                assert err.value.code() == grpc.StatusCode.UNAVAILABLE
                assert "database unavailable" in err.value.details()
            finally:
                pg.start()
            _wait(lambda: _health(proc.address) == serving, 30, "SERVING again")
            before = len(crowd.acked)
            _wait(lambda: len(crowd.acked) >= before + 50, 60, "labelling to resume")
        crowd.check()
        assert crowd.statuses["UNAVAILABLE"] > 0, dict(crowd.statuses)  # the outage was seen
        acked = list(crowd.acked)
        rows = query(database_url, "SELECT item_id, worker_id FROM annotations")
        assert set(acked) <= set(rows), "an acknowledged label was lost"
        assert len({item for item, _ in rows}) == len(rows)
        assert len(rows) <= len(ids)
        assert crowd.unavailable > 0 or len(acked) > 100
        # the service logged the outage as one line per refused call, not a traceback each
        logged = [json.loads(line) for line in proc.logs().splitlines() if line.startswith("{")]
        unavailable = [e for e in logged if e.get("msg") == "rpc unavailable"]
        assert unavailable and all(e["why"] and "exc" not in e for e in unavailable)
        assert not any(e.get("msg") == "rpc failed" for e in logged)
    finally:
        proc.kill()


@pytest.mark.parametrize("backend", ["postgres"])
def test_health_stays_serving_while_the_pool_is_busy(database_url: str, project_name: str) -> None:
    """A pool taken up by slow calls is load, not an outage: health must stay SERVING (the
    30-minute soak saw it flap 96 times while 200 labellers kept the pool busy)."""
    import psycopg
    from sqlalchemy.engine import make_url

    proc = ServiceProcess(
        database_url,
        env={"LABELGRID_HEALTH_INTERVAL": "0.2", "LABELGRID_DB_POOL_SIZE": "1"},
    ).start()
    dsn = make_url(database_url).set(drivername="postgresql")
    try:
        with QueueClient(proc.address) as client:
            client.create_project(project_name, ["a"])
            client.add_features(project_name, np.zeros((5, 2), np.float32), progress=False)
        serving = health_pb2.HealthCheckResponse.SERVING
        assert _health(proc.address) == serving
        with psycopg.connect(dsn.render_as_string(hide_password=False)) as locker:
            locker.execute("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")  # held until commit
            waiting: list[int] = []

            def read() -> None:
                with QueueClient(proc.address, timeout=60) as c:
                    waiting.append(c.progress(project_name).total)

            readers = [threading.Thread(target=read) for _ in range(4)]
            for t in readers:
                t.start()
            # the readers hold both pooled connections (1 + overflow 1) and wait on the lock
            deadline = time.monotonic() + 3
            seen = set()
            while time.monotonic() < deadline:
                seen.add(_health(proc.address))
                time.sleep(0.1)
            assert not waiting, "the readers should still be blocked by the lock"
            assert seen == {serving}, seen
            locker.commit()
        for t in readers:
            t.join(60)
        assert waiting == [5, 5, 5, 5]
    finally:
        proc.kill()


def test_trainer_killed_mid_run_resumes_and_never_goes_back(
    service: ServiceProcess, database_url: str, project_name: str
) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 8)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    truth = {X[i].tobytes(): str(y[i]) for i in range(len(X))}
    with QueueClient(service.address) as client:
        client.create_project(project_name, ["0", "1"])
        client.add_features(project_name, X)

    def label(n: int) -> None:
        with QueueClient(service.address) as client:
            for item in client.pop(project_name, "w", n=n):
                client.submit(project_name, item, truth[item.input.tobytes()], "w")

    env = {"LABELGRID_TRAINER_INTERVAL_SECONDS": "0.2", "LABELGRID_TRAINER_INTERVAL_N_LABELS": "5"}

    def start_trainer() -> TrainerProcess:
        proc = TrainerProcess(service.address, env=env)
        proc.command = lambda: [
            *TrainerProcess.command(proc),
            "--job",  # type: ignore[method-assign]
            f"{project_name}=sklearn.ensemble:RandomForestClassifier",
        ]
        return proc.start()

    label(40)
    trainer = start_trainer()
    with QueueClient(service.address) as client:
        _wait(lambda: client.get_project(project_name).model_version >= 1, 60, "a version")
        label(10)
        _wait(lambda: client.get_project(project_name).model_version >= 2, 60, "two versions")
        label(10)
        time.sleep(0.25)
        trainer.kill()  # possibly mid-run
        version_at_kill = client.get_project(project_name).model_version
        label(10)
        trainer = start_trainer()
        try:
            _wait(
                lambda: client.get_project(project_name).model_version > version_at_kill,
                60,
                "the restarted trainer to push a newer version",
            )
            with TrainerClient(trainer.address) as tc:
                _wait(lambda: tc.status(project_name).runs >= 1, 30, "a run after restart")
                assert tc.status(project_name).last_run.n_labels >= 70  # read all labels again
        finally:
            trainer.kill()
        versions = [
            v
            for (v,) in query(
                database_url,
                f"SELECT r.model_version FROM training_runs r JOIN projects p ON "
                f"p.id = r.project_id WHERE p.name = '{project_name}' AND r.model_version > 0 "
                "ORDER BY r.id",
            )
        ]
        assert versions == sorted(versions) and versions[-1] > version_at_kill
        with pytest.raises(grpc.RpcError) as err:  # an old model's priorities are refused
            client.update_priorities(project_name, [1], [1.0], model_version=1)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_trainer_job_outlives_a_queue_service_restart(database_url: str, project_name: str) -> None:
    """kill -9 of the queue service for longer than the trainer's client retries: the job
    keeps running (it used to end as "failed" and never re-rank again) and, once the queue is
    back on its address, pushes a newer model version."""
    port = free_port()

    def start_queue() -> ServiceProcess:
        proc = ServiceProcess(database_url)
        command = ServiceProcess.command(proc)
        command[command.index("127.0.0.1:0")] = f"127.0.0.1:{port}"
        proc.command = lambda: command  # type: ignore[method-assign]
        return proc.start()

    rng = np.random.default_rng(1)
    X = rng.normal(size=(600, 4)).astype(np.float32)
    truth = {X[i].tobytes(): str(int(X[i, 0] > 0)) for i in range(len(X))}
    queue = start_queue()
    address = queue.address

    def label(n: int) -> None:
        with QueueClient(address) as client:
            for item in client.pop(project_name, "w", n=n):
                client.submit(project_name, item, truth[item.input.tobytes()], "w")

    with QueueClient(address) as client:
        client.create_project(project_name, ["0", "1"])
        client.add_features(project_name, X)
    label(40)
    env = {"LABELGRID_TRAINER_INTERVAL_SECONDS": "0.2", "LABELGRID_TRAINER_INTERVAL_N_LABELS": "5"}
    trainer = TrainerProcess(address, env=env)
    trainer.command = lambda: [  # type: ignore[method-assign]
        *TrainerProcess.command(trainer),
        "--job",
        f"{project_name}=sklearn.linear_model:LogisticRegression",
    ]
    trainer.start()
    try:
        with QueueClient(address) as client:
            _wait(lambda: client.get_project(project_name).model_version >= 1, 60, "a version")
        queue.kill()
        time.sleep(8)  # longer than the client's retries (about 3 s)
        queue = start_queue()
        with QueueClient(address) as client:
            version = client.get_project(project_name).model_version
            label(10)
            _wait(
                lambda: client.get_project(project_name).model_version > version,
                60,
                "a newer version after the restart",
            )
        with TrainerClient(trainer.address) as tc:
            assert tc.status(project_name).state == "running"
        assert "queue service unavailable; the job waits" in trainer.logs()
    finally:
        trainer.kill()
        queue.kill()
