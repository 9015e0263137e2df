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
        self.closing = False

    def close(self) -> None:
        """Wake every waiter for good: follow streams end when the server shuts down."""
        self.closing = True
        for project_id in list(self._events):
            self.notify(project_id)

    def notify(self, project_id: int) -> None:
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
