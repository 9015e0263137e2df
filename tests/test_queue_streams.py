"""Follow streams: new labels and progress changes arrive without polling by the client."""

from __future__ import annotations

import queue
import threading

import grpc

from labelgrid import QueueClient
from labelgrid_proto.v1 import queue_pb2


def _drain_into(stream, out: queue.Queue) -> threading.Thread:
    def run() -> None:
        try:
            for message in stream:
                out.put(message)
        except Exception as exc:  # cancelled at the end of the test
            out.put(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_stream_labelled_follow_and_cursor(client: QueueClient, project_name: str) -> None:
    client.create_project(project_name, ["a", "b"])
    client.add_features(project_name, ["x", "y", "z"], labels=["a", None, None])
    received: queue.Queue = queue.Queue()
    stream = client.stream_labelled(project_name, follow=True, labels_only=True)
    _drain_into(stream, received)
    first = received.get(timeout=10)
    assert [list(i.labels) for i in first.items] == [["a"]] and first.cursor > 0
    item = client.pop(project_name, "w")[0]
    client.submit(project_name, item, "b", "w")
    second = received.get(timeout=10)
    assert [(i.item_id, list(i.labels), i.worker_id) for i in second.items] == [
        (item.id, ["b"], "w")
    ]
    assert second.cursor > first.cursor
    stream.cancel()
    # resuming from the cursor sends only what is newer
    rest = list(client.stream_labelled(project_name, after=first.cursor))
    assert [i.item_id for m in rest for i in m.items] == [item.id]


def test_watch_progress_sends_changes(client: QueueClient, project_name: str) -> None:
    client.create_project(project_name, ["a"])
    client.add_features(project_name, ["x", "y"])
    received: queue.Queue = queue.Queue()
    stream = client.stub.WatchProgress(queue_pb2.WatchProgressRequest(project=project_name))
    _drain_into(stream, received)
    assert received.get(timeout=10).progress.labelled == 0
    item = client.pop(project_name, "w")[0]
    seen = received.get(timeout=10).progress
    assert (seen.leased, seen.available) == (1, 1)
    client.submit(project_name, item, "a", "w")
    while (progress := received.get(timeout=10).progress).labelled < 1:
        pass
    assert progress.labelled == 1 and progress.fraction == 0.5
    stream.cancel()


def _next_where(received: queue.Queue, test) -> queue_pb2.Progress:
    while not test(progress := received.get(timeout=10).progress):
        pass
    return progress


def test_watch_progress_for_one_worker_and_new_training_runs(
    client: QueueClient, project_name: str
) -> None:
    """A labeller's page asks with its worker id: it gets its own count only (0 before its
    first label), while a watcher without one still gets every worker's; a recorded training
    run reaches both as a new last_training_run_id."""
    client.create_project(project_name, ["a"])
    client.add_features(project_name, ["x", "y", "z"])
    mine: queue.Queue = queue.Queue()
    everyone: queue.Queue = queue.Queue()
    own = client.stub.WatchProgress(
        queue_pb2.WatchProgressRequest(project=project_name, worker_id="ann")
    )
    full = client.stub.WatchProgress(queue_pb2.WatchProgressRequest(project=project_name))
    _drain_into(own, mine)
    _drain_into(full, everyone)
    first = mine.get(timeout=10).progress
    assert [(w.worker_id, w.labelled) for w in first.workers] == [("ann", 0)]
    assert first.last_training_run_id == 0
    for worker, n in (("bob", 2), ("ann", 1)):
        for item in client.pop(project_name, worker, n=n):
            client.submit(project_name, item, "a", worker)
    seen = _next_where(mine, lambda p: p.labelled == 3)
    assert [(w.worker_id, w.labelled) for w in seen.workers] == [("ann", 1)]
    assert seen.annotations == 3 and seen.available == 0
    whole = _next_where(everyone, lambda p: p.labelled == 3)
    assert [(w.worker_id, w.labelled) for w in whole.workers] == [("ann", 1), ("bob", 2)]
    run = queue_pb2.TrainingRun(status="ok", message="", n_labels=3, model_version=1)
    recorded = client.record_training_run(project_name, run)
    assert recorded > 0
    assert _next_where(mine, lambda p: p.last_training_run_id != 0).last_training_run_id == (
        recorded
    )
    assert _next_where(everyone, lambda p: p.last_training_run_id != 0).last_training_run_id == (
        recorded
    )
    own.cancel()
    full.cancel()


def test_list_training_runs_newest(client: QueueClient, project_name: str) -> None:
    """`newest` gives the last runs, oldest first; a negative one is refused."""
    client.create_project(project_name, ["a"])
    for version in (1, 2, 3):
        run = queue_pb2.TrainingRun(status="ok", message=f"run {version}", model_version=version)
        client.record_training_run(project_name, run)
    assert [r.model_version for r in client.list_training_runs(project_name)] == [1, 2, 3]
    assert [r.model_version for r in client.list_training_runs(project_name, newest=2)] == [2, 3]
    assert [r.model_version for r in client.list_training_runs(project_name, newest=9)] == [1, 2, 3]
    try:
        client.list_training_runs(project_name, newest=-1)
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT and "newest" in exc.details()
    else:
        raise AssertionError("newest=-1 was accepted")
