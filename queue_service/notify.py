"""Wake-ups for follow streams when a project changes in this process.

Other replicas' changes are picked up by the waiters' timeout, so correctness never depends
on a notification arriving; notifications only cut latency.
"""

from __future__ import annotations

import asyncio
import contextlib


class ChangeNotifier:
    def __init__(self) -> None:
        self._events: dict[int, asyncio.Event] = {}
        self._generations: dict[int, int] = {}
        self.closing = False

    def generation(self, project_id: int) -> int:
        """How many changes of the project were notified so far (in this process)."""
        return self._generations.get(project_id, 0)

    def close(self) -> None:
        """Wake every waiter for good: follow streams end when the server shuts down."""
        self.closing = True
        for project_id in list(self._events):
            self.notify(project_id)

    def notify(self, project_id: int) -> None:
        self._generations[project_id] = self._generations.get(project_id, 0) + 1
        event = self._events.pop(project_id, None)
        if event is not None:
            event.set()

    async def wait(self, project_id: int, seconds: float) -> None:
        """Return when the project changes here, or after `seconds`."""
        if self.closing:
            return
        event = self._events.setdefault(project_id, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)
