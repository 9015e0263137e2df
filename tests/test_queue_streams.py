"""Follow streams: new labels and progress changes arrive without polling by the client."""

from __future__ import annotations

import queue
import threading

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
