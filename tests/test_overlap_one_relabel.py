"""Overlap 1 with max_overlap > 1 (issue 18), on both backends, through a real queue service:
one label per item, and a model's relabel request reopens a done item for one more label from
a worker who has not labelled it, up to max_overlap. Such a project leases through
`assignments` (so no worker labels an item twice), yet a labeller sees exactly what an
overlap-1 project shows: the first test runs one script against both and compares."""

from __future__ import annotations

import time

import grpc
import pytest

from labelgrid import QueueClient
from labelgrid_proto.exportfile import method_for


def observe(client: QueueClient, project: str) -> list:
    """A labeller's session with pops, submits, a skip, an expired lease (late labels), an
    undo, and what Progress, ListLeases, StreamUnlabelled and ExportLabels say after each
    step; item ids as their insertion index, so two projects can be compared."""
    ids = client.add_features(project, ["x", "y", "z", "w"], priorities=[4.0, 3.0, 2.0, 1.0])
    at = {i: k for k, i in enumerate(ids)}
    seen: list = []

    def look(what: str, value) -> None:
        seen.append((what, value))

    def state() -> None:
        p = client.progress(project)
        look(
            "progress",
            (p.total, p.labelled, p.leased, p.available, p.annotations, p.in_review),
        )
        look("workers", sorted(str(w).replace("\n", " ") for w in p.workers))
        look("labels", sorted(str(c).replace("\n", " ") for c in p.labels))
        pool = [at[i.id] for c in client.stream_unlabelled(project, ids_only=True) for i in c.items]
        look("unlabelled", pool)
        rows = [(at[r.item_id], r.worker_id, list(r.labels)) for r in client.export_labels(project)]
        look("export", rows)

    def popped(worker: str, n: int = 1):
        items = client.pop(project, worker, n=n)
        look(f"pop {worker}", [at[i.id] for i in items])
        return items

    def refused(call) -> None:
        with pytest.raises(grpc.RpcError) as err:
            call()
        look("refused", err.value.code())

    x, y = popped("ann", 2)  # the two top items
    [z] = popped("bob", 1)
    assert [i.id for i in popped("cy", 5)] == [ids[3]]  # what is left: w
    state()
    reply = client.submit(project, x, "a", "ann", pop_next=True)
    look("next", reply.HasField("next"))
    client.release(project, y, "ann")  # a skip gives y back at once ...
    state()
    [y2] = popped("ann", 1)  # ... and the same worker may take it again
    client.submit(project, y2, "b", "ann")
    refused(lambda: client.submit(project, y, "a", "ann"))  # the skipped lease is gone
    state()
    time.sleep(1.6)  # bob's lease on z and cy's on w expire; nobody takes them
    state()
    look("bob leases", [at[i.id] for i in client.list_leases(project, "bob")])
    client.submit(project, z, "a", "bob")  # a late label, nobody took z: welcome
    [w2] = popped("bob", 5)  # w, whose lease (cy's) expired
    refused(lambda: client.submit(project, z, "b", "bob"))  # z is labelled already
    state()
    item, labels = client.undo(project, "bob")  # bob's newest label: z
    look("undo", (at[item.id], labels))
    state()
    client.submit(project, item, "b", "bob")
    client.submit(project, w2, "a", "bob")
    look("leftover", [at[i.id] for i in client.pop(project, "dee", n=5)])
    state()
    return seen


def test_a_labeller_sees_what_an_overlap_1_project_shows(
    client: QueueClient, project_name: str
) -> None:
    plain, reopenable = project_name, project_name + "-k1"
    client.create_project(plain, ["a", "b"], lease_seconds=1)
    made = client.create_project(reopenable, ["a", "b"], lease_seconds=1, max_overlap=3)
    assert (made.overlap, made.max_overlap) == (1, 3)
    assert observe(client, plain) == observe(client, reopenable)


def counts(client: QueueClient, project: str) -> tuple[int, int, int, int]:
    p = client.progress(project)
    return p.labelled, p.available, p.leased, p.annotations


def test_a_relabel_request_reopens_a_done_item_for_another_worker_up_to_max_overlap(
    client: QueueClient, project_name: str
) -> None:
    client.create_project(project_name, ["a", "b"], max_overlap=3)
    x, y, z = client.add_features(project_name, ["x", "y", "z"], priorities=[3.0, 2.0, 1.0])
    ann = client.pop(project_name, "ann", n=2)
    assert [i.id for i in ann] == [x, y]
    assert [i.id for i in client.pop(project_name, "bob", n=5)] == [z]  # one label each
    for it in ann:
        client.submit(project_name, it, "a", "ann")
    [held] = client.list_leases(project_name, "bob")
    client.submit(project_name, held, "a", "bob")
    assert counts(client, project_name) == (3, 0, 0, 3)
    assert client.pop(project_name, "cy", n=5) == []  # every item has its one label

    reply = client.request_relabels(project_name, [x], [5.0], model_version=1)
    assert (reply.relabelled, reply.relabel_ignored) == (1, 0)
    assert counts(client, project_name) == (2, 1, 0, 3)  # x needs a label again
    pool = [i.id for c in client.stream_unlabelled(project_name, ids_only=True) for i in c.items]
    assert pool == []  # x has a label: not in the unlabelled stream
    assert client.pop(project_name, "ann", n=5) == []  # ann labelled x: never again
    [again] = client.pop(project_name, "bob", n=5)  # a different worker gets it
    assert again.id == x
    assert client.pop(project_name, "cy", n=5) == []  # its one extra slot is bob's
    assert counts(client, project_name) == (2, 0, 1, 3)
    client.submit(project_name, again, "b", "bob")
    assert counts(client, project_name) == (3, 0, 0, 4)

    # a third label, from a third worker (ann and bob have both labelled x)
    reply = client.request_relabels(project_name, [x], [5.0], model_version=2)
    assert reply.relabelled == 1
    assert client.pop(project_name, "ann", n=5) == client.pop(project_name, "bob", n=5) == []
    [third] = client.pop(project_name, "cy", n=5)
    assert third.id == x
    client.submit(project_name, third, "b", "cy")
    # at max_overlap (3 labels): not reopened, counted as ignored
    reply = client.request_relabels(project_name, [x, y], [5.0, 4.0], model_version=3)
    assert (reply.relabelled, reply.relabel_ignored) == (1, 1)
    assert [i.id for i in client.pop(project_name, "dee", n=5)] == [y]
    assert client.pop(project_name, "eve", n=5) == []
    withdrawn = client.update_priorities(project_name, [], [], 4)  # a plain re-rank
    assert withdrawn.relabel_withdrawn == 0  # y is leased: dee's label is kept

    raw = sorted(
        (r.item_id, r.worker_id, list(r.labels)) for r in client.export_labels(project_name)
    )
    assert raw == [
        (x, "ann", ["a"]),
        (x, "bob", ["b"]),
        (x, "cy", ["b"]),
        (y, "ann", ["a"]),
        (z, "bob", ["a"]),
    ]
    project = client.get_project(project_name)
    assert method_for(project, "auto") == "majority"  # items may have several labels
    majority = {
        r.item_id: (list(r.labels), round(r.confidence, 3))
        for r in client.export_labels(project_name, consensus="majority")
    }
    assert majority == {x: (["b"], 0.667), z: (["a"], 1.0)}  # y is out for its 2nd label
    # agreement and per-worker statistics over the one item with two labels or more
    found = client.agreement(project_name)
    assert (found.items, found.annotations) == (1, 5)  # items with two labels or more
    stats = client.progress(project_name, worker_stats=True).worker_stats
    assert {w.worker_id: (w.labels, w.compared) for w in stats} == {
        "ann": (2, 1),
        "bob": (2, 1),
        "cy": (1, 1),
    }


def test_a_skipped_relabel_may_come_back_to_that_worker_but_never_to_one_who_labelled_it(
    client: QueueClient, project_name: str
) -> None:
    client.create_project(project_name, ["a", "b"], max_overlap=2, lease_seconds=1)
    [x] = client.add_features(project_name, ["x"])
    [it] = client.pop(project_name, "ann")
    client.submit(project_name, it, "a", "ann")
    client.request_relabels(project_name, [x], [1.0], model_version=1)
    [bob] = client.pop(project_name, "bob")
    client.release(project_name, bob, "bob")  # a skip, as in an overlap-1 project
    assert client.pop(project_name, "ann") == []
    [bob] = client.pop(project_name, "bob")
    time.sleep(1.6)  # bob's lease expires: the slot is free again
    assert counts(client, project_name) == (0, 1, 0, 1)
    assert client.pop(project_name, "ann") == []
    [bob_again] = client.pop(project_name, "bob")
    assert bob_again.id == x
    client.submit(project_name, bob_again, "b", "bob")
    assert counts(client, project_name) == (1, 0, 0, 2)
    # the undo of a relabel reopens it to its worker; the other label stays
    item, labels = client.undo(project_name, "bob")
    assert (item.id, labels) == (x, ["b"])
    assert counts(client, project_name) == (0, 0, 1, 1)
    client.submit(project_name, item, "a", "bob")
    assert counts(client, project_name) == (1, 0, 0, 2)
    reply = client.request_relabels(project_name, [x], [1.0], model_version=2)
    assert (reply.relabelled, reply.relabel_ignored) == (0, 1)  # max_overlap 2 reached


def test_a_disagreement_after_a_relabel_asks_one_more_label(
    client: QueueClient, project_name: str
) -> None:
    """review_threshold in an overlap-1 project acts once an item has several labels: two
    that disagree ask for a third (up to max_overlap), served before new items."""
    client.create_project(project_name, ["a", "b"], max_overlap=3, review_threshold=0.7)
    x, fresh = client.add_features(project_name, ["x", "fresh"], priorities=[2.0, 1.0])
    [it] = client.pop(project_name, "ann")
    client.submit(project_name, it, "a", "ann")  # one label agrees with itself: done
    assert client.progress(project_name).labelled == 1
    client.request_relabels(project_name, [x], [5.0], model_version=1)
    [it] = client.pop(project_name, "bob")
    assert it.id == x  # asked again above fresh
    client.submit(project_name, it, "b", "bob")
    assert client.progress(project_name).in_review == 1
    [it] = client.pop(project_name, "cy", n=1)
    assert it.id == x  # one more label after a disagreement comes first
    client.submit(project_name, it, "b", "cy")
    assert client.progress(project_name).labelled == 1
    assert [i.id for i in client.pop(project_name, "dee", n=5)] == [fresh]


REFUSED = {
    "max_overlap below overlap": (
        dict(overlap=3, max_overlap=2),
        "max_overlap must be between overlap (3) and 100; got 2",
    ),
    "review_threshold with one label per item": (
        dict(review_threshold=0.5),
        "need items with two labels or more",
    ),
    "reviewers with one label per item": (
        dict(reviewers=["r"]),
        "need items with two labels or more",
    ),
    "reliability_cut with one label per item": (
        dict(reliability_cut=0.6),
        "need items with two labels or more",
    ),
    "review_threshold nobody can settle": (
        dict(overlap=2, review_threshold=0.9),
        "review_threshold needs reviewers to adjudicate, or max_overlap > overlap",
    ),
    "a threshold above 1": (
        dict(max_overlap=3, review_threshold=1.5),
        "review_threshold must be between 0 and 1",
    ),
}


@pytest.mark.parametrize("why", list(REFUSED))
def test_create_project_still_refuses_what_it_should(
    client: QueueClient, project_name: str, why: str
) -> None:
    settings, message = REFUSED[why]
    with pytest.raises(grpc.RpcError) as err:
        client.create_project(project_name, ["a", "b"], **settings)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in err.value.details(), err.value.details()
    assert client.list_projects() == []


@pytest.mark.parametrize(
    "settings",
    [
        dict(max_overlap=2),
        dict(max_overlap=3, reliability_cut=0.6),
        dict(max_overlap=3, review_threshold=0.7),
        dict(max_overlap=3, review_threshold=0.7, reviewers=["r"]),
    ],
)
def test_overlap_1_with_more_labels_on_request_is_a_valid_project(
    client: QueueClient, project_name: str, settings: dict
) -> None:
    made = client.create_project(project_name, ["a", "b"], **settings)
    assert (made.overlap, made.max_overlap) == (1, settings["max_overlap"])
