"""What differs between SQLite and PostgreSQL, behind one interface chosen when the store
opens: each dialect's SQL lives in its own module, the shared statements in `queries`."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import numpy as np
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from queue_service import db
from queue_service.store.rows import InputRow, PackedRows, RowBlock
from queue_service.store.sql.postgres import PostgresDialect
from queue_service.store.sql.sqlite import SqliteDialect


class Rerank(Protocol):
    matched: int

    @property
    def done(self) -> bool: ...

    async def step(self, version: int) -> int | None:
        """Apply the next part in one transaction; the newer version already applied (and
        nothing of this part written) when a newer model got there first."""
        ...


class Dialect(Protocol):
    """The per-database half of the store. The clauses are spliced into the shared
    statements once; the methods are the operations whose SQL differs outright."""

    # seconds since the epoch by the database clock: leases never trust a client's clock
    now: str
    # the same, one instant for the whole statement: what lease expiry is compared with, so
    # that the comparison can be an index condition (PostgreSQL's clock_timestamp() cannot)
    instant: str
    # row lock of a read-modify-write, and of a pick that skips rows others hold
    lock: str
    key_lock: str
    skip: str
    # the time bucket of `created_at` for a bucket width `:w` (seconds), as an integer
    bucket: str
    # held around every write transaction (SQLite serialises this process's writers)
    write_lock: AbstractAsyncContextManager[Any]

    def read_options(self, snapshot: bool) -> dict[str, str]: ...

    async def settled_annotation_id(self, patience: float = ...) -> int | None:
        """The highest annotation id below which no label can still commit, None for all
        (store/settled.py): how far StreamLabelled may send. Waits up to `patience` seconds
        for ids seen taken to settle."""
        ...

    # whether ids beyond the settled one were seen taken (a follower reads again soon)
    unsettled: bool

    async def reserve_ids(self, conn: AsyncConnection, n: int) -> list[int]: ...

    async def bulk_insert(
        self, conn: AsyncConnection, table: str, columns: tuple[str, ...], rows: list[tuple]
    ) -> None: ...

    async def insert_unlabelled(
        self,
        conn: AsyncConnection,
        project_id: int,
        batch_id: int | None,
        ids: list[int],
        inputs: Sequence[InputRow | RowBlock],
        priorities: list[float] | None,
        now: float,
    ) -> None: ...

    def rerank(
        self, project_id: int, ids: np.ndarray, priorities: np.ndarray, q: Any
    ) -> AbstractAsyncContextManager[Rerank]:
        """An UpdatePriorities checked whole (`matched`: how many ids are the project's
        items), then applied by `step` in bounded transactions, each refusing to go back
        to an older model than the one applied."""
        ...

    async def packed_unlabelled(
        self, conn: AsyncConnection, project_id: int, after: int, limit: int
    ) -> PackedRows | None: ...

    async def unlabelled_ids(
        self, conn: AsyncConnection, project_id: int, after: int, limit: int
    ) -> tuple[list[int], list[float]] | None: ...

    def refresh_statistics(self) -> None: ...

    async def close(self) -> None: ...


def dialect_for(engine: AsyncEngine) -> PostgresDialect | SqliteDialect:
    return PostgresDialect(engine) if db.is_postgres(engine) else SqliteDialect(engine)
