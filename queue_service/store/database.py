"""The engine, its dialect and the statements built for it: what every concern shares."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from queue_service.store.rows import InputRow, input_row
from queue_service.store.sql import dialect_for
from queue_service.store.sql.queries import Queries


class Database:
    """Every store method is one short transaction taken here: `write` (BEGIN IMMEDIATE
    behind the dialect's write lock on SQLite) or `read` (deferred; a repeatable-read snapshot
    on PostgreSQL when asked). The hot paths (k = 1 Pop and Submit) and re-ranks take theirs
    through the dialect, behind the same lock on SQLite."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = dialect_for(engine)
        self.q = Queries(self.dialect)
        self._ping_engine: AsyncEngine | None = None

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        async with self.dialect.write_lock, self.engine.begin() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def read(self, snapshot: bool = False) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            await conn.execution_options(**self.dialect.read_options(snapshot))
            async with conn.begin():
                yield conn

    async def inputs(self, conn: AsyncConnection, ids: Sequence[int]) -> dict[int, InputRow]:
        """The inputs of these items, by id (one query)."""
        if not ids:
            return {}
        rows = await conn.execute(self.q.inputs, {"ids": list(ids)})
        return {r.item_id: input_row(r) for r in rows}

    async def lease_expiry(self, conn: AsyncConnection, seconds: float) -> float:
        """When a lease taken now ends, by the database clock."""
        return (await conn.execute(self.q.lease_expiry, {"l": seconds})).scalar_one()

    async def ping(self) -> None:
        """SELECT 1 on a connection of its own, outside the pool: the health check asks
        whether the database answers, and a pool busy with a crowd's calls is not an outage
        (through the pool, the probe timed out under load and health flapped). On PostgreSQL
        that one connection is kept between probes (checked before each use, so a restarted
        database costs no false alarm): a new one every 2 s started a backend each time and,
        in the service, loaded an SSL context with the system's certificates (asyncpg's
        sslmode=prefer; libcrypto was 1 % of the service's CPU in `perf` under a crowd)."""
        if self._ping_engine is None:
            pool: dict[str, Any] = (
                {"poolclass": NullPool}
                if self.engine.dialect.name == "sqlite"
                else {"pool_size": 1, "max_overflow": 0, "pool_pre_ping": True}
            )
            self._ping_engine = create_async_engine(self.engine.url, **pool)
        async with self._ping_engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def close(self) -> None:
        await self.dialect.close()
        if self._ping_engine is not None:
            await self._ping_engine.dispose()
        await self.engine.dispose()
