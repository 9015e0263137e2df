"""Progress reads shared by every watcher of a project (WatchProgress).

Every open labelling page holds a WatchProgress stream, and each of them used to read the
project's progress (a few aggregate queries) on every change and once a second besides: N pages
meant N reads per change and N reads per second. Here one read serves all the watchers that need
it: a change wakes every watcher, the first starts a read and the others wait for it; a watcher
woken by its timeout (changes made by another replica) reuses a read younger than `max_age`; and
reads of one project start at most every `min_gap` seconds. The cost follows the label rate, not
the number of pages. A read reflects every change notified before it started, so no watcher
misses its own label.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from queue_service.notify import ChangeNotifier


class SharedReads:
    def __init__(
        self,
        notifier: ChangeNotifier,
        read: Callable[[Any], Awaitable[Any]],
        max_age: float = 1.0,
        min_gap: float = 0.2,
    ) -> None:
        self.notifier = notifier
        self._read = read
        self.max_age = max_age
        self.min_gap = min_gap
        # project id -> (change generation when the read started, start time, the read)
        self._reads: dict[int, tuple[int, float, asyncio.Future]] = {}
        self.started = 0  # reads made (for tests)

    async def get(self, key: int, arg: Any) -> Any:
        """The value for `key` as of now (reading it with `arg` if no shared read will do)."""
        loop = asyncio.get_running_loop()
        wanted = self.notifier.generation(key)
        while True:
            now = loop.time()
            entry = self._reads.get(key)
            if entry is not None:
                generation, started, future = entry
                failed = future.done() and (future.cancelled() or future.exception() is not None)
                fresh = not future.done() or now - started < self.max_age
                if generation >= wanted and fresh and not failed:
                    return await asyncio.shield(future)
                if now - started < self.min_gap:
                    await asyncio.sleep(self.min_gap - (now - started))
                    continue  # another watcher may have started the read meanwhile
            future = asyncio.ensure_future(self._read(arg))
            self._reads[key] = (wanted, loop.time(), future)
            self.started += 1
            return await asyncio.shield(future)
