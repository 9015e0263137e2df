"""Changes told to, and heard from, the other replicas of the queue service.

On PostgreSQL each replica keeps one dedicated connection (outside the pool) that LISTENs on
one channel. A change made through a replica is NOTIFYed on it after its transaction has
committed, with the project id as payload. NOTIFYs are coalesced: the projects that change
while a flush is in flight, or within `coalesce` seconds after it, go out together in the
next one, so a burst of labels costs one notification per project per interval, not one per
label. A change heard from another replica is handed to `heard`; this replica's own
notifications, echoed back on the same connection, are recognised by their backend pid and
dropped.

Notifications only cut latency. When the connection is lost (PostgreSQL restarts, the backend
is terminated, the network drops: found at the next keepalive at the latest), the feed
reconnects with backoff while the watchers' poll keeps finding every change. Back on line it
calls `resync` (changes may have been missed) and sends what changed here meanwhile.

SQLite serves one process, so there it is `LocalFeed`, which tells no one.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
from collections.abc import Callable
from typing import Any, Protocol

import asyncpg

from queue_service.store.sql.postgres import (
    CHANGES_CHANNEL,
    KEEPALIVE,
    LISTENER_APPLICATION,
    NOTIFY_CHANGES,
)

log = logging.getLogger("labelgrid.queue")


class ChangeFeed(Protocol):
    async def start(self, heard: Callable[[int], None], resync: Callable[[], None]) -> None:
        """Begin listening; `heard(project_id)` for each change made through another
        replica, `resync()` after a gap in listening."""
        ...

    def publish(self, project_id: int) -> None:
        """The project changed through this replica (its transaction has committed)."""
        ...

    async def close(self) -> None: ...


class LocalFeed:
    """One process serves the database (SQLite): nobody else to tell or hear from."""

    async def start(self, heard: Callable[[int], None], resync: Callable[[], None]) -> None:
        return None

    def publish(self, project_id: int) -> None:
        return None

    async def close(self) -> None:
        return None


class PostgresFeed:
    """LISTEN/NOTIFY on one dedicated asyncpg connection, reconnected with backoff."""

    def __init__(
        self,
        connect_args: dict[str, Any],
        coalesce: float = 0.05,
        keepalive: float = 15.0,
        backoff: tuple[float, float] = (0.1, 5.0),
    ) -> None:
        self._args = connect_args
        self.coalesce = coalesce
        self.keepalive = keepalive
        self.backoff = backoff
        self._pending: set[int] = set()
        self._wake = asyncio.Event()
        self._heard: Callable[[int], None] = lambda _: None
        self._resync: Callable[[], None] = lambda: None
        self._task: asyncio.Task | None = None
        self.connected = asyncio.Event()
        # counters, for tests and logs
        self.connects = 0
        self.sent = 0
        self.received = 0

    async def start(
        self, heard: Callable[[int], None], resync: Callable[[], None], wait: float = 5.0
    ) -> None:
        """Start listening, waiting up to `wait` seconds for the first connection (without
        it the service still serves: the poll finds every change)."""
        self._heard, self._resync = heard, resync
        self._task = asyncio.get_running_loop().create_task(self._run(), name="change-feed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.connected.wait(), wait)

    def publish(self, project_id: int) -> None:
        self._pending.add(project_id)
        self._wake.set()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        delay = self.backoff[0]
        while True:
            began = loop.time()
            try:
                await self._session()
            except (
                OSError,
                TimeoutError,
                asyncpg.PostgresError,
                asyncpg.InterfaceError,
                # a connection cut by PostgreSQL's restart mid-statement (seen under uvloop:
                # "cannot switch to state 12; another operation is in progress")
                asyncpg.InternalClientError,
            ) as exc:
                log.warning(
                    "change feed: no connection to PostgreSQL; retrying",
                    extra={"error": f"{type(exc).__name__}: {exc}", "retry_in": delay},
                )
            except Exception:  # never let the feed die: the service would lose it silently
                log.exception("change feed failed; retrying", extra={"retry_in": delay})
            if loop.time() - began > self.backoff[1]:
                delay = self.backoff[0]  # that connection lasted: start again quickly
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.backoff[1])

    async def _session(self) -> None:
        """One connection's life: listen, then flush changes until the connection is lost."""
        conn = await asyncpg.connect(
            **self._args,
            timeout=10,
            server_settings={"application_name": f"{LISTENER_APPLICATION} pid={os.getpid()}"},
        )
        try:
            conn.add_termination_listener(lambda _conn: self._wake.set())
            own = conn.get_server_pid()
            await conn.add_listener(CHANGES_CHANNEL, functools.partial(self._on_notify, own))
            if self.connects:
                self._resync()  # changes made elsewhere while this replica was not listening
            self.connects += 1
            self.connected.set()
            log.info("change feed listening", extra={"backend_pid": own})
            await self._pump(conn)
        finally:
            self.connected.clear()
            conn.terminate()  # close() could wait on a dead socket

    async def _pump(self, conn: asyncpg.Connection) -> None:
        while not conn.is_closed():
            if not self._pending:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self.keepalive)
                except TimeoutError:
                    await conn.execute(KEEPALIVE, timeout=self.keepalive)
                    continue
            if conn.is_closed():
                break
            projects = sorted(self._pending)
            self._pending.clear()
            try:
                await conn.execute(NOTIFY_CHANGES, CHANGES_CHANNEL, projects, timeout=10)
            except BaseException:
                self._pending.update(projects)  # sent after reconnecting
                raise
            self.sent += len(projects)
            await asyncio.sleep(self.coalesce)
        raise ConnectionResetError("the listening connection was closed")

    def _on_notify(
        self, own: int, _conn: asyncpg.Connection, pid: int, _channel: str, payload: str
    ) -> None:
        if pid == own:
            return  # our own NOTIFY: this replica's waiters were woken when it changed
        try:
            project_id = int(payload)
        except ValueError:
            log.warning("change feed: ignored a payload", extra={"payload": payload[:100]})
            return
        self.received += 1
        self._heard(project_id)
