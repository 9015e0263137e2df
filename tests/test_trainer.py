"""The trainer service against a real queue service: it learns, re-ranks, and never leases."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from sklearn.datasets import load_digits

from labelgrid import QueueClient
from labelgrid.trainer_client import TrainerClient
from tests.support.servers import ServiceProcess, TrainerProcess
from tests.support.snapshot import query


@pytest.fixture
def trainer(service: ServiceProcess) -> Iterator[TrainerProcess]:
    proc = TrainerProcess(
        service.address, env={"LABELGRID_TRAINER_MODULES": "tests.support.hooks"}
    ).start()
    yield proc
    proc.kill()


@pytest.mark.parametrize("backend", ["postgres"])
def test_trainer_reranks_while_people_label(
    service: ServiceProcess, trainer: TrainerProcess, database_url: str, project_name: str
) -> None:
    digits = load_digits()
    X = digits.data[:600].astype(np.float32)
    truth = {X[i].tobytes(): str(digits.target[i]) for i in range(len(X))}
    with QueueClient(service.address) as client:
        client.create_project(project_name, range(10))
        ids = client.add_features(project_name, X)
    with TrainerClient(trainer.address) as tc:
        status = tc.start_job(
            project_name,
            "sklearn.linear_model:LogisticRegression",
            {"max_iter": 1000},
            acquisition="margin",
            shuffle_prop=0.0,
            interval_seconds=0.3,
            interval_n_labels=15,
        )
        assert status.state == "running"

        done = threading.Event()
        errors: list[BaseException] = []
        # Labelling waits for the trainer to catch up (at most 60 labels ahead of its runs):
        # on a loaded machine the crowd could otherwise label all 600 items before the third
        # run, and with no new labels there is no third run.
        runs_seen = [0]
        labelled_by_crowd = [0]

        def labeller(worker: str) -> None:
            try:
                with QueueClient(service.address) as client:
                    while not done.is_set():
                        if labelled_by_crowd[0] >= 60 * (runs_seen[0] + 1):
                            time.sleep(0.05)
                            continue
                        items = client.pop(project_name, worker)
                        if not items:
                            return
                        client.submit(
                            project_name, items[0], truth[items[0].input.tobytes()], worker
                        )
                        labelled_by_crowd[0] += 1
                        time.sleep(0.01)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=labeller, args=(f"sim{i}",)) for i in range(3)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with QueueClient(service.address) as client:
                labelled = client.progress(project_name).labelled
            status = tc.status(project_name)
            runs_seen[0] = status.runs
            if labelled >= 150 and status.last_run.model_version >= 3:
                break
            time.sleep(0.2)
        done.set()
        for t in threads:
            t.join(30)
        assert not errors, errors
        final = tc.status(project_name)
        tc.stop_job(project_name)
        assert tc.status(project_name).state == "stopped"

    assert final.runs >= 3
    assert final.last_run.status == "ok" and final.last_run.HasField("score")
    assert 0.5 < final.last_run.score <= 1.0
    assert final.last_run.model_version >= 3
    with QueueClient(service.address) as client:
        project = client.get_project(project_name)
        runs = client.list_training_runs(project_name)
    assert project.model_version >= 3
    assert len(runs) >= 3 and runs[-1].trainer.startswith("trainer@")
    assert [r.n_labels for r in runs] == sorted(r.n_labels for r in runs)
    ranked = query(database_url, "SELECT COUNT(*) FROM items WHERE priority > -1e300")[0][0]
    assert ranked > 300  # the unlabelled items were re-ranked
    order = [r[0] for r in query(database_url, "SELECT item_id FROM annotations ORDER BY id")]
    assert order != sorted(order)  # labellers were served in the model's order
    assert set(order) <= set(ids)
    # the trainer never held a lease: every lease holder is a simulated labeller
    holders = {r[0] for r in query(database_url, "SELECT DISTINCT leased_by FROM items")}
    assert holders <= {None, "sim0", "sim1", "sim2"}


def test_trainer_errors(
    service: ServiceProcess, trainer: TrainerProcess, project_name: str
) -> None:
    with QueueClient(service.address) as client:
        client.create_project(project_name, ["a", "b"])
    with TrainerClient(trainer.address) as tc:
        cases = [
            (
                dict(project="nope", model="sklearn.linear_model:LogisticRegression"),
                grpc.StatusCode.NOT_FOUND,
            ),
            (
                dict(project=project_name, model="sklearn.linear_model:NoSuchModel"),
                grpc.StatusCode.INVALID_ARGUMENT,
            ),
            (
                dict(project=project_name, model="sklearn.cluster:KMeans"),
                grpc.StatusCode.INVALID_ARGUMENT,
            ),  # no predict_proba
            (
                dict(
                    project=project_name,
                    model="sklearn.linear_model:LogisticRegression",
                    params={"no_such_param": 1},
                ),
                grpc.StatusCode.INVALID_ARGUMENT,
            ),
            (
                dict(
                    project=project_name,
                    model="sklearn.linear_model:LogisticRegression",
                    acquisition="vibes",
                ),
                grpc.StatusCode.INVALID_ARGUMENT,
            ),
            (
                dict(
                    project=project_name,
                    model="sklearn.linear_model:LogisticRegression",
                    consensus="loudest",
                ),
                grpc.StatusCode.INVALID_ARGUMENT,
            ),
            # only modules the operator allowed: naming os.system must not run anything
            (
                dict(project=project_name, model="os:system", params={"command": "touch /tmp/lgx"}),
                grpc.StatusCode.INVALID_ARGUMENT,
            ),
            (
                dict(
                    project=project_name,
                    model="sklearn.linear_model:LogisticRegression",
                    model_preprocess="os:system",
                ),
                grpc.StatusCode.INVALID_ARGUMENT,
            ),
        ]
        for kwargs, code in cases:
            with pytest.raises(grpc.RpcError) as err:
                tc.start_job(**kwargs)
            assert err.value.code() == code, (kwargs, err.value.details())
        with pytest.raises(grpc.RpcError) as err:
            tc.retrain_now(project_name)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        # one-shot job with no labels: a clear status, not a crash
        tc.start_job(project_name, "sklearn.linear_model:LogisticRegression")
        run = tc.retrain_now(project_name)
        assert run.status == "not_enough_labels" and "no labels" in run.message
        assert tc.list_jobs()[0].spec.project == project_name


def test_watch_status_and_preprocess_hook(
    service: ServiceProcess, trainer: TrainerProcess, project_name: str
) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4)).astype(np.float32)
    with QueueClient(service.address) as client:
        client.create_project(project_name, ["neg", "pos"])
        labels = ["pos" if x[0] > 0 else "neg" for x in X[:30]] + [None] * 30
        client.add_features(project_name, X, labels=labels)
    with TrainerClient(trainer.address) as tc:
        # a hook from the trainer's path: keep only the first feature column
        tc.start_job(
            project_name,
            "sklearn.linear_model:LogisticRegression",
            model_preprocess="tests.support.hooks:first_column",
        )
        states = [s.state for s in tc.watch(project_name)]
        final = tc.status(project_name)
    assert states[-1] == "stopped" and final.runs == 1
    assert final.last_run.status == "ok" and final.last_run.score > 0.8


def test_the_trainer_service_trains_on_consensus(
    service: ServiceProcess, trainer: TrainerProcess, project_name: str
) -> None:
    """Overlap 3: a run learns from completed items' consensus, one label per item."""
    X = np.array([[-2.0], [-1.0], [1.0], [2.0], [0.1]])
    with QueueClient(service.address) as client:
        client.create_project(project_name, ["neg", "pos"], overlap=3)
        client.add_features(project_name, X)
        for worker, n in (("w1", 5), ("w2", 4), ("w3", 4)):  # item 5: one label of three
            for it in client.pop(project_name, worker, n=n):
                client.submit(project_name, it, "neg" if it.input[0] < 0 else "pos", worker)
    with TrainerClient(trainer.address) as tc:
        # consensus: the 4 completed items; "none": every annotated item (5)
        for consensus, labels in (("auto", 4), ("dawid_skene", 4), ("none", 5)):
            tc.start_job(
                project_name, "sklearn.linear_model:LogisticRegression", consensus=consensus
            )
            run = tc.retrain_now(project_name)
            assert run.status == "ok", run.message
            assert run.n_labels == labels, consensus
