"""One regression test for each of superintendent's defects (design notes, last section).

Each test would have failed against superintendent.distributed 0.6; every one that involves
a database runs on SQLite and on PostgreSQL (the `backend` fixture).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest
from google.protobuf.descriptor import FieldDescriptor

from labelgrid import QueueClient, payloads
from labelgrid.demo import seed_demo
from labelgrid.distributed import ClassLabeller, SemiSupervisor
from labelgrid_proto.v1 import queue_pb2
from tests.support.dtypes import DTYPES
from tests.support.servers import ServiceProcess
from tests.support.snapshot import query, snapshot

SKEWED_CLIENT = """
import json, sys, time, datetime
# this client's clock runs five hours fast, everywhere it could be read
_real = time.time
time.time = lambda: _real() + 5 * 3600
from labelgrid import QueueClient
address, project = sys.argv[1:3]
with QueueClient(address) as client:
    item = client.pop(project, "skewed")[0]
    print(json.dumps({"id": item.id, "expires": item.lease_expires_at}), flush=True)
    sys.stdin.readline()  # wait while the test checks nobody else can take the item
    reply = client.submit(project, item, "x", "skewed")
    print(json.dumps({"annotation": reply.annotation_id}), flush=True)
"""


# 1 -------------------------------------------------------------------------------------------
def test_lease_times_come_from_the_server_clock_only(
    service: ServiceProcess, project_name: str
) -> None:
    # no request a client sends carries a time, so a client's clock cannot decide anything
    for name, message in queue_pb2.DESCRIPTOR.message_types_by_name.items():
        if name.endswith("Request"):
            for f in message.fields:
                assert f.type != FieldDescriptor.TYPE_MESSAGE or (
                    f.message_type.full_name != "google.protobuf.Timestamp"
                ), f"{name}.{f.name} carries a client time"
    with QueueClient(service.address) as client:
        client.create_project(project_name, ["x"], lease_seconds=3)
        client.add_features(project_name, ["a"])
        proc = subprocess.Popen(
            [sys.executable, "-c", SKEWED_CLIENT, service.address, project_name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        leased = json.loads(proc.stdout.readline())
        # the expiry is the server's now + 3 s, not the skewed client's
        assert abs(leased["expires"] - (time.time() + 3)) < 2
        assert client.pop(project_name, "other") == []  # not stolen while the lease is live
        proc.stdin.write("\n")
        proc.stdin.flush()
        done = json.loads(proc.stdout.readline())  # and not lost: its submit is accepted
        assert proc.wait(30) == 0 and done["annotation"] > 0
        assert client.progress(project_name).labelled == 1


# 2 -------------------------------------------------------------------------------------------
def test_late_submit_and_foreign_undo_change_nothing(
    service: ServiceProcess, database_url: str, project_name: str
) -> None:
    with QueueClient(service.address, retries=0) as client:
        client.create_project(project_name, ["x", "y"], lease_seconds=1)
        client.add_features(project_name, ["a"])
        slow = client.pop(project_name, "slow")[0]
        time.sleep(1.2)
        fast = client.pop(project_name, "fast")[0]
        client.submit(project_name, fast, "y", "fast")
        before = snapshot(database_url)
        with pytest.raises(grpc.RpcError) as err:
            client.submit(project_name, slow, "x", "slow")
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        with pytest.raises(grpc.RpcError) as err:
            client.undo(project_name, "slow")  # slow never labelled anything: nothing to undo
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert snapshot(database_url) == before
        assert [(e.worker_id, list(e.labels)) for e in client.export_labels(project_name)] == [
            ("fast", ["y"])
        ]


# 3 -------------------------------------------------------------------------------------------
def test_skip_gives_the_item_back_at_once(service: ServiceProcess, project_name: str) -> None:
    widget = ClassLabeller(
        server=service.address, table_name=project_name, options=["x"], worker_id="skipper"
    )
    widget.add_features(["only"])
    widget.start()
    widget.skip()
    widget.flush()
    with QueueClient(service.address) as client:
        assert [i.input for i in client.pop(project_name, "someone-else")] == ["only"]


# 4 -------------------------------------------------------------------------------------------
def test_orchestration_never_leases(
    service: ServiceProcess, database_url: str, project_name: str
) -> None:
    from sklearn.linear_model import LogisticRegression

    X = np.random.default_rng(0).normal(size=(50, 3))
    orchestrator = SemiSupervisor(
        server=service.address,
        table_name=project_name,
        options=["0", "1"],
        classifier=LogisticRegression(),
        reorder="margin",
    )
    orchestrator.add_features(X, labels=[str(int(x[0] > 0)) for x in X[:10]] + [None] * 40)
    stop = threading.Event()
    leases_seen: list[int] = []

    def watch() -> None:
        while not stop.is_set():
            leases_seen.append(
                query(database_url, "SELECT COUNT(*) FROM items WHERE status = 1")[0][0]
            )
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    orchestrator.retrain()
    runs = orchestrator.orchestrate(interval_seconds=0.1, max_runs=3)
    stop.set()
    watcher.join()
    assert [r.status for r in runs] == ["ok"] * 3 and max(leases_seen) == 0
    # the top-ranked item is the first a labeller gets
    top = query(
        database_url, "SELECT id FROM items WHERE status = 0 ORDER BY priority DESC, id LIMIT 1"
    )[0][0]
    with QueueClient(service.address) as client:
        assert client.pop(project_name, "labeller")[0].id == top


# 5 -------------------------------------------------------------------------------------------
def test_adding_the_same_data_twice_is_a_no_op(
    service: ServiceProcess, database_url: str, project_name: str
) -> None:
    X = np.random.default_rng(1).normal(size=(30, 4))
    for _ in range(3):  # the seed page's pattern: several widgets on one database
        widget = SemiSupervisor(
            server=service.address, table_name=project_name, options=range(3), features=X
        )
        widget.add_features(X)
    assert query(database_url, "SELECT COUNT(*) FROM items") == [(30,)]
    with QueueClient(service.address) as client:  # the demo seeding of `make run` / compose
        assert seed_demo(client, project=project_name + "-demo", n=40) == 40
        assert seed_demo(client, project=project_name + "-demo", n=40) == 40
    assert query(database_url, "SELECT COUNT(*) FROM items") == [(70,)]


# 6 -------------------------------------------------------------------------------------------


def test_exact_round_trips_through_the_service(
    service: ServiceProcess, database_url: str, project_name: str
) -> None:
    values: list = []
    for dtype in DTYPES:
        values.append(dtype(1))  # a numpy scalar
        values.append(
            np.array(np.iinfo(dtype).max if np.dtype(dtype).kind in "iu" else 1, dtype=dtype)
        )  # a 0-d array at the top of its range
        values.append(np.arange(6).astype(dtype).reshape(2, 3))
    values += ["héllo ✓ 漢字 🙂", {"nested": [1, 2.5, None, "ü"]}]
    with QueueClient(service.address, retries=0) as client:
        client.create_project(project_name, allow_other=True)
        client.add_features(project_name, values)
        back = [
            payloads.from_payload(i.input)
            for c in client.stream_unlabelled(project_name)
            for i in c.items
        ]
        for sent, got in zip(values, back, strict=True):
            if isinstance(sent, np.ndarray | np.generic):
                assert got.dtype == np.asarray(sent).dtype and got.shape == np.shape(sent)
                assert got.tobytes() == np.asarray(sent).tobytes()
            else:
                assert got == sent
        # labels given as numpy scalars are stored as their text, never as null
        item = client.pop(project_name, "w")[0]
        client.submit(project_name, item, np.int64(7), "w")
        assert query(database_url, "SELECT labels FROM annotations") == [('["7"]',)]
        # what cannot be carried exactly is refused before anything is stored
        before = snapshot(database_url)
        for bad in (np.array(["text"]), np.array([object()]), {1, 2}, float("nan")):
            with pytest.raises(ValueError):
                client.add_features(project_name, [bad])
        raw = queue_pb2.AddFeaturesRequest(
            project=project_name,
            items=[
                queue_pb2.NewItem(
                    input=payloads.arrays_pb2.Payload(
                        array=payloads.arrays_pb2.NDArray(dtype="<M8[s]", shape=[1], data=b"\0" * 8)
                    )
                )
            ],
        )
        with pytest.raises(grpc.RpcError) as err:
            client.stub.AddFeatures(iter([raw]))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert snapshot(database_url) == before


# 7 -------------------------------------------------------------------------------------------
def test_progress_is_exact_at_every_moment(service: ServiceProcess, project_name: str) -> None:
    with QueueClient(service.address) as admin:
        admin.create_project(project_name, ["x"], lease_seconds=1)
        admin.add_features(project_name, list(range(120)))
        stop = threading.Event()

        def label(worker: str) -> None:
            with QueueClient(service.address) as client:
                while items := client.pop(project_name, worker, n=2):
                    for item in items:
                        if item.id % 7:  # some leases are abandoned and expire
                            client.submit(project_name, item, "x", worker)

        threads = [threading.Thread(target=label, args=(f"w{i}",)) for i in range(4)]
        for t in threads:
            t.start()
        seen = []
        while any(t.is_alive() for t in threads) or not seen:
            p = admin.progress(project_name)
            seen.append(p)
            assert p.labelled + p.leased + p.available == p.total == 120
            assert 0.0 <= p.fraction <= 1.0 and p.fraction == pytest.approx(p.labelled / 120)
        stop.set()
        time.sleep(1.1)
        while items := admin.pop(project_name, "sweeper", n=50):  # the expired leases return
            for item in items:
                admin.submit(project_name, item, "x", "sweeper")
        final = admin.progress(project_name)
        assert (final.labelled, final.fraction) == (120, 1.0)


# 8 -------------------------------------------------------------------------------------------
def test_serving_order_is_defined_once(service: ServiceProcess, project_name: str) -> None:
    with QueueClient(service.address) as client:
        client.create_project(project_name, ["x"])
        ids = client.add_features(project_name, list(range(8)))
        # ranked items (even negative ones) before unranked ones; ties by insertion order
        client.update_priorities(
            project_name, [ids[6], ids[1], ids[4], ids[3]], [-5.0, 2.0, 2.0, 0.0], model_version=1
        )
        order = [i.id for i in client.pop(project_name, "w", n=8)]
    assert order == [ids[1], ids[4], ids[3], ids[6], ids[0], ids[2], ids[5], ids[7]]


# 9 -------------------------------------------------------------------------------------------
def test_retrain_edge_cases_give_clear_statuses(service: ServiceProcess, project_name: str) -> None:
    from sklearn.linear_model import LogisticRegression

    widget = SemiSupervisor(
        server=service.address,
        table_name=project_name,
        options=["a", "b"],
        classifier=LogisticRegression(),
        reorder="entropy",
    )
    X = np.random.default_rng(2).normal(size=(12, 2))
    widget.add_features(X)
    empty = widget.retrain()
    assert empty.status == "not_enough_labels" and "no labels" in widget.message.value
    with QueueClient(service.address) as client:
        for item in client.pop(project_name, "w", n=4):
            client.submit(project_name, item, "a", "w")
        one = widget.retrain()
        assert one.status == "not_enough_labels" and "one class" in widget.message.value
        for item in client.pop(project_name, "w", n=8):
            client.submit(project_name, item, "b" if item.id % 2 else "a", "w")
    final = widget.retrain()  # everything labelled: still fits and reports a score
    assert final.status == "all_labelled" and final.score is not None, final
    assert widget.score_label.value.startswith("Score:")


# 10 ------------------------------------------------------------------------------------------
def test_worker_id_prompt_comes_before_any_item(
    service: ServiceProcess, database_url: str, project_name: str
) -> None:
    widget = ClassLabeller(
        server=service.address, table_name=project_name, options=["a"], worker_id=True
    )
    widget.add_features(["x"])
    widget._repr_mimebundle_()  # what displaying it does
    assert widget.children[0] is widget.prompt and widget.session is None
    assert query(database_url, "SELECT COUNT(*) FROM items WHERE status = 1") == [(0,)]
    widget.worker_box.value = "dana"
    widget.worker_button.click()
    assert widget.session.current.input == "x"
    assert query(database_url, "SELECT leased_by FROM items") == [("dana",)]
