"""Connections the PostgreSQL hot path keeps checked out between its statements.

A Pop or a Submit is one statement on asyncpg (postgres.py), and checking a connection out
of SQLAlchemy's pool and back in around it cost the event loop about a fifth of the call's
CPU (pool bookkeeping, events, a greenlet hop each way). So the hot path takes connections
from the pool once and hands them from one statement to the next, most recently used first,
keeping at most `keep` idle; a burst beyond that returns the extra ones to the pool. A
connection that failed is invalidated, not kept; one lost with the server takes every idle
one with it (opened against the same server: after a restart they are all gone).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

# idle connections kept at most: one statement at a time per connection, and the pool
# (10 + 10 overflow by default) serves every other read and write too; never more than half
# of the pool's base size, so a small pool (LABELGRID_DB_POOL_SIZE) is not taken over
KEEP = 4


class HeldConnections:
    def __init__(self, engine: AsyncEngine, keep: int = KEEP) -> None:
        self.engine = engine
        size = getattr(engine.pool, "size", None)
        self.keep = min(keep, size() // 2) if callable(size) else 0
        self._idle: list[tuple[AsyncConnection, Any]] = []
        self._closed = False
        self.opened = 0  # checked out of the pool (for tests)

    async def acquire(self) -> tuple[AsyncConnection, Any]:
        """(the connection, its asyncpg connection): an idle held one, else one more from
        the pool."""
        if self._idle:
            return self._idle.pop()
        conn = await self.engine.connect()
        try:
            raw = await conn.get_raw_connection()
        except BaseException:
            await asyncio.shield(conn.close())
            raise
        self.opened += 1
        return conn, raw.driver_connection

    async def release(self, held: tuple[AsyncConnection, Any]) -> None:
        """Back among the idle ones after a statement that left it sound."""
        if self._closed or len(self._idle) >= self.keep:
            await held[0].close()
        else:
            self._idle.append(held)

    async def discard(self, held: tuple[AsyncConnection, Any], lost: bool) -> None:
        """After a failure: this connection is invalidated; when it was `lost` (the server
        went away), so is every idle one. Done whole even if the caller is cancelled."""
        doomed = [held]
        if lost:
            doomed += self._idle
            self._idle = []
        await asyncio.shield(_invalidate(doomed))

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn, _ in idle:
            await conn.close()


async def _invalidate(doomed: list[tuple[AsyncConnection, Any]]) -> None:
    for conn, _ in doomed:  # already broken: dropping them is all that is left to do
        with contextlib.suppress(Exception):
            await conn.invalidate()
        with contextlib.suppress(Exception):
            await conn.close()
