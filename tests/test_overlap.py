"""Overlap k > 1 on both backends: k distinct workers per item, never one worker twice
(not after an expired lease, not after a skip), review of disagreements, consensus."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter

import grpc
import numpy as np
import pytest

from labelgrid import QueueClient
from tests.support.servers import ServiceProcess
from tests.support.snapshot import query

K = 3
WORKERS = 10
ITEMS = 60


def truth(x: object) -> str:
    return "even" if int(np.asarray(x).ravel()[0]) % 2 == 0 else "odd"


def test_k3_with_ten_concurrent_workers(
    service: ServiceProcess, database_url: str, project_name: str
) -> None:
    with QueueClient(service.address) as admin:
        admin.create_project(project_name, ["even", "odd"], overlap=K)
        ids = admin.add_features(project_name, np.arange(ITEMS, dtype=np.int64).reshape(-1, 1))
    served: list[tuple[str, int]] = []
    guard = threading.Lock()
    errors: list[BaseException] = []

    def labeller(worker: str) -> None:
        try:
            with QueueClient(service.address) as client:
                batch = client.pop(project_name, worker, n=2)
                while batch:
                    with guard:
                        served.extend((worker, it.id) for it in batch)
                    nxt = []
                    for it in batch:
                        reply = client.submit(
                            project_name, it, truth(it.input), worker, pop_next=it is batch[-1]
                        )
                        if reply.HasField("next"):
                            nxt.append(reply.next)
                    batch = [type(batch[0]).from_proto(m) for m in nxt] or client.pop(
                        project_name, worker, n=2
                    )
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=labeller, args=(f"w{i}",)) for i in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    assert len(served) == len(set(served)), "an item was served twice to one worker"
    rows = query(database_url, "SELECT item_id, worker_id FROM annotations")
    per_item = Counter(item for item, _ in rows)
    assert set(per_item) == set(ids)
    assert set(per_item.values()) == {K}
    assert len(set(rows)) == len(rows)  # K distinct workers per item
    with QueueClient(service.address) as client:
        progress = client.progress(project_name)
        assert (progress.total, progress.labelled, progress.annotations) == (
            ITEMS,
            ITEMS,
            ITEMS * K,
        )
        assert client.pop(project_name, "w0") == []
        raw = [r for chunk in client.stream_labelled(project_name) for r in chunk.items]
        assert len(raw) == ITEMS * K
        agreed = [
            r for c in client.stream_labelled(project_name, consensus="majority") for r in c.items
        ]
    assert sorted(r.item_id for r in agreed) == ids
    assert all(r.confidence == 1.0 and r.worker_id == "(consensus)" for r in agreed)
    assert len({w for w, _ in served}) > K  # the work really was spread


def test_an_expired_or_skipped_item_never_returns_to_the_same_worker(
    client: QueueClient, project_name: str
) -> None:
    client.create_project(project_name, ["a", "b"], overlap=2, lease_seconds=1)
    x, y = client.add_features(project_name, ["x", "y"])
    first = client.pop(project_name, "ann")[0]
    skipped = client.pop(project_name, "bob")[0]
    assert first.id == skipped.id == x
    client.release(project_name, skipped, "bob")
    time.sleep(1.5)  # ann's lease on x expires
    assert [it.id for it in client.pop(project_name, "ann", n=5)] == [y]
    [bob_y] = client.pop(project_name, "bob", n=5)
    assert bob_y.id == y
    # x's two slots (ann's expired one, bob's released one) go to two new workers
    assert [it.id for it in client.pop(project_name, "cy", n=5)] == [x]
    assert [it.id for it in client.pop(project_name, "dee", n=5)] == [x]
    with pytest.raises(grpc.RpcError) as err:
        client.submit(project_name, first, "a", "ann")  # too late: the slot is taken
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    time.sleep(1.5)  # ann's and bob's leases on y expire, and nobody takes them
    late = client.pop(project_name, "ann", n=5)
    assert late == []
    [ann_y] = [it for it in client.pop(project_name, "eve", n=5) if it.id == y]
    client.submit(project_name, ann_y, "b", "eve")
    # bob's lease expired, but one slot is still free: his late label is welcome
    assert client.submit(project_name, bob_y, "b", "bob").annotation_id > 0
    progress = client.progress(project_name)
    assert (progress.labelled, progress.annotations) == (1, 2)


def test_release_and_undo_with_overlap(client: QueueClient, project_name: str) -> None:
    client.create_project(project_name, ["a", "b"], overlap=2)
    [item_id] = client.add_features(project_name, ["only"])
    one = client.pop(project_name, "w1")[0]
    two = client.pop(project_name, "w2")[0]
    assert one.id == two.id == item_id
    assert client.pop(project_name, "w3") == []  # both slots are held
    client.submit(project_name, one, "a", "w1")
    client.submit(project_name, two, "b", "w2")
    assert client.progress(project_name).labelled == 1
    item, labels = client.undo(project_name, "w2")
    assert (item.id, labels) == (item_id, ["b"])
    progress = client.progress(project_name)
    assert (progress.labelled, progress.leased, progress.annotations) == (0, 1, 1)
    client.submit(project_name, item, "a", "w2")
    assert client.progress(project_name).labelled == 1
    [row] = client.export_labels(project_name, consensus="majority")
    assert (list(row.labels), row.confidence) == (["a"], 1.0)
    with pytest.raises(grpc.RpcError) as err:
        client.submit(project_name, one, "b", "w1")  # a different label on a done lease
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_disagreement_goes_to_a_reviewer_who_sees_the_labels(
    client: QueueClient, project_name: str
) -> None:
    client.create_project(
        project_name, ["cat", "dog"], overlap=2, review_threshold=1.0, reviewers=["boss"]
    )
    agree_id, split_id = client.add_features(project_name, ["agree", "split"])
    for worker, labels in (("w1", ["cat", "cat"]), ("w2", ["cat", "dog"])):
        items = sorted(client.pop(project_name, worker, n=2), key=lambda it: it.id)
        for it, label in zip(items, labels, strict=True):
            client.submit(project_name, it, label, worker)
    progress = client.progress(project_name)
    assert (progress.labelled, progress.in_review) == (1, 1)
    assert client.pop(project_name, "w3") == []  # review items go to reviewers only
    [item] = client.pop(project_name, "boss")
    assert item.id == split_id
    assert sorted(item.others) == [("w1", ("cat",)), ("w2", ("dog",))]
    client.submit(project_name, item, "dog", "boss")
    assert client.progress(project_name).labelled == 2
    rows = {r.item_id: r for r in client.export_labels(project_name, consensus="dawid_skene")}
    assert (list(rows[split_id].labels), rows[split_id].confidence) == (["dog"], 1.0)
    assert list(rows[agree_id].labels) == ["cat"]
    assert len(client.export_labels(project_name)) == 5  # raw: 4 labels + 1 adjudication


def test_disagreement_without_reviewers_asks_for_one_more_label(
    client: QueueClient, project_name: str
) -> None:
    client.create_project(project_name, ["a", "b"], overlap=2, max_overlap=3, review_threshold=0.6)
    item_id, later_id = client.add_features(project_name, ["x", "later"])
    for worker, label in (("w1", "a"), ("w2", "b")):
        client.submit(project_name, client.pop(project_name, worker)[0], label, worker)
    progress = client.progress(project_name)
    assert (progress.labelled, progress.in_review) == (0, 1)
    assert [it.id for it in client.pop(project_name, "w1")] == [later_id]
    # the disputed item jumps the queue for the next new worker, even above a higher priority
    client.update_priorities(project_name, [later_id], [100.0], model_version=1)
    third = client.pop(project_name, "w3")[0]
    assert third.id == item_id
    client.submit(project_name, third, "b", "w3")
    assert client.progress(project_name).labelled == 1
    [row] = client.export_labels(project_name, consensus="majority")
    assert list(row.labels) == ["b"]
    assert row.confidence == pytest.approx(2 / 3)


def test_bad_overlap_settings_are_refused(client: QueueClient, project_name: str) -> None:
    cases = [
        dict(overlap=101),
        dict(overlap=2, max_overlap=1),
        dict(overlap=1, review_threshold=0.5),  # one label per item: nothing to compare
        dict(overlap=2, review_threshold=1.5, reviewers=["r"]),
        dict(overlap=2, review_threshold=0.5),
    ]
    for settings in cases:
        with pytest.raises(grpc.RpcError) as err:
            client.create_project(project_name, ["a"], **settings)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, settings
    assert client.list_projects() == []
    made = client.create_project(project_name, ["a"], overlap=3, reviewers=["r"])
    assert (made.overlap, made.max_overlap, list(made.reviewers)) == (3, 3, ["r"])
    with pytest.raises(grpc.RpcError) as err:
        client.create_project(project_name, ["a"], overlap=2)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS


def test_agreement_rpc_and_worker_stats_by_hand(client: QueueClient, project_name: str) -> None:
    """The same four items as tests/test_agreement.py, labelled through the service."""
    client.create_project(project_name, ["a", "b"], overlap=3)
    ids = client.add_features(project_name, ["i1", "i2", "i3", "i4"])
    given = {
        "w1": ["a", "a", "b", "a"],
        "w2": ["a", "a", "b", "b"],
        "w3": ["a", "b", "b", "b"],
    }
    for worker, labels in given.items():
        items = sorted(client.pop(project_name, worker, n=4), key=lambda it: it.id)
        assert [it.id for it in items] == ids
        for it, label in zip(items, labels, strict=True):
            client.submit(project_name, it, label, worker)
    found = client.agreement(project_name)
    assert (found.items, found.annotations, found.fleiss_items) == (4, 12, 4)
    assert found.percent == pytest.approx(2 / 3)
    assert found.fleiss_kappa == pytest.approx(1 / 3)
    assert found.krippendorff_alpha == pytest.approx(7 / 18)
    kappas = {(p.worker_a, p.worker_b): p.cohen_kappa for p in found.pairs}
    assert kappas == pytest.approx({("w1", "w2"): 0.5, ("w1", "w3"): 0.2, ("w2", "w3"): 0.5})
    with_consensus = {w.worker_id: w.agreement_with_consensus for w in found.workers}
    assert with_consensus == pytest.approx({"w1": 0.75, "w2": 1.0, "w3": 0.75})
    stats = client.progress(project_name, worker_stats=True).worker_stats
    assert {w.worker_id: (w.labels, w.compared) for w in stats} == {
        "w1": (4, 4),
        "w2": (4, 4),
        "w3": (4, 4),
    }
    assert all(w.HasField("seconds_per_label") and w.seconds_per_label >= 0 for w in stats)
    assert client.progress(project_name).worker_stats == []  # only when asked for
    majority = {
        r.item_id: list(r.labels) for r in client.export_labels(project_name, consensus="majority")
    }
    assert majority == dict(zip(ids, [["a"], ["a"], ["b"], ["b"]], strict=True))

    def cli(*args: str) -> subprocess.CompletedProcess:
        command = ["agreement", "--server", client.address, "--project", project_name, *args]
        return subprocess.run(
            [sys.executable, "-m", "labelgrid.cli", *command],
            capture_output=True,
            text=True,
            timeout=60,
        )

    out = cli("--json")
    assert out.returncode == 0, out.stderr
    printed = json.loads(out.stdout)
    assert printed["krippendorff_alpha"] == pytest.approx(7 / 18)
    assert len(printed["pairs"]) == 3
    text = cli().stdout
    assert "Krippendorff's alpha 0.389" in text and "w1 / w3: 4 items" in text


def test_the_trainer_learns_from_consensus_labels(client: QueueClient, project_name: str) -> None:
    from sklearn.linear_model import LogisticRegression

    from trainer_service.loop import ActiveLearner

    client.create_project(project_name, ["neg", "pos"], overlap=3)
    xs = np.array([[-3.0], [-2.0], [-1.0], [1.0], [2.0], [3.0], [0.5], [-0.5]])
    ids = client.add_features(project_name, xs[:6])
    client.add_features(project_name, xs[6:])  # left unlabelled, to be ranked
    want = {i: "neg" if x[0] < 0 else "pos" for i, x in zip(ids, xs, strict=False)}
    for worker, flip in (("good1", False), ("good2", False), ("liar", True)):
        for it in client.pop(project_name, worker, n=6):
            label = want[it.id]
            if flip:
                label = "pos" if label == "neg" else "neg"
            client.submit(project_name, it, label, worker)
    learner = ActiveLearner(client, project_name, LogisticRegression(), record=False)
    result = learner.run_once()
    assert learner.consensus == "majority"
    assert {i: labels for i, (_, labels) in learner.labelled.items()} == {
        i: [label] for i, label in want.items()
    }
    assert result.n_labels == 6
    raw = ActiveLearner(client, project_name, LogisticRegression(), consensus=None, record=False)
    raw.fetch_labels()  # every annotation, the newest (the liar's) winning
    assert all(raw.labelled[i][1] != [want[i]] for i in ids)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_pops_skips_undos_and_submits_keep_the_invariants(
    client: QueueClient, project_name: str, database_url: str, seed: int
) -> None:
    """A random mix of Pop (1-3 items), Submit, Release and Undo by five workers, k = 2.
    After every step: nobody was served an item twice, no item has more than k labels or
    two from one worker, and an item is done exactly when it has k labels."""
    rng = np.random.default_rng(seed)
    k, workers = 2, [f"w{i}" for i in range(5)]
    client.create_project(project_name, ["a", "b"], overlap=k)
    ids = client.add_features(project_name, [f"x{i}" for i in range(12)])
    held: dict[str, list] = {w: [] for w in workers}
    served: set[tuple[str, int]] = set()
    for _ in range(150):
        worker = workers[rng.integers(len(workers))]
        action = rng.choice(["pop", "submit", "release", "undo"], p=[0.4, 0.35, 0.1, 0.15])
        if action == "pop":
            for it in client.pop(project_name, worker, n=int(rng.integers(1, 4))):
                assert (worker, it.id) not in served, (worker, it.id)
                served.add((worker, it.id))
                held[worker].append(it)
        elif action in ("submit", "release") and held[worker]:
            it = held[worker].pop(int(rng.integers(len(held[worker]))))
            if action == "submit":
                client.submit(project_name, it, "ab"[rng.integers(2)], worker)
            else:
                client.release(project_name, it, worker)
        elif action == "undo":
            try:
                it, _ = client.undo(project_name, worker)
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION
            else:
                held[worker].append(it)  # leased back to the same worker: not a new serve
        labels = Counter(i for (i,) in query(database_url, "SELECT item_id FROM annotations"))
        pairs = query(database_url, "SELECT item_id, worker_id FROM annotations")
        assert len(pairs) == len(set(pairs))
        assert all(n <= k for n in labels.values())
        done = {i for (i,) in query(database_url, "SELECT id FROM items WHERE status = 2")}
        assert done == {i for i, n in labels.items() if n == k}
    progress = client.progress(project_name)
    assert progress.total == len(ids) and progress.annotations == sum(labels.values())
    assert len(done) >= 2 and len(served) > 20  # the mix did reach completed items
