"""Progress read once per project and fanned out to every watcher of it (WatchProgress).

Every open labelling page holds a WatchProgress stream. One task per watched project reads the
project's progress when it changes (a change made through this replica, or through another one
heard by the change feed; without either, every `poll` seconds), and only when the value
differs from the last one wakes the watchers, each of which sends that very message. A change
costs one read however many pages are open, and a page costs one send per new value; the first
version of this module shared the read but woke, re-checked and compared in every watcher.

Reads of a project start at most every `gap` seconds: `min_gap`, or longer when so many pages
watch that sending each value to all of them would pass `budget` messages a second, so what a
project's pages cost the server stays bounded as they grow (at 1,000 pages and a budget of
1,000, each gets about one update a second), or longer when a read takes long (a big
project: 0.25 s at 10^6 items on SQLite), so reading one project takes at most a `duty` share
of the time however big it grows (0: no bound). A read starts after the change that scheduled it,
so the next value a watcher gets includes every change made before (no one misses their own
label, they may see it up to `gap` later). A new value wakes the watchers `batch` at a time,
with the loop polling its sockets in between, so other calls are not queued behind a
thousand sends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from queue_service.notify import ChangeNotifier


class _Topic:
    """One project's latest value and the watchers waiting for the next one."""

    def __init__(self) -> None:
        self.value: Any = None
        self.version = 0
        self.error: BaseException | None = None
        self.done = False
        self.watchers = 0
        self.waiting: list[asyncio.Future] = []
        self.task: asyncio.Task | None = None

    def wait(self) -> asyncio.Future:
        if len(self.waiting) > 2 * self.watchers + 16:  # pages that left while nothing changed
            self.waiting = [w for w in self.waiting if not w.done()]
        waiter = asyncio.get_running_loop().create_future()
        self.waiting.append(waiter)
        return waiter

    def wake_all(self) -> None:
        waiting, self.waiting = self.waiting, []
        for waiter in waiting:
            if not waiter.done():
                waiter.set_result(None)

    async def publish(self, batch: int) -> None:
        """Wake the waiting watchers `batch` at a time, letting the loop poll its sockets
        between batches: a thousand sends at once would hold a labeller's call up behind
        them (their p99) for as long as they take."""
        waiting, self.waiting = self.waiting, []
        for start in range(0, len(waiting), batch):
            for waiter in waiting[start : start + batch]:
                if not waiter.done():
                    waiter.set_result(None)
            await asyncio.sleep(0)


class Fanout:
    def __init__(
        self,
        notifier: ChangeNotifier,
        read: Callable[[Any], Awaitable[Any]],
        poll: float = 1.0,
        min_gap: float = 1.0,
        budget: float = 1000.0,
        batch: int = 50,
        duty: float = 0.1,
    ) -> None:
        self.notifier = notifier
        self._read = read
        self.poll = poll
        self.min_gap = min_gap
        self.budget = budget
        self.batch = batch
        self.duty = duty
        self._topics: dict[int, _Topic] = {}
        self.started = 0  # reads made (for tests)
        notifier.on_close.append(self._close)

    async def watch(self, key: int, arg: Any) -> AsyncIterator[Any]:
        """The value for `key` now, then each new one, until the server closes. A failed read
        ends every watcher of the key with its exception. Use with `contextlib.aclosing`."""
        topic = self._topics.get(key)
        if topic is None:
            topic = self._topics[key] = _Topic()
            topic.task = asyncio.get_running_loop().create_task(
                self._refresh(key, arg, topic), name=f"progress-{key}"
            )
        topic.watchers += 1
        seen = 0
        try:
            while True:
                if topic.error is not None:
                    raise topic.error.with_traceback(None)  # raised in every watcher
                if topic.done or self.notifier.closing:
                    return
                if topic.version != seen:
                    seen = topic.version
                    yield topic.value
                    continue
                await topic.wait()
        finally:
            topic.watchers -= 1
            if topic.watchers == 0:
                self._drop(key, topic)

    def latest(self, key: int) -> Any:
        """The newest value read for `key` while it is watched here, else None."""
        topic = self._topics.get(key)
        return topic.value if topic is not None and topic.version else None

    def _drop(self, key: int, topic: _Topic) -> None:
        if self._topics.get(key) is topic:
            del self._topics[key]
        if topic.task is not None and not topic.task.done():
            topic.task.cancel()  # the read itself is shielded: it finishes on its own

    def _close(self) -> None:
        """The server is stopping: every watcher ends now."""
        for key, topic in list(self._topics.items()):
            topic.done = True
            topic.wake_all()
            self._drop(key, topic)

    async def _refresh(self, key: int, arg: Any, topic: _Topic) -> None:
        loop = asyncio.get_running_loop()
        while not self.notifier.closing:
            wanted = self.notifier.generation(key)
            started = loop.time()
            read = asyncio.ensure_future(self._read(arg))
            read.add_done_callback(_retrieve)  # read on even if this task is cancelled
            self.started += 1
            try:
                value = await asyncio.shield(read)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                topic.error = exc
                topic.wake_all()
                if self._topics.get(key) is topic:
                    del self._topics[key]  # the next watcher starts again
                return
            took = loop.time() - started
            if topic.version == 0 or value != topic.value:
                topic.value = value
                topic.version += 1
                await topic.publish(self.batch)
            if self.notifier.generation(key) == wanted:  # else: changed during the read
                await self.notifier.wait(key, self.poll)
            slow = took / self.duty if self.duty else 0.0
            gap = max(self.min_gap, topic.watchers / self.budget, slow)
            if started + gap > loop.time():
                await asyncio.sleep(started + gap - loop.time())


def _retrieve(future: asyncio.Future) -> None:
    """Mark a read's failure as seen when nobody awaits it any more (no warning at exit)."""
    if not future.cancelled():
        with contextlib.suppress(BaseException):
            future.exception()


class ProgressViews:
    """One project's progress as every watcher is sent it: the whole message (every worker's
    count) for those that ask for it, and for a labeller's page the message without the
    crowd plus that labeller's own count, so what a page receives stays small however many
    others label. Built once per value and shared; equal when the progress is."""

    __slots__ = ("_brief", "_counts", "full")

    def __init__(self, full: Any, counts: dict[str, int]) -> None:
        self.full = full
        self._counts = counts
        self._brief = type(full)()
        self._brief.CopyFrom(full)
        del self._brief.progress.workers[:]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ProgressViews) and self.full == other.full

    __hash__ = None  # type: ignore[assignment]

    def for_worker(self, worker_id: str) -> Any:
        """The message for `worker_id`'s page (the whole one when no worker is named)."""
        if not worker_id:
            return self.full
        reply = type(self.full)()
        reply.CopyFrom(self._brief)
        reply.progress.workers.add(worker_id=worker_id, labelled=self._counts.get(worker_id, 0))
        return reply
