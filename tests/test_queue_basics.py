"""The queue's semantics over real gRPC, on SQLite and PostgreSQL."""

from __future__ import annotations

import time

import grpc
import numpy as np
import pytest

from labelgrid import Item, QueueClient
from tests.support.snapshot import query


def test_create_get_list_project(client: QueueClient, project_name: str) -> None:
    made = client.create_project(project_name, range(3), lease_seconds=30)
    assert list(made.options) == ["0", "1", "2"]
    assert made.lease_seconds == 30
    assert client.get_project(project_name).name == project_name
    assert project_name in [p.name for p in client.list_projects()]
    default = client.create_project(project_name + "-d", ["a"])
    assert default.lease_seconds == 600
    # exist_ok with equal settings returns it; different settings are refused
    assert client.create_project(project_name, range(3), lease_seconds=30).name == project_name
    with pytest.raises(grpc.RpcError) as err:
        client.create_project(project_name, range(4), lease_seconds=30)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS


def test_pop_submit_roundtrip_and_progress(client: QueueClient, project_name: str) -> None:
    client.create_project(project_name, ["cat", "dog"])
    data = np.arange(12, dtype=np.uint8).reshape(3, 2, 2)
    ids = client.add_features(project_name, data)
    assert len(ids) == 3 and ids == sorted(ids)
    items = client.pop(project_name, "alice", n=2)
    assert [it.id for it in items] == ids[:2]
    assert items[0].input.dtype == np.uint8
    np.testing.assert_array_equal(items[0].input, data[0])
    assert items[0].lease_expires_at > time.time() + 500
    reply = client.submit(project_name, items[0], "cat", "alice")
    assert not reply.duplicate
    again = client.submit(project_name, items[0], "cat", "alice")
    assert again.duplicate and again.annotation_id == reply.annotation_id
    progress = client.progress(project_name)
    assert (progress.total, progress.labelled, progress.leased, progress.available) == (3, 1, 1, 1)
    assert {w.worker_id: w.labelled for w in progress.workers} == {"alice": 1}
    assert {c.label: c.count for c in progress.labels} == {"cat": 1}
    assert progress.fraction == pytest.approx(1 / 3)


def test_submit_with_pop_next_is_one_round_trip(client: QueueClient, project_name: str) -> None:
    client.create_project(project_name, ["a", "b"])
    ids = client.add_features(project_name, ["one", "two", "three"])
    item = client.pop(project_name, "w")[0]
    seen = [item.id]
    while True:
        reply = client.submit(project_name, item, "a", "w", pop_next=True)
        if not reply.HasField("next"):
            break
        # a retried submit hands back the same next item rather than leasing another
        retry = client.submit(project_name, item, "a", "w", pop_next=True)
        assert retry.duplicate and retry.next.id == reply.next.id
        item = QueueClient.__module__ and __import__("labelgrid").Item.from_proto(reply.next)
        seen.append(item.id)
    assert seen == ids
    assert client.progress(project_name).labelled == 3


def test_submit_with_pop_next_after_the_lease_expired(
    client: QueueClient, project_name: str, database_url: str
) -> None:
    """A lease that expired but was not taken by anyone is still the worker's to submit;
    with pop_next it comes back done, and the next item is another one (or none): never
    the submitted item again, however high its priority."""
    client.create_project(project_name, ["a"], lease_seconds=1)
    first, second, third = client.add_features(project_name, ["one", "two", "three"])
    client.update_priorities(project_name, [first, second, third], [3.0, 2.0, 1.0], 1)
    held = client.pop(project_name, "w", n=2)
    assert [it.id for it in held] == [first, second]
    time.sleep(1.5)  # both leases expire; `first` is the top expired item now
    reply = client.submit(project_name, held[0], "a", "w", pop_next=True)
    assert not reply.duplicate and reply.next.id == second  # expired, higher than `third`
    again = client.submit(project_name, held[0], "a", "w", pop_next=True)
    assert again.duplicate and again.next.id == second
    last = client.pop(project_name, "v")[0]
    assert last.id == third
    time.sleep(1.5)
    taken = client.submit(project_name, Item.from_proto(reply.next), "a", "w", pop_next=True)
    assert taken.next.id == third  # `third` expired under "v": taken over
    done = client.submit(project_name, Item.from_proto(taken.next), "a", "w", pop_next=True)
    assert not done.HasField("next")  # nothing left, and not an item already done
    assert query(database_url, f"SELECT COUNT(*) FROM annotations WHERE item_id = {first}") == [
        (1,)
    ]
    assert client.progress(project_name).labelled == 3


def test_two_workers_never_share_a_lease(client: QueueClient, project_name: str) -> None:
    client.create_project(project_name, ["x"])
    client.add_features(project_name, list(range(10)))
    a = {it.id for it in client.pop(project_name, "a", n=6)}
    b = {it.id for it in client.pop(project_name, "b", n=6)}
    assert len(a) == 6 and len(b) == 4 and not a & b
    assert client.pop(project_name, "c") == []


def test_release_returns_item_at_once(client: QueueClient, project_name: str) -> None:
    client.create_project(project_name, ["x"])
    client.add_features(project_name, ["only"])
    item = client.pop(project_name, "a")[0]
    assert client.pop(project_name, "b") == []
    client.release(project_name, item, "a")
    again = client.pop(project_name, "b")
    assert [i.id for i in again] == [item.id]
    # the released lease cannot be submitted any more
    with pytest.raises(grpc.RpcError) as err:
        client.submit(project_name, item, "x", "a")
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_expired_lease_returns_and_late_submit_is_refused(
    client: QueueClient, project_name: str, database_url: str
) -> None:
    client.create_project(project_name, ["x", "y"], lease_seconds=1)
    client.add_features(project_name, ["a"])
    first = client.pop(project_name, "slow")[0]
    assert client.pop(project_name, "fast") == []
    time.sleep(1.3)
    second = client.pop(project_name, "fast")[0]
    assert second.id == first.id and second.lease_token != first.lease_token
    client.submit(project_name, second, "y", "fast")
    with pytest.raises(grpc.RpcError) as err:
        client.submit(project_name, first, "x", "slow")
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    rows = query(database_url, "SELECT worker_id, labels FROM annotations")
    assert rows == [("fast", '["y"]')]


def test_late_submit_accepted_when_nobody_took_the_item(
    client: QueueClient, project_name: str
) -> None:
    client.create_project(project_name, ["x"], lease_seconds=1)
    client.add_features(project_name, ["a", "b"])
    first = client.pop(project_name, "slow")[0]
    time.sleep(1.3)
    other = client.pop(project_name, "other")  # sweeps the expired lease back, takes item 1 again
    assert [i.id for i in other] == [first.id]
    client.release(project_name, other[0], "other")
    with pytest.raises(grpc.RpcError):
        client.submit(project_name, first, "x", "slow")


def test_undo_reopens_own_annotation_only(client: QueueClient, project_name: str) -> None:
    client.create_project(project_name, ["x", "y"])
    client.add_features(project_name, ["a", "b"])
    a = client.pop(project_name, "alice")[0]
    b = client.pop(project_name, "bob")[0]
    client.submit(project_name, a, "x", "alice")
    client.submit(project_name, b, "y", "bob")
    item, labels = client.undo(project_name, "alice")
    assert item.id == a.id and labels == ["x"]
    assert client.progress(project_name).labelled == 1
    exported = client.export_labels(project_name)
    assert [(e.item_id, e.worker_id, list(e.labels)) for e in exported] == [(b.id, "bob", ["y"])]
    client.submit(project_name, item, "y", "alice")
    with pytest.raises(grpc.RpcError) as err:
        client.undo(project_name, "carol")
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_multi_label_submit(client: QueueClient, project_name: str) -> None:
    client.create_project(project_name, ["red", "green", "blue"], multi_label=True)
    client.add_features(project_name, ["a"])
    item = client.pop(project_name, "w")[0]
    client.submit(project_name, item, ["red", "blue"], "w")
    (row,) = client.export_labels(project_name)
    assert list(row.labels) == ["blue", "red"]
    assert {c.label: c.count for c in client.progress(project_name).labels} == {"blue": 1, "red": 1}


def test_priorities_order_and_stale_versions(client: QueueClient, project_name: str) -> None:
    client.create_project(project_name, ["x"])
    ids = client.add_features(project_name, list(range(6)))
    # unranked items come after ranked ones; ties by insertion order
    client.update_priorities(project_name, ids[2:5], [1.0, 5.0, 1.0], model_version=2)
    order = [it.id for it in client.pop(project_name, "w", n=6)]
    assert order == [ids[3], ids[2], ids[4], ids[0], ids[1], ids[5]]
    with pytest.raises(grpc.RpcError) as err:
        client.update_priorities(project_name, ids[:1], [9.0], model_version=1)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert client.get_project(project_name).model_version == 2


def test_add_features_idempotency_key(
    client: QueueClient, project_name: str, database_url: str
) -> None:
    client.create_project(project_name, ["x"])
    X = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    first = client.add_features(project_name, X, key="digits-v1")
    second = client.add_features(project_name, X, key="digits-v1", chunk_bytes=64)
    assert first == second
    assert client.progress(project_name).total == 20
    with pytest.raises(grpc.RpcError) as err:
        client.add_features(project_name, X[:10], key="digits-v1")
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert query(database_url, "SELECT COUNT(*) FROM items") == [(20,)]


def test_add_features_with_labels_and_mixed_payloads(
    client: QueueClient, project_name: str
) -> None:
    client.create_project(project_name, ["0", "1"])
    ids = client.add_features(
        project_name, ["text", {"k": [1, 2]}, np.float32(1.5)], labels=["1", None, "0"]
    )
    progress = client.progress(project_name)
    assert (progress.total, progress.labelled) == (3, 2)
    (item,) = client.pop(project_name, "w")
    assert item.id == ids[1] and item.input == {"k": [1, 2]}
    labelled = [it for chunk in client.stream_labelled(project_name) for it in chunk.items]
    assert [it.item_id for it in labelled] == [ids[0], ids[2]]
    scalar = np.frombuffer(labelled[1].input.array.data, dtype=labelled[1].input.array.dtype)
    assert labelled[1].input.array.dtype == "<f4" and scalar[0] == np.float32(1.5)
    assert list(labelled[1].input.array.shape) == []


@pytest.mark.parametrize("max_overlap", [1, 3], ids=["leases", "assignments"])
def test_progress_counts_a_lapsed_lease_as_available_before_anyone_pops(
    client: QueueClient, project_name: str, max_overlap: int
) -> None:
    """Progress counts items by status from the index and subtracts the leases that are up
    (for overlap 1 with max_overlap > 1: the items without a live assignment): nobody has
    swept the lapsed lease back yet, and it shows as available all the same."""
    client.create_project(project_name, ["x"], lease_seconds=1, max_overlap=max_overlap)
    client.add_features(project_name, ["a", "b", "c", "d"])
    [done] = client.pop(project_name, "ann")
    client.submit(project_name, done, "x", "ann")
    client.pop(project_name, "slow", n=2)
    p = client.progress(project_name)
    assert (p.total, p.labelled, p.leased, p.available) == (4, 1, 2, 1)
    time.sleep(1.3)
    p = client.progress(project_name)
    assert (p.total, p.labelled, p.leased, p.available) == (4, 1, 0, 3)
    [held] = client.pop(project_name, "fast")  # takes one back; one lapsed lease is left
    p = client.progress(project_name)
    assert (p.total, p.labelled, p.leased, p.available) == (4, 1, 1, 2)
    client.release(project_name, held, "fast")
