"""Relabel requests and annotator-aware routing (issue 18, the queue side), on both backends,
through a real queue service: small cases checked by hand.

Relabel requests ride on UpdatePriorities (relabel_ids, relabel_priorities): a completed item
of a project with max_overlap > overlap is served once more, to a worker who has not
annotated it, ranked among the unlabelled items by its priority; a newer call withdraws what
it does not ask again. Routing: a worker whose Dawid-Skene reliability is below the project's
reliability_cut gets items in an extra round only when no first-round item is left."""

from __future__ import annotations

import time

import grpc
import numpy as np
import pytest

from labelgrid import QueueClient
from queue_service.routing import estimate
from queue_service.store.rows import ProjectRow, VoteRow
from queue_service.store.vote_table import VoteTable
from tests.support.servers import ServiceProcess
from tests.support.snapshot import query


def label(client: QueueClient, project: str, worker: str, n: int, answer) -> list[int]:
    """Pop n items as `worker` and label each `answer(item_id)`; the ids, in order."""
    items = client.pop(project, worker, n=n)
    for it in items:
        client.submit(project, it, answer(it.id), worker)
    return [it.id for it in items]


def two_labelled(client: QueueClient, project: str, n: int) -> list[int]:
    """n items, each labelled "a" by ann and bob (overlap 2): done, two labels each."""
    ids = client.add_features(project, [f"x{i}" for i in range(n)])
    assert label(client, project, "ann", n, lambda _: "a") == ids
    assert label(client, project, "bob", n, lambda _: "a") == ids
    return ids


def counts(client: QueueClient, project: str) -> tuple[int, int, int, int]:
    p = client.progress(project)
    return p.total, p.labelled, p.available, p.annotations


def test_a_relabelled_item_goes_once_more_to_a_new_worker_on_the_same_priority_scale(
    client: QueueClient, project_name: str
) -> None:
    client.create_project(project_name, ["a", "b"], overlap=2, max_overlap=3)
    x, _y = two_labelled(client, project_name, 2)
    hi, lo = client.add_features(project_name, ["hi", "lo"], priorities=[6.0, 4.0])
    assert counts(client, project_name) == (4, 2, 2, 4)
    reply = client.update_priorities(
        project_name, [hi, lo], [6.0, 4.0], 1, relabel_ids=[x], relabel_priorities=[5.0]
    )
    assert (reply.updated, reply.relabelled, reply.relabel_ignored) == (2, 1, 0)
    # x needs a label again: not labelled, available (truthful progress)
    assert counts(client, project_name) == (4, 1, 3, 4)
    # not in the unlabelled stream: it has labels (the trainer scores it as labelled)
    pool = [i.id for c in client.stream_unlabelled(project_name, ids_only=True) for i in c.items]
    assert pool == [hi, lo]
    # the ones who labelled x never see it again
    assert [i.id for i in client.pop(project_name, "ann", n=5)] == [hi, lo]
    assert [i.id for i in client.pop(project_name, "bob", n=5)] == [hi, lo]
    # a new worker: x between the unlabelled items at 6 and 4
    assert [i.id for i in client.pop(project_name, "cy", n=5)] == [x]  # hi, lo are full
    assert client.pop(project_name, "dee", n=5) == []  # x's one extra slot is cy's
    [held] = client.list_leases(project_name, "cy")
    client.submit(project_name, held, "b", "cy")
    assert query_labels(client, project_name, x) == ["a", "a", "b"]
    # done again, with three labels, and not served to anybody
    assert client.pop(project_name, "eve", n=5) == []
    assert counts(client, project_name)[1] == 1 + 1  # y and x (hi, lo are leased)


def query_labels(client: QueueClient, project: str, item_id: int) -> list[str]:
    rows = [r for c in client.stream_labelled(project, labels_only=True) for r in c.items]
    return [r.labels[0] for r in rows if r.item_id == item_id]


def test_relabel_is_ranked_with_unlabelled_items(client: QueueClient, project_name: str) -> None:
    client.create_project(project_name, ["a", "b"], overlap=2, max_overlap=3)
    [x] = two_labelled(client, project_name, 1)
    hi, lo = client.add_features(project_name, ["hi", "lo"])
    client.update_priorities(
        project_name, [hi, lo], [6.0, 4.0], 1, relabel_ids=[x], relabel_priorities=[5.0]
    )
    assert [i.id for i in client.pop(project_name, "cy", n=3)] == [hi, x, lo]


def test_capped_at_max_overlap_and_final_labels_are_not_reopened(
    client: QueueClient, project_name: str
) -> None:
    client.create_project(project_name, ["a", "b"], overlap=2, max_overlap=3)
    x, y = two_labelled(client, project_name, 2)
    [imported] = client.add_features(project_name, ["z"], labels=["a"])
    [fresh] = client.add_features(project_name, ["f"])
    reply = client.request_relabels(project_name, [x], [1.0], model_version=1)
    assert reply.relabelled == 1
    [it] = client.pop(project_name, "cy")
    assert it.id == x
    client.submit(project_name, it, "a", "cy")  # x: three labels, max_overlap
    # x at max_overlap, the imported label, the unlabelled item: each ignored and counted
    reply = client.request_relabels(project_name, [x, imported, fresh, y], [1.0] * 4, 2)
    assert (reply.relabelled, reply.relabel_ignored) == (1, 3)
    assert [i.id for i in client.pop(project_name, "dee", n=5)] == [y, fresh]
    assert [i.id for i in client.pop(project_name, "eve", n=5)] == [fresh]


def test_a_newer_model_withdraws_what_it_does_not_ask_again_unless_leased(
    client: QueueClient, project_name: str
) -> None:
    client.create_project(project_name, ["a", "b"], overlap=2, max_overlap=3)
    x, y, z = two_labelled(client, project_name, 3)
    reply = client.request_relabels(project_name, [x, y], [2.0, 1.0], 1)
    assert reply.relabelled == 2
    [leased] = client.pop(project_name, "cy")
    assert leased.id == x
    # model 2 asks for z only: y goes back to done; x is leased, so cy's label is kept
    reply = client.request_relabels(project_name, [z], [1.0], 2)
    assert (reply.relabelled, reply.relabel_withdrawn) == (1, 1)
    assert counts(client, project_name)[:2] == (3, 1)  # y done; x leased, z open
    assert [i.id for i in client.pop(project_name, "dee", n=5)] == [z]
    client.submit(project_name, leased, "b", "cy")
    assert counts(client, project_name)[:2] == (3, 2)  # x done with three labels
    # stale: model 1 again is refused, and changes nothing
    with pytest.raises(grpc.RpcError) as err:
        client.request_relabels(project_name, [y], [1.0], 1)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "older than the applied version 2" in err.value.details()
    assert client.pop(project_name, "eve", n=5) == []  # z is dee's; y stayed done
    # a call without relabel ids (a plain re-rank) withdraws the rest (none open now)
    reply = client.update_priorities(project_name, [], [], 3)
    assert reply.relabel_withdrawn == 0


def test_bad_relabel_requests_get_a_clear_status_and_change_nothing(
    client: QueueClient, project_name: str
) -> None:
    client.create_project(project_name, ["a", "b"], overlap=2, max_overlap=3)
    [x] = two_labelled(client, project_name, 1)
    [u] = client.add_features(project_name, ["u"])
    other = project_name + "-other"
    client.create_project(other, ["a", "b"], overlap=2, max_overlap=3)
    [elsewhere] = client.add_features(other, ["o"])
    bad = {
        "an unknown id": ([x, 10**9], [1.0, 1.0]),
        "another project's item": ([elsewhere], [1.0]),
        "a NaN priority": ([x], [float("nan")]),
        "an infinite priority": ([x], [float("inf")]),
        "a repeated id": ([x, x], [1.0, 2.0]),
    }
    for why, (ids, prios) in bad.items():
        with pytest.raises(grpc.RpcError) as err:
            client.update_priorities(
                project_name, [u], [9.0], 5, relabel_ids=ids, relabel_priorities=prios
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, why
        assert "relabel" in err.value.details(), why
    with pytest.raises(grpc.RpcError) as err:  # one item in both lists
        client.update_priorities(
            project_name, [x], [1.0], 5, relabel_ids=[x], relabel_priorities=[1.0]
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "both" in err.value.details()
    # nothing changed: no version, no priority, x still done
    assert client.get_project(project_name).model_version == 0
    assert counts(client, project_name)[:2] == (2, 1)
    [it] = client.pop(project_name, "cy")
    assert (it.id, it.priority) == (u, None)  # never ranked: the refused 9.0 was not applied


@pytest.mark.parametrize("settings", [dict(overlap=1), dict(overlap=2)])
def test_a_project_that_cannot_take_another_label_refuses_relabels(
    client: QueueClient, project_name: str, settings: dict
) -> None:
    client.create_project(project_name, ["a", "b"], **settings)
    [x] = client.add_features(project_name, ["x"], labels=["a"])
    with pytest.raises(grpc.RpcError) as err:
        client.request_relabels(project_name, [x], [1.0], 1)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "raise max_overlap" in err.value.details()
    assert client.get_project(project_name).model_version == 0


# -- annotator-aware routing ----------------------------------------------------------------

TRUTH = {0: "a", 1: "b", 2: "a", 3: "b", 4: "a", 5: "b", 6: "a", 7: "b", 8: "a"}


def wrong(answer: str) -> str:
    return "b" if answer == "a" else "a"


def test_reliability_estimate_by_hand() -> None:
    """good1 labels items 0-5, bad 0-2 (always wrong), good2 3-8, carol 6-8: good1 and good2
    agree on 3-5 and good2 and carol on 6-8, so on 0-2 good1 is believed, not bad."""
    project = ProjectRow(1, "p", ("a", "b"), False, False, 600, 0, 0.0, 2, 3, 0.0, (), "", 0.7)
    rows: list[VoteRow] = []

    def vote(item: int, worker: str, answer: str) -> None:
        rows.append(VoteRow(len(rows) + 1, item, worker, (answer,), 0, 0.0, True))

    for i in range(6):
        vote(i, "good1", TRUTH[i])
    for i in range(3):
        vote(i, "bad", wrong(TRUTH[i]))
    for i in range(3, 9):
        vote(i, "good2", TRUTH[i])
    for i in range(6, 9):
        vote(i, "carol", TRUTH[i])
    vote(9, "dan", "a")  # one label on an item nobody else labelled: no estimate
    found = {
        r.worker: (r.reliability, r.compared) for r in estimate(project, VoteTable.from_rows(rows))
    }
    assert set(found) == {"good1", "good2", "carol", "bad"}
    assert found["bad"][0] < 0.01 and found["bad"][1] == 3
    for good in ("good1", "good2", "carol"):
        assert found[good][0] > 0.99


@pytest.fixture
def fast_service(database_url: str):
    proc = ServiceProcess(database_url, {"LABELGRID_RELIABILITY_SECONDS": "0.1"}).start()
    yield proc
    proc.kill()


def wait_for_estimates(database_url: str, project: str, workers: int) -> dict[str, float]:
    sql = (
        "SELECT r.worker_id, r.reliability, r.upto, (SELECT MAX(id) FROM annotations a "
        "WHERE a.project_id = p.id) FROM worker_reliability r JOIN projects p ON "
        f"p.id = r.project_id WHERE p.name = '{project}'"
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = query(database_url, sql)
        if len(rows) == workers and all(upto == last for _, _, upto, last in rows):
            return {w: r for w, r, _, _ in rows}
        time.sleep(0.1)
    raise AssertionError(f"no estimates for {workers} workers: {query(database_url, sql)}")


def test_the_doubtful_item_goes_to_the_reliable_worker_not_the_unreliable_one(
    fast_service: ServiceProcess, database_url: str, project_name: str
) -> None:
    with QueueClient(fast_service.address, retries=0) as client:
        client.create_project(
            project_name, ["a", "b"], overlap=2, max_overlap=3, reliability_cut=0.7
        )
        ids = client.add_features(project_name, [f"x{i}" for i in range(9)])
        truth = {item: TRUTH[i] for i, item in enumerate(ids)}
        right, bad = truth.__getitem__, (lambda i: wrong(truth[i]))
        # the hand-checked case above, labelled through the queue (first come, by id)
        assert label(client, project_name, "good1", 6, right) == ids[:6]
        assert label(client, project_name, "bad", 3, bad) == ids[:3]
        assert label(client, project_name, "good2", 6, right) == ids[3:9]
        assert label(client, project_name, "carol", 3, right) == ids[6:9]
        found = wait_for_estimates(database_url, project_name, 4)
        assert found["bad"] < 0.7 <= min(found["good1"], found["good2"], found["carol"])
        # the model doubts items 3 and 4 (good1 and good2 gave them): one more label each,
        # above a new item; bad and carol may take them
        [new] = client.add_features(project_name, ["new"], priorities=[1.0])
        client.request_relabels(project_name, [ids[3], ids[4]], [5.0, 6.0], 1)
        # bad is below the cut: the first-round item, though the doubtful ones rank higher
        assert [i.id for i in client.pop(project_name, "bad")] == [new]
        # carol, reliable: the most doubtful item
        assert [i.id for i in client.pop(project_name, "carol")] == [ids[4]]
        # no first-round item left for bad: now the extra round
        assert [i.id for i in client.pop(project_name, "bad")] == [ids[3]]


def test_without_a_cut_the_doubtful_item_goes_to_whoever_asks_first(
    client: QueueClient, project_name: str
) -> None:
    """The control: the same queue without reliability_cut serves by priority alone."""
    client.create_project(project_name, ["a", "b"], overlap=2, max_overlap=3)
    x, _ = two_labelled(client, project_name, 2)
    client.add_features(project_name, ["new"], priorities=[1.0])
    client.request_relabels(project_name, [x], [5.0], 1)
    assert [i.id for i in client.pop(project_name, "bad")] == [x]


def test_reliability_cut_is_checked(client: QueueClient, project_name: str) -> None:
    for settings in (dict(overlap=2, reliability_cut=1.5), dict(overlap=1, reliability_cut=0.5)):
        with pytest.raises(grpc.RpcError) as err:
            client.create_project(project_name, ["a"], **settings)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "reliability_cut" in err.value.details()
    made = client.create_project(project_name, ["a"], overlap=2, reliability_cut=0.8)
    assert made.reliability_cut == pytest.approx(0.8)
    assert np.isclose(client.get_project(project_name).reliability_cut, 0.8)


# -- the active-learning loop pushes relabel requests ---------------------------------------


class AskAgain:
    """A test-only stand-in for a relabel-or-new acquisition (the real ones are not the
    queue's business): margin for unlabelled items, and for labelled ones a score above
    every margin (margins are <= 0) for the items in `doubtful`, none for the rest."""

    def __init__(self, doubtful: set[int]) -> None:
        self.doubtful = doubtful
        self.seen: list = []

    def __call__(self, probabilities: np.ndarray) -> np.ndarray:
        top2 = np.sort(probabilities, axis=1)[:, -2:]
        return -(top2[:, 1] - top2[:, 0])

    def relabel_scores(self, pool) -> np.ndarray:
        self.seen.append(pool)
        return np.asarray([1.0 if int(i) in self.doubtful else np.nan for i in pool.ids])


def test_the_learner_pushes_relabel_requests_from_its_acquisition(
    client: QueueClient, project_name: str
) -> None:
    from sklearn.linear_model import LogisticRegression

    from trainer_service import relabel
    from trainer_service.loop import ActiveLearner

    client.create_project(project_name, ["neg", "pos"], overlap=2, max_overlap=3)
    xs = np.array([[-3.0], [-2.0], [-1.0], [1.0], [2.0], [3.0]])
    ids = client.add_features(project_name, xs)
    u1, u2 = client.add_features(project_name, np.array([[0.5], [-0.5]]))
    for worker in ("ann", "bob"):
        for it in client.pop(project_name, worker, n=6):
            client.submit(project_name, it, "neg" if it.input[0] < 0 else "pos", worker)
    doubtful = ids[2]
    acquire = AskAgain({doubtful})
    assert isinstance(acquire, relabel.RelabelAcquisition)
    learner = ActiveLearner(
        client,
        project_name,
        LogisticRegression(),
        acquisition_function=acquire,
        shuffle_prop=0.0,
        record=False,
    )
    try:
        result = learner.run_once()
        assert result.status == "ok", result.message
        assert "asked 1 labelled items again" in result.message
        [pool] = acquire.seen
        assert sorted(pool.ids.tolist()) == sorted(ids)
        assert pool.probabilities.shape == (6, 2) and pool.classes == ["neg", "pos"]
        # the doubtful item, above both unlabelled ones, to a worker who has not labelled it
        assert [i.id for i in client.pop(project_name, "ann", n=3)] == [u1, u2]
        first = client.pop(project_name, "cy", n=3)
        assert first[0].id == doubtful
        assert client.progress(project_name).labelled == 5
        for it in first:
            client.release(project_name, it, "cy")
        # the next model no longer doubts it: the request is withdrawn (no lease holds it)
        acquire.doubtful = set()
        assert learner.run_once().status == "ok"
        assert client.progress(project_name).labelled == 6
        assert doubtful not in [i.id for i in client.pop(project_name, "dee", n=3)]
    finally:
        learner.close()
