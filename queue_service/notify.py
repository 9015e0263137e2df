"""Wake-ups for follow streams when a project changes.

A change made here wakes this process's waiters and is handed to `publish` (the store's change
feed: PostgreSQL NOTIFY, so other replicas hear of it); a change heard from another replica
wakes this process's waiters only (`notify_remote`), so it is never sent back. Correctness
never depends on a notification arriving: the waiters' timeout still polls; notifications
only cut latency.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable


class ChangeNotifier:
    def __init__(self) -> None:
        self._events: dict[int, asyncio.Event] = {}
        self._generations: dict[int, int] = {}
        self.closing = False
        #: called with the project id of every change made in this process
        self.publish: Callable[[int], None] | None = None
        #: called once when the server stops (to end the streams waiting on something else)
        self.on_close: list[Callable[[], None]] = []

    def generation(self, project_id: int) -> int:
        """How many changes of the project were notified so far (in this process)."""
        return self._generations.get(project_id, 0)

    def close(self) -> None:
        """Wake every waiter for good: follow streams end when the server shuts down."""
        self.closing = True
        for project_id in list(self._events):
            self.notify_remote(project_id)
        for callback in self.on_close:
            callback()

    def notify(self, project_id: int) -> None:
        """The project changed through this process: wake its waiters and tell the others."""
        self.notify_remote(project_id)
        if self.publish is not None:
            self.publish(project_id)

    def notify_remote(self, project_id: int) -> None:
        """The project changed (here or through another replica): wake its waiters."""
        self._generations[project_id] = self._generations.get(project_id, 0) + 1
        event = self._events.pop(project_id, None)
        if event is not None:
            event.set()

    def notify_waiting(self) -> None:
        """Wake the waiters of every project: changes may have been missed (the feed from
        the other replicas was cut and is back)."""
        for project_id in set(self._events) | set(self._generations):
            self.notify_remote(project_id)

    async def wait(self, project_id: int, seconds: float) -> None:
        """Return when the project changes here, or after `seconds`."""
        if self.closing:
            return
        event = self._events.setdefault(project_id, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)
