"""WatchProgress with many watchers: one progress read per change serves them all (every open
page of the web app holds a stream), and no watcher misses a change."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from labelgrid_proto.v1 import arrays_pb2, queue_pb2
from queue_service.auth import Authenticator
from queue_service.config import Settings
from queue_service.service import QueueService
from queue_service.store import Store


class _Context:
    def invocation_metadata(self) -> tuple:
        return ()

    async def abort(self, code, details):
        raise AssertionError(f"{code}: {details}")


async def _session(url: str, watchers: int, labels: int) -> tuple[int, list[int], float]:
    store = await Store.open(url)
    service = QueueService(store, Settings(database_url=url), Authenticator(store, False))
    ctx = _Context()
    await service.CreateProject(
        queue_pb2.CreateProjectRequest(project=queue_pb2.Project(name="w", options=["a"])), ctx
    )

    async def items():
        yield queue_pb2.AddFeaturesRequest(
            project="w",
            items=[queue_pb2.NewItem(input=arrays_pb2.Payload(text=f"t{i}")) for i in range(20)],
        )

    await service.AddFeatures(items(), ctx)
    reads = 0
    real = store.progress

    async def counted(project):
        nonlocal reads
        reads += 1
        return await real(project)

    store.progress = counted  # type: ignore[method-assign]
    seen: list[int] = [0] * watchers

    async def watch(k: int) -> None:
        async for reply in service.WatchProgress(queue_pb2.WatchProgressRequest(project="w"), ctx):
            seen[k] = reply.progress.labelled

    tasks = [asyncio.create_task(watch(k)) for k in range(watchers)]
    await asyncio.sleep(0.3)
    started = time.monotonic()
    for _ in range(labels):
        popped = await service.Pop(queue_pb2.PopRequest(project="w", worker_id="x"), ctx)
        item = popped.items[0]
        await service.Submit(
            queue_pb2.SubmitRequest(
                project="w", item_id=item.id, lease_token=item.lease_token, worker_id="x",
                labels=["a"],
            ),
            ctx,
        )  # fmt: skip
        await asyncio.sleep(0.25)
    await asyncio.sleep(0.5)
    elapsed = time.monotonic() - started
    service.notifier.close()
    await asyncio.gather(*tasks)
    await store.close()
    return reads, seen, elapsed


def test_many_watchers_share_one_read_per_change(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'w.db'}"
    reads, seen, elapsed = asyncio.run(_session(url, watchers=50, labels=6))
    assert seen == [6] * 50  # every watcher saw the last label
    # a read per change (pop and submit: 12) and about one a second besides, not 50 of each
    assert reads <= 2 * 6 + 2 * (elapsed + 1) + 2, reads
