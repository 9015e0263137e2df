"""ListTrainingRuns replies shared for a moment by the pages of a project.

Every open labelling page learns of a new training run from its progress stream and then asks
for it (ListTrainingRuns, newest 1), so a recorded run brings one call per page within two
seconds: at 1,000 pages a burst of reads that held every labeller's Submit up by seconds.
While a project's progress is being watched here, a reply is kept for `seconds` and handed to
the next callers with the same question, as long as it holds the newest run the shared
progress read has seen: a page is never told of a run and then given a list without it. A run
recorded through this process drops the project's replies at once; one recorded through
another replica is in a reply at most `seconds` after this replica's progress saw it.
Projects nobody watches here are read every time, as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any


class RunReplies:
    def __init__(self, seconds: float = 1.0, most: int = 1024) -> None:
        self.seconds = seconds
        self.most = most
        self._replies: dict[tuple[int, int], tuple[float, int, Any]] = {}
        self._pending: dict[tuple[int, int], tuple[int, asyncio.Future]] = {}

    async def read(
        self,
        project_id: int,
        newest: int,
        known_run: int | None,
        now: float,
        fetch: Callable[[], Awaitable[Any]],
    ) -> Any:
        """The reply to ListTrainingRuns(`newest`): `fetch()`'s, or one kept or in flight
        that holds at least `known_run`, the newest run id the project's shared progress has
        seen (None: nobody watches the project here, so `fetch()` every time). Callers
        arriving while a fetch runs (a run reaches every page at once) share it."""
        if known_run is None:
            return await fetch()
        key = (project_id, newest)
        kept = self._replies.get(key)
        if kept is not None:
            read_at, holds_run, reply = kept
            if now - read_at < self.seconds and holds_run >= known_run:
                return reply
        pending = self._pending.get(key)
        if pending is None or pending[0] < known_run:
            future = asyncio.ensure_future(fetch())
            pending = self._pending[key] = (known_run, future)

            def done(f: asyncio.Future) -> None:
                if self._pending.get(key) is pending:
                    del self._pending[key]
                if not f.cancelled() and f.exception() is None:
                    self.put(project_id, newest, now, known_run, f.result())

            future.add_done_callback(done)
        return await asyncio.shield(pending[1])

    def put(self, project_id: int, newest: int, read_at: float, known_run: int, reply: Any) -> None:
        """Keep `reply`, read from the database starting at `read_at`, when the shared
        progress had seen `known_run` as the newest run: the reply holds that one at least
        (runs carry no id of their own to check)."""
        if len(self._replies) >= self.most:
            self._replies.clear()
        self._replies[(project_id, newest)] = (read_at, known_run, reply)

    def forget(self, project_id: int) -> None:
        """A run was recorded through this process."""
        for key in [k for k in self._replies if k[0] == project_id]:
            del self._replies[key]
        for key in [k for k in self._pending if k[0] == project_id]:
            del self._pending[key]  # its callers still get it; later ones read again
