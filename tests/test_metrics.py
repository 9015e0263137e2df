"""Prometheus metrics, scraped from the real endpoints after real RPCs and parsed as the
text format Prometheus reads."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable

import grpc
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from labelgrid import QueueClient
from labelgrid.trainer_client import TrainerClient
from tests.support.servers import ServiceProcess, TrainerProcess

Samples = dict[tuple[str, frozenset], float]


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        assert reply.headers["Content-Type"].startswith("text/plain")
        text = reply.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def _wait(predicate: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_queue_service_metrics(database_url: str, project_name: str) -> None:
    env = {"LABELGRID_METRICS_ADDRESS": "127.0.0.1:0", "LABELGRID_METRICS_INTERVAL": "0.2"}
    proc = ServiceProcess(database_url, env=env).start()
    try:
        assert proc.metrics_port
        with QueueClient(proc.address, retries=0) as client:
            client.create_project(project_name, ["a", "b"])
            client.add_features(project_name, np.zeros((10, 3), np.float32))
            items = [client.pop(project_name, "w")[0] for _ in range(3)]
            for item in items[:2]:
                client.submit(project_name, item, "a", "w")
            with pytest.raises(grpc.RpcError):
                client.pop("no-such-project", "w")

        def rpc(method: str, code: str, samples: Samples) -> float | None:
            return value(
                samples,
                "labelgrid_rpc_requests_total",
                service="QueueService",
                method=method,
                code=code,
            )

        def settled() -> bool:
            s = scrape(proc.metrics_port)
            return value(s, "labelgrid_queue_items_labelled", project=project_name) == 2

        _wait(settled, 20, "the project gauges")
        s = scrape(proc.metrics_port)
        assert rpc("Pop", "OK", s) == 3
        assert rpc("Pop", "NOT_FOUND", s) == 1
        assert rpc("Submit", "OK", s) == 2
        assert rpc("AddFeatures", "OK", s) == 1
        assert rpc("Undo", "OK", s) is None  # never called
        latency = {"service": "QueueService", "method": "Pop", "code": "OK"}
        assert value(s, "labelgrid_rpc_duration_seconds_count", **latency) == 3
        assert value(s, "labelgrid_rpc_duration_seconds_sum", **latency) > 0
        assert value(s, "labelgrid_rpc_duration_seconds_bucket", **latency, le="+Inf") == 3
        assert value(s, "labelgrid_queue_leases_live", project=project_name) == 1
        assert value(s, "labelgrid_queue_items_unlabelled", project=project_name) == 8
        assert value(s, "labelgrid_database_up") == 1
        # the backend's default pool (queue_service/db.py POOL_SIZE)
        assert value(s, "labelgrid_db_pool_size") == (5 if "sqlite" in database_url else 10)
        in_use = value(s, "labelgrid_db_pool_connections", state="in_use")
        idle = value(s, "labelgrid_db_pool_connections", state="idle")
        assert in_use is not None and idle is not None and idle >= 1
        assert value(s, "labelgrid_process_resident_memory_bytes") > 10e6
        assert value(s, "labelgrid_process_open_fds") > 0
        assert all(name.startswith("labelgrid_") for name, _ in s)
    finally:
        proc.kill()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_metrics_are_off_by_default(service: ServiceProcess) -> None:
    assert service.metrics_port == 0
    assert '"metrics_port": 0' in service.logs()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_trainer_metrics(service: ServiceProcess, project_name: str) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4)).astype(np.float32)
    with QueueClient(service.address) as client:
        client.create_project(project_name, ["0", "1"])
        client.add_features(project_name, X)
        for item in client.pop(project_name, "w", n=60):
            client.submit(project_name, item, str(int(item.input[0] > 0)), "w")
    trainer = TrainerProcess(
        service.address, env={"LABELGRID_TRAINER_METRICS_ADDRESS": "127.0.0.1:0"}
    ).start()
    try:
        assert trainer.metrics_port
        with TrainerClient(trainer.address) as tc:
            tc.start_job(
                project_name, "sklearn.linear_model:LogisticRegression", interval_seconds=3600
            )
            run = tc.retrain_now(project_name, timeout=120)
            assert run.status == "ok"
            with pytest.raises(grpc.RpcError):
                tc.status("no-such-project")
        s = scrape(trainer.metrics_port)
        ok = {"project": project_name, "status": "ok"}
        runs = value(s, "labelgrid_training_runs_total", **ok)
        assert runs is not None and runs >= 1
        assert value(s, "labelgrid_training_run_duration_seconds_count", **ok) == runs
        assert value(s, "labelgrid_training_run_duration_seconds_sum", **ok) > 0
        assert 0.5 < value(s, "labelgrid_training_score", project=project_name) <= 1
        assert value(s, "labelgrid_training_labels", project=project_name) == 60
        assert value(s, "labelgrid_training_model_version", project=project_name) >= 1
        assert value(s, "labelgrid_training_jobs", state="running") == 1
        rpc = {"service": "TrainerService", "method": "StartJob", "code": "OK"}
        assert value(s, "labelgrid_rpc_requests_total", **rpc) == 1
        rpc = {"service": "TrainerService", "method": "GetStatus", "code": "NOT_FOUND"}
        # an aborted call's status can reach the client before the server's interceptor
        # has counted it (seen once in a full run): scrape again for a moment
        deadline = time.monotonic() + 10
        while value(s, "labelgrid_rpc_requests_total", **rpc) is None:
            assert time.monotonic() < deadline, "GetStatus NOT_FOUND never counted"
            time.sleep(0.1)
            s = scrape(trainer.metrics_port)
        assert value(s, "labelgrid_rpc_requests_total", **rpc) == 1
    finally:
        trainer.kill()
