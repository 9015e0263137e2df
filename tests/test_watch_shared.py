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


async def _runs_session(url: str, pages: int, runs: int) -> tuple[int, list[int], int, int]:
    """`pages` watchers that ask ListTrainingRuns(newest 1) whenever progress tells of a new
    run, as the web page does; `runs` runs recorded 0.4 s apart. Gives the database reads of
    runs, each page's newest listed run id (checked against what it was told), the last
    recorded id, and the reads two unwatched calls made."""
    store = await Store.open(url)
    service = QueueService(store, Settings(database_url=url), Authenticator(store, False))
    ctx = _Context()
    await service.CreateProject(
        queue_pb2.CreateProjectRequest(project=queue_pb2.Project(name="r", options=["a"])), ctx
    )
    reads = 0
    real = store.list_runs

    async def counted(project, newest):
        nonlocal reads
        reads += 1
        await asyncio.sleep(0.005)  # a read takes a moment: pages arrive while it runs
        return await real(project, newest)

    store.list_runs = counted  # type: ignore[method-assign]
    listed: list[int] = [0] * pages
    numbers: dict[int, int] = {}  # n_labels -> run id

    async def page(k: int) -> None:
        told = 0
        request = queue_pb2.WatchProgressRequest(project="r", worker_id=f"p{k}")
        async for reply in service.WatchProgress(request, ctx):
            run = reply.progress.last_training_run_id
            if run != told:
                told = run
                got = await service.ListTrainingRuns(
                    queue_pb2.ListTrainingRunsRequest(project="r", newest=1), ctx
                )
                # never older than what progress told of (runs carry no id: n_labels is
                # the run's number here)
                assert got.runs and numbers[got.runs[0].n_labels] >= told, (got, told)
                listed[k] = numbers[got.runs[0].n_labels]

    tasks = [asyncio.create_task(page(k)) for k in range(pages)]
    await asyncio.sleep(0.3)
    last = 0
    for i in range(runs):
        run = queue_pb2.TrainingRun(status="ok", score=0.5 + i / 100, n_labels=i, trainer="t")
        recorded = await service.RecordTrainingRun(
            queue_pb2.RecordTrainingRunRequest(project="r", run=run), ctx
        )
        last = numbers[i] = recorded.id
        await asyncio.sleep(1.2)
    service.notifier.close()
    await asyncio.gather(*tasks)
    watched_reads = reads
    for _ in range(2):  # nobody watches now: every call reads
        await service.ListTrainingRuns(
            queue_pb2.ListTrainingRunsRequest(project="r", newest=1), ctx
        )
    await store.close()
    return watched_reads, listed, last, reads - watched_reads


def test_pages_told_of_a_run_share_one_read_of_it(tmp_path: Path) -> None:
    """A recorded run makes every page ask for it: one database read (or a few) serves them
    all, each page gets the run its progress told of, and unwatched calls still read."""
    reads, listed, last, unwatched = asyncio.run(
        _runs_session(f"sqlite:///{tmp_path / 'r.db'}", 40, 3)
    )
    assert listed == [last] * 40
    assert reads <= 3 * 3, reads  # 40 pages x 3 runs = 120 calls
    assert unwatched == 2
